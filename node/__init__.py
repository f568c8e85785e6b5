"""vsm-console node runtime (never imports textual or asyncio)."""
