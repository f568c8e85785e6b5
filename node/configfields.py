"""The rules behind NodeConfig's fields: addresses, numbers, names, paths,
quotas, cookie files, and the read-only map config values are frozen into.

Split out of node.config to keep each module readable; ``node.config``
re-exports what callers use (``parse_address``, ``format_address``,
``FrozenMap``, ``cookie_file_mode_problem``, ``default_data_dir``).
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import os
import re
import socket
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, NoReturn, TypeVar

import attrs

from node.core.events import Channel, check_event_type
from node.core.hlc import MAX_NODE_NAME
from node.core.limits import check_capacity, check_quota
from node.errors import ConfigError, InvalidMessageError

#: Hosts meaning "every interface" (the same set ``node.sim`` accepts). ``*``
#: asks the real transport for every address family (dual stack).
WILDCARD_HOSTS: Final = frozenset({"*", "0.0.0.0", "::"})

# A frame must hold a HELLO, AUTH or the heartbeat of a small cluster; below
# this the node could not even finish a handshake. The upper bound is what the
# 4-byte length prefix can say.
MIN_MAX_FRAME = 4096
MAX_MAX_FRAME = 2**32 - 1
# Hops count relays; a path longer than this would loop rather than help.
MAX_MAX_HOPS = 255
# Linux sun_path holds 108 bytes including the NUL; a longer path fails at
# bind with an obscure error, so say it here instead.
MAX_SOCKET_PATH = 107
_NAME_RE = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_NODE_NAME}}}")
_HOST_RE = re.compile(r"[A-Za-z0-9._-]{1,253}")
_FIELD_RE = re.compile(r"[a-z_]+")

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V]):
    """A read-only, hashable copy of a mapping (configs are shared by tasks)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._data: dict[K, V] = dict(data)

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


_EMPTY: FrozenMap[Any, Any] = FrozenMap()


# --- addresses ---------------------------------------------------------------


def parse_address(address: str) -> tuple[str, int]:
    """Split ``"host:port"`` or ``"[v6]:port"`` into ``(host, port)``.

    The host comes back without brackets. Port 0 ("any free port") is allowed
    here; fields that are dialled reject it themselves. ``ConfigError`` if bad.
    """
    if not isinstance(address, str):
        raise ConfigError(f"address must be a 'host:port' string, got {address!r:.60}")
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ConfigError(f"address {address!r:.80}: missing ']' after the IPv6 host")
        host, rest = address[1:end], address[end + 1 :]
        if not rest.startswith(":"):
            raise ConfigError(f"address {address!r:.80}: missing ':port'")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(
                f"address {address!r:.80}: {host!r:.60} is not an IPv6 address"
            ) from None
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep:
            raise ConfigError(f"address {address!r:.80}: missing ':port'")
        if ":" in host:
            raise ConfigError(
                f"address {address!r:.80}: put an IPv6 host in brackets ('[::1]:7401')"
            )
        if not host:
            raise ConfigError(f"address {address!r:.80}: missing host")
        if host != "*" and not _HOST_RE.fullmatch(host):
            raise ConfigError(f"address {address!r:.80}: invalid host {host!r:.60}")
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise ConfigError(f"address {address!r:.80}: port {port_text!r:.20} is not a number")
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"address {address!r:.80}: port {port} is not in 0..65535")
    return host, port


def format_address(host: str, port: int) -> str:
    """The inverse of :func:`parse_address`: brackets around IPv6 hosts."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address(field: str, value: object, *, dial: bool) -> None:
    """Validate an address field; ``dial``: peers connect to it (no port 0, no wildcard)."""
    try:
        host, port = parse_address(value)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise ConfigError(f"{field}: {exc}", key=field) from None
    if dial and (port == 0 or host in WILDCARD_HOSTS):
        raise ConfigError(
            f"{field}: {value!r} cannot be dialled (needs a real host and a port other than 0)",
            key=field,
        )


def _address_field(default: str | None, *, dial: bool) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None or default is not None:
            _address(attribute.name, value, dial=dial)

    return attrs.field(default=default, validator=check)


# --- value checks (each message starts with the field name) ----------------------------


def _invalid(field: str, expected: str, value: object) -> NoReturn:
    raise ConfigError(f"{field} must be {expected}, got {value!r:.80}", key=field)


def _number(
    field: str, value: object, *, minimum: float, exclusive: bool, maximum: float = math.inf
) -> float:
    if type(value) is int:
        value = float(value)
    low = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
    expected = f"a number {low}" if maximum == math.inf else f"a number {low} and < {maximum:g}"
    if type(value) is not float or not math.isfinite(value):
        _invalid(field, expected, value)
    if value < minimum or (exclusive and value == minimum) or value >= maximum:
        _invalid(field, expected, value)
    return value


def _optional_real(field: str, value: object) -> None:
    if value is not None:
        _number(field, value, minimum=0.0, exclusive=False)


def _flag(field: str, value: object) -> None:
    if type(value) is not bool:
        _invalid(field, "true or false", value)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _as_flag(value: object) -> object:
    """A flag from the environment is a string: "1/true/yes/on" or "0/false/no/off"."""
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return value


#: Shortest cookie accepted without ``insecure_cookie`` (bytes of its UTF-8 form).
MIN_COOKIE_BYTES = 16


def cookie_file_mode_problem(path: str | os.PathLike[str], mode: int) -> str | None:
    """Why a cookie file with permission bits ``mode`` is refused, or None.

    Like ssh with a private key: a secret that group or others can read (or
    change) is no secret. One rule for the loader and ``config check``.
    """
    if mode & 0o077:
        return (
            f"cookie file {os.fspath(path)} is readable or writable by group or others "
            f"(mode {mode:04o}): chmod 600 {os.fspath(path)}"
        )
    return None


def default_data_dir(cluster: str, name: str, env: Mapping[str, str] | None = None) -> str:
    """``$XDG_STATE_HOME/vsm-console/<cluster>/<name>`` (default ~/.local/state/...)."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "vsm-console", cluster, name)


