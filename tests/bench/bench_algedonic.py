"""Benchmark: confirmed algedonic latency to 4 peers, 5 OS processes on 127.0.0.1.

Run on demand: ``python tests/bench/bench_algedonic.py [N] [MODE]``. This
process runs node ``a``; four child processes each run one node (``b`` .. ``e``)
that joins ``a``. Node ``a`` screams N times in turn (each call waits for all
four confirmations) with the cluster idle, then again while S1 is flooded
(``task_execution`` published as fast as each process can), in one of these
modes:

* ``a-lifted`` (default): only ``a`` floods, its S1 quota lifted, so its lanes
  to all four peers are full and its writers never idle;
* ``a-default``: only ``a`` floods, at its default S1 quota (variety control
  admits 1000/s to the peers and folds or throttles the rest), as an
  unconfigured node does;
* ``all-paced``: all five offer S1 at 10,000 events/s each (ten times the
  default quota; variety control admits 1000/s and folds or throttles the rest);
* ``all-default``: all five nodes flood at the default S1 quota (1000/s admitted
  per node, the rest compressed or throttled by variety control);
* ``all-lifted``: all five flood with the quota lifted (plain CPU overload);
* ``a-send``: only ``a`` floods, quota lifted, with ``await node.send`` (the
  producer waits while a peer's queue is deep) instead of ``publish``.

Prints p50/p95/p99/max of the call's ``latency_ms`` (until the last
confirmation) and which path the confirmations came by. Goal: p99 under 10 ms.
With ``--json`` it also writes one JSON line with every latency at the end: the
harness (``python -m tests.bench``, row ``scream``) runs it so, in mode ``a-lifted``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from typing import Any

import trio

from node import NodeConfig, open_node
from node.core.events import Event
from node.runtime.gctune import tune_gc

try:
    from .proto import emit
except ImportError:  # run as a script: python tests/bench/bench_algedonic.py
    from proto import emit  # type: ignore[no-redef]

COOKIE = "bench-algedonic-1"
UNLIMITED = {"s1_operational": None}
# mode -> (S1 quota lifted, every node floods, events/s offered per node or None: flat out)
MODES: dict[str, tuple[bool, bool, float | None]] = {
    "a-lifted": (True, False, None),
    "a-default": (False, False, None),
    "all-paced": (False, True, 10_000.0),
    "all-default": (False, True, None),
    "all-lifted": (True, True, None),
    "a-send": (True, False, None),
}
SENDING = {"a-send"}  # modes whose flood uses send() (backpressure), not publish()
PEERS = ["b", "c", "d", "e"]
PAIN = {"type": "pain", "severity": 5, "source": "bench", "data": {"i": 0}}


async def flood(node: Any, on: list[bool], rate: float | None, send: bool = False) -> None:
    """Publish S1 events while ``on[0]``: ``rate`` per second, or flat out if None
    (with ``send``: each through ``await node.send``, as fast as the peers take them)."""
    i = 0
    while True:
        if on[0] and send:
            for _ in range(200):
                await node.send("task_execution", {"task": i, "worker": node.name, "ms": 1.5})
                i += 1
            continue
        if on[0]:
            for _ in range(200 if rate is None else int(rate / 100)):
                node.publish("task_execution", {"task": i, "worker": node.name, "ms": 1.5})
                i += 1
            if rate is None:
                await trio.lowlevel.checkpoint()
            else:
                await trio.sleep(0.01)
        else:
            await trio.sleep(0.01)


async def peer(name: str, seed: str, mode: str) -> None:
    lifted, _, rate = MODES[mode]
    quotas = UNLIMITED if lifted else None
    cfg = NodeConfig(name=name, listen="127.0.0.1:0", seeds=[seed], cookie=COOKIE, quotas=quotas)
    on = [False]

    def control(event: Event) -> None:
        if "bench_flood" in event.data:
            on[0] = bool(event.data["bench_flood"])

    async with open_node(cfg) as node, trio.open_nursery() as nursery:
        node.subscribe("policy_update", control)
        nursery.start_soon(flood, node, on, rate)
        with trio.move_on_after(600):  # bounded, whatever happens to the parent
            while True:
                await trio.sleep(0.5)
                if os.getppid() == 1:
                    break
        nursery.cancel_scope.cancel()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(max(math.ceil(p / 100 * len(ordered)), 1), len(ordered)) - 1]


async def lag_probe(lags: list[float]) -> None:
    """How late a 1 ms sleep wakes in a's loop: the scheduling delay every hop pays."""
    while True:
        t = time.perf_counter()
        await trio.sleep(0.001)
        lags.append((time.perf_counter() - t - 0.001) * 1000)


