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


def sync_table(table: Any, rows: dict[str, list[Any]]) -> None:
    """Show ``rows`` (row key -> cells) in a DataTable, touching only what changed.

    Clearing and refilling a table re-renders every line; updating cells in
    place lets the table re-render only the rows whose figures moved, which
    keeps a 3 Hz refresh cheap.
    """
    keys = [str(k.value) for k in table.rows]
    if keys != list(rows):
        table.clear()
        for key, cells in rows.items():
            table.add_row(*cells, key=key)
        return
    columns = list(table.columns)
    for key, cells in rows.items():
        old = table.get_row(key)
        for column, before, after in zip(columns, old, cells, strict=False):
            if str(before) != str(after) or getattr(before, "style", None) != getattr(
                after, "style", None
            ):
                table.update_cell(key, column, after, update_width=True)
