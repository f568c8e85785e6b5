"""NodeConfig validation, the TOML/env/override loader, and address parsing."""

from __future__ import annotations

import json
import pickle
import socket
from pathlib import Path
from typing import Any

import attrs
import pytest

from node.config import (
    DEFAULT_LISTEN,
    ENV_VARS,
    FIELDS,
    FrozenMap,
    NodeConfig,
    TlsConfig,
    format_address,
    load_config,
    parse_address,
    to_dict,
)
from node.core.events import Channel, Classifier
from node.core.wire import DEFAULT_MAX_FRAME
from node.errors import ConfigError

COOKIE = "s3cret-cookie-123"


def make(**changes: Any) -> NodeConfig:
    return NodeConfig(**{"cookie": COOKIE, **changes})


# --- defaults ------------------------------------------------------------------------


def test_defaults_are_valid() -> None:
    config = NodeConfig(cookie=COOKIE)
    assert config.cluster == "vsm"
    assert config.listen == DEFAULT_LISTEN == "127.0.0.1:7401"
    assert config.advertise is None
    assert config.advertise_address == "127.0.0.1:7401"
    assert config.seeds == ()
    assert config.tls is None
    assert config.strategy == "static_quorum"
    assert config.role == "member"
    assert config.discovery == "static"
    assert config.quotas is None
    assert config.event_types == {}
    assert config.max_frame == DEFAULT_MAX_FRAME
    assert config.max_hops == 8
    assert (config.backlog_size, config.lane_size, config.dedup_size) == (10_000,) * 3
    assert (config.batch_max, config.send_window, config.algedonic_queue_size) == (256, 1024, 1000)
    assert (config.send_high_water, config.send_low_water) == (5000, 2500)
    assert config.heartbeat_interval_s == 1.0
    assert config.phi_threshold == 8.0
    assert config.acceptable_heartbeat_pause_s == 3.0
    assert config.max_offset_ms == 500
    assert config.log_level == "info"


def test_issue_example_works() -> None:
    config = NodeConfig(
        name="a", listen="127.0.0.1:0", seeds=["127.0.0.1:7401"], cookie="s3cret-cookie-123"
    )
    assert config.seeds == ("127.0.0.1:7401",)
    assert config.listen == "127.0.0.1:0"


def test_empty_name_defaults_to_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "box-7.example.org")
    assert make().name == "box-7.example.org"
    assert make(name="").name == "box-7.example.org"


def test_host_name_with_odd_characters_still_gives_valid_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "my box+1")
    assert make().name == "my-box-1"


def test_every_field_has_a_default() -> None:
    for field in attrs.fields(NodeConfig):
        assert field.default is not attrs.NOTHING, field.name


def test_evolve_validates() -> None:
    config = make(name="a")
    assert config.evolve(name="b").name == "b"
    assert config.evolve(name="b").cookie == COOKIE
    with pytest.raises(ConfigError, match="heartbeat_interval_s"):
        config.evolve(heartbeat_interval_s=0)


def test_cookie_is_not_shown() -> None:
    config = make()
    assert COOKIE not in repr(config)
    assert "cookie='***'" in repr(config)
    assert to_dict(config)["cookie"] == "***"


def test_to_dict_is_json() -> None:
    tls = TlsConfig(cert="c.pem", key=Path("k.pem"), ca="ca.pem")
    config = make(
        tls=tls,
        seeds=["b:1", "c:2"],
        quotas={"s1_operational": 5, "general": None},
        discovery_options={"names": ["x", "y"], "nested": {"n": 1}},
    )
    data = json.loads(json.dumps(to_dict(config)))
    assert set(data) == set(FIELDS)
    assert data["tls"]["key"] == "k.pem"
    assert data["seeds"] == ["b:1", "c:2"]
    assert data["quotas"] == {"s1_operational": 5.0, "general": None}
    assert data["discovery_options"] == {"names": ["x", "y"], "nested": {"n": 1}}


# --- validation ----------------------------------------------------------------------

