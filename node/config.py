"""Node configuration: one frozen, self-validating ``NodeConfig``.

Every field has a default (``DEFAULT_*`` below) except that the cluster cookie
must be given: ``NodeConfig(cookie="s3cret")`` is a complete, valid config.
Every field is checked when the object is built; a bad value raises
:class:`~node.errors.ConfigError` whose message starts with the field's name and
shows the value. Mapping fields are copied into read-only :class:`FrozenMap`\\ s,
so a config, once built, cannot change under the node that runs on it.

:func:`load_config` layers the sources, later wins: defaults < TOML file
(a ``[node]`` table) < environment (``VSM_*``, see :data:`ENV_VARS`) <
overrides (command-line flags). Sans-IO apart from reading the files it is
pointed at: no sockets, no trio.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import os
import re
import socket
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import attrs

from node.core.events import DEFAULT_MAX_HOPS, Channel, check_event_type
from node.core.hlc import DEFAULT_MAX_OFFSET_MS, MAX_NODE_NAME
from node.core.phi import DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE_MS, DEFAULT_THRESHOLD, MAX_PHI
from node.core.variety import check_capacity, check_quota
from node.core.wire import DEFAULT_MAX_FRAME, MAX_BATCH
from node.errors import ConfigError, InvalidMessageError

DEFAULT_PORT = 7401
DEFAULT_CLUSTER = "vsm"
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_STRATEGY = "static_quorum"
DEFAULT_ROLE = "member"
DEFAULT_DISCOVERY = "static"
DEFAULT_LOG_LEVEL = "info"
DEFAULT_HEARTBEAT_INTERVAL_S = 1.0
DEFAULT_CHECK_INTERVAL_S = 1.0
DEFAULT_STABLE_AFTER_S = 5.0
DEFAULT_PHI_THRESHOLD = DEFAULT_THRESHOLD
DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE_S = DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE_MS / 1000.0
DEFAULT_BACKLOG_SIZE = 10_000
DEFAULT_LANE_SIZE = 10_000
DEFAULT_DEDUP_SIZE = 10_000
DEFAULT_BATCH_MAX = 256
DEFAULT_ALGEDONIC_QUEUE_SIZE = 1_000
DEFAULT_SEND_WINDOW = 1_024
DEFAULT_SEND_HIGH_WATER = 5_000
DEFAULT_SEND_LOW_WATER = 2_500
DEFAULT_SEND_TIMEOUT_S = 30.0
DEFAULT_HANDSHAKE_TIMEOUT_S = 5.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_WRITE_TIMEOUT_S = 5.0
DEFAULT_RECONNECT_BASE_S = 0.1
DEFAULT_RECONNECT_MAX_S = 5.0
DEFAULT_JOURNAL_RETENTION_DAYS = 30.0
DEFAULT_JOURNAL_RETENTION_ROWS = 100_000

STRATEGIES: Final = ("static_quorum", "dynamic_weights", "vsm_health", "manual")
ROLES: Final = ("member", "observer")
DISCOVERIES: Final = ("static", "gossip", "dns")
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
DEFAULT_LOG_FORMAT = "text"
LOG_FORMATS: Final = ("text", "json")
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


@attrs.frozen
class TlsConfig:
    """Certificate, key and CA paths for TLS between nodes.

    Paths are checked to exist when the ssl contexts are built
    (``node.runtime.transport.make_ssl_contexts``), not here, so a config can be
    built and shown before the files are in place. ``ca`` None means the
    system's trust store. ``require_client_cert`` makes the server demand and
    verify a client certificate against ``ca`` (mutual TLS). With
    ``server_hostname`` set, a client also checks the server's certificate is
    for that name; otherwise it checks only that the certificate chains to ``ca``.
    """

    cert: str = attrs.field(converter=_path)
    key: str = attrs.field(converter=_path)
    ca: str | None = attrs.field(default=None, converter=_optional_path)
    require_client_cert: bool = False
    server_hostname: str | None = None

    def __attrs_post_init__(self) -> None:
        for field in ("cert", "key"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                _invalid(f"tls.{field}", "a non-empty path", value)
        if self.ca is not None and (not isinstance(self.ca, str) or not self.ca):
            _invalid("tls.ca", "a non-empty path or None", self.ca)
        if type(self.require_client_cert) is not bool:
            _invalid("tls.require_client_cert", "true or false", self.require_client_cert)
        if self.require_client_cert and self.ca is None:
            raise ConfigError(
                "tls.require_client_cert needs tls.ca: client certificates are "
                "verified against that CA, never the system trust store",
                key="tls.require_client_cert",
            )
        hostname = self.server_hostname
        if hostname is not None and (not isinstance(hostname, str) or not hostname):
            _invalid("tls.server_hostname", "a non-empty string or None", hostname)


@attrs.frozen
class NodeConfig:
    """Everything one node needs to run; validated when built.

    ``name`` "" becomes the host name. ``cookie`` is the only required value: the
    shared secret peers prove in the handshake and key frames with: at least
    MIN_COOKIE_BYTES (16) bytes unless ``insecure_cookie`` (tests, demos).
    ``advertise`` is what peers should dial
    (default: ``listen``; see :attr:`advertise_address`). ``seeds`` may list this
    node itself, as a shared host list does; the node skips itself. ``quotas``
    maps channel names to events/s (``None``: unlimited); ``event_types`` maps
    further event types to channel names.
    """

    name: str = attrs.field(default="", converter=_name_or_host, validator=_name_check)
    cluster: str = attrs.field(default=DEFAULT_CLUSTER, validator=_name_check)
    listen: str = _address_field(DEFAULT_LISTEN, dial=False)
    advertise: str | None = _address_field(None, dial=True)
    seeds: tuple[str, ...] = attrs.field(default=(), converter=_seeds, validator=_seeds_check)
    cookie: str = attrs.field(default="", repr=lambda _: "'***'")
    tls: TlsConfig | None = None
    strategy: str = _choice(DEFAULT_STRATEGY, STRATEGIES)
    quorum_size: int | None = _count(None, minimum=1)
    quotas: Mapping[str, float | None] | None = attrs.field(default=None, converter=_quotas)
    capacities: Mapping[str, float] | None = attrs.field(default=None, converter=_capacities)
    event_types: Mapping[str, str] = attrs.field(default=_EMPTY, converter=_event_types)
    heartbeat_interval_s: float = _real(DEFAULT_HEARTBEAT_INTERVAL_S)
    check_interval_s: float = _real(DEFAULT_CHECK_INTERVAL_S)
    stable_after_s: float = _real(DEFAULT_STABLE_AFTER_S, exclusive=False)
    phi_threshold: float = _real(DEFAULT_PHI_THRESHOLD, maximum=MAX_PHI)
    acceptable_heartbeat_pause_s: float = _real(
        DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE_S, exclusive=False
    )
    role: str = _choice(DEFAULT_ROLE, ROLES)
    data_dir: str | None = _optional_text()
    discovery: str = _choice(DEFAULT_DISCOVERY, DISCOVERIES)
    discovery_options: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=_discovery_options)
    max_frame: int = _count(DEFAULT_MAX_FRAME, minimum=MIN_MAX_FRAME, maximum=MAX_MAX_FRAME)
    max_hops: int = _count(DEFAULT_MAX_HOPS, minimum=0, maximum=MAX_MAX_HOPS)
    backlog_size: int = _count(DEFAULT_BACKLOG_SIZE, minimum=0)
    lane_size: int = _count(DEFAULT_LANE_SIZE, minimum=1)
    dedup_size: int = _count(DEFAULT_DEDUP_SIZE, minimum=1)
    batch_max: int = _count(DEFAULT_BATCH_MAX, minimum=1, maximum=MAX_BATCH)
    algedonic_queue_size: int = _count(DEFAULT_ALGEDONIC_QUEUE_SIZE, minimum=1)
    send_window: int = _count(DEFAULT_SEND_WINDOW, minimum=1)
    send_high_water: int = _count(DEFAULT_SEND_HIGH_WATER, minimum=1)
    send_low_water: int = _count(DEFAULT_SEND_LOW_WATER, minimum=0)
    send_timeout_s: float = _real(DEFAULT_SEND_TIMEOUT_S)
    handshake_timeout_s: float = _real(DEFAULT_HANDSHAKE_TIMEOUT_S)
    connect_timeout_s: float = _real(DEFAULT_CONNECT_TIMEOUT_S)
    write_timeout_s: float = _real(DEFAULT_WRITE_TIMEOUT_S)
    reconnect_base_s: float = _real(DEFAULT_RECONNECT_BASE_S)
    reconnect_max_s: float = _real(DEFAULT_RECONNECT_MAX_S)
    max_offset_ms: int = _count(DEFAULT_MAX_OFFSET_MS, minimum=0)
    control_socket: str | None = _optional_text(max_bytes=MAX_SOCKET_PATH)
    metrics_listen: str | None = _address_field(None, dial=False)
    log_level: str = _choice(DEFAULT_LOG_LEVEL, LOG_LEVELS, lower=True)
    log_format: str = _choice(DEFAULT_LOG_FORMAT, LOG_FORMATS, lower=True)
    # Partitions and the journal None: 3/4 of stable_after_s, at least 4 s.
    down_all_when_unstable_s: float | None = attrs.field(
        default=None, converter=_as_float, validator=lambda _, a, v: _optional_real(a.name, v)
    )
    journal: bool = attrs.field(default=True, validator=lambda _, a, v: _flag(a.name, v))
    journal_retention_days: float = _real(DEFAULT_JOURNAL_RETENTION_DAYS)
    journal_retention_rows: int = _count(DEFAULT_JOURNAL_RETENTION_ROWS, minimum=1)
    # Hardening: accept a cookie shorter than MIN_COOKIE_BYTES.
    insecure_cookie: bool = attrs.field(
        default=False, converter=_as_flag, validator=lambda _, a, v: _flag(a.name, v)
    )

    def __attrs_post_init__(self) -> None:
        # Checks that need no other field run as attrs validators; these span fields
        # or have messages that must not echo the value.
        if not isinstance(self.cookie, str) or not self.cookie:
            kind = "empty" if self.cookie == "" else type(self.cookie).__name__
            raise ConfigError(
                f"cookie must be a non-empty string (got {kind}): set VSM_COOKIE, "
                "VSM_COOKIE_FILE or cookie / cookie_file in the config file",
                key="cookie",
            )
        if len(self.cookie.encode()) < MIN_COOKIE_BYTES and not self.insecure_cookie:
            raise ConfigError(
                f"cookie is {len(self.cookie.encode())} bytes, shorter than {MIN_COOKIE_BYTES}: "
                "use a long random one (e.g. `openssl rand -hex 16`), or say insecure_cookie "
                "(--insecure-cookie, VSM_INSECURE_COOKIE=1) to accept it anyway",
                key="cookie",
            )
        if self.tls is not None and not isinstance(self.tls, TlsConfig):
            _invalid("tls", "a TlsConfig or None", self.tls)
        if not self.send_low_water < self.send_high_water:
            raise ConfigError(
                f"send_low_water {self.send_low_water} must be below "
                f"send_high_water {self.send_high_water}"
            )
        if self.reconnect_max_s < self.reconnect_base_s:
            raise ConfigError(
                f"reconnect_max_s {self.reconnect_max_s:g} must be >= "
                f"reconnect_base_s {self.reconnect_base_s:g}",
                key="reconnect_max_s",
            )

    @property
    def advertise_address(self) -> str:
        """The address peers should dial: ``advertise``, else ``listen``.

        With ``listen`` on port 0 or a wildcard host this is not dialable; the
        node substitutes the address it actually bound.
        """
        return self.advertise if self.advertise is not None else self.listen

    def evolve(self, **changes: Any) -> NodeConfig:
        """A copy with ``changes`` applied, validated like a new config."""
        return attrs.evolve(self, **changes)


def to_dict(config: NodeConfig) -> dict[str, Any]:
    """The config as JSON-able data (for ``ctl config``); the cookie shows as ``***``."""
    out = {field.name: _jsonable(getattr(config, field.name)) for field in attrs.fields(NodeConfig)}
    out["cookie"] = "***"
    return out


def _jsonable(value: object) -> Any:
    if isinstance(value, TlsConfig):
        return attrs.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return value


# --- loading: defaults < file < environment < overrides ---------------------------------

#: Environment variable -> key: ``VSM_`` + the field name in upper case.
#: ``VSM_COOKIE_FILE`` names a file holding the cookie.
ENV_VARS: Final[Mapping[str, str]] = FrozenMap(
    (f"VSM_{key.upper()}", key)
    for key in (
        *("name", "cluster", "listen", "advertise", "seeds", "cookie", "cookie_file"),
        *("strategy", "role", "data_dir", "discovery", "control_socket", "metrics_listen"),
        *("log_level", "log_format"),
        "insecure_cookie",
    )
)
FIELDS: Final = tuple(field.name for field in attrs.fields(NodeConfig))
_TLS_FIELDS = tuple(field.name for field in attrs.fields(TlsConfig))
# Keys of the loader only: the cookie can live in its own file (mode 0600), not
# in a config file that is often world-readable or checked in.
_LOADER_KEYS = ("cookie_file",)
_KEYS = frozenset(FIELDS + _LOADER_KEYS)
# In the file, relative paths are relative to the file, so a directory holding
# config, certificates and cookie can be moved as one.
_PATH_KEYS = ("cookie_file", "data_dir", "control_socket")
# Tables reserved for other parts of the program (the TUI's own settings).
_OTHER_TABLES = ("console",)
_UNLIMITED = "unlimited"
_COOKIE_SLOT = frozenset({"cookie", "cookie_file"})
_TABLE_KEYS = frozenset({"tls", "quotas", "capacities", "event_types", "discovery_options"})


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Build a NodeConfig from defaults < TOML file < environment < overrides.

    ``env`` defaults to ``os.environ``; empty variables count as unset.
    ``overrides`` (from flags) are keyed by field name; ``None`` values are
    ignored. ``cookie_file`` (file, overrides) and ``VSM_COOKIE_FILE`` name a file
    whose stripped content is the cookie; a later source's cookie or
    cookie file replaces an earlier one. In the file, quotas may say
    ``"unlimited"`` (TOML has no null) and relative paths are relative to the
    file. Errors are ConfigError naming the key and, for a bad value, where it
    came from.
    """
    layers: list[tuple[dict[str, Any], dict[str, str]]] = []
    if path is not None:
        layers.append(_from_file(Path(path)))
    layers.append(_from_env(os.environ if env is None else env))
    if overrides:
        layers.append(_from_overrides(overrides))
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for values, origin in layers:
        for key, value in values.items():
            if key in _COOKIE_SLOT:
                # One slot: a later cookie replaces an earlier cookie file and vice versa.
                merged.pop("cookie", None)
                merged.pop("cookie_file", None)
            merged[key] = value
            sources[key] = origin[key]
    if "cookie_file" in merged:
        sources["cookie"] = sources.pop("cookie_file")
        merged["cookie"] = _read_cookie(merged.pop("cookie_file"), sources["cookie"])
    try:
        return NodeConfig(**merged)
    except ConfigError as exc:
        match = _FIELD_RE.match(str(exc))
        origin_of = sources.get(match.group(0)) if match else None
        if match is None or origin_of is None:
            raise
        raise ConfigError(f"{exc} (from {origin_of})", key=exc.key or match.group(0)) from exc


