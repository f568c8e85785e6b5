"""Benchmark: encode + decode + validation of a typical event, single and batched.

Run on demand: ``python tests/bench/bench_wire.py``. Prints µs per event.
Not a test: timing goals live here, never in the test suite.
"""

from __future__ import annotations

import time

from node.core.batch import Run
from node.core.events import Channel, Event
from node.core.hlc import HLC
from node.core.wire import Decoder, Events, encode


def typical_events(n: int) -> list[Event]:
    clock = HLC("node-a")
    return [
        Event(
            "task_execution",
            Channel.S1_OPERATIONAL,
            {"task": f"t{i}", "worker": "w3", "duration_ms": 12.5 + i % 7, "ok": True},
            "node-a",
            clock.now(),
        )
        for i in range(n)
    ]


def run(batch: int, total: int) -> float:
    events = typical_events(batch)
    msg = Events.of(events)
    decoder = Decoder()
    rounds = max(total // batch, 1)
    start = time.perf_counter()
    for _ in range(rounds):
        decoder.feed(encode(msg))
        for frame in decoder:
            assert isinstance(frame, Events)
            for item in frame.items:  # what the receiver checks and builds
                if isinstance(item, Run):
                    if item.events(8) is None:
                        raise AssertionError("a typical run took the per-event path")
                else:
                    Event.from_wire(item)
    elapsed = time.perf_counter() - start
    return elapsed / (rounds * batch) * 1e6


def main() -> None:
    size = len(encode(Events.of(typical_events(1))))
    print(f"typical event frame: {size} bytes")
    base = None
    for batch in (1, 10, 100, 1000):
        best = min(run(batch, 50_000) for _ in range(3))
        base = base or best
        ratio = base / best
        print(f"batch {batch:>5}: {best:6.2f} µs/event encode+decode+check (x{ratio:4.1f})")


if __name__ == "__main__":
    main()
