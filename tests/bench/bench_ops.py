"""Benchmark: the operating surface of a live daemon, as its users reach it.

Run on demand: ``python tests/bench/bench_ops.py [ROUNDS]``. Starts two daemons
(separate OS processes on 127.0.0.1), then measures from this process: a control
request round trip (``status``), ``publish --count 100000`` over the socket,
a ``/metrics`` scrape, a ``ctl`` invocation as its own process, and how long
SIGTERM takes to a clean exit 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from console.ctl import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main(rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    env = dict(os.environ, VSM_COOKIE="bench-cookie-123", XDG_RUNTIME_DIR=str(tmp))
    pa, pb, metrics = free_port(), free_port(), free_port()
    cli = [sys.executable, "-m", "console.cli", "--daemon"]
    a = subprocess.Popen(
        [*cli, "--name", "a", "--listen", f"127.0.0.1:{pa}", "--metrics", f"127.0.0.1:{metrics}"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    b = subprocess.Popen(
        [*cli, "--name", "b", "--listen", f"127.0.0.1:{pb}", "--seeds", f"127.0.0.1:{pa}"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    path = tmp / "vsm-console" / "a.sock"
    try:
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        client = Client(str(path))
        start = time.perf_counter()
        for _ in range(rounds):
            client.call("status")
        per = (time.perf_counter() - start) / rounds
        print(f"control round trip (status): {per * 1e3:.3f} ms over {rounds} requests")
        start = time.perf_counter()
        client.call("publish", {"type": "task_execution", "count": 100_000})
        took = time.perf_counter() - start
        print(f"publish --count 100000 over the socket: {took:.3f} s ({100_000 / took:,.0f}/s)")
        client.close()
        url = f"http://127.0.0.1:{metrics}/metrics"
        start = time.perf_counter()
        for _ in range(50):
            with urllib.request.urlopen(url, timeout=10) as reply:
                size = len(reply.read())
        print(f"/metrics scrape: {(time.perf_counter() - start) / 50 * 1e3:.2f} ms ({size} bytes)")
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "console.cli", "ctl", "--name", "a", "topology"],
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        print(f"ctl topology as its own process: {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        a.send_signal(signal.SIGTERM)
        code = a.wait(timeout=30)
        print(f"SIGTERM to exit {code}: {time.perf_counter() - start:.2f} s")
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
