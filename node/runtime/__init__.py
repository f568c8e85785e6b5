"""trio drivers of the node: thin, each owns its tasks."""
