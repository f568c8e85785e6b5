"""The rows of the table: each starts its systems as OS processes and measures.

A row function takes the run's :class:`Settings` and a log folder and returns
rows. A system that is missing (server binary or client library) is skipped
with a note; one that fails gets a "failed" note; neither stops the run.
Processes are started inside ``with Procs(...)`` so they are killed when the
measurement ends, whatever happened.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from .procs import (
    MissingPeerError,
    Proc,
    Procs,
    WorkerError,
    find_program,
    have_module,
    rss_kib,
    start_nats,
    start_redis,
)
from .proto import SUBJECT
from .report import (
    HIGHER,
    LOWER,
    Measurement,
    Row,
    combine_rounds,
    paired_ratios,
    percentile,
    rate,
)

COOKIE = "bench-cookie-0123"


@attrs.frozen
class Settings:
    """Sizes and bounds of one run (``--quick`` makes them small)."""

    n: int = 200_000  # events per throughput run
    local_n: int = 200_000  # publishes per timed local loop
    reps: int = 5  # timed local loops (best taken)
    rtt_m: int = 2_000  # measured round trips (after the warm-up)
    rtt_warmup: int = 100
    alarms_idle: int = 50  # system_panic events without a flood
    alarms_flood: int = 300  # system_panic events during the flood (~3 s at 10 ms)
    alarm_interval_s: float = 0.010
    screams: int = 300  # confirmed alarms to 4 peers, idle and again during the flood
    flood_max: int = 2_000_000  # bound on the flood, whatever the alarms do
    rss_wait_s: float = 5.0  # idle time before reading RSS
    swarm_k: int = 16  # peers connected to the hub
    dedup_sizes: tuple[int, ...] = (10_000, 100_000)
    idle_s: float = 3.0  # a receiver gives up after this long without an event
    timeout_s: float = 120.0  # bound on any one transfer
    rounds: int = 5  # throughput: ours and nats-py in turn, this many times

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            n=20_000,
            local_n=50_000,
            reps=3,
            rtt_m=300,
            rtt_warmup=30,
            alarms_idle=20,
            alarms_flood=100,
            screams=100,
            rss_wait_s=2.0,
            swarm_k=8,
            dedup_sizes=(10_000,),
            timeout_s=60.0,
            rounds=1,
        )


def say(text: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"bench: {text}", file=sys.stderr, flush=True)


def guarded(system: str, unit: str, run: Callable[[], Measurement], **kw: Any) -> Measurement:
    """``run()``, or a Measurement without a figure that says why not."""
    say(system)
    try:
        return run()
    except MissingPeerError as exc:
        return Measurement(system, None, unit, note=f"skipped: {exc}", **kw)
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        return Measurement(system, None, unit, note=f"failed: {text[:200]}", **kw)


def need_module(module: str, package: str) -> None:
    if not have_module(module):
        raise MissingPeerError(f"Python package {package} not installed (pip install '.[bench]')")


def delivery(system: str, sent: dict[str, Any], got: dict[str, Any], **kw: Any) -> Measurement:
    """events/s delivered (first publish to last delivery) and loss from a pair of replies."""
    published, received = int(sent["published"]), int(got["received"])
    value = rate(received, int(sent["t0_ns"]), int(got["last_ns"]))
    notes = []
    if got.get("reason") == "timeout":
        notes.append("receiver timed out")
    m = Measurement(
        system, value, "ev/s", lost=published - received, sent=published, note="; ".join(notes)
    )
    m.extra.update(sender=sent, receiver=got)
    for key, value in kw.items():
        setattr(m, key, value)
    return m


# --- ours: two nodes, each its own process ------------------------------------------


def our_pair(procs: Procs) -> tuple[Proc, Proc]:
    """Nodes ``a`` and ``b`` in two processes, connected both ways."""
    b = procs.worker("ours-b", "ourproc", "node", "b")
    address = b.expect(30, "address")["address"]
    a = procs.worker("ours-a", "ourproc", "node", "a", address)
    a.expect(30, "address")
    a.request(30, cmd="wait_peer", name="b")
    b.request(30, cmd="wait_peer", name="a")
    return a, b


ACCOUNTED = ("throttled", "compressed", "dropped")


def sender_accounting(stats: dict[str, Any], lost: int | None) -> str:
    """What a counted for peer b as not delivered, and how much of the loss that leaves.

    Issue 8: every event is delivered or counted on the sender; "unaccounted"
    is loss the sender's figures do not explain.
    """
    peer = stats.get("variety", {}).get("peers", {}).get("b", {})
    counted = {k: peer[k] for k in ACCOUNTED if isinstance(peer.get(k), int) and peer[k]}
    parts = [f"a counted {k} {v:,}" for k, v in counted.items()]
    if lost:
        parts.append(f"{lost - sum(counted.values()):,} unaccounted")
    return ", ".join(parts)


def ours_flood(s: Settings, logdir: Path, mode: str) -> Measurement:
    system = (
        "ours, publish (checkpoint every 100)" if mode == "publish" else "ours, await send + flush"
    )
    with Procs(logdir) as procs:
        a, b = our_pair(procs)
        b.request(10, cmd="count", type=SUBJECT)
        b.send(cmd="drain", expect=s.n, idle_s=s.idle_s, timeout_s=s.timeout_s)
        if mode == "publish":
            sent = a.request(s.timeout_s, cmd="publish", n=s.n, every=100)
        else:
            sent = a.request(s.timeout_s, cmd="send", n=s.n, flush_timeout_s=s.timeout_s)
            if "unavailable" in sent:
                return Measurement(
                    system, None, "ev/s", ours=True, note="not available in this build"
                )
        got = b.expect(s.timeout_s + 10, "drain result")
        stats = a.request(10, cmd="stats")
    m = delivery(system, sent, got, ours=True)
    m.extra.update(label=mode, sender_stats=stats.get("variety", {}).get("peers", {}))
    accounting = sender_accounting(stats, m.lost)
    no_flush = "node.flush not available" if mode == "send" and not sent.get("flushed_ns") else ""
    m.note = "; ".join(filter(None, [m.note, accounting, no_flush]))
    return m


def nats_flood(s: Settings, logdir: Path) -> Measurement:
    need_module("nats", "nats-py")
    with Procs(logdir) as procs:
        _, port = start_nats(procs)
        url = f"nats://127.0.0.1:{port}"
        sub = procs.worker("nats-sub", "peers.nats_peer", url)
        pub = procs.worker("nats-pub", "peers.nats_peer", url)
        sub.expect(30, "connection")
        pub.expect(30, "connection")
        sub.request(20, cmd="count", subject=SUBJECT)
        sub.send(cmd="drain", expect=s.n, idle_s=s.idle_s, timeout_s=s.timeout_s)
        sent = pub.request(s.timeout_s, cmd="publish", n=s.n, subject=SUBJECT, flush_timeout_s=30)
        got = sub.expect(s.timeout_s + 10, "drain result")
    return delivery("nats-py via nats-server", sent, got)


def zmq_flood(s: Settings, logdir: Path) -> Measurement:
    need_module("zmq", "pyzmq")
    with Procs(logdir) as procs:
        pull = procs.worker("zmq-pull", "peers.zmq_peer", "pull")
        port = pull.expect(30, "port")["port"]
        push = procs.worker("zmq-push", "peers.zmq_peer", "push", str(port))
        push.expect(30, "connection")
        pull.send(cmd="drain", expect=s.n, idle_s=s.idle_s, timeout_s=s.timeout_s)
        sent = push.request(s.timeout_s, cmd="publish", n=s.n)
        got = pull.expect(s.timeout_s + 10, "drain result")
    return delivery("pyzmq PUSH/PULL", sent, got)


def redis_flood(s: Settings, logdir: Path) -> Measurement:
    need_module("redis", "redis")
    with Procs(logdir) as procs:
        _, port = start_redis(procs)
        sub = procs.worker("redis-sub", "peers.redis_peer", "sub", str(port), SUBJECT)
        sub.expect(30, "subscription")
        pub = procs.worker("redis-pub", "peers.redis_peer", "pub", str(port), SUBJECT)
        pub.expect(30, "connection")
        sub.send(cmd="drain", expect=s.n, idle_s=s.idle_s, timeout_s=s.timeout_s)
        sent = pub.request(s.timeout_s, cmd="publish", n=s.n)
        got = sub.expect(s.timeout_s + 10, "drain result")
    return delivery("redis-py pub/sub (pipeline of 100)", sent, got)


def row_throughput(s: Settings, logdir: Path) -> list[Row]:
    row = Row(
        "throughput",
        f"two-process throughput, events/s delivered at the receiver, N={s.n:,}",
        HIGHER,
    )
    # Ours and nats-py in turn, round after round: on a shared machine whose
    # speed drifts, each round's ratio compares runs made seconds apart.
    runs: dict[str, Callable[[], Measurement]] = {
        "publish": lambda: ours_flood(s, logdir, "publish"),
        "send": lambda: ours_flood(s, logdir, "send"),
        "nats": lambda: nats_flood(s, logdir),
    }
    systems = {"publish": "ours, publish", "send": "ours, send", "nats": "nats-py via nats-server"}
    rounds: dict[str, list[Measurement]] = {key: [] for key in runs}
    for index in range(s.rounds):
        order = list(runs) if index % 2 == 0 else list(reversed(runs))  # no one always last
        for key in order:
            run = runs[key]
            label = systems[key] + (f" (round {index + 1} of {s.rounds})" if s.rounds > 1 else "")
            rounds[key].append(guarded(label, "ev/s", run, ours=key != "nats"))
    combined = {key: combine_rounds(found) for key, found in rounds.items()}
    for key in ("publish", "send"):
        row.add(combined[key]).extra.setdefault("label", key)
    row.add(combined["nats"])
    row.add(guarded("pyzmq PUSH/PULL", "ev/s", lambda: zmq_flood(s, logdir)))
    row.add(guarded("redis-py pub/sub", "ev/s", lambda: redis_flood(s, logdir)))
    if s.rounds > 1:
        row.notes.append(
            f"median of {s.rounds} rounds of ours and nats-py in turn, in alternating order "
            "(lost: summed over the rounds); zmq and redis once"
        )
        for key in ("publish", "send"):
            ratios = paired_ratios(combined[key], combined["nats"])
            if ratios:
                row.notes.append(
                    f"{key} / nats-py round by round: "
                    + ", ".join(f"{r:.2f}x" for r in ratios)
                    + f" (median {statistics.median(ratios):.2f}x)"
                )
    row.notes.append(
        "events/s = received / (sender's first publish .. receiver's last delivery); "
        "lost = sent - received"
    )
    return [row]


# --- round trip -------------------------------------------------------------------------


def ours_rtt(s: Settings, logdir: Path) -> dict[str, Any]:
    with Procs(logdir) as procs:
        a, b = our_pair(procs)
        b.request(10, cmd="echo", on=SUBJECT, answer="status_update")
        return a.request(
            s.timeout_s + 10,
            cmd="rtt",
            m=s.rtt_m,
            warmup=s.rtt_warmup,
            timeout_s=1.0,
            total_s=s.timeout_s,
            ask=SUBJECT,
            answer="status_update",
        )


def nats_rtt(s: Settings, logdir: Path) -> dict[str, Any]:
    need_module("nats", "nats-py")
    with Procs(logdir) as procs:
        _, port = start_nats(procs)
        url = f"nats://127.0.0.1:{port}"
        responder = procs.worker("nats-responder", "peers.nats_peer", url)
        requester = procs.worker("nats-requester", "peers.nats_peer", url)
        responder.expect(30, "connection")
        requester.expect(30, "connection")
        responder.request(20, cmd="echo", subject="rtt")
        return requester.request(
            s.timeout_s + 10,
            cmd="rtt",
            m=s.rtt_m,
            warmup=s.rtt_warmup,
            timeout_s=1.0,
            total_s=s.timeout_s,
            subject="rtt",
        )


def latency_rows(
    key: str,
    title: str,
    results: list[tuple[str, bool, dict[str, Any] | str, int]],
    detail: str = "",
) -> list[Row]:
    """p50 and p99 rows (µs) from ``(system, ours, reply-or-why-not, requests)``."""
    rows = []
    for q in (50, 99):
        row = Row(f"{key}_p{q}", f"{title} p{q}, µs{detail}", LOWER)
        for system, ours, result, requests in results:
            if isinstance(result, str):
                row.add(Measurement(system, None, "µs", ours=ours, note=result))
                continue
            samples = result["samples_ns"]
            lost = requests - len(samples)
            value = percentile(samples, q) / 1000 if samples else None
            note = "" if samples else "no samples"
            m = Measurement(system, value, "µs", ours=ours, lost=lost, sent=requests, note=note)
            if samples:
                m.extra["summary_us"] = {
                    "n": len(samples),
                    "min": min(samples) / 1000,
                    **{f"p{p}": percentile(samples, p) / 1000 for p in (50, 90, 99)},
                    "max": max(samples) / 1000,
                }
            row.add(m)
        rows.append(row)
    return rows


def run_result(system: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any] | str:
    """A worker's reply, or the note that says why there is none."""
    say(system)
    try:
        return run()
    except MissingPeerError as exc:
        return f"skipped: {exc}"
    except Exception as exc:
        return f"failed: {type(exc).__name__}: {exc}"[:200]


