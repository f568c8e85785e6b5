"""Our node in its own OS process, driven by the harness (JSON lines, see proto.py).

``python -m tests.bench.ourproc ROLE ...``; roles:

- ``node NAME [SEED]``: one node through the public API (``open_node``,
  ``NodeConfig``, S1 quota lifted), listening on 127.0.0.1 and a free port; prints
  ``{"address": ...}`` and then serves commands (see :class:`Commands`).
- ``local N REPS``: in-process dispatch, publish -> one subscriber, µs/event.
- ``hub``: a node measuring its own memory (tracemalloc and RSS) before and
  after the ``swarm`` connects to it.
- ``swarm K HUB``: K nodes in one trio loop, each seeded with the hub.
- ``dedup CAPACITY...``: bytes per remembered id of ``Deduplicator``.

Everything here is bounded: loops by count, waits by ``move_on_after``.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import logging
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import trio

from node import Event, NodeConfig, open_node
from node.runtime.gctune import tune_gc

from .proto import MAX_WAIT_S, PAYLOAD, emit, error, parse

COOKIE = "bench-cookie-0123"
UNLIMITED: dict[str, float | None] = {"s1_operational": None}


def config(name: str, seeds: list[str] | None = None) -> NodeConfig:
    # VSM_BENCH_CONFIG='{"send_window": 512}' tries other settings (tuning runs)
    extra = json.loads(os.environ.get("VSM_BENCH_CONFIG", "{}"))
    return NodeConfig(
        name=name,
        listen="127.0.0.1:0",
        seeds=seeds or [],
        cookie=COOKIE,
        quotas=UNLIMITED,
        log_level="warning",
        **extra,
    )


class Lines:
    """Command lines from stdin, read by trio (cancellable, unlike a thread)."""

    def __init__(self) -> None:
        self._stream = trio.lowlevel.FdStream(os.dup(0))
        self._buf = b""

    async def next(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return parse(self._buf)
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return parse(line)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def connected(node: Any) -> list[str]:
    """Names of the peers this node is connected to (public facade: topology())."""
    states = node.topology()["peer_states"]
    return [name for name, st in states.items() if st.get("connected")]


async def wait_until(check: Callable[[], bool], limit_s: float, step: float = 0.01) -> bool:
    """Poll ``check`` until true (True) or ``limit_s`` passed (False)."""
    with trio.move_on_after(min(limit_s, MAX_WAIT_S)):
        while not check():  # noqa: ASYNC110 - the state is the node's, it has no Event to wait on
            await trio.sleep(step)
        return True
    return False


class Count:
    """Subscriber that counts deliveries and stamps the first and last (wall ns)."""

    def __init__(self) -> None:
        self.n = 0
        self.first_ns = 0
        self.last_ns = 0

    def __call__(self, _: Event) -> None:
        self.n += 1
        self.last_ns = time.time_ns()
        if self.n == 1:
            self.first_ns = self.last_ns


class Commands:
    """What the harness can ask of a ``node`` worker; each returns the reply."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.count = Count()
        self.replies: dict[int, trio.Event] = {}
        self.reply_ns: dict[int, int] = {}
        self.latencies_ns: list[int] = []

    async def cmd_wait_peer(self, name: str, timeout_s: float = 20.0) -> dict[str, Any]:
        if not await wait_until(lambda: name in connected(self.node), timeout_s):
            raise TimeoutError(f"not connected to {name} within {timeout_s:g} s")
        return {"connected": name}

    async def cmd_count(self, type: str = "task_execution") -> dict[str, Any]:
        self.node.subscribe(type, self.count)
        return {"ok": True}

    async def cmd_drain(self, expect: int, idle_s: float, timeout_s: float) -> dict[str, Any]:
        """Wait for ``expect`` deliveries, or ``idle_s`` without one (after the first)."""
        count = self.count
        last, last_change = count.n, time.monotonic()
        reason = "timeout"
        with trio.move_on_after(min(timeout_s, MAX_WAIT_S)):
            while True:
                if count.n >= expect:
                    reason = "all"
                    break
                if count.n != last:
                    last, last_change = count.n, time.monotonic()
                elif count.n and time.monotonic() - last_change > idle_s:
                    reason = "idle"
                    break
                await trio.sleep(0.005)
        return {
            "received": count.n,
            "first_ns": count.first_ns,
            "last_ns": count.last_ns,
            "reason": reason,
        }

    async def cmd_publish(self, n: int, every: int = 100, type: str = "task_execution") -> Any:
        """``publish`` n times, a checkpoint every ``every`` (a producer's loop)."""
        publish = self.node.publish
        checkpoint = trio.lowlevel.checkpoint
        t0 = time.time_ns()
        for i in range(n):
            publish(type, PAYLOAD)
            if i % every == every - 1:
                await checkpoint()
        return {"published": n, "t0_ns": t0, "t1_ns": time.time_ns()}

    async def cmd_send(self, n: int, flush_timeout_s: float, type: str = "task_execution") -> Any:
        """``await node.send`` n times, then ``await node.flush``; feature-detected."""
        send = getattr(self.node, "send", None)
        if not callable(send):
            return {"unavailable": "node.send is not available in this build"}
        t0 = time.time_ns()
        if n:  # the first call says whether send is async; the loop is what a user writes
            pending = send(type, PAYLOAD)
            if inspect.isawaitable(pending):
                await pending
                for _ in range(n - 1):
                    await send(type, PAYLOAD)
            else:
                for _ in range(n - 1):
                    send(type, PAYLOAD)
        t1 = time.time_ns()
        flush = getattr(self.node, "flush", None)
        if not callable(flush):
            return {"published": n, "t0_ns": t0, "t1_ns": t1, "flushed_ns": None}
        pending = flush(timeout=flush_timeout_s)
        if inspect.isawaitable(pending):
            await pending
        return {"published": n, "t0_ns": t0, "t1_ns": t1, "flushed_ns": time.time_ns()}

    async def cmd_echo(self, on: str, answer: str) -> dict[str, Any]:
        """Answer every ``on`` event with an ``answer`` event carrying the same data."""
        node = self.node
        node.subscribe(on, lambda event: node.publish(answer, event.data))
        return {"ok": True}

    async def cmd_rtt(
        self, m: int, warmup: int, timeout_s: float, total_s: float, ask: str, answer: str
    ) -> dict[str, Any]:
        """Publish ``ask``, wait for the peer's ``answer`` with the same seq; m times."""
        replies, reply_ns = self.replies, self.reply_ns

        def on_answer(event: Event) -> None:
            seq = event.data.get("seq")
            waiter = replies.pop(seq, None) if isinstance(seq, int) else None
            if waiter is not None:
                reply_ns[seq] = time.perf_counter_ns()
                waiter.set()

        sub = self.node.subscribe(answer, on_answer)
        samples: list[int] = []
        timeouts = 0
        with trio.move_on_after(min(total_s, MAX_WAIT_S)):
            for seq in range(warmup + m):
                waiter = replies[seq] = trio.Event()
                t0 = time.perf_counter_ns()
                self.node.publish(ask, {**PAYLOAD, "seq": seq})
                with trio.move_on_after(timeout_s):
                    await waiter.wait()
                if seq not in reply_ns:
                    replies.pop(seq, None)
                    timeouts += 1
                elif seq >= warmup:
                    samples.append(reply_ns.pop(seq) - t0)
        sub.cancel()
        return {"samples_ns": samples, "timeouts": timeouts}

    async def cmd_alarm_watch(self, type: str = "system_panic") -> dict[str, Any]:
        def on_alarm(event: Event) -> None:
            sent = event.data.get("sent_ns")
            if isinstance(sent, int):
                self.latencies_ns.append(time.time_ns() - sent)

        self.node.subscribe(type, on_alarm)
        return {"ok": True}

    async def cmd_alarm_take(self, expect: int, wait_s: float, idle_s: float) -> dict[str, Any]:
        """The latencies seen so far, once ``expect`` arrived, or none for ``idle_s``.

        Bounded by ``wait_s`` in all. Lost alarms never come: waiting ``idle_s``
        after the last one is enough to tell.
        """
        latencies = self.latencies_ns
        last, last_change = len(latencies), time.monotonic()

        def settled() -> bool:
            nonlocal last, last_change
            if len(latencies) >= expect:
                return True
            if len(latencies) != last:
                last, last_change = len(latencies), time.monotonic()
            return time.monotonic() - last_change > idle_s

        await wait_until(settled, wait_s)
        out, self.latencies_ns = latencies, []
        return {"latencies_ns": out}

    async def cmd_alarms(
        self, count: int, interval_s: float, flood: bool, flood_max: int, every: int = 100
    ) -> dict[str, Any]:
        """``count`` system_panic events ~``interval_s`` apart, with or without an S1 flood."""
        node = self.node
        sent = 0
        flooded = 0
        done = False

        async def alarms() -> None:
            nonlocal sent, done
            for k in range(count):
                await trio.sleep(interval_s)
                node.publish("system_panic", {"sent_ns": time.time_ns(), "k": k})
                sent += 1
            done = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(alarms)
            if flood:
                publish = node.publish
                checkpoint = trio.lowlevel.checkpoint
                while not done and flooded < flood_max:
                    for _ in range(every):
                        publish("task_execution", PAYLOAD)
                    flooded += every
                    await checkpoint()
        return {"alarms_sent": sent, "flooded": flooded}

    async def cmd_stats(self) -> dict[str, Any]:
        return {"variety": self.node.variety_stats(), "peers": self.node.topology()["peer_states"]}


