"""The command line: help works; unbuilt modes say so plainly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from console.cli import main


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--demo" in out and "--daemon" in out and "ctl" in out


def test_console_script_is_installed() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "console.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert "vsm-console" in proc.stdout


def test_themes_ship_as_package_data() -> None:
    from console.themes import theme_dir

    assert (theme_dir() / "vsm-dark.toml").is_file()


def test_bad_theme_file_is_reported_not_fatal(tmp_path: object) -> None:
    from pathlib import Path

    from console.themes import load_themes, theme_dir

    folder = Path(str(tmp_path))
    (folder / "good.toml").write_text((theme_dir() / "vsm-dark.toml").read_text())
    (folder / "bad.toml").write_text("name = [unclosed")
    (folder / "noprimary.toml").write_text('name = "x"')
    specs, errors = load_themes(folder)
    assert [s.name for s in specs] == ["vsm-dark"]
    assert len(errors) == 2
    assert any("bad.toml" in e for e in errors) and any("primary" in e for e in errors)


def test_daemon_refuses_bad_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--daemon", "--name", "bad name!", "--cookie", "c" * 12]) == 2
    assert "bad configuration" in capsys.readouterr().err


def test_daemon_runs_and_stops_on_sigterm(tmp_path: object) -> None:
    """A real process: starts, listens, leaves cleanly on SIGTERM (exit 0)."""
    import os
    import signal
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Its own runtime dir: the default control socket must not meet another run's.
    env = dict(os.environ, VSM_COOKIE="daemon-test-cookie", XDG_RUNTIME_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "console.cli",
            "--daemon",
            "--name",
            "solo",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("daemon never listened")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"listening on 127.0.0.1:{port}" in err
    assert "SIGTERM received" in err and "stopped" in err


def test_insecure_cookie_flag_lets_a_short_cookie_through() -> None:
    from console.cli import build_parser, overrides
    from node.config import load_config

    args = build_parser().parse_args(["--daemon", "--cookie", "short", "--insecure-cookie"])
    assert load_config(env={}, overrides=overrides(args)).cookie == "short"
    args = build_parser().parse_args(["--daemon", "--cookie", "short"])
    assert "insecure_cookie" not in overrides(args)


def test_algedonic_port_flag_is_the_setting() -> None:
    from console.cli import build_parser, overrides
    from node.config import load_config
    from node.errors import ConfigError

    args = build_parser().parse_args(["--daemon", "--algedonic-port", "7501"])
    assert overrides(args)["algedonic_port"] == 7501
    env = {"VSM_COOKIE": "x" * 16}
    assert load_config(env=env, overrides=overrides(args)).algedonic_port == 7501
    assert "algedonic_port" not in overrides(build_parser().parse_args(["--daemon"]))
    bad = build_parser().parse_args(["--daemon", "--algedonic-port", "70000"])
    with pytest.raises(ConfigError, match=r"algedonic_port must be an int in 0\.\.65535, got 7"):
        load_config(env=env, overrides=overrides(bad))