BAD_VALUES: list[tuple[str, object]] = [
    ("name", "has space"),
    ("name", "x" * 256),
    ("name", "ünïcode"),
    ("cluster", ""),
    ("cluster", "a/b"),
    ("listen", "no-port"),
    ("listen", "host:99999"),
    ("listen", "::1:7401"),
    ("listen", "[::1"),
    ("listen", "[nope]:1"),
    ("listen", 7401),
    ("advertise", "0.0.0.0:7401"),
    ("advertise", "10.0.0.1:0"),
    ("seeds", ["ok:1", "bad"]),
    ("seeds", ["[::]:7401"]),
    ("seeds", 5),
    ("strategy", "majority"),
    ("role", "leader"),
    ("discovery", "consul"),
    ("log_level", "loud"),
    ("quorum_size", 0),
    ("quorum_size", 2.0),
    ("quotas", {"s9_unknown": 1}),
    ("quotas", {"s1_operational": -1}),
    ("quotas", {"s1_operational": "fast"}),
    ("quotas", {"s1_operational": float("inf")}),
    ("quotas", {"algedonic": 10}),
    ("quotas", [1, 2]),
    ("capacities", {"s1_operational": 0.5}),
    ("capacities", {"algedonic": 5}),
    ("event_types", {"my_type": "s9"}),
    ("event_types", {"": "general"}),
    ("event_types", {"t": 3}),
    ("discovery_options", "gossip"),
    ("discovery_options", {1: "x"}),
    ("heartbeat_interval_s", 0),
    ("heartbeat_interval_s", -1.0),
    ("heartbeat_interval_s", "1"),
    ("heartbeat_interval_s", True),
    ("heartbeat_interval_s", float("nan")),
    ("check_interval_s", 0.0),
    ("stable_after_s", -0.1),
    ("phi_threshold", 0),
    ("phi_threshold", 1000),
    ("acceptable_heartbeat_pause_s", -1),
    ("max_frame", 100),
    ("max_frame", 2**32),
    ("max_frame", 1e6),
    ("max_hops", -1),
    ("max_hops", 256),
    ("backlog_size", -1),
    ("lane_size", 0),
    ("dedup_size", 0),
    ("batch_max", 0),
    ("batch_max", 1_000_000),
    ("send_window", 0),
    ("send_timeout_s", 0),
    ("handshake_timeout_s", 0),
    ("connect_timeout_s", -5),
    ("write_timeout_s", 0),
    ("reconnect_base_s", 0),
    ("reconnect_max_s", 0),
    ("max_offset_ms", -1),
    ("max_offset_ms", True),
    ("data_dir", ""),
    ("data_dir", 5),
    ("control_socket", "/tmp/" + "x" * 200),
    ("metrics_listen", "nope"),
    ("tls", {"cert": "c", "key": "k"}),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_bad_value_names_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        make(**{field: value})
    message = str(info.value)
    assert message.startswith(field), message


def test_bad_value_message_shows_value() -> None:
    with pytest.raises(ConfigError, match=r"strategy must be one of .*manual, got 'majority'"):
        make(strategy="majority")
    with pytest.raises(ConfigError, match=r"quotas: unknown channel 's9'"):
        make(quotas={"s9": 1})
    with pytest.raises(ConfigError, match=r"max_frame must be an int in 4096\.\.\d+, got 100"):
        make(max_frame=100)


def test_empty_cookie_is_refused() -> None:
    with pytest.raises(ConfigError, match="cookie must be a non-empty string"):
        NodeConfig()
    with pytest.raises(ConfigError, match="VSM_COOKIE"):
        NodeConfig(cookie="")


def test_wrong_type_cookie_is_refused_without_echo() -> None:
    with pytest.raises(ConfigError, match=r"cookie .*\(got bytes\)") as info:
        NodeConfig(cookie=b"secret-bytes")  # type: ignore[arg-type]
    assert "secret-bytes" not in str(info.value)


def test_reconnect_max_must_not_be_below_base() -> None:
    expected = r"reconnect_max_s 0\.05 must be >= reconnect_base_s 0\.1"
    with pytest.raises(ConfigError, match=expected):
        make(reconnect_max_s=0.05)
    assert make(reconnect_base_s=1, reconnect_max_s=1).reconnect_max_s == 1.0


def test_good_values_are_normalised() -> None:
    config = make(
        name="node_1.a-b",
        listen="[::1]:0",
        advertise="[fe80::1%eth0]:7401",
        seeds="a:1, b:2 ,a:1,",
        heartbeat_interval_s=2,
        log_level="DEBUG",
        quorum_size=3,
        stable_after_s=0,
        backlog_size=0,
        max_hops=0,
        control_socket=Path("/run/vsm.sock"),
        data_dir=Path("/var/lib/vsm"),
        metrics_listen="0.0.0.0:9100",
        role="observer",
        strategy="manual",
        discovery="dns",
    )
    assert config.seeds == ("a:1", "b:2")
    assert config.heartbeat_interval_s == 2.0
    assert type(config.heartbeat_interval_s) is float
    assert config.log_level == "debug"
    assert config.control_socket == "/run/vsm.sock"
    assert config.data_dir == "/var/lib/vsm"
    assert config.advertise_address == "[fe80::1%eth0]:7401"


def test_channel_maps_accept_channel_members_and_none() -> None:
    config = make(
        quotas={Channel.S1_OPERATIONAL: 10, "general": 0, "algedonic": None},
        capacities={"s2_coordination": 50},
        event_types={"deploy_started": Channel.S3_CONTROL, "my_alarm": "algedonic"},
    )
    assert config.quotas == {"s1_operational": 10.0, "general": 0.0, "algedonic": None}
    assert config.capacities == {"s2_coordination": 50.0}
    assert config.event_types == {"deploy_started": "s3_control", "my_alarm": "algedonic"}
    classify = Classifier(config.event_types)
    assert classify("my_alarm") is Channel.ALGEDONIC


def test_duplicate_channel_in_quotas() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        make(quotas={Channel.GENERAL: 1, "general": 2})


def test_tls_config_validation() -> None:
    assert TlsConfig(cert="c", key="k").ca is None
    with pytest.raises(ConfigError, match=r"tls\.cert"):
        TlsConfig(cert="", key="k")
    with pytest.raises(ConfigError, match=r"tls\.key"):
        TlsConfig(cert="c", key=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"tls\.require_client_cert needs tls\.ca"):
        TlsConfig(cert="c", key="k", require_client_cert=True)
    with pytest.raises(ConfigError, match=r"tls\.require_client_cert"):
        TlsConfig(cert="c", key="k", ca="a", require_client_cert="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"tls\.server_hostname"):
        TlsConfig(cert="c", key="k", server_hostname="")
    # Paths are checked when contexts are built, not here.
    assert make(tls=TlsConfig(cert="/nope/c", key="/nope/k")).tls is not None


# --- immutability -------------------------------------------------------------------------


def test_config_is_frozen() -> None:
    config = make()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.name = "other"  # type: ignore[misc]


def test_mapping_fields_are_copied_and_read_only() -> None:
    quotas: dict[str, float | None] = {"s1_operational": 10}
    types = {"t": "general"}
    options: dict[str, Any] = {"hosts": ["a", "b"], "inner": {"x": 1}}
    config = make(quotas=quotas, event_types=types, discovery_options=options)
    quotas["s1_operational"] = 99
    types["u"] = "algedonic"
    options["hosts"].append("c")
    options["inner"]["x"] = 2
    assert config.quotas == {"s1_operational": 10.0}
    assert config.event_types == {"t": "general"}
    assert config.discovery_options["hosts"] == ("a", "b")
    assert config.discovery_options["inner"] == {"x": 1}
    for mapping in (config.quotas, config.event_types, config.discovery_options):
        assert isinstance(mapping, FrozenMap)
        with pytest.raises(TypeError):
            mapping["new"] = 1  # type: ignore[index]
    assert isinstance(config.seeds, tuple)


def test_config_is_hashable_comparable_and_picklable() -> None:
    a = make(name="a", quotas={"general": 1}, discovery_options={"x": [1]})
    b = make(name="a", quotas={"general": 1.0}, discovery_options={"x": (1,)})
    assert a == b
    assert hash(a) == hash(b)
    assert pickle.loads(pickle.dumps(a)) == a
    assert make(name="a") != make(name="b")


# --- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:7401", ("127.0.0.1", 7401)),
        ("localhost:0", ("localhost", 0)),
        ("node-1.vsm.svc.cluster.local:65535", ("node-1.vsm.svc.cluster.local", 65535)),
        ("[::1]:7401", ("::1", 7401)),
        ("[::]:0", ("::", 0)),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
        ("*:7401", ("*", 7401)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected
    assert format_address(*expected) == address


@pytest.mark.parametrize(
    "address",
    [
        "",
        "7401",
        ":7401",
        "host:",
        "host:-1",
        "host:65536",
        "host:0x10",
        "host:\uff17\uff14\uff10\uff11",
        "::1:7401",
        "[::1]7401",
        "[::1",
        "[127.0.0.1]:80",
        "bad host:80",
        "a/b:80",
    ],
)
def test_parse_address_rejects(address: str) -> None:
    with pytest.raises(ConfigError, match="address"):
        parse_address(address)


def test_parse_address_rejects_non_string() -> None:
    with pytest.raises(ConfigError):
        parse_address(7401)  # type: ignore[arg-type]


def test_format_address_brackets_ipv6_only() -> None:
    assert format_address("::1", 1) == "[::1]:1"
    assert format_address("10.0.0.1", 2) == "10.0.0.1:2"
    assert format_address("example.org", 3) == "example.org:3"


# --- loading ------------------------------------------------------------------------------

FULL_TOML = """
[node]
name = "alpha"
cluster = "prod"
listen = "0.0.0.0:7401"
advertise = "10.0.0.5:7401"
seeds = ["10.0.0.6:7401", "10.0.0.7:7401"]
cookie = "file-cookie-01234"
strategy = "dynamic_weights"
quorum_size = 2
heartbeat_interval_s = 2
max_frame = 2097152
role = "observer"
discovery = "gossip"
data_dir = "data"

[node.tls]
cert = "certs/node.crt"
key = "certs/node.key"
ca = "/etc/vsm/ca.pem"
require_client_cert = true

[node.quotas]
s1_operational = 2000
s5_policy = "unlimited"

[node.capacities]
general = 10

[node.event_types]
deploy_started = "s3_control"

[node.discovery_options]
group = "224.1.1.2"
port = 45892
ttl = 1

[console]
theme = "whatever the TUI reads"
"""


def write(tmp_path: Path, text: str, name: str = "vsm.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_defaults_only() -> None:
    config = load_config(env={"VSM_COOKIE": COOKIE})
    assert config == NodeConfig(cookie=COOKIE)


def test_load_full_file_with_nested_tables(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL_TOML), env={})
    assert config.name == "alpha"
    assert config.cluster == "prod"
    assert config.advertise_address == "10.0.0.5:7401"
    assert config.seeds == ("10.0.0.6:7401", "10.0.0.7:7401")
    assert config.cookie == "file-cookie-01234"
    assert config.quorum_size == 2
    assert config.heartbeat_interval_s == 2.0
    assert config.max_frame == 2 * 1024 * 1024
    assert config.role == "observer"
    assert config.tls == TlsConfig(
        cert=str(tmp_path / "certs/node.crt"),
        key=str(tmp_path / "certs/node.key"),
        ca="/etc/vsm/ca.pem",
        require_client_cert=True,
    )
    assert config.quotas == {"s1_operational": 2000.0, "s5_policy": None}
    assert config.capacities == {"general": 10.0}
    assert config.event_types == {"deploy_started": "s3_control"}
    assert config.discovery_options == {"group": "224.1.1.2", "port": 45892, "ttl": 1}
    assert config.data_dir == str(tmp_path / "data")


def test_precedence_file_env_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[node]\nname = "from-file"\ncluster = "file-cluster"\nrole = "observer"\n'
        'cookie = "file-cookie-01234"\nlisten = "127.0.0.1:1"\n',
    )
    env = {"VSM_NAME": "from-env", "VSM_CLUSTER": "env-cluster", "VSM_LISTEN": "127.0.0.1:2"}
    overrides = {"name": "from-flag", "listen": None, "strategy": "manual"}
    config = load_config(path, env=env, overrides=overrides)
    assert config.name == "from-flag"  # overrides beat env and file
    assert config.cluster == "env-cluster"  # env beats file
    assert config.listen == "127.0.0.1:2"  # a None override is ignored
    assert config.role == "observer"  # file beats defaults
    assert config.strategy == "manual"
    assert config.cookie == "file-cookie-01234"


def test_every_env_var(tmp_path: Path) -> None:
    env = {
        "VSM_NAME": "envnode",
        "VSM_CLUSTER": "envc",
        "VSM_LISTEN": "[::1]:7402",
        "VSM_ADVERTISE": "node.example:7402",
        "VSM_SEEDS": "a:1, b:2",
        "VSM_COOKIE": "env-cookie-012345",
        "VSM_STRATEGY": "vsm_health",
        "VSM_ROLE": "observer",
        "VSM_DATA_DIR": "/data",
        "VSM_DISCOVERY": "dns",
        "VSM_CONTROL_SOCKET": "/run/vsm.sock",
        "VSM_METRICS_LISTEN": "127.0.0.1:9100",
        "VSM_LOG_LEVEL": "WARNING",
        "VSM_LOG_FORMAT": "json",
        "VSM_INSECURE_COOKIE": "0",
    }
    assert set(env) | {"VSM_COOKIE_FILE"} == set(ENV_VARS)
    config = load_config(env=env)
    assert (config.name, config.cluster, config.listen) == ("envnode", "envc", "[::1]:7402")
    assert config.advertise == "node.example:7402"
    assert config.seeds == ("a:1", "b:2")
    assert config.cookie == "env-cookie-012345"
    assert (config.strategy, config.role, config.discovery) == ("vsm_health", "observer", "dns")
    assert (config.data_dir, config.control_socket) == ("/data", "/run/vsm.sock")
    assert config.metrics_listen == "127.0.0.1:9100"
    assert config.log_level == "warning"


def test_empty_env_vars_count_as_unset() -> None:
    config = load_config(env={"VSM_COOKIE": COOKIE, "VSM_ADVERTISE": "", "VSM_NAME": ""})
    assert config.advertise is None


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VSM_COOKIE", "process-cookie-01")
    monkeypatch.setenv("VSM_CLUSTER", "proc")
    config = load_config()
    assert (config.cookie, config.cluster) == ("process-cookie-01", "proc")


def test_cookie_file_from_env(tmp_path: Path) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("  from-the-file-0123\n")
    cookie.chmod(0o600)
    config = load_config(env={"VSM_COOKIE_FILE": str(cookie)})
    assert config.cookie == "from-the-file-0123"


def test_cookie_file_problems(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match=f"cannot read cookie file {missing}.*VSM_COOKIE_FILE"):
        load_config(env={"VSM_COOKIE_FILE": str(missing)})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(env={"VSM_COOKIE_FILE": str(empty)})
    with pytest.raises(ConfigError, match="both set"):
        load_config(env={"VSM_COOKIE_FILE": str(empty), "VSM_COOKIE": "x"})


def test_cookie_file_in_config_file_is_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "cookie").write_text("relative-cookie-0\n")
    (tmp_path / "cookie").chmod(0o600)
    path = write(tmp_path, '[node]\ncookie_file = "cookie"\n')
    assert load_config(path, env={}).cookie == "relative-cookie-0"
    # A later source's cookie replaces the file's cookie file (never read then).
    broken = write(tmp_path, '[node]\ncookie_file = "nope"\n', "broken.toml")
    assert (
        load_config(broken, env={"VSM_COOKIE": "env-cookie-012345"}).cookie == "env-cookie-012345"
    )
    both = write(tmp_path, '[node]\ncookie = "a"\ncookie_file = "cookie"\n', "both.toml")
    with pytest.raises(ConfigError, match="both set"):
        load_config(both, env={})


def test_cookie_override_beats_env_cookie_file(tmp_path: Path) -> None:
    (tmp_path / "cookie").write_text("file-cookie-01234")
    (tmp_path / "cookie").chmod(0o600)
    env = {"VSM_COOKIE_FILE": str(tmp_path / "cookie")}
    assert (
        load_config(env=env, overrides={"cookie": "flag-cookie-01234"}).cookie
        == "flag-cookie-01234"
    )
    assert (
        load_config(
            env={"VSM_COOKIE": "e" * 16}, overrides={"cookie_file": env["VSM_COOKIE_FILE"]}
        ).cookie
        == "file-cookie-01234"
    )


def test_short_cookie_is_refused_unless_insecure_cookie() -> None:
    with pytest.raises(ConfigError, match=r"cookie is 15 bytes, shorter than 16.*insecure") as info:
        NodeConfig(cookie="c" * 15)
    assert "c" * 15 not in str(info.value) and info.value.key == "cookie"
    NodeConfig(cookie="c" * 16)  # sixteen bytes is enough
    assert NodeConfig(cookie="k", insecure_cookie=True).cookie == "k"
    # the same from the environment and from the flag
    env = {"VSM_COOKIE": "k", "VSM_INSECURE_COOKIE": "1"}
    assert load_config(env=env).insecure_cookie is True
    with pytest.raises(ConfigError, match="shorter than 16"):
        load_config(env={**env, "VSM_INSECURE_COOKIE": "no"})
    assert load_config(env={"VSM_COOKIE": "k"}, overrides={"insecure_cookie": True}).cookie == "k"
    with pytest.raises(ConfigError, match="insecure_cookie must be true or false"):
        load_config(env={**env, "VSM_INSECURE_COOKIE": "maybe"})


def test_cookie_file_open_to_group_or_others_is_refused(tmp_path: Path) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("a-cookie-of-16-bytes\n")
    for mode in (0o640, 0o604, 0o620):
        cookie.chmod(mode)
        with pytest.raises(ConfigError) as info:
            load_config(env={"VSM_COOKIE_FILE": str(cookie)})
        assert f"cookie file {cookie} is readable or writable by group or others" in str(info.value)
        assert f"chmod 600 {cookie}" in str(info.value)
    cookie.chmod(0o400)
    assert load_config(env={"VSM_COOKIE_FILE": str(cookie)}).cookie == "a-cookie-of-16-bytes"


def test_missing_cookie_says_how_to_set_it() -> None:
    with pytest.raises(ConfigError, match="VSM_COOKIE"):
        load_config(env={})


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\ncookie = "x"\nheartbeat = 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert "unknown key node.heartbeat" in message
    assert str(path) in message
    assert "heartbeat_interval_s" in message  # the valid keys are listed


def test_unknown_tls_key_in_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[node]\ncookie = "x"\n[node.tls]\ncert = "c"\nkey = "k"\ncafile = "x"\n'
    )
    with pytest.raises(ConfigError, match=r"unknown key tls\.cafile \(valid: cert, key, ca"):
        load_config(path, env={})
    path = write(tmp_path, '[node]\ncookie = "x"\n[node.tls]\ncert = "c"\n', "nokey.toml")
    with pytest.raises(ConfigError, match=r"tls\.key is required"):
        load_config(path, env={})


