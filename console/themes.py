"""Themes are data: one TOML file per theme, loaded and registered at start.

A bad theme file is reported (returned as an error string), never fatal.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs

THEME_FIELDS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "success",
    "warning",
    "error",
)


def theme_dir() -> Path:
    """Where the shipped theme files are: in the wheel, or in a source checkout."""
    installed = Path(__file__).with_name("_themes")
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "themes"


@attrs.frozen
class ThemeSpec:
    name: str
    dark: bool
    colors: dict[str, str]
    variables: dict[str, str]


def parse_theme(path: Path) -> ThemeSpec:
    """Read one theme file; ValueError with the file and field at fault if bad."""
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path.name}: cannot read theme: {exc}") from exc
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path.name}: 'name' must be a non-empty string")
    if not isinstance(raw.get("primary"), str):
        raise ValueError(f"{path.name}: 'primary' colour is required")
    colors = {}
    for field in THEME_FIELDS:
        value = raw.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{path.name}: {field!r} must be a colour string")
        colors[field] = value
    variables = raw.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise ValueError(f"{path.name}: 'variables' must map names to strings")
    return ThemeSpec(name, bool(raw.get("dark", True)), colors, dict(variables))


def load_themes(directory: Path | None = None) -> tuple[list[ThemeSpec], list[str]]:
    """All theme files in ``directory`` (default: shipped), and errors for bad ones."""
    specs: list[ThemeSpec] = []
    errors: list[str] = []
    folder = directory or theme_dir()
    for path in sorted(folder.glob("*.toml")):
        try:
            specs.append(parse_theme(path))
        except ValueError as exc:
            errors.append(str(exc))
    return specs, errors


def to_textual(spec: ThemeSpec) -> Any:
    """The textual ``Theme`` for a spec (imported here so node-side code never needs it)."""
    from textual.color import Color, ColorParseError
    from textual.theme import Theme

    for field, value in spec.colors.items():
        try:
            Color.parse(value)
        except ColorParseError as exc:
            raise ValueError(f"{field} {value!r} is not a colour") from exc
    colors: dict[str, Any] = dict(spec.colors)
    return Theme(name=spec.name, dark=spec.dark, variables=dict(spec.variables), **colors)


def register_themes(app: Any, directory: Path | None = None) -> list[str]:
    """Register every good theme file with ``app``; return the errors of the bad ones."""
    specs, errors = load_themes(directory)
    for spec in specs:
        try:
            app.register_theme(to_textual(spec))
        except Exception as exc:  # e.g. a colour textual cannot parse
            errors.append(f"{spec.name}: {exc}")
    return errors