def _from_file(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    for key in data:
        if key != "node" and key not in _OTHER_TABLES:
            raise ConfigError(
                f"config file {path}: unknown top-level key {key!r}; "
                "node settings go in a [node] table"
            )
    table = data.get("node", {})
    where = f"config file {path}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: 'node' must be a table")
    if table.keys() >= _COOKIE_SLOT:
        raise ConfigError(f"{where}: node.cookie and node.cookie_file are both set; use one")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _KEYS:
            raise ConfigError(
                f"{where}: unknown key node.{key} (valid: {', '.join(sorted(_KEYS))})"
            )
        if key in _TABLE_KEYS and not isinstance(value, dict):
            raise ConfigError(f"{where}: node.{key} must be a table, got {value!r:.60}")
        if key == "tls":
            value = _tls_from_table(value, where, base=path.parent)
        elif key == "quotas":
            value = {k: None if v == _UNLIMITED else v for k, v in value.items()}
        elif key in _PATH_KEYS:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: node.{key} must be a path string, got {value!r:.60}")
            value = str(path.parent / value)
        values[key] = value
    return values, dict.fromkeys(values, where)


def _tls_from_table(table: Mapping[str, Any], where: str, *, base: Path | None) -> TlsConfig:
    for key in table:
        if key not in _TLS_FIELDS:
            raise ConfigError(f"{where}: unknown key tls.{key} (valid: {', '.join(_TLS_FIELDS)})")
    for key in ("cert", "key"):
        if key not in table:
            raise ConfigError(f"{where}: tls.{key} is required when tls is set")
    values = dict(table)
    if base is not None:
        for key in ("cert", "key", "ca"):
            if isinstance(values.get(key), str):
                values[key] = str(base / values[key])
    try:
        return TlsConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from {where})") from exc


