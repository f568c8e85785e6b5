"""Check a configuration file and report every problem, not only the first.

:func:`check_file` reads a TOML file the way :func:`node.config.load_config`
does and validates each key on its own, through the same ``NodeConfig`` and
``TlsConfig`` validators the node uses (one place for each rule), so one bad
value does not hide the next. Then it checks what a single key cannot show:
settings that only make sense together, a quorum that would let two sides of a
partition both win, TLS and cookie files that cannot be read, and a cookie
that others on the host can read.

Each :class:`Problem` names its key (``node.quotas.s1_operational``), the
value, and why. ``vsm-console config check FILE`` prints them; the daemon
refuses to start on a file with problems, with the same messages.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from node.config import (
    _KEYS,
    _OTHER_TABLES,
    _PATH_KEYS,
    _TLS_FIELDS,
    _UNLIMITED,
    NodeConfig,
    TlsConfig,
    cookie_file_mode_problem,
    parse_address,
)
from node.errors import ConfigError

#: Stands in for the cookie while single keys are checked (the real one may come from env).
_PLACEHOLDER_COOKIE: Final = "config-check-placeholder"
_PER_ENTRY: Final = ("quotas", "capacities", "event_types")
_SUBJECT_RE: Final = re.compile(r"[a-z_]+(\.[a-z0-9_]+)*")


@attrs.frozen
class Problem:
    """One thing wrong with a configuration: where, what value, and why."""

    key: str
    value: Any
    why: str

    def __str__(self) -> str:
        if self.value is _NO_VALUE:
            return f"{self.key}: {self.why}"
        return f"{self.key} = {_show(self.value)}: {self.why}"


_NO_VALUE: Final[Any] = object()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _why(key: str, exc: ConfigError) -> str:
    """The message without the key it starts with (the Problem prints the key)."""
    text = str(exc)
    for prefix in (f"{key}: ", f"{key} ", f"{key.split('.')[-1]} "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _subject(exc: ConfigError) -> str:
    """The key an error is about: its ``key``, else the name its message starts with."""
    if exc.key:
        return exc.key
    match = _SUBJECT_RE.match(str(exc))
    return match.group(0) if match else ""


def check_file(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem in the TOML file at ``path`` (empty: it is good)."""
    where = Path(path)
    try:
        with where.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return [Problem("file", str(where), "not found")]
    except OSError as exc:
        return [Problem("file", str(where), f"cannot be read: {exc.strerror}")]
    except tomllib.TOMLDecodeError as exc:
        return [Problem("file", str(where), f"not valid TOML: {exc}")]
    problems: list[Problem] = []
    for key in data:
        if key != "node" and key not in _OTHER_TABLES:
            problems.append(
                Problem(key, _NO_VALUE, "unknown top-level key; node settings go in a [node] table")
            )
    table = data.get("node", {})
    if not isinstance(table, dict):
        problems.append(Problem("node", table, "must be a table"))
        return problems
    return problems + check_table(table, base=where.parent, file_mode=_mode(where))


