"""Hosts in Linux network namespaces, a daemon on each, and faults between them.

One namespace per host (``vsmft<pid>-<name>``), one namespace holding a bridge
(``vsmft<pid>-br``), a veth pair from each host to the bridge, one address each on
the private test subnet 10.231.0.0/24, which exists only inside these namespaces.

Faults, with what this kind of machine has (no ``tc netem``, no tc classifiers,
maybe no iptables; ``ip route`` and ``ip rule`` work):

- ``cut(a, b)``: a blackhole route on each side, packets vanish both ways;
- ``cut_one_way(a, b)``: the blackhole only on ``a``, so ``a``'s packets to ``b`` vanish
  and ``b``'s still reach ``a``;
- loss and jitter: ``netproxy.py`` in front of each daemon (see there).

Everything is removed in ``close()`` even after an error, and ``sweep()`` removes what a
crashed earlier run left (namespaces whose creating process is gone). Every wait is
bounded in count and time.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "vsmft"
SUBNET = "10.231.0"
PORT = 7401
PROXY_PORT = 7501
COOKIE = "netns-fault-suite-cookie-0123456789"
# Shorter than the defaults so the suite stays within a few minutes; the same
# mechanisms (phi on heartbeats, stable picture, decision) run as in production.
FAST_CONFIG = """\
[node]
heartbeat_interval_s = 0.5
check_interval_s = 0.5
stable_after_s = 2.0
reconnect_base_s = 0.1
reconnect_max_s = 1.0
connect_timeout_s = 2.0
"""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run(*argv: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


def unavailable() -> str | None:
    """Why this machine cannot run the suite, or None when it can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (run the suite as root, as .ci/run does)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _run("ip", "netns", "add", probe)
        _run("ip", "-n", probe, "link", "set", "lo", "up")
    except (subprocess.SubprocessError, OSError) as exc:
        err = getattr(exc, "stderr", "") or exc
        return f"`ip netns` does not work here: {str(err).strip()}"
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_names() -> list[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_in(ns: str) -> None:
    pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids[:1000]:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def sweep(all_runs: bool = False) -> list[str]:
    """Remove namespaces (and their processes) left by runs whose process is gone."""
    removed = []
    for ns in _netns_names():
        if not ns.startswith(PREFIX):
            continue
        owner = ns[len(PREFIX) :].split("-", 1)[0].split("x", 1)[0]
        if not all_runs and owner.isdigit() and _pid_alive(int(owner)):
            continue
        _kill_in(ns)
        _run("ip", "netns", "del", ns, check=False)
        removed.append(ns)
    if os.environ.get("VSM_NETNS_KEEP_LOGS"):
        return removed
    for d in list(Path(tempfile.gettempdir()).glob("vsm-netns-*"))[:1000]:
        owner = d.name.split("-")[2]
        if owner.isdigit() and (all_runs or not _pid_alive(int(owner))):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    return removed


class CtlError(Exception):
    """The node refused a control request or did not answer."""


class Host:
    """One namespace, one address, at most one daemon."""

    def __init__(self, net: Net, name: str, index: int, *, recorder: bool = False) -> None:
        self.net = net
        self.recorder = recorder
        self.name = name
        self.ns = f"{net.tag}-{name}"
        self.ip = f"{SUBNET}.{index}"
        self.dir = net.dir / name
        self.dir.mkdir()
        self.control = str(self.dir / "ctl.sock")
        self.proc: subprocess.Popen[bytes] | None = None
        self.proxy: subprocess.Popen[bytes] | None = None
        self.extra: list[str] = []
        self.starts = 0

    # --- the daemon -------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.ip}:{PROXY_PORT if self.net.proxied else PORT}"

    def start(self, seeds: list[str], extra: list[str] | None = None) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        if extra is not None:
            self.extra = extra
        argv = [
            *("ip", "netns", "exec", self.ns, sys.executable, "-m", "console.cli"),
            *("--daemon", "--name", self.name, "--cluster", "ft"),
            *("--listen", f"0.0.0.0:{PORT}", "--advertise", self.address),
            *("--cookie-file", str(self.net.cookie_file), "--config", str(self.net.config)),
            *("--data-dir", str(self.dir / "data"), "--control", self.control),
            *(["--seeds", ",".join(seeds)] if seeds else []),
            *self.extra,
        ]
        if self.recorder:
            argv = [
                *("ip", "netns", "exec", self.ns, sys.executable),
                *(str(Path(__file__).with_name("recorder.py")), "--name", self.name),
                *("--advertise", self.address, "--seeds", seeds[0]),
                *("--cookie-file", str(self.net.cookie_file), "--out", str(self.record_path)),
            ]
        self.starts += 1
        log = (self.dir / f"daemon-{self.starts}.log").open("wb")
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        env.pop("VSM_COOKIE", None)
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
            preexec_fn=_die_with_parent,  # dies with the harness, even on SIGKILL
        )
        log.close()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for {self.name}")

    def log_text(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.dir.glob("daemon-*.log"))
        )

    # --- its control socket -----------------------------------------------

    def ctl(self, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
        """One request on the control socket (the protocol `vsm-console ctl` speaks)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(self.control)
                s.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
                buf = b""
                for _ in range(100_000):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    if buf.endswith(b"\n"):
                        break
            except OSError as exc:
                raise CtlError(f"{self.name}: {cmd}: {exc}{self._died()}") from exc
        if not buf:
            raise CtlError(f"{self.name}: {cmd}: no answer")
        reply = json.loads(buf)
        if not reply.get("ok"):
            raise CtlError(f"{self.name}: {cmd}: {reply.get('kind')}: {reply.get('error')}")
        return reply["result"]

    def cli(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`vsm-console ctl --control PATH --json ...` as an operator would run it."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "console.cli",
                "ctl",
                "--control",
                self.control,
                "--json",
                *argv,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=env,
        )

    def _died(self) -> str:
        if self.proc is None or self.proc.poll() is None:
            return ""
        return f" (daemon exited {self.proc.returncode}: {self.log_text()[-1500:]})"

    def role(self) -> str:
        return str(self.ctl("partitions")["role"])

    @property
    def record_path(self) -> Path:
        return self.dir / "delivered.json"

    def delivered(self) -> dict[str, Any]:
        """Stop a recorder and read what it was delivered (see recorder.py)."""
        assert self.recorder and self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        return dict(json.loads(self.record_path.read_text()))

    def ready(self) -> bool:
        if self.recorder:
            return Path(str(self.record_path) + ".ready").exists()
        try:
            self.ctl("ping", timeout=2)
        except (CtlError, OSError, ValueError):
            return False
        return True


class Net:
    """N hosts on one bridge; a context manager that always cleans up."""

    def __init__(
        self, names: list[str], *, proxied: bool = False, recorders: tuple[str, ...] = ()
    ) -> None:
        assert 1 <= len(names) <= 200
        self.tag = f"{PREFIX}{os.getpid()}x{next(_counter)}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"vsm-netns-{os.getpid()}-"))
        self.cookie_file = self.dir / "cookie"
        self.cookie_file.write_text(COOKIE)
        self.cookie_file.chmod(0o600)
        self.config = self.dir / "node.toml"
        self.config.write_text(FAST_CONFIG)
        self.proxied = proxied
        self.bridge = f"{self.tag}-br"
        every = [*names, *recorders]
        self.hosts = {n: Host(self, n, i + 1, recorder=n in recorders) for i, n in enumerate(every)}
        self.routes: set[tuple[str, str]] = set()
        self.proxy_args: list[str] = []

    def __enter__(self) -> Net:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def _build(self) -> None:
        _run("ip", "netns", "add", self.bridge)
        _run("ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.bridge, "link", "set", "br0", "up")
        for i, h in enumerate(self.hosts.values()):
            _run("ip", "netns", "add", h.ns)
            _run("ip", "-n", h.ns, "link", "set", "lo", "up")
            port = f"p{i}"
            _run(
                *("ip", "link", "add", "eth0", "netns", h.ns, "type", "veth"),
                *("peer", "name", port, "netns", self.bridge),
            )
            _run("ip", "-n", h.ns, "addr", "add", f"{h.ip}/24", "dev", "eth0")
            _run("ip", "-n", h.ns, "link", "set", "eth0", "up")
            _run("ip", "-n", self.bridge, "link", "set", port, "master", "br0")
            _run("ip", "-n", self.bridge, "link", "set", port, "up")

    # --- daemons ----------------------------------------------------------

    def start(self, extra: list[str] | None = None, proxy_args: list[str] | None = None) -> None:
        """Start a daemon on every host (the first is every other's seed)."""
        if self.proxied:
            self.proxy_args = proxy_args or []
            for h in self.hosts.values():
                self.start_proxy(h)
        first = next(iter(self.hosts.values()))
        for h in self.hosts.values():
            h.start([] if h is first else [first.address], extra)
        until(lambda: all(h.ready() for h in self.hosts.values()), 30, "control sockets up")

    def start_proxy(self, h: Host) -> None:
        argv = [
            *(
                "ip",
                "netns",
                "exec",
                h.ns,
                sys.executable,
                str(Path(__file__).with_name("netproxy.py")),
            ),
            *("--listen", f"{h.ip}:{PROXY_PORT}", "--to", f"127.0.0.1:{PORT}"),
            *("--stats", str(h.dir / "proxy.json")),
            *self.proxy_args,
        ]
        log = (h.dir / "proxy.log").open("wb")
        h.proxy = subprocess.Popen(
            argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        log.close()

    def wait_mesh(self, limit: float = 30.0, names: list[str] | None = None) -> float:
        """Wait until every node (of ``names``) is primary with every peer connected."""
        every = [self.hosts[n] for n in names or self.hosts]
        hosts = [h for h in every if not h.recorder]

        def meshed() -> bool:
            for h in hosts:
                st = h.ctl("status")
                if st["partition"] != "healthy":
                    return False
                want = {x.name for x in every} - {h.name}
                if not all(st["peers"].get(p, {}).get("connected") for p in want):
                    return False
            return all(h.role() == "primary" for h in hosts)

        return until(meshed, limit, "a healthy full mesh")

    def logs(self) -> str:
        return "\n".join(f"===== {h.name}\n{h.log_text()[-4000:]}" for h in self.hosts.values())

    # --- faults -----------------------------------------------------------

    def _route(self, src: str, dst: str, op: str) -> None:
        _run("ip", "-n", self.hosts[src].ns, "route", op, "blackhole", f"{self.hosts[dst].ip}/32")

    def cut_one_way(self, src: str, dst: str) -> None:
        """Packets from ``src`` to ``dst`` vanish; the other way still works."""
        if (src, dst) not in self.routes:
            self._route(src, dst, "add")
            self.routes.add((src, dst))

    def cut(self, a: str, b: str) -> None:
        self.cut_one_way(a, b)
        self.cut_one_way(b, a)

    def split(self, *sides: list[str]) -> None:
        """Cut every link between different sides."""
        for i, side in enumerate(sides):
            for other in sides[i + 1 :]:
                for a in side:
                    for b in other:
                        self.cut(a, b)

    def heal(self) -> None:
        for src, dst in sorted(self.routes):
            self._route(src, dst, "del")
        self.routes.clear()

    # --- teardown ---------------------------------------------------------

    def close(self) -> None:
        for h in self.hosts.values():
            for p in (h.proc, h.proxy):
                if p is not None and p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(timeout=10)
        for ns in [h.ns for h in self.hosts.values()] + [self.bridge]:
            if ns in _netns_names():
                _kill_in(ns)
                _run("ip", "netns", "del", ns, check=False)
        if os.environ.get("VSM_NETNS_KEEP_LOGS"):
            return
        shutil.rmtree(self.dir, ignore_errors=True)


def _count() -> Any:
    n = 0
    while True:
        n += 1
        yield n


_counter = _count()


def until(predicate: Callable[[], Any], limit: float, what: str, step: float = 0.1) -> float:
    """Poll ``predicate`` until true; returns the seconds it took. Bounded in time and count."""
    start = time.monotonic()
    last: BaseException | None = None
    for _ in range(int(limit / step) + 1):
        try:
            if predicate():
                return time.monotonic() - start
        except (CtlError, OSError, ValueError, KeyError) as exc:
            last = exc
        if time.monotonic() - start > limit:
            break
        time.sleep(step)
    raise AssertionError(
        f"not within {limit:.0f} s: {what}" + (f" (last error: {last})" if last else "")
    )
