"""vsm-console operator console: CLI, TUI, daemon and ctl client."""