def _integer(field: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    expected = f"an int >= {minimum}" if maximum is None else f"an int in {minimum}..{maximum}"
    if type(value) is not int or value < minimum or (maximum is not None and value > maximum):
        _invalid(field, expected, value)
    return value


def _as_float(value: Any) -> Any:
    # TOML and people write 5 for 5.0; bools stay bools so the check rejects them.
    return float(value) if type(value) is int else value


def _real(
    default: float, *, minimum: float = 0.0, exclusive: bool = True, maximum: float = math.inf
) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        _number(attribute.name, value, minimum=minimum, exclusive=exclusive, maximum=maximum)

    return attrs.field(default=default, converter=_as_float, validator=check)


def _count(default: int | None, *, minimum: int, maximum: int | None = None) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None or default is not None:
            _integer(attribute.name, value, minimum=minimum, maximum=maximum)

    return attrs.field(default=default, validator=check)


def _choice(default: str, choices: tuple[str, ...], *, lower: bool = False) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value not in choices:
            _invalid(attribute.name, f"one of {', '.join(choices)}", value)

    def convert(value: Any) -> Any:
        return value.lower() if lower and isinstance(value, str) else value

    return attrs.field(default=default, converter=convert, validator=check)


def _optional_text(*, max_bytes: int | None = None) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None:
            return
        if not isinstance(value, str) or not value:
            _invalid(attribute.name, "a non-empty string or None", value)
        if max_bytes is not None and len(os.fsencode(value)) > max_bytes:
            _invalid(attribute.name, f"a path of at most {max_bytes} bytes", value)

    return attrs.field(default=None, converter=_optional_path, validator=check)


def _name_check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        _invalid(attribute.name, f"1..{MAX_NODE_NAME} chars of A-Z a-z 0-9 . _ -", value)


def _host_name() -> str:
    # Host names may hold characters node names may not (rare, but a config
    # with every default must still be valid): replace them.
    raw = socket.gethostname()
    return re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:MAX_NODE_NAME] or "node"


def _name_or_host(value: str | None) -> str:
    return _host_name() if value is None or value == "" else value


def _path(value: str | os.PathLike[str]) -> str:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _optional_path(value: str | os.PathLike[str] | None) -> str | None:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


# --- mapping fields ------------------------------------------------------------------


def _channel_items(field: str, value: object) -> Iterator[tuple[Channel, object]]:
    if not isinstance(value, Mapping):
        _invalid(field, "a table of channel name -> number", value)
    seen: set[Channel] = set()
    for key, item in value.items():
        try:
            channel = Channel.parse(key)
        except ConfigError as exc:
            raise ConfigError(f"{field}: {exc}", key=field) from None
        if channel in seen:
            raise ConfigError(f"{field}: channel {channel.value!r} given twice", key=field)
        seen.add(channel)
        yield channel, item


def _quotas(value: Mapping[str, float | None] | None) -> Mapping[str, float | None] | None:
    if value is None:
        return None
    # The rules live in node.core.variety (one place); the config only applies them.
    return FrozenMap(
        (channel.value, check_quota(channel, quota))
        for channel, quota in _channel_items("quotas", value)
    )


def _capacities(value: Mapping[str, float] | None) -> Mapping[str, float] | None:
    if value is None:
        return None
    return FrozenMap(
        (channel.value, check_capacity(channel, capacity))
        for channel, capacity in _channel_items("capacities", value)
    )


def _event_types(value: Mapping[str, str]) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        _invalid("event_types", "a table of event type -> channel name", value)
    out: dict[str, str] = {}
    for event_type, channel in value.items():
        try:
            check_event_type(event_type)
            out[event_type] = Channel.parse(channel).value
        except (ConfigError, InvalidMessageError) as exc:
            raise ConfigError(f"event_types: {exc}", key="event_types") from None
    return FrozenMap(out)


def _freeze(field: str, value: object) -> object:
    """Deep read-only copy of TOML-like data (tables, arrays, scalars)."""
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                _invalid(f"{field} keys", "strings", key)
        return FrozenMap((k, _freeze(f"{field}.{k}", v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(field, v) for v in value)
    if value is None or isinstance(value, (str, int, float, datetime.date, datetime.time)):
        return value
    _invalid(field, "a TOML value (table, array, string, number, bool, date)", value)


def _discovery_options(value: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _invalid("discovery_options", "a table", value)
    frozen = _freeze("discovery_options", value)
    assert isinstance(frozen, FrozenMap)
    return frozen


def _seeds(value: Iterable[str]) -> tuple[str, ...]:
    # A string is a comma-separated list (VSM_SEEDS, a flag); otherwise any iterable.
    if isinstance(value, str):
        items: list[object] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, Iterable) and not isinstance(value, Mapping):
        items = list(value)
    else:
        _invalid("seeds", "a list of 'host:port' strings", value)
    # Duplicates would only mean duplicate dial attempts; keep the first of each.
    return tuple(dict.fromkeys(items))  # type: ignore[arg-type]


def _seeds_check(_: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for i, seed in enumerate(value):
        _address(f"seeds[{i}]", seed, dial=True)


# --- the config classes -----------------------------------------------------------
