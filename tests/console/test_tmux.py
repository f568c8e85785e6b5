"""``vsm-console --demo`` in a real terminal (tmux): it draws, answers keys, and quits
leaving the terminal as it found it. Skipped where tmux is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 60.0


def tmux(*args: str) -> str:
    proc = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=20, check=True)
    return proc.stdout


@pytest.fixture
def session() -> Iterator[str]:
    name = f"vsm-test-{uuid.uuid4().hex[:8]}"
    env_path = os.environ.get("PYTHONPATH", "")
    pythonpath = f"{ROOT}{os.pathsep}{env_path}" if env_path else str(ROOT)
    command = (
        f"cd {ROOT} && PYTHONPATH={pythonpath} {sys.executable} -m console.cli --demo 3; "
        "echo EXIT=$?; sleep 30"
    )
    tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", command)
    try:
        yield name
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, timeout=20)


def screen(name: str) -> str:
    return tmux("capture-pane", "-p", "-t", name)


def wait_for(name: str, predicate: Callable[[str], bool], what: str) -> str:
    deadline = time.monotonic() + LIMIT_S
    while True:
        text = screen(name)
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {LIMIT_S}s; screen:\n{text}")
        time.sleep(0.2)


def test_demo_in_a_real_terminal(session: str) -> None:
    text = wait_for(
        session,
        lambda t: "partition healthy" in t and "cluster of 3 voting, 2 peers up" in t,
        "healthy 3-node demo",
    )
    for panel in ("Variety", "Circuit breakers", "Partitions", "Algedonic", "Event log"):
        assert panel in text
    tmux("send-keys", "-t", session, "?")
    wait_for(session, lambda t: "Keys    (escape, ? or q: close)" in t, "help screen")
    tmux("send-keys", "-t", session, "Escape")
    wait_for(session, lambda t: "(escape, ? or q: close)" not in t, "help closed")
    tmux("send-keys", "-t", session, "C-q")
    text = wait_for(session, lambda t: "EXIT=" in t, "exit")
    assert "EXIT=0" in text
    # The terminal is restored: main screen, no mouse reporting, cursor shown.
    flags = tmux(
        "display-message",
        "-p",
        "-t",
        session,
        "#{alternate_on} #{mouse_any_flag} #{cursor_flag}",
    ).split()
    assert flags == ["0", "0", "1"], flags
    assert "Traceback" not in text
