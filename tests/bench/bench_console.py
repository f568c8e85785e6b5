"""Benchmark: is the console responsive while the node is flooded?

Run on demand: ``python tests/bench/bench_console.py``. A 5-node demo (real
clock, synthetic load) runs headless; n1 floods S1 at 4x its quota. Prints,
for quiet and flooded periods: the cost of one panel refresh (snapshot of the
facade + every panel updated + the repaint), and the UI's latency, i.e. how late a 50 ms
asyncio timer fires (how long a key press would wait for its turn).
Goal: refresh p99 < 50 ms and timer lateness p99 < 100 ms while flooded
(refreshes run at 3 Hz, so that keeps the UI usable).
"""

from __future__ import annotations

import asyncio
import statistics
import time

from console.app import make_app
from console.demo import DemoOptions
from console.session import Session

PERIOD_S = 8.0
TICK_S = 0.05


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(refresh: list[float], seconds: float) -> tuple[list[float], list[float]]:
    """Timer lateness over ``seconds``, and the app's own refreshes in that time."""
    late: list[float] = []
    start = len(refresh)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        await asyncio.sleep(TICK_S)
        late.append((time.perf_counter() - t - TICK_S) * 1000)
    return refresh[start:], late


async def main() -> None:
    app = make_app(Session(demo=DemoOptions(nodes=5)))
    refresh: list[float] = []
    panels = app.refresh_panels

    def timed() -> None:
        t = time.perf_counter()
        panels()
        # the screen repaints after the handler; count that too
        app.call_after_refresh(lambda: refresh.append((time.perf_counter() - t) * 1000))

    app.refresh_panels = timed  # type: ignore[method-assign]
    async with app.run_test(size=(140, 44)) as pilot:
        demo = app.session.demo
        assert demo is not None
        while len(demo.nodes) < 5:
            await pilot.pause(0.1)
        await pilot.pause(3.0)
        quiet = await measure(refresh, PERIOD_S)
        demo.flood("n1", seconds=PERIOD_S + 5)
        await pilot.pause(1.0)
        offered = demo.nodes["n1"].variety.stats()["s1_operational"]["offered"]
        flooded = await measure(refresh, PERIOD_S)
        offered = demo.nodes["n1"].variety.stats()["s1_operational"]["offered"] - offered
    print(f"flood: n1 offered {offered / PERIOD_S:,.0f} S1 events/s (quota 1,000)")
    for name, (times, late) in (("quiet", quiet), ("flooded", flooded)):
        print(
            f"{name:8} refresh+repaint ms p50 {statistics.median(times):6.1f} "
            f"max {max(times):6.1f} (n={len(times)}) | 50 ms timer late ms "
            f"p50 {statistics.median(late):6.1f} p99 {pct(late, 0.99):6.1f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