def _from_env(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if env.get("VSM_COOKIE") and env.get("VSM_COOKIE_FILE"):
        raise ConfigError("VSM_COOKIE and VSM_COOKIE_FILE are both set; use one")
    for var, key in ENV_VARS.items():
        raw = env.get(var)
        if raw:  # compose files and pod specs often leave variables present but empty
            values[key] = raw
            origin[key] = f"environment {var}"
    return values, origin


def _from_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in _KEYS:
            raise ConfigError(f"unknown override {key!r} (valid: {', '.join(sorted(_KEYS))})")
        if value is None:
            continue
        if key in _COOKIE_SLOT and _COOKIE_SLOT & values.keys():
            raise ConfigError("overrides set both cookie and cookie_file; use one")
        if key == "tls" and isinstance(value, Mapping):
            value = _tls_from_table(value, "overrides", base=None)
        values[key] = value
    return values, dict.fromkeys(values, "overrides")


def _read_cookie(path: object, origin: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"cookie_file must be a path, got {path!r:.60} (from {origin})")
    try:
        cookie = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read cookie file {os.fspath(path)}: {exc.strerror} (from {origin})"
        ) from exc
    except UnicodeDecodeError:
        raise ConfigError(f"cookie file {os.fspath(path)} is not UTF-8 text") from None
    if not cookie:
        raise ConfigError(f"cookie file {os.fspath(path)} is empty (from {origin})")
    try:
        mode = Path(path).stat().st_mode & 0o777
    except OSError:
        mode = 0  # it was just read; a vanished file has no mode to judge
    problem = cookie_file_mode_problem(path, mode)
    if problem:
        raise ConfigError(f"{problem} (from {origin})")
    return cookie
