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
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from node.configfields import (
    _EMPTY,
    _FIELD_RE,
    MAX_MAX_FRAME,
    MAX_MAX_HOPS,
    MAX_SOCKET_PATH,
    MIN_COOKIE_BYTES,
    MIN_MAX_FRAME,
    FrozenMap,
    _address_field,
    _as_flag,
    _as_float,
    _capacities,
    _choice,
    _count,
    _discovery_options,
    _event_types,
    _flag,
    _invalid,
    _name_check,
    _name_or_host,
    _optional_path,
    _optional_real,
    _optional_text,
    _path,
    _quotas,
    _real,
    _seeds,
    _seeds_check,
    cookie_file_mode_problem,
    default_data_dir,
    format_address,
    parse_address,
)
from node.core.events import DEFAULT_MAX_HOPS
from node.core.hlc import DEFAULT_MAX_OFFSET_MS
from node.core.phi import DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE_MS, DEFAULT_THRESHOLD, MAX_PHI
from node.core.wire import DEFAULT_MAX_FRAME, MAX_BATCH
from node.errors import ConfigError

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
DEFAULT_LANE_SIZE = 50_000
DEFAULT_DEDUP_SIZE = 10_000
DEFAULT_BATCH_MAX = 256
DEFAULT_ALGEDONIC_QUEUE_SIZE = 1_000
DEFAULT_SEND_WINDOW = 1_024
DEFAULT_BUSY_POLL_US = 200
MAX_BUSY_POLL_US = 100_000  # a tenth of a second: beyond that it is not a spin
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
    # The UDP port algedonic datagrams are received on, advertised in HELLO;
    # None: the number of the TCP port actually bound; 0: a free one.
    algedonic_port: int | None = _count(None, minimum=0, maximum=65535)
    send_window: int = _count(DEFAULT_SEND_WINDOW, minimum=1)
    # Keep the loop turning this long after connection I/O (node.runtime.busypoll); 0: off.
    busy_poll_us: int = _count(DEFAULT_BUSY_POLL_US, minimum=0, maximum=MAX_BUSY_POLL_US)
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


__all__ = [
    "ENV_VARS",
    "FIELDS",
    "FrozenMap",
    "NodeConfig",
    "TlsConfig",
    "cookie_file_mode_problem",
    "default_data_dir",
    "format_address",
    "load_config",
    "parse_address",
    "to_dict",
]