def row_rtt(s: Settings, logdir: Path) -> list[Row]:
    ours = run_result("ours, round trip", lambda: ours_rtt(s, logdir))
    nats = run_result("nats-py request/reply", lambda: nats_rtt(s, logdir))
    rows = latency_rows(
        "rtt",
        "round trip",
        [
            ("ours, publish -> b answers -> a", True, ours, s.rtt_m),
            ("nats-py request/reply via nats-server", False, nats, s.rtt_m),
        ],
        f" ({s.rtt_m:,} after {s.rtt_warmup} warm-up)",
    )
    return rows


# --- algedonic arrival during an S1 flood ----------------------------------------------


def ours_alarms(s: Settings, logdir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    with Procs(logdir) as procs:
        a, b = our_pair(procs)
        b.request(10, cmd="alarm_watch", type="system_panic")
        bound = s.timeout_s
        idle_sent = a.request(
            bound,
            cmd="alarms",
            count=s.alarms_idle,
            interval_s=s.alarm_interval_s,
            flood=False,
            flood_max=0,
        )
        idle = b.request(bound, cmd="alarm_take", expect=s.alarms_idle, wait_s=10.0, idle_s=2.0)
        flood_sent = a.request(
            bound,
            cmd="alarms",
            count=s.alarms_flood,
            interval_s=s.alarm_interval_s,
            flood=True,
            flood_max=s.flood_max,
        )
        flood = b.request(bound, cmd="alarm_take", expect=s.alarms_flood, wait_s=30.0, idle_s=3.0)
    idle.update(sent=idle_sent["alarms_sent"])
    flood.update(sent=flood_sent["alarms_sent"], flooded=flood_sent["flooded"])
    return idle, flood, flood_sent


def row_alarm(s: Settings, logdir: Path) -> list[Row]:
    title = "algedonic arrival"
    detail = " (system_panic every ~10 ms, a -> b)"
    say("ours, algedonic arrival idle and during an S1 flood")
    try:
        idle, flood, _ = ours_alarms(s, logdir)
    except Exception as exc:
        why = f"failed: {type(exc).__name__}: {exc}"[:200]
        return latency_rows("alarm", title, [("ours", True, why, 0)], detail)
    results = []
    for label, got in (("ours, idle", idle), ("ours, during S1 flood", flood)):
        samples = got["latencies_ns"]
        results.append((label, True, {"samples_ns": samples}, int(got["sent"])))
    rows = latency_rows("alarm", title, results, detail)
    rows[-1].notes.append(
        f"flood: a published {flood['flooded']:,} task_execution events (publish, a checkpoint "
        f"every 100) while sending {flood['sent']} alarms; lost = alarms not received"
    )
    return rows


# --- confirmed alarms to 4 peers (issue 9) --------------------------------------------------


def row_scream(s: Settings, logdir: Path) -> list[Row]:
    """``bench_algedonic.py N a-lifted --json``: a and four peers, five processes."""
    title = "confirmed alarm to 4 peers"
    detail = f" ({s.screams} screams, 5 processes)"
    say("ours, confirmed alarms to 4 peers, idle and during an S1 flood")
    try:
        with Procs(logdir) as procs:
            w = procs.worker("scream", "bench_algedonic", str(s.screams), "a-lifted", "--json")
            got = w.expect(s.timeout_s + 60, "algedonic figures")
    except Exception as exc:
        why = f"failed: {type(exc).__name__}: {exc}"[:200]
        return latency_rows("scream", title, [("ours", True, why, 0)], detail)
    return scream_rows(got, title, detail)


def scream_rows(got: dict[str, Any], title: str, detail: str) -> list[Row]:
    """p50 and p99 rows from bench_algedonic's JSON line (latencies in ms)."""
    results = []
    for phase, label in zip(got["phases"], ("ours, idle", "ours, during S1 flood"), strict=True):
        samples = [round(ms * 1_000_000) for ms in phase["latencies_ms"]]
        results.append((label, True, {"samples_ns": samples}, int(phase["n"])))
    rows = latency_rows("scream", title, results, detail)
    rows[-1].notes.append(
        "algedonic_scream: the time until the last of 4 confirmations; flood: a publishes "
        "task_execution flat out, S1 quota lifted (bench_algedonic.py a-lifted); "
        "lost = screams with a target that did not confirm; goal: p99 under 10 ms (10,000 µs)"
    )
    return rows


# --- memory -------------------------------------------------------------------------------


def wait_log(proc: Proc, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise WorkerError(f"{proc.name} exited ({proc.popen.returncode}); {proc.tail()}")
        if text in proc.log_path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise WorkerError(f"{proc.name} did not log {text!r} within {timeout:g} s; {proc.tail()}")


def daemon_argv() -> tuple[list[str], str]:
    script = find_program("vsm-console")
    base = [script] if script else [sys.executable, "-m", "console.cli"]
    flags = ["--daemon", "--name", "rss", "--listen", "127.0.0.1:0", "--cookie", COOKIE]
    return [*base, *flags, "--log-level", "info"], " ".join(["vsm-console", *flags])


def row_rss(s: Settings, logdir: Path) -> list[Row]:
    row = Row("rss", f"idle RSS after {s.rss_wait_s:g} s, MiB", LOWER)
    argv, shown = daemon_argv()
    say("idle RSS: vsm-console --daemon, nats-server, redis-server")
    with Procs(logdir) as procs:
        started: list[tuple[str, bool, Proc | str]] = []
        try:
            daemon = procs.start("vsm-console-daemon", argv, talk=False)
            wait_log(daemon, "listening on", 30)
            started.append(("ours, vsm-console --daemon", True, daemon))
        except Exception as exc:
            started.append(("ours, vsm-console --daemon", True, f"failed: {exc}"[:200]))
        for name, start in (("nats-server", start_nats), ("redis-server", start_redis)):
            try:
                proc, _ = start(procs)
                started.append((name, False, proc))
            except MissingPeerError as exc:
                started.append((name, False, f"skipped: {exc}"))
            except Exception as exc:
                started.append((name, False, f"failed: {exc}"[:200]))
        time.sleep(s.rss_wait_s)
        for system, ours, proc in started:
            if isinstance(proc, str):
                row.add(Measurement(system, None, "MiB", ours=ours, note=proc))
            else:
                value = rss_kib(proc.pid) / 1024
                extra = {"pid": proc.pid, "argv": proc.argv}
                row.add(Measurement(system, value, "MiB", ours=ours, extra=extra))
    row.notes.append(f"ours: {shown}")
    row.notes.append("VmRSS from /proc/PID/status; the servers are C (redis) and Go (nats)")
    return [row]


def row_dedup(s: Settings, logdir: Path) -> list[Row]:
    row = Row("dedup", "dedup memory per remembered id (tracemalloc), bytes", LOWER)
    say("dedup bytes per id")
    with Procs(logdir) as procs:
        try:
            worker = procs.worker("dedup", "ourproc", "dedup", *map(str, s.dedup_sizes))
            got = worker.expect(300, "dedup figures")["dedup"]
        except Exception as exc:
            row.add(Measurement("ours, Deduplicator", None, "B/id", ours=True, note=f"{exc}"))
            return [row]
    for size in s.dedup_sizes:
        fig = got[str(size)]
        row.add(
            Measurement(
                f"ours, Deduplicator({size:,}) full",
                fig["bytes_per_id"],
                "B/id",
                ours=True,
                note=f"{fig['remembered']:,} ids, {fig['bytes'] / 1e6:.2f} MB",
                extra=fig,
            )
        )
    row.notes.append("ids from 4 sources' HLC clocks, interleaved, as a receiver sees them")
    return [row]


def row_peer_memory(s: Settings, logdir: Path) -> list[Row]:
    row = Row("peer_memory", f"memory per connected peer ({s.swarm_k} peers), bytes", LOWER)
    say(f"memory per connected peer ({s.swarm_k} peers)")
    with Procs(logdir) as procs:
        try:
            hub = procs.worker("hub", "ourproc", "hub", "2")
            address = hub.expect(60, "address")["address"]
            swarm = procs.worker("swarm", "ourproc", "swarm", str(s.swarm_k), address)
            swarm.expect(120, "swarm connected")
            got = hub.request(120, cmd="measure", k=s.swarm_k, timeout_s=60, settle_s=3.0)
        except Exception as exc:
            why = f"failed: {type(exc).__name__}: {exc}"[:200]
            row.add(Measurement("ours, hub", None, "B/peer", ours=True, note=why))
            return [row]
    k = int(got["peers"])
    row.add(
        Measurement(
            "ours, hub's Python heap (tracemalloc)",
            got["traced_delta"] / k,
            "B/peer",
            ours=True,
            extra=got,
        )
    )
    row.add(
        Measurement(
            "ours, hub's RSS delta",
            got["rss_delta_kib"] * 1024 / k,
            "B/peer",
            ours=True,
            extra=got,
        )
    )
    row.notes.append(
        f"the hub (its own process) measured before and 3 s after {k} nodes of another "
        "process connected to it"
    )
    return [row]


def row_local(s: Settings, logdir: Path) -> list[Row]:
    row = Row("local", f"local dispatch, one subscriber, best of {s.reps} x {s.local_n:,}", LOWER)

    def ours() -> Measurement:
        with Procs(logdir) as procs:
            w = procs.worker("local", "ourproc", "local", str(s.local_n), str(s.reps))
            got = w.expect(300, "local figure")
        return Measurement("ours, Node.publish", got["us_per_event"], "µs/ev", ours=True)

    def blinker() -> Measurement:
        need_module("blinker", "blinker")
        with Procs(logdir) as procs:
            w = procs.worker("blinker", "peers.blinker_local", str(s.local_n), str(s.reps))
            got = w.expect(300, "blinker figure")
        return Measurement("blinker signal.send", got["us_per_event"], "µs/ev")

    row.add(guarded("ours, Node.publish", "µs/ev", ours, ours=True))
    row.add(guarded("blinker signal.send", "µs/ev", blinker))
    return [row]


#: ``--only`` names, in the order the table shows them.
ROWS: dict[str, Callable[[Settings, Path], list[Row]]] = {
    "local": row_local,
    "throughput": row_throughput,
    "rtt": row_rtt,
    "alarm": row_alarm,
    "scream": row_scream,
    "rss": row_rss,
    "dedup": row_dedup,
    "peers": row_peer_memory,
}
