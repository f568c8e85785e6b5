"""NodeConfig validation, immutability and address parsing (loading: test_config_load.py)."""

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
    FIELDS,
    FrozenMap,
    NodeConfig,
    TlsConfig,
    format_address,
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
    assert (config.backlog_size, config.lane_size, config.dedup_size) == (10_000, 50_000, 10_000)
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
    ("busy_poll_us", -1),
    ("busy_poll_us", 100_001),
    ("busy_poll_us", True),
    ("algedonic_port", -1),
    ("algedonic_port", 65_536),
    ("algedonic_port", "7501"),
    ("algedonic_port", True),
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


def test_algedonic_port_is_a_udp_port_or_none() -> None:
    assert make().algedonic_port is None  # the number of the TCP port actually bound
    assert make(algedonic_port=0).algedonic_port == 0  # a free one
    assert make(algedonic_port=65_535).algedonic_port == 65_535
    with pytest.raises(ConfigError, match=r"^algedonic_port must be an int in 0\.\.65535, got -1"):
        make(algedonic_port=-1)


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
