"""``--demo``: N real nodes on the simulated network, synthetic load, injected faults.

Every node is a full :class:`node.Node` (the same code as the daemon) on a
:class:`node.sim.SimNetwork`, all in one trio run (the console's guest run).
Faults are the simulated network's own (cut, one-way cut, isolate, heal), plus
killing a node (its links reset, like a crashed process, then its task is
cancelled) and restarting it with a new incarnation. Switching strategy is a
rolling restart: ``NodeConfig`` is frozen and the strategy is part of it, so
each node is stopped and started again with the new one, as an operator would
have to do with daemons.

This module uses trio and never textual; the console calls its synchronous
fault methods from the UI thread (trio runs as a guest on the same thread).
"""

from __future__ import annotations

import contextvars
import logging
import math
from typing import Any

import attrs
import trio
import trio.lowlevel

from node.config import NodeConfig
from node.errors import DegradedError, VsmError
from node.node import Node, open_node
from node.sim import SimNetwork

log = logging.getLogger("vsm.demo")

# The node a trio task belongs to: set where a node is started and inherited by
# every task it spawns, so the console can tell whose log record it is.
NODE_NAME: contextvars.ContextVar[str] = contextvars.ContextVar("vsm_node_name", default="")

DEFAULT_NODES = 5
DEMO_COOKIE = "vsm-demo-cookie-not-secret"
DEMO_PORT = 7401
OBSERVER = "op"
STRATEGIES = ("static_quorum", "dynamic_weights", "vsm_health", "manual")

# Synthetic load per node, events per second, by channel: well under the
# quotas (S1 1000/s) so that pressure is low until a flood.
LOAD_RATES: dict[str, tuple[str, float]] = {
    "s1_operational": ("task_execution", 40.0),
    "s2_coordination": ("synchronization", 10.0),
    "s3_control": ("resource_allocation", 5.0),
    "s4_intelligence": ("environment_scan", 2.0),
    "s5_policy": ("policy_update", 0.5),
}
LOAD_TICK_S = 0.1
FLOOD_RATE = 4000.0  # S1 events per second during a flood: four times the quota
FLOOD_SECONDS = 15.0
# A flood publishes in slices of at most this many events per tick, so the UI
# (sharing the thread) gets a turn between slices.
FLOOD_SLICE = 100


@attrs.define
class DemoOptions:
    nodes: int = DEFAULT_NODES
    strategy: str = "static_quorum"
    stable_after_s: float = 3.0
    load_scale: float = 1.0
    seed: int = 0
    observer: bool = False  # add "op", an observer outside the vote, and view from it

    def __attrs_post_init__(self) -> None:
        if not 2 <= self.nodes <= 9:
            raise ValueError(f"the demo runs 2 to 9 nodes, not {self.nodes}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}")


