"""Worker processes for the peers the harness compares with (one module per peer)."""