async def phase(a: Any, n: int, label: str) -> dict[str, Any]:
    latencies: list[float] = []
    lags: list[float] = []
    failed = 0
    before = dict(a.algedonic.stats()["acks_in"])
    received_before = sum(p["events_in"] for p in a.bridge.peer_states().values())
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lag_probe, lags)
        for i in range(n):
            result = await a.algedonic_scream({**PAIN, "data": {"i": i}})
            if result["failed"]:
                failed += 1
            else:
                latencies.append(result["latency_ms"])
            await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    took = time.perf_counter() - start
    acks = {k: v - before.get(k, 0) for k, v in a.algedonic.stats()["acks_in"].items()}
    received = sum(p["events_in"] for p in a.bridge.peer_states().values()) - received_before
    sent = sum(s["sent"] for s in a.variety_stats()["peers"].values())
    print(
        f"{label:<24} {n} screams to {len(PEERS)} peers: all confirmed {n - failed}/{n}; "
        f"latency_ms p50 {percentile(latencies, 50):.3f} p95 {percentile(latencies, 95):.3f} "
        f"p99 {percentile(latencies, 99):.3f} max {max(latencies):.3f}; "
        f"acks by path {acks}; S1 events into a during the phase {received} "
        f"({received / took:,.0f}/s); a has sent {sent} events in all; "
        f"a's loop lag ms p50 {percentile(lags, 50):.3f} p99 {percentile(lags, 99):.3f}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    return {"label": label, "n": n, "failed": failed, "latencies_ms": latencies, "acks": acks}


async def main(n: int, mode: str, as_json: bool = False) -> None:
    lifted, everyone, rate = MODES[mode]
    quotas = UNLIMITED if lifted else None
    config = NodeConfig(name="a", listen="127.0.0.1:0", cookie=COOKIE, quotas=quotas)
    async with open_node(config) as a:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        procs = [
            subprocess.Popen(  # noqa: ASYNC220 - started once, before the measurement
                [sys.executable, __file__, "--peer", name, a.address, mode], env=env
            )
            for name in PEERS
        ]
        try:
            with trio.fail_after(30):
                while not all(  # noqa: ASYNC110 - polls the bridge's state
                    a.bridge.peers.get(p) is not None and a.bridge.peers[p].connected for p in PEERS
                ):
                    await trio.sleep(0.05)
                while a.algedonic.datagrams.status != "open":  # noqa: ASYNC110
                    await trio.sleep(0.05)
            await trio.sleep(1)  # let the mesh settle
            phases = [await phase(a, n, "idle")]
            on = [True]
            async with trio.open_nursery() as nursery:
                # S5, so it is not queued behind a's own flood (general goes last)
                a.publish("policy_update", {"bench_flood": everyone})
                nursery.start_soon(flood, a, on, rate, mode in SENDING)
                await trio.sleep(1)  # the lanes fill
                phases.append(await phase(a, n, f"S1 flood ({mode})"))
                on[0] = False
                a.publish("policy_update", {"bench_flood": False})
                nursery.cancel_scope.cancel()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)
    if as_json:  # for the harness (python -m tests.bench, row "scream"): one JSON line
        emit({"mode": mode, "peers": len(PEERS), "phases": phases})


if __name__ == "__main__":
    # Every node process collects garbage as the daemon does (node.runtime.gctune);
    # VSM_BENCH_GC=default keeps CPython's defaults, to compare.
    if os.environ.get("VSM_BENCH_GC") != "default":
        tune_gc()
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        trio.run(peer, sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        args = [arg for arg in sys.argv[1:] if arg != "--json"]
        count = int(args[0]) if args else 300
        mode = args[1] if len(args) > 1 else "a-lifted"
        trio.run(main, count, mode, "--json" in sys.argv[1:])