def test_top_level_key_outside_node_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\n[node]\ncookie = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown top-level key 'name'.*\[node\]"):
        load_config(path, env={})


def test_wrong_types_in_file_name_the_key_and_source(tmp_path: Path) -> None:
    cases = {
        'heartbeat_interval_s = "fast"': "heartbeat_interval_s must be a number",
        "max_frame = 1.5": "max_frame must be an int",
        "seeds = 3": "seeds must be a list",
        'quotas = "lots"': "node.quotas must be a table",
        'tls = "yes"': "node.tls must be a table",
        "data_dir = 5": "node.data_dir must be a path",
        "name = 5": "name must be",
    }
    for i, (line, expected) in enumerate(cases.items()):
        path = write(tmp_path, f'[node]\ncookie = "x"\n{line}\n', f"t{i}.toml")
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        assert expected in str(info.value)
        assert str(path) in str(info.value)


def test_bad_env_value_names_variable() -> None:
    with pytest.raises(ConfigError, match=r"listen: .*\(from environment VSM_LISTEN\)"):
        load_config(env={"VSM_COOKIE": "x", "VSM_LISTEN": "nonsense"})
    with pytest.raises(ConfigError, match=r"seeds\[1\].*\(from environment VSM_SEEDS\)"):
        load_config(env={"VSM_COOKIE": "x", "VSM_SEEDS": "a:1,b"})


