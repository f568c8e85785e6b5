"""Benchmark: cost of VarietyManager.admit per event, in each regime.

Run on demand: ``python tests/bench/bench_variety.py``. Prints µs per admit call.
Not a test: timing goals live here, never in the test suite. Goal: < 2 µs per call.

``now`` advances by 1 µs per call, so every call pays for refill and demand decay
as it would under a real clock. flush() runs every 1,000 calls, outside the timing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from node.core.events import Channel, Event
from node.core.hlc import HLC
from node.core.variety import VarietyManager

CALLS = 200_000
BATCH = 1_000
STEP_S = 1e-6
GOAL_US = 2.0


def typical_events(
    n: int,
    channel: Channel = Channel.S1_OPERATIONAL,
    etype: str = "task_execution",
    *,
    distinct: bool = False,
) -> list[Event]:
    """Events like bench_wire's; ``distinct`` gives each its own signature."""
    clock = HLC("node-a")
    return [
        Event(
            f"{etype}_{i}" if distinct else etype,
            channel,
            {"task": f"t{i}", "worker": "w3", "duration_ms": 12.5 + i % 7, "ok": True},
            "node-a",
            clock.now(),
        )
        for i in range(n)
    ]


def measure(make: Callable[[], VarietyManager], events: list[Event]) -> tuple[float, Counter[str]]:
    """(µs per admit over CALLS calls, verdict mix of one untimed run)."""
    vm = make()
    admit = vm.admit
    n = len(events)
    now = 1_000.0
    elapsed = 0.0
    for done in range(0, CALLS, BATCH):
        batch = [events[(done + i) % n] for i in range(BATCH)]
        nows = [now + i * STEP_S for i in range(BATCH)]
        start = time.perf_counter()
        for event, t in zip(batch, nows, strict=True):
            admit(event, t)
        elapsed += time.perf_counter() - start
        now = nows[-1] + STEP_S
        vm.flush(now)
    mix: Counter[str] = Counter()
    vm = make()
    for i in range(BATCH * 5):
        mix[vm.admit(events[i % n], 1_000.0 + i * STEP_S).name] += 1
    return elapsed / CALLS * 1e6, mix


SCENARIOS: list[tuple[str, Callable[[], VarietyManager], list[Event]]] = [
    (
        "under quota",
        lambda: VarietyManager({"s1_operational": 1e9}),
        typical_events(1_000),
    ),
    (
        "over quota, compressing",
        lambda: VarietyManager({"s1_operational": 1.0}),
        typical_events(1_000),
    ),
    (
        "over quota, throttling (lone signatures)",
        lambda: VarietyManager({"s1_operational": 1.0}, max_signatures=64),
        typical_events(1_000, distinct=True),
    ),
    (
        "quota 0 (closed channel)",
        lambda: VarietyManager({"s1_operational": 0}),
        typical_events(1_000),
    ),
    (
        "algedonic",
        lambda: VarietyManager(),
        typical_events(1_000, Channel.ALGEDONIC, "algedonic_pain"),
    ),
]


def main() -> None:
    print(f"VarietyManager.admit: {CALLS} calls per run, best of 5, goal < {GOAL_US} µs/call")
    for name, make, events in SCENARIOS:
        runs = [measure(make, events) for _ in range(5)]
        best = min(us for us, _ in runs)
        mix = ", ".join(
            f"{v} {c * 100 // sum(runs[0][1].values())}%" for v, c in runs[0][1].items()
        )
        flag = "ok" if best < GOAL_US else "OVER GOAL"
        print(f"  {name:<42} {best:5.2f} µs/call  {flag:<9} ({mix})")


if __name__ == "__main__":
    main()
