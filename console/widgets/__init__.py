"""The console's panels: one module each; each renders from a snapshot dict only."""
