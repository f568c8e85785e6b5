"""Shared helpers for multi-node tests on the simulated network (on pythonpath)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from node.config import NodeConfig
from node.node import Node, open_node
from node.sim import SimNetwork

COOKIE = "test-cookie-1234"


def config(name: str, **kw: Any) -> NodeConfig:
    base: dict[str, Any] = dict(name=name, listen=f"{name}:7401", cookie=COOKIE)
    base.update(kw)
    return NodeConfig(**base)


@asynccontextmanager
async def cluster(
    net: SimNetwork, names: list[str], *, seed: str | None = None, **kw: Any
) -> AsyncIterator[dict[str, Node]]:
    """Start nodes in order; every node but the first gets the first as its only seed."""
    first = seed or names[0]
    async with AsyncExitStack() as stack:
        nodes: dict[str, Node] = {}
        for name in names:
            seeds = [] if name == first else [f"{first}:7401"]
            cfg = config(name, seeds=seeds, **kw)
            nodes[name] = await stack.enter_async_context(
                open_node(cfg, transport=net.transport(name))
            )
        yield nodes


@asynccontextmanager
async def meshed_cluster(
    names: list[str], *, net: SimNetwork | None = None, limit: float = 120.0, **kw: Any
) -> AsyncIterator[dict[str, Node]]:
    """:func:`cluster` on a simulated network (a new one unless given), once every
    node is connected to every other; all of it bounded by ``limit`` seconds."""
    with trio.fail_after(limit):
        async with cluster(net or SimNetwork(), names, **kw) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            yield nodes


async def wait_for(
    predicate: Callable[[], bool], *, limit: float = 60.0, step: float = 0.05
) -> float:
    """Poll until ``predicate()``; return the virtual time it took. TooSlowError past limit."""
    start = trio.current_time()
    with trio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - polls state owned by other tasks
            await trio.sleep(step)
    return trio.current_time() - start


def full_mesh(nodes: dict[str, Node]) -> bool:
    for name, node in nodes.items():
        others = set(nodes) - {name}
        states = node.topology()["peer_states"]
        connected = {p for p, state in states.items() if state["connected"]}
        if not others <= connected:
            return False
    return True


# --- real sockets on 127.0.0.1 (real clock) ------------------------------------------

#: Timings that let a real-TCP cluster form and decide in well under a second.
FAST_TCP: dict[str, Any] = dict(
    heartbeat_interval_s=0.1,
    check_interval_s=0.1,
    stable_after_s=0.3,
    acceptable_heartbeat_pause_s=1.0,
    reconnect_base_s=0.05,
    reconnect_max_s=0.5,
)


async def until(predicate: Callable[[], Any], limit: float = 20.0) -> None:
    """Poll ``predicate()`` on the real clock; TooSlowError past ``limit`` seconds."""
    with trio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - polls state owned by other tasks
            await trio.sleep(0.02)


def meshed(nodes: list[Node]) -> bool:
    """Every node connected to every other."""
    names = {n.name for n in nodes}
    return all(
        {p for p, link in n.bridge.peers.items() if link.connected} >= names - {n.name}
        for n in nodes
    )
