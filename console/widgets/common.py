"""Helpers the panels share: formatting and colours from the theme's variables."""

from __future__ import annotations

from typing import Any

from textual.app import App

# Theme variables for levels and breaker states; a theme file may set them
# under [variables]. Missing ones fall back to the theme's own success,
# warning and error colours.
LEVEL_FALLBACK = {
    "pressure-healthy": "success",
    "pressure-moderate": "warning",
    "pressure-high": "error",
    "breaker-closed": "success",
    "breaker-half_open": "warning",
    "breaker-open": "error",
    "health-good": "success",
    "health-poor": "warning",
    "health-bad": "error",
}

NOT_BUILT = "not built yet"


def colour(app: App[Any], name: str) -> str:
    """A colour for ``name`` (e.g. "pressure-high") from the current theme."""
    variables = app.theme_variables
    value = variables.get(name)
    if value:
        return value
    return variables.get(LEVEL_FALLBACK.get(name, "foreground"), "") or "default"


def health_level(value: float) -> str:
    if value >= 0.8:
        return "health-good"
    if value >= 0.5:
        return "health-poor"
    return "health-bad"


def fmt(value: Any, spec: str = "", none: str = "-") -> str:
    """Format a figure, or ``none`` when there is no figure (never a made-up 0)."""
    if value is None:
        return none
    if spec:
        return format(value, spec)
    return str(value)


def not_built(section: Any) -> str | None:
    """The reason if a snapshot section says it is not built, else None."""
    if isinstance(section, dict) and "not_built" in section:
        return str(section["not_built"])
    return None