def check_table(
    table: Mapping[str, Any], *, base: Path, file_mode: int | None = None
) -> list[Problem]:
    """Every problem in a ``[node]`` table; relative paths are relative to ``base``."""
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = f"node.{key}"
        if key not in _KEYS:
            close = difflib.get_close_matches(key, sorted(_KEYS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(Problem(name, value, f"unknown key{hint}"))
            continue
        if key in _PATH_KEYS and isinstance(value, str):
            value = str(base / value)
        found = _check_key(key, value, base)
        problems += found
        if not found:
            values[key] = value
    if "cookie" in table and "cookie_file" in table:
        problems.append(
            Problem("node.cookie", _NO_VALUE, "cookie and cookie_file both set; use one")
        )
    if "cookie" in table and file_mode is not None and file_mode & 0o004:
        problems.append(
            Problem(
                "node.cookie",
                "***",
                f"the cluster secret is in a file others can read (mode {file_mode:04o}); "
                "use cookie_file with mode 0600, or VSM_COOKIE",
            )
        )
    # Rules across keys, over the keys that are good on their own.
    problems += _check_together(values)
    return problems


def _check_key(key: str, value: Any, base: Path) -> list[Problem]:
    name = f"node.{key}"
    if key == "cookie_file":
        return check_cookie_file(value, name)
    if key == "tls":
        return _check_tls(value, base)
    if key in _PER_ENTRY:
        if not isinstance(value, dict):
            return [Problem(name, value, "must be a table")]
        problems = []
        for sub, item in value.items():
            if key == "quotas" and item == _UNLIMITED:
                item = None
            problems += _try(f"node.{key}.{sub}", {key: {sub: item}})
        return problems
    if key == "cookie":
        if not isinstance(value, str) or not value:
            return [Problem(name, "***", "must be a non-empty string")]
        return []
    return _try(name, {key: value})


def _try(name: str, fields: Mapping[str, Any]) -> list[Problem]:
    try:
        NodeConfig(**{"cookie": _PLACEHOLDER_COOKIE, **fields})
    except ConfigError as exc:
        if _subject(exc).split(".")[0] not in fields:
            return []  # a rule across keys, tripped against a default: checked together later
        value = next(iter(fields.values()))
        if isinstance(value, dict) and len(value) == 1:
            value = next(iter(value.values()))
        return [Problem(name, value, _why(name.removeprefix("node."), exc))]
    except TypeError as exc:  # a type attrs itself refuses
        return [Problem(name, next(iter(fields.values())), str(exc))]
    return []


def _check_tls(value: Any, base: Path) -> list[Problem]:
    if not isinstance(value, dict):
        return [Problem("node.tls", value, "must be a table")]
    problems: list[Problem] = []
    fields: dict[str, Any] = {}
    for key, item in value.items():
        if key not in _TLS_FIELDS:
            problems.append(
                Problem(f"node.tls.{key}", item, f"unknown key (valid: {', '.join(_TLS_FIELDS)})")
            )
        else:
            fields[key] = item
    for key in ("cert", "key"):
        if key not in fields:
            problems.append(Problem(f"node.tls.{key}", _NO_VALUE, "required when tls is set"))
    for key in ("cert", "key", "ca"):
        item = fields.get(key)
        if isinstance(item, str) and item:
            full = base / item
            fields[key] = str(full)
            problem = _unreadable(full)
            if problem:
                problems.append(Problem(f"node.tls.{key}", str(full), problem))
    if problems:
        return problems
    try:
        TlsConfig(**fields)
    except ConfigError as exc:
        key = _subject(exc) or "tls"
        return [
            Problem(f"node.{key}", fields.get(key.removeprefix("tls."), _NO_VALUE), _why(key, exc))
        ]
    return []


def check_cookie_file(value: Any, name: str = "cookie_file") -> list[Problem]:
    """A cookie file must be readable by us, not empty, and not open to group or others."""
    if not isinstance(value, str) or not value:
        return [Problem(name, value, "must be a path string")]
    path = Path(value)
    problem = _unreadable(path)
    if problem:
        return [Problem(name, value, problem)]
    problems = []
    mode = _mode(path)
    problem = None if mode is None else cookie_file_mode_problem(value, mode)
    if problem:
        problems.append(Problem(name, value, problem))
    try:
        if not path.read_text(encoding="utf-8").strip():
            problems.append(Problem(name, value, "the file is empty"))
    except UnicodeDecodeError:
        problems.append(Problem(name, value, "not UTF-8 text"))
    except OSError as exc:
        problems.append(Problem(name, value, f"cannot be read: {exc.strerror}"))
    return problems


def _unreadable(path: Path) -> str | None:
    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "is a directory, not a file"
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def _check_together(values: Mapping[str, Any]) -> list[Problem]:
    """Rules that span keys, checked over ``values`` (keys that are good on their own)."""
    problems: list[Problem] = []
    fields = {k: v for k, v in values.items() if k not in ("cookie_file", "tls")}
    fields.setdefault("cookie", _PLACEHOLDER_COOKIE)
    if isinstance(fields.get("quotas"), dict):
        fields["quotas"] = {k: None if v == _UNLIMITED else v for k, v in fields["quotas"].items()}
    try:
        config = NodeConfig(**fields)
    except ConfigError as exc:
        key = _subject(exc)
        return [Problem(f"node.{key}", values.get(key, _NO_VALUE), _why(key, exc))]
    quorum = config.quorum_size
    if quorum is not None:
        members = _known_members(config)
        if quorum * 2 <= members:
            problems.append(
                Problem(
                    "node.quorum_size",
                    quorum,
                    f"lets two sides win: seeds and this node already make {members} "
                    f"members, and two sides of {quorum} can both reach it "
                    f"(use at least {members // 2 + 1})",
                )
            )
    return problems


def _known_members(config: NodeConfig) -> int:
    """Distinct member addresses the file itself names (a lower bound on the cluster)."""
    addresses = set()
    for address in (*config.seeds, config.advertise_address):
        host, port = parse_address(address)
        addresses.add((host.lower(), port))
    return len(addresses)
