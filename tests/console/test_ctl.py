"""``vsm-console ctl`` without a node: usage errors, no daemon, where the socket is."""

from __future__ import annotations

import argparse
import os
import socket
import threading
from pathlib import Path

import pytest

from console import ctl
from console.cli import main
from console.paths import default_control_path


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["reboot"], "invalid choice: 'reboot'"),
        (["publish"], "the following arguments are required: TYPE"),
        (["publish", "t", "--count", "0"], "must be > 0, got 0"),
        (["publish", "t", "--count", "many"], "not a number: 'many'"),
        (["publish", "t", "--data", "{bad"], "not JSON"),
        (["publish", "t", "--data", "[1]"], "must be a JSON object"),
        (["scream", "--type", "pain"], "the following arguments are required: --severity"),
        (["scream", "--type", "pain", "--severity", "high"], "invalid int value: 'high'"),
        (["resolve"], "the following arguments are required: --keep"),
        (["watch", "--interval", "-1"], "must be > 0"),
        (["--control", "x", "--name", "a", "topology"], "not allowed with argument"),
        (["topology", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_print_usage_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ctl", *argv]) == 2
    err = capsys.readouterr().err
    assert "usage: vsm-console ctl" in err
    assert words in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ctl", "--help"]) == 0
    out = capsys.readouterr().out
    for command in ("topology", "health", "partitions", "variety", "check-partitions"):
        assert command in out
    for command in ("scream", "resolve", "publish", "history", "watch"):
        assert command in out


def test_no_daemon_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "absent.sock"
    assert main(["ctl", "--control", str(path), "topology"]) == 2
    assert capsys.readouterr().err == f"vsm-console ctl: no node is running at {path}\n"
    # A socket file left behind by a node that died: nobody listens.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    assert main(["ctl", "--control", str(path), "health"]) == 2
    assert capsys.readouterr().err == f"vsm-console ctl: no node is running at {path}\n"


def test_socket_path_resolution(tmp_path: Path) -> None:
    parser = ctl.build_parser()

    def path(argv: list[str], env: dict[str, str]) -> str:
        return ctl.socket_path(parser.parse_args([*argv, "topology"]), env)

    runtime = {"XDG_RUNTIME_DIR": str(tmp_path)}
    assert path(["--control", "/x.sock"], runtime) == "/x.sock"
    assert path(["--name", "a"], runtime) == f"{tmp_path}/vsm-console/a.sock"
    assert path(["--name", "a"], {"VSM_DATA_DIR": "/data"}) == "/data/a.sock"
    assert path([], {**runtime, "VSM_NAME": "b"}) == f"{tmp_path}/vsm-console/b.sock"
    assert path([], {"VSM_CONTROL_SOCKET": "/run/c.sock"}) == "/run/c.sock"
    assert path(["--name", "a"], {"VSM_CONTROL_SOCKET": "/run/c.sock"}) == (
        f"/tmp/vsm-console-{os.getuid()}/a.sock"
    )


def test_requests_from_arguments() -> None:
    parser = ctl.build_parser()

    def request(*argv: str) -> tuple[str, dict[str, object]]:
        args: argparse.Namespace = parser.parse_args(list(argv))
        return ctl._request(args)

    assert request("resolve", "--keep", "a, b,") == ("resolve", {"keep": ["a", "b"]})
    assert request("publish", "t", "--count", "3", "--data", '{"k": 1}') == (
        "publish",
        {"type": "t", "data": {"k": 1}, "count": 3},
    )
    assert request("scream", "--type", "pain", "--severity", "8", "--source", "ops") == (
        "scream",
        {"type": "pain", "severity": 8, "source": "ops"},
    )
    assert request("history", "--limit", "5") == ("history", {"limit": 5})
    assert request("topology") == ("topology", {})


def test_a_node_that_does_not_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "mute.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(path)
        mute.listen(1)  # connects, never answers
        assert main(["ctl", "--control", path, "--timeout", "0.2", "topology"]) == 2
    assert (
        capsys.readouterr().err == f"vsm-console ctl: the node at {path} did not answer in time\n"
    )


def test_a_node_that_hangs_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "rude.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as rude:
        rude.bind(path)
        rude.listen(1)

        def hang_up() -> None:
            conn, _ = rude.accept()
            conn.recv(65536)  # the request arrived; hang up instead of answering
            conn.close()

        thread = threading.Thread(target=hang_up)
        thread.start()
        try:
            assert main(["ctl", "--control", path, "--timeout", "5", "topology"]) == 2
        finally:
            thread.join(timeout=10)
    assert "closed the connection" in capsys.readouterr().err


def test_nested_lists_keep_their_sides_apart() -> None:
    assert ctl._fmt([["a"], ["b", "c"]]) == "a | b, c"
    assert ctl._fmt(["a", "b"]) == "a, b"
    assert ctl._fmt([]) == "-" and ctl._fmt(None) == "-" and ctl._fmt(0.25) == "0.25"


def test_json_before_or_after_the_command() -> None:
    parser = ctl.build_parser()
    assert parser.parse_args(["--json", "topology"]).json is True
    assert parser.parse_args(["topology", "--json"]).json is True
    assert parser.parse_args(["publish", "t", "--count", "2", "--json"]).json is True
    assert parser.parse_args(["topology"]).json is False


def test_node_options_before_ctl_are_passed_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert main(["--name", "zed", "ctl", "topology"]) == 2
    assert f"no node is running at {tmp_path}/vsm-console/zed.sock" in capsys.readouterr().err
    assert main(["--control", str(tmp_path / "x.sock"), "ctl", "health"]) == 2
    assert f"no node is running at {tmp_path}/x.sock" in capsys.readouterr().err


def test_default_path_order() -> None:
    assert default_control_path("a", "/data", {"XDG_RUNTIME_DIR": "/run/user/1"}) == (
        "/run/user/1/vsm-console/a.sock"
    )
    assert default_control_path("a", "/data", {}) == "/data/a.sock"
    assert default_control_path("a", None, {}) == f"/tmp/vsm-console-{os.getuid()}/a.sock"
