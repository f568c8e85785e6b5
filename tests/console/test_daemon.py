"""The daemon's parts in-process: signals, log lines, the listen check."""

from __future__ import annotations

import json
import logging
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from console import daemon
from node.config import NodeConfig


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def _signals(*signums: int) -> AsyncIterator[int]:
    for signum in signums:
        await trio.lowlevel.checkpoint()
        yield signum


def test_first_signal_stops_second_exits_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = tmp_path / "a.sock"
    sock.write_text("")
    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(daemon.os, "_exit", fake_exit)

    async def main() -> trio.Event:
        stop = trio.Event()
        with pytest.raises(SystemExit):
            await daemon._watch_signals(_signals(signal.SIGTERM, signal.SIGINT), stop, str(sock))
        return stop

    stop = trio.run(main)
    assert stop.is_set()
    assert exits == [daemon.EXIT_FORCED]
    assert not sock.exists()


def test_one_signal_only_asks_to_stop() -> None:
    async def main() -> trio.Event:
        stop = trio.Event()
        await daemon._watch_signals(_signals(signal.SIGTERM), stop, None)
        return stop

    assert trio.run(main).is_set()


def test_log_lines_name_the_node(capsys: pytest.CaptureFixture[str]) -> None:
    daemon.setup_logging("info", node="n1", fmt="json")
    logging.getLogger("vsm.test").warning("peer %s refused: %s", "b", "bad cookie")
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["node"] == "n1" and record["level"] == "warning"
    assert record["msg"] == "peer b refused: bad cookie" and record["logger"] == "vsm.test"
    daemon.setup_logging("info", node="n2", fmt="text")  # replaces, never duplicates
    logging.getLogger("vsm.test").info("hello")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and " n2 vsm.test: hello" in lines[0]


def test_node_that_cannot_listen_is_one_line_and_exit_2(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Straight from the node's listener: no restarts, no traceback, one line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = NodeConfig(name="a", listen=f"127.0.0.1:{port}", cookie="c" * 16)
        with caplog.at_level(logging.DEBUG):
            assert daemon.main(config, control=False) == daemon.EXIT_LISTEN
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.getMessage() for r in shown] == [
        f"cannot listen for peers on 127.0.0.1:{port}: address already in use"
    ]
    assert not any(r.exc_info for r in caplog.records)
    assert "restarting" not in caplog.text
