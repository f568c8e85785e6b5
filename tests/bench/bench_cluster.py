"""Benchmark: end-to-end replication over real TCP on 127.0.0.1.

Run on demand: ``python tests/bench/bench_cluster.py [N]``. Two nodes; node a
publishes N events (under quota and, separately, with quotas lifted) and we
time until node b has delivered them all. Prints events/s and µs/event.
"""

from __future__ import annotations

import sys
import time

import trio

from node import NodeConfig, open_node
from node.core.events import Event

UNLIMITED = {c: None for c in ("s1_operational", "general")}


async def run(n: int, quotas: dict[str, float | None] | None, label: str) -> None:
    cookie = "bench-cookie-123"
    async with open_node(
        NodeConfig(name="a", listen="127.0.0.1:0", cookie=cookie, quotas=quotas)
    ) as a:
        cfg_b = NodeConfig(name="b", listen="127.0.0.1:0", seeds=[a.address], cookie=cookie)
        async with open_node(cfg_b) as b:
            with trio.fail_after(30):
                while not b.topology()["peer_states"].get("a", {}).get("connected"):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            got = 0

            def count(_: Event) -> None:
                nonlocal got
                got += 1

            b.subscribe("task_execution", count)
            start = time.perf_counter()
            publish_start = start
            for i in range(n):
                a.publish("task_execution", {"task": f"t{i}", "worker": "w3", "ms": 12.5})
                if i % 100 == 99:
                    await trio.lowlevel.checkpoint()  # let the writer run, as a producer would
            publish_s = time.perf_counter() - publish_start
            stats = a.variety_stats()["peers"]["b"]
            expected = (
                stats["offered"] - stats["compressed"] - stats["throttled"] - stats["dropped"]
            )
            with trio.fail_after(120):
                while got < expected:  # noqa: ASYNC110 - counted by a callback
                    await trio.sleep(0.001)
            total = time.perf_counter() - start
            print(
                f"{label:<28} published {n:>7} in {publish_s * 1e3:7.1f} ms "
                f"({publish_s / n * 1e6:5.2f} µs/publish); "
                f"b delivered {got:>7} in {total * 1e3:7.1f} ms "
                f"= {got / total:>9,.0f} events/s "
                f"(compressed {stats['compressed']}, throttled {stats['throttled']}, "
                f"dropped {stats['dropped']})"
            )


async def main(n: int) -> None:
    await run(n, UNLIMITED, "s1 quota lifted")
    await run(min(n, 5_000), None, "default quotas (s1 1000/s)")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
