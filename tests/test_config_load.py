"""load_config: defaults < TOML file < VSM_* environment < overrides, cookie files, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import (
    ENV_VARS,
    NodeConfig,
    TlsConfig,
    load_config,
)
from node.errors import ConfigError

COOKIE = "s3cret-cookie-123"


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
