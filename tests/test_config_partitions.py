"""Config fields for partitions and the journal (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import NodeConfig, default_data_dir, load_config
from node.errors import ConfigError


def test_defaults() -> None:
    c = NodeConfig(cookie="c" * 16)
    assert c.down_all_when_unstable_s is None  # 3/4 of stable_after_s, at least 4 s
    assert (c.journal, c.journal_retention_days, c.journal_retention_rows) == (True, 30.0, 100_000)


def test_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "n.toml"
    f.write_text(
        '[node]\ncookie = "cccccccccccccccc"\njournal = false\ndown_all_when_unstable_s = 6\n'
        "journal_retention_days = 7\njournal_retention_rows = 500\n"
    )
    c = load_config(f, env={})
    assert (c.journal, c.down_all_when_unstable_s) == (False, 6.0)
    assert (c.journal_retention_days, c.journal_retention_rows) == (7.0, 500)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("journal", "no", "journal must be true or false"),
        ("down_all_when_unstable_s", -1, "down_all_when_unstable_s must be a number >= 0"),
        ("journal_retention_days", 0, "journal_retention_days must be a number > 0"),
        ("journal_retention_rows", 0, "journal_retention_rows must be an int >= 1"),
    ],
)
def test_bad_values_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NodeConfig(cookie="c" * 16, **{field: value})


def test_default_data_dir_follows_xdg_state_home() -> None:
    env = {"XDG_STATE_HOME": "/state"}
    assert default_data_dir("prod", "a", env) == "/state/vsm-console/prod/a"
    assert default_data_dir("prod", "a", {}).endswith("/.local/state/vsm-console/prod/a")