def test_bad_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"role must be one of .*\(from overrides\)"):
        load_config(env={"VSM_COOKIE": "x"}, overrides={"role": "king"})
    with pytest.raises(ConfigError, match=r"unknown override 'colour' \(valid: .*cookie_file"):
        load_config(env={"VSM_COOKIE": "x"}, overrides={"colour": "blue"})
    with pytest.raises(ConfigError, match="both cookie and cookie_file"):
        load_config(env={}, overrides={"cookie": "a", "cookie_file": "b"})


def test_tls_override_as_table_or_object() -> None:
    env = {"VSM_COOKIE": "x" * 16}
    from_table = load_config(env=env, overrides={"tls": {"cert": "c", "key": "k"}})
    from_object = load_config(env=env, overrides={"tls": TlsConfig(cert="c", key="k")})
    assert from_table.tls == from_object.tls == TlsConfig(cert="c", key="k")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=f"config file {path} not found"):
        load_config(path, env={})


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"cannot read config file {tmp_path}"):
        load_config(tmp_path, env={})  # a directory


def test_bad_toml(tmp_path: Path) -> None:
    path = write(tmp_path, '[node\nname = "a"\n')
    with pytest.raises(ConfigError, match=f"config file {path} is not valid TOML"):
        load_config(path, env={})


def test_node_must_be_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'node = "a"\n')
    with pytest.raises(ConfigError, match="'node' must be a table"):
        load_config(path, env={})


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), env={"VSM_COOKIE": COOKIE}) == NodeConfig(cookie=COOKIE)
