"""``config check``: every problem in a file, each with its key, value and why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from console.cli import main
from node.configcheck import Problem, check_file
from node.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def keys(problems: list[Problem]) -> list[str]:
    return [p.key for p in problems]


def test_a_good_file_has_no_problems(tmp_path: Path) -> None:
    cookie = write(tmp_path, "a-long-cookie-0123\n", "cookie")
    cookie.chmod(0o600)
    path = write(
        tmp_path,
        '[node]\nname = "a"\nlisten = "127.0.0.1:7401"\ncookie_file = "cookie"\n'
        'seeds = ["127.0.0.1:7402", "127.0.0.1:7403"]\nquorum_size = 2\n'
        '[node.quotas]\ns1_operational = 2000\ns5_policy = "unlimited"\n[console]\ntheme = "x"\n',
    )
    assert check_file(path) == []


def test_several_mistakes_in_one_file_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[node]
name = "bad name"
heartbeat_interval_s = -1
strategy = "quorum"
listn = "127.0.0.1:7401"
batch_max = "many"
seeds = ["127.0.0.1:7402", "127.0.0.1:7403", "127.0.0.1:7404"]
quorum_size = 2

[node.quotas]
s1_operational = -5
s2_coordination = "fast"
algedonic = 3
s9 = 1

[node.tls]
cert = "missing.pem"
colour = "blue"

[extra]
x = 1
""",
    )
    problems = check_file(path)
    text = [str(p) for p in problems]
    assert keys(problems) == [
        "extra",
        "node.name",
        "node.heartbeat_interval_s",
        "node.strategy",
        "node.listn",
        "node.batch_max",
        "node.quotas.s1_operational",
        "node.quotas.s2_coordination",
        "node.quotas.algedonic",
        "node.quotas.s9",
        "node.tls.colour",
        "node.tls.key",
        "node.tls.cert",
        "node.quorum_size",
    ], text
    by_key = {p.key: p for p in problems}
    assert by_key["node.listn"].why == "unknown key (did you mean listen?)"
    assert by_key["node.heartbeat_interval_s"].value == -1
    assert by_key["node.heartbeat_interval_s"].why == "must be a number > 0, got -1.0"
    assert str(by_key["node.quotas.s1_operational"]) == (
        "node.quotas.s1_operational = -5: must be a number >= 0 (events/s; None or "
        "'unlimited' for no limit), got -5"
    )
    assert "wrong" not in by_key["node.batch_max"].why and "'many'" in by_key["node.batch_max"].why
    assert "algedonic bypasses every limit" in by_key["node.quotas.algedonic"].why
    assert by_key["node.tls.cert"].why == "no such file"
    assert by_key["node.tls.key"].why == "required when tls is set"
    assert "lets two sides win" in by_key["node.quorum_size"].why
    assert "use at least 3" in by_key["node.quorum_size"].why


def test_cross_field_rules(tmp_path: Path) -> None:
    path = write(tmp_path, "[node]\nreconnect_base_s = 10\nreconnect_max_s = 1\n")
    (problem,) = check_file(path)
    assert problem.key == "node.reconnect_max_s"
    assert "must be >= reconnect_base_s" in problem.why
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "c.pem").write_text("x")
    path = write(
        tmp_path, '[node.tls]\ncert = "c.pem"\nkey = "c.pem"\nrequire_client_cert = true\n'
    )
    (problem,) = check_file(path)
    assert problem.key == "node.tls.require_client_cert"
    assert "needs tls.ca" in problem.why