class DemoCluster:
    """The simulated cluster: node tasks, load, floods and faults."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.names = [f"n{i}" for i in range(1, options.nodes + 1)]
        if options.observer:
            self.names.append(OBSERVER)
        self.net = SimNetwork(seed=options.seed)
        self.strategy = options.strategy
        self.nodes: dict[str, Node] = {}
        self.killed: set[str] = set()
        self.isolated: set[str] = set()
        self.cuts: set[tuple[str, str]] = set()  # (a, b), a < b
        self.one_way: set[tuple[str, str]] = set()  # (from, to)
        self.flood_until: dict[str, float] = {}
        self.refused_degraded = 0  # synthetic governance events a degraded node refused
        self.restarting = False
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def config(self, name: str) -> NodeConfig:
        first = self.names[0]
        return NodeConfig(
            name=name,
            cluster="demo",
            listen=f"{name}:{DEMO_PORT}",
            cookie=DEMO_COOKIE,
            seeds=[] if name == first else [f"{first}:{DEMO_PORT}"],
            strategy=self.strategy,
            stable_after_s=self.options.stable_after_s,
            role="observer" if name == OBSERVER else "member",
        )

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start every node (the first one listening before the rest), then the load."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for name in self.names:
                await nursery.start(self._run_node, name)
            if self.options.load_scale > 0:
                nursery.start_soon(self._load)
            task_status.started()

    async def _run_node(self, name: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        NODE_NAME.set(name)
        with trio.CancelScope() as scope:
            self._scopes[name] = scope
            try:
                async with open_node(self.config(name), transport=self.net.transport(name)) as n:
                    self.nodes[name] = n
                    self.killed.discard(name)
                    task_status.started()
                    await trio.sleep_forever()
            except (VsmError, OSError) as exc:
                log.error("demo node %s stopped: %s", name, exc)
            finally:
                self.nodes.pop(name, None)
                self._scopes.pop(name, None)

    def alive(self, name: str) -> bool:
        return name in self.nodes

    def kill(self, name: str) -> None:
        """Stop a node as a crash would: its connections reset, then its task ends."""
        self._check(name)
        if name not in self.nodes:
            raise ValueError(f"{name} is not running")
        for other in self.names:
            if other != name:
                self.net.reset(name, other)
        self.killed.add(name)
        self._scopes[name].cancel()

    def start(self, name: str) -> None:
        """Start a killed node again (a new incarnation, same name and address)."""
        self._check(name)
        if name in self.nodes or name in self._scopes:
            raise ValueError(f"{name} is already running")
        assert self._nursery is not None
        self._nursery.start_soon(self._run_node, name)

    async def switch_strategy(self, strategy: str) -> None:
        """Rolling restart of every running node with ``strategy`` (config is frozen)."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}")
        if self.restarting:
            raise ValueError("a strategy switch is already in progress")
        self.strategy = strategy
        self.restarting = True
        try:
            assert self._nursery is not None
            for name in self.names:
                scope = self._scopes.get(name)
                if scope is None:
                    continue  # killed nodes get the new strategy when started
                scope.cancel()
                while name in self._scopes:  # noqa: ASYNC110 - waits for the node task's exit
                    await trio.sleep(0.05)
                await self._nursery.start(self._run_node, name)
        finally:
            self.restarting = False

    # --- faults --------------------------------------------------------------------------

    def _check(self, *names: str) -> None:
        for name in names:
            if name not in self.names:
                raise ValueError(f"no demo node {name!r}")

    def cut(self, a: str, b: str) -> None:
        self._check(a, b)
        self.net.cut(a, b)
        self.cuts.add((min(a, b), max(a, b)))

    def split(self, side: list[str]) -> None:
        """Cut every link between ``side`` and the other nodes (a clean partition)."""
        self._check(*side)
        for a in side:
            for b in self.names:
                if b not in side:
                    self.cut(a, b)

    def cut_one_way(self, src: str, dst: str) -> None:
        self._check(src, dst)
        self.net.cut(src, dst, one_way=True)
        self.one_way.add((src, dst))

    def heal(self, a: str, b: str) -> None:
        self._check(a, b)
        self.net.heal(a, b)
        self.cuts.discard((min(a, b), max(a, b)))
        self.one_way -= {(a, b), (b, a)}
        self._reapply()

    def isolate(self, name: str) -> None:
        self._check(name)
        self.net.isolate(name)
        self.isolated.add(name)

    def rejoin(self, name: str) -> None:
        self._check(name)
        self.net.rejoin(name)
        self.isolated.discard(name)
        self.cuts = {c for c in self.cuts if name not in c}
        self.one_way = {c for c in self.one_way if name not in c}
        self._reapply()

    def heal_all(self) -> None:
        self.net.heal_all()
        self.cuts.clear()
        self.one_way.clear()
        self.isolated.clear()

    def _reapply(self) -> None:
        # heal/rejoin act on links; faults recorded elsewhere (an isolated node) stay.
        for name in self.isolated:
            self.net.isolate(name)

    def flood(self, name: str, seconds: float = FLOOD_SECONDS) -> None:
        """Make ``name`` publish S1 events at FLOOD_RATE for ``seconds``."""
        self._check(name)
        flooding = self.flood_until.get(name, 0.0) > trio.current_time()
        self.flood_until[name] = trio.current_time() + seconds
        if not flooding:
            assert self._nursery is not None
            self._nursery.start_soon(self._flood, name)

    def faults(self) -> list[str]:
        """The faults in force, in words, for the header and the log."""
        out = [f"{a} x {b}" for a, b in sorted(self.cuts)]
        out += [f"{a} -> {b} cut" for a, b in sorted(self.one_way)]
        out += [f"{n} isolated" for n in sorted(self.isolated)]
        out += [f"{n} killed" for n in sorted(self.killed)]
        now = trio.current_time()
        out += [f"{n} flooding S1" for n, t in sorted(self.flood_until.items()) if t > now]
        return out

    # --- load ------------------------------------------------------------------------------

    async def _load(self) -> None:
        """Publish the synthetic S1-S5 load (and floods) from every running node.

        Rates follow a slow sine per node so the plots move; fractional events
        carry over between ticks so the long-run rate is exact.
        """
        carry: dict[tuple[str, str], float] = {}
        start = trio.current_time()
        scale = self.options.load_scale
        while True:
            await trio.sleep(LOAD_TICK_S)
            now = trio.current_time()
            for index, (name, node) in enumerate(list(self.nodes.items())):
                wave = 1.0 + 0.5 * math.sin((now - start) / 20.0 + index)
                for channel, (event_type, rate) in LOAD_RATES.items():
                    key = (name, channel)
                    due = carry.get(key, 0.0) + rate * scale * wave * LOAD_TICK_S
                    count = int(due)
                    carry[key] = due - count
                    try:
                        for _ in range(count):
                            node.publish(event_type, {"load": "synthetic", "channel": channel})
                    except DegradedError:
                        # outside the surviving side a node may not originate
                        # governance: count it, as a real producer would see it
                        self.refused_degraded += count

    async def _flood(self, name: str) -> None:
        """Publish S1 events from ``name`` at FLOOD_RATE until its flood time is over."""
        while trio.current_time() < self.flood_until.get(name, 0.0):
            await trio.sleep(LOAD_TICK_S)
            remaining = int(FLOOD_RATE * LOAD_TICK_S)
            while remaining > 0:
                node = self.nodes.get(name)
                if node is None:
                    return  # killed mid-flood
                for _ in range(min(FLOOD_SLICE, remaining)):
                    node.publish("task_execution", {"load": "flood"})
                remaining -= FLOOD_SLICE
                await trio.lowlevel.checkpoint()
