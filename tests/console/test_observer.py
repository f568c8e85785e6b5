"""The console as an observer of a real daemon: two OS processes over TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

from consoletest import SIZE, rows, text_of, until

from console.app import make_app
from console.session import Session
from node.config import NodeConfig

COOKIE = "observer-test-cookie"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_observer_joins_a_daemon_and_leaves_with_bye() -> None:
    port = free_port()
    env = dict(os.environ, VSM_COOKIE=COOKIE)
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "console.cli",
            "--daemon",
            "--name",
            "d1",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "daemon never listened"
            time.sleep(0.05)
        config = NodeConfig(
            name="op",
            listen="127.0.0.1:0",
            seeds=[f"127.0.0.1:{port}"],
            role="observer",
            cookie=COOKIE,
        )

        async def main() -> None:
            app = make_app(Session(config))
            async with app.run_test(size=SIZE) as pilot:
                await until(
                    pilot,
                    lambda: (
                        bool(app.snap.get("partition"))
                        and app.snap["partition"]["members"] == ["d1"]
                        and app.snap["partition"]["status"] == "healthy"
                    ),
                )
                app.refresh_panels()
                header = text_of(app, "#header")
                assert "role observer" in header and "cluster of 1 voting, 1 peers up" in header
                assert [r[:3] for r in rows(app, "#breaker-table")] == [["d1", "up", "closed"]]
                node = app.session.node
                assert node is not None  # its loop is the UI's guest: it never spins
                assert node.variety_stats()["busy_poll"]["ceiling_us"] == 0
                await pilot.press("ctrl+q")
            assert app.return_code == 0

        asyncio.run(main())
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate(timeout=30)
    assert "connected to op" in err
    assert "op left" in err  # the console said BYE: a departure, not a failure