def test_cookie_file_problems(tmp_path: Path) -> None:
    cookie = write(tmp_path, "secret-cookie\n", "cookie")
    cookie.chmod(0o644)
    path = write(tmp_path, '[node]\ncookie_file = "cookie"\n')
    (problem,) = check_file(path)
    assert problem.key == "node.cookie_file"
    assert problem.why == (
        f"cookie file {cookie} is readable or writable by group or others (mode 0644): "
        f"chmod 600 {cookie}"
    )
    cookie.write_text("  \n")
    cookie.chmod(0o600)
    assert [p.why for p in check_file(path)] == ["the file is empty"]
    cookie.unlink()
    assert [p.why for p in check_file(path)] == ["no such file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_tls_file(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    (tmp_path / "k.pem").chmod(0)
    path = write(tmp_path, '[node.tls]\ncert = "c.pem"\nkey = "k.pem"\n')
    (problem,) = check_file(path)
    assert problem.key == "node.tls.key" and problem.why == "cannot be read: Permission denied"


def test_cookie_in_a_world_readable_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\ncookie = "secret-cookie-0123"\n')
    path.chmod(0o644)
    (problem,) = check_file(path)
    assert problem.key == "node.cookie" and "others can read (mode 0644)" in problem.why
    assert "secret-cookie-0123" not in str(problem)
    path.chmod(0o600)
    assert check_file(path) == []


def test_unparseable_or_missing_file(tmp_path: Path) -> None:
    (problem,) = check_file(write(tmp_path, "[node\nname = 1"))
    assert problem.key == "file" and "not valid TOML" in problem.why and "line 1" in problem.why
    (problem,) = check_file(tmp_path / "absent.toml")
    assert problem.why == "not found"
    (problem,) = check_file(write(tmp_path, "node = 3"))
    assert (problem.key, problem.why) == ("node", "must be a table")


def test_config_error_carries_its_key() -> None:
    from node.config import NodeConfig, load_config

    with pytest.raises(ConfigError) as info:
        NodeConfig(cookie="c" * 16, heartbeat_interval_s=-1)
    assert info.value.key == "heartbeat_interval_s"
    with pytest.raises(ConfigError) as info:
        load_config(env={"VSM_COOKIE": "c" * 16, "VSM_STRATEGY": "nope"})
    assert info.value.key == "strategy" and "(from environment VSM_STRATEGY)" in str(info.value)


# --- the command -------------------------------------------------------------------------


def test_command_prints_every_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[node]\nname = "bad name"\nmax_hops = 1000\n')
    assert main(["config", "check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"{path}: node.name = 'bad name': must be 1..255 chars of A-Z a-z 0-9 . _ -, "
        "got 'bad name'",
        f"{path}: node.max_hops = 1000: must be an int in 0..255, got 1000",
    ]
    assert "2 problems found" in captured.err


def test_command_says_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[node]\nname = "a"\n')
    assert main(["config", "check", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_daemon_refuses_a_bad_file_with_the_same_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[node]\nname = "bad name"\nmax_hops = 1000\n')
    assert main(["config", "check", str(path)]) == 1
    checked = capsys.readouterr().out.splitlines()
    assert main(["--daemon", "--config", str(path), "--cookie", "c" * 16]) == 2
    refused = capsys.readouterr().err.splitlines()
    assert refused == [f"vsm-console: bad configuration: {line}" for line in checked]


def test_daemon_checks_a_cookie_file_from_flag_or_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cookie = write(tmp_path, "secret-cookie\n", "cookie")
    cookie.chmod(0o644)
    assert main(["--daemon", "--name", "a", "--cookie-file", str(cookie)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("vsm-console: bad configuration: --cookie-file = '")
    assert line.endswith(f"(mode 0644): chmod 600 {cookie}")
    monkeypatch.setenv("VSM_COOKIE_FILE", str(cookie))
    monkeypatch.delenv("VSM_COOKIE", raising=False)
    assert main(["--daemon", "--name", "a"]) == 2
    assert "VSM_COOKIE_FILE = " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"listen": "nonsense"}, "listen"),
        ({"advertise": "10.0.0.1:0"}, "advertise"),
        ({"seeds": ["a:1", "b"]}, "seeds[1]"),
        ({"quotas": {"s1_operational": -1}}, "quotas.s1_operational"),
        ({"quotas": {"s42": 1}}, "quotas"),
        ({"capacities": {"general": 0}}, "capacities.general"),
        ({"event_types": {"x": "nowhere"}}, "event_types"),
        ({"reconnect_base_s": 9.0, "reconnect_max_s": 1.0}, "reconnect_max_s"),
        ({"cookie": ""}, "cookie"),
        ({"max_hops": -1}, "max_hops"),
    ],
)
def test_every_config_error_names_its_key(fields: dict[str, object], key: str) -> None:
    from node.config import NodeConfig

    with pytest.raises(ConfigError) as info:
        NodeConfig(**{"cookie": "c" * 16, **fields})  # type: ignore[arg-type]
    assert info.value.key == key
