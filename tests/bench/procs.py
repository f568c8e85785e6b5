"""The harness side of the processes: spawn, talk (JSON lines), wait, kill.

Every process the harness starts is registered in a :class:`Procs` and killed
when it closes, on success or error; on Linux each child also gets
``PR_SET_PDEATHSIG`` so it dies with the harness even if the harness is
killed outright. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
_EOF = object()


class WorkerError(Exception):
    """A worker answered with an error, died, or did not answer in time."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def child_env() -> dict[str, str]:
    """The environment for children: this checkout first on the import path."""
    env = dict(os.environ)
    parts = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A started process; with ``talk``, its stdout lines are read into a queue."""

    def __init__(self, name: str, argv: list[str], logdir: Path, *, talk: bool) -> None:
        self.name = name
        self.argv = argv
        self.log_path = logdir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if talk else subprocess.DEVNULL,
            stdout=subprocess.PIPE if talk else self._log,
            stderr=self._log,
            cwd=ROOT,
            env=child_env(),
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.pid = self.popen.pid
        self._lines: queue.Queue[Any] = queue.Queue()
        if talk:
            threading.Thread(target=self._read, daemon=True, name=f"read-{name}").start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            self._lines.put(raw.decode(errors="replace"))
        self._lines.put(_EOF)

    def send(self, **cmd: Any) -> None:
        if self.popen.stdin is None:
            raise WorkerError(f"{self.name} takes no commands")
        try:
            self.popen.stdin.write((json.dumps(cmd) + "\n").encode())
            self.popen.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError(f"{self.name} is gone ({exc}); {self.tail()}") from exc

    def expect(self, timeout: float, what: str = "an answer") -> dict[str, Any]:
        """The next JSON line; WorkerError on error reply, exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise WorkerError(
                    f"{self.name} gave no {what} within {timeout:g} s; {self.tail()}"
                ) from None
            if line is _EOF:
                try:
                    code: int | None = self.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    code = None  # closed its stdout but still runs; stop() will end it
                raise WorkerError(f"{self.name} exited ({code}) before {what}; {self.tail()}")
            try:
                reply = json.loads(line)
            except ValueError:
                continue  # a library printing to stdout; the log has the rest
            if not isinstance(reply, dict):
                continue
            if "error" in reply:
                raise WorkerError(f"{self.name}: {reply['error']}")
            return dict(reply)

    def request(self, timeout: float, **cmd: Any) -> dict[str, Any]:
        self.send(**cmd)
        return self.expect(timeout, f"answer to {cmd.get('cmd')!r}")

    def tail(self, lines: int = 3) -> str:
        """The last lines of the process's log (stderr), for error messages."""
        try:
            self._log.flush()
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        if not text:
            return "log empty"
        return "log: " + " | ".join(line.strip()[:160] for line in text[-lines:])

    def stop(self, grace: float = 3.0) -> None:
        """Close stdin (workers exit on end of input), then SIGTERM, then SIGKILL."""
        popen = self.popen
        if popen.stdin is not None:
            with contextlib.suppress(OSError):
                popen.stdin.close()
        # A worker busy in a command does not read its stdin: SIGTERM then.
        for action, wait_s in ((None, 1.0), (popen.terminate, grace), (popen.kill, grace)):
            if action is not None and popen.poll() is None:
                with contextlib.suppress(OSError):
                    action()
            try:
                popen.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if popen.stdout is not None:
            with contextlib.suppress(OSError):
                popen.stdout.close()
        self._log.close()


class Procs:
    """Every process of a run; ``with Procs(logdir) as procs:`` stops them all at exit."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.all: list[Proc] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, name: str, argv: list[str], *, talk: bool = True) -> Proc:
        proc = Proc(name, argv, self.logdir, talk=talk)
        self.all.append(proc)
        return proc

    def worker(self, name: str, module: str, *args: str) -> Proc:
        """A Python worker module of this package (``-m tests.bench.<module>``)."""
        return self.start(name, [sys.executable, "-m", f"tests.bench.{module}", *args])

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.all:
            self.all.remove(proc)

    def stop_all(self) -> None:
        while self.all:
            self.all.pop().stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_tcp(port: int, proc: Proc, timeout: float = 10.0) -> None:
    """Wait until something accepts on 127.0.0.1:port; WorkerError if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise WorkerError(f"{proc.name} exited ({proc.popen.returncode}); {proc.tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise WorkerError(f"{proc.name} did not accept on port {port} within {timeout:g} s")


def rss_kib(pid: int) -> int:
    """VmRSS of a live process from /proc, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise WorkerError(f"no VmRSS for pid {pid}")


def find_program(name: str) -> str | None:
    """A server binary on PATH or in the usual Debian places (sbin is not always on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"):
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def start_nats(procs: Procs) -> tuple[Proc, int]:
    """nats-server on 127.0.0.1 and a free port; WorkerError (with the fix) if missing."""
    binary = find_program("nats-server")
    if binary is None:
        raise MissingPeerError("nats-server not found (apt-get install nats-server)")
    port = free_port()
    proc = procs.start("nats-server", [binary, "-a", "127.0.0.1", "-p", str(port)], talk=False)
    wait_tcp(port, proc)
    return proc, port


def start_redis(procs: Procs) -> tuple[Proc, int]:
    """redis-server on 127.0.0.1 and a free port, no persistence."""
    binary = find_program("redis-server")
    if binary is None:
        raise MissingPeerError("redis-server not found (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    argv += ["--appendonly", "no", "--protected-mode", "no", "--daemonize", "no"]
    proc = procs.start("redis-server", argv, talk=False)
    wait_tcp(port, proc)
    return proc, port


class MissingPeerError(Exception):
    """A peer (server binary or Python client) is not installed: skip it, say so."""


def have_module(name: str) -> bool:
    """Whether a peer's client library can be imported (checked without importing it here)."""
    import importlib.util

    return importlib.util.find_spec(name) is not None