async def serve(commands: Any, lines: Lines) -> None:
    for _ in range(100_000):
        cmd = await lines.next()
        name = cmd.pop("cmd", None)
        if name == "exit":
            return
        handler = getattr(commands, f"cmd_{name}", None)
        if handler is None:
            emit({"error": f"unknown command {name!r}"})
            continue
        try:
            emit(await handler(**cmd))
        except Exception as exc:
            emit(error(exc))


async def role_node(name: str, seed: str | None = None) -> None:
    lines = Lines()
    async with open_node(config(name, [seed] if seed else None)) as node:
        emit({"address": node.address, "name": node.name})
        await serve(Commands(node), lines)


async def role_local(n: int, reps: int) -> None:
    async with open_node(config("local")) as node:
        count = Count()
        node.subscribe("task_execution", count)
        publish = node.publish
        best = float("inf")
        for _ in range(reps):
            start = time.perf_counter()
            for _ in range(n):
                publish("task_execution", PAYLOAD)
            best = min(best, time.perf_counter() - start)
            await trio.lowlevel.checkpoint()
        if count.n != n * reps:
            raise RuntimeError(f"subscriber got {count.n} of {n * reps} events")
        emit({"us_per_event": best / n * 1e6, "delivered": count.n})


class HubCommands:
    def __init__(self, node: Any, base_traced: int, base_rss: int) -> None:
        self.node = node
        self.base_traced = base_traced
        self.base_rss = base_rss

    async def cmd_measure(self, k: int, timeout_s: float, settle_s: float) -> dict[str, Any]:
        if not await wait_until(lambda: len(connected(self.node)) >= k, timeout_s):
            raise TimeoutError(f"only {len(connected(self.node))} of {k} peers connected")
        await trio.sleep(settle_s)  # a few heartbeats: the steady state, not the handshake
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        return {
            "peers": len(connected(self.node)),
            "traced_delta": traced - self.base_traced,
            "rss_delta_kib": rss_kib() - self.base_rss,
        }


