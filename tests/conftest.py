"""Settings for every test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_state_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon keeps state under $XDG_STATE_HOME by default (issue 10): tests,
    # and the processes they start, must never touch the user's real one.
    home: Path = tmp_path_factory.mktemp("state_home")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
