"""The TUI and demo entry points of the command line: refusals happen before any screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.cli import build_parser, main
from console.tui import EXIT_USAGE, known_themes


def test_demo_defaults_to_five_nodes() -> None:
    assert build_parser().parse_args(["--demo"]).demo == 5
    assert build_parser().parse_args(["--demo", "3"]).demo == 3


def test_unknown_theme_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--demo", "--theme", "no-such-theme"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown theme 'no-such-theme'" in err and "vsm-high-contrast" in err


def test_shipped_and_builtin_themes_are_known() -> None:
    names = known_themes()
    assert {"vsm-dark", "vsm-light", "vsm-high-contrast", "textual-dark"} <= names


@pytest.mark.parametrize("n", ["1", "10"])
def test_demo_size_is_checked(n: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--demo", n]) == EXIT_USAGE
    assert "the demo runs 2 to 9 nodes" in capsys.readouterr().err


def test_bad_node_config_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", "not-an-address"]) == EXIT_USAGE
    assert "bad configuration" in capsys.readouterr().err


def test_a_bad_config_file_is_refused_as_the_daemon_refuses_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\nname = "a"\ncookie = "test-cookie-1234"\nstrategy = "coin_toss"\n')
    assert main(["--config", str(config)]) == EXIT_USAGE
    assert "strategy" in capsys.readouterr().err