async def role_hub(settle_s: float) -> None:
    lines = Lines()
    tracemalloc.start()
    async with open_node(config("hub")) as node:
        await trio.sleep(settle_s)
        gc.collect()
        hub = HubCommands(node, tracemalloc.get_traced_memory()[0], rss_kib())
        emit({"address": node.address})
        await serve(hub, lines)


async def role_swarm(k: int, hub: str) -> None:
    lines = Lines()
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(open_node(config(f"s{i}", [hub]))) for i in range(k)
        ]
        ok = await wait_until(lambda: all("hub" in connected(n) for n in nodes), 60.0, 0.05)
        if not ok:
            emit({"error": "not every swarm node connected to the hub within 60 s"})
            return
        emit({"nodes": k})
        await serve(object(), lines)


def role_dedup(capacities: list[int]) -> None:
    from node.core.dedup import Deduplicator
    from node.core.hlc import HLC

    out = {}
    for capacity in capacities:
        clocks = [HLC(f"node-{s}") for s in range(4)]
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        dedup = Deduplicator(capacity)
        for i in range(capacity):
            clock = clocks[i % 4]
            dedup.seen(clock.node, clock.now())
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        remembered = len(dedup)
        out[str(capacity)] = {
            "remembered": remembered,
            "bytes": after - before,
            "bytes_per_id": (after - before) / remembered if remembered else None,
        }
        del dedup
    emit({"dedup": out})


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if os.environ.get("VSM_BENCH_GC") != "default":
        tune_gc()  # as the daemon does (VSM_BENCH_GC=default: CPython's settings)
    role, args = argv[0], argv[1:]
    try:
        if role == "node":
            trio.run(role_node, *args)
        elif role == "local":
            trio.run(role_local, int(args[0]), int(args[1]))
        elif role == "hub":
            trio.run(role_hub, float(args[0]))
        elif role == "swarm":
            trio.run(role_swarm, int(args[0]), args[1])
        elif role == "dedup":
            role_dedup([int(a) for a in args])
        else:
            emit({"error": f"unknown role {role!r}"})
    except Exception as exc:
        emit(error(exc))
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
