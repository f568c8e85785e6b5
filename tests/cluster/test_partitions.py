"""Partition detection and resolution end to end on the simulated network."""

from __future__ import annotations

import pytest
import trio
from vsmtest import cluster, full_mesh, wait_for

from node.core.events import Event
from node.errors import ResolutionError
from node.sim import SimNetwork

pytestmark = pytest.mark.trio

FAST = dict(stable_after_s=3.0)


def split(net: SimNetwork, left: list[str], right: list[str]) -> None:
    for a in left:
        for b in right:
            net.cut(a, b)


async def test_healthy_full_mesh(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    with trio.fail_after(120):
        async with cluster(net, ["a", "b", "c"], **FAST) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            await trio.sleep(5)
            for node in nodes.values():
                status = await node.check_partitions()
                assert status["status"] == "healthy"
                assert status["components"] == [["a", "b", "c"]]
                assert status["decision"]["survivors"] == ["a", "b", "c"]


async def test_static_quorum_split_3_2(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    names = ["a", "b", "c", "d", "e"]
    with trio.fail_after(300):
        async with cluster(net, names, **FAST) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            await trio.sleep(3)
            split(net, ["a", "b", "c"], ["d", "e"])
            await wait_for(
                lambda: all(
                    n.partition_status()["status"] in ("partitioned", "degraded")
                    for n in nodes.values()
                ),
                limit=120,
            )
            for name in "abc":
                st = nodes[name].partition_status()
                assert st["status"] == "partitioned", st
                assert st["decision"]["survivors"] == ["a", "b", "c"]
            for name in "de":
                st = nodes[name].partition_status()
                assert st["status"] == "degraded", st
                assert st["decision"]["survivors"] == []
            net.heal_all()
            await wait_for(
                lambda: all(n.partition_status()["status"] == "healthy" for n in nodes.values()),
                limit=120,
            )


async def test_manual_waits_alarms_and_operator_resolves(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    names = ["a", "b", "c", "d"]
    with trio.fail_after(300):
        async with cluster(net, names, strategy="manual", **FAST) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            pains: list[Event] = []
            nodes["a"].subscribe("algedonic_pain", pains.append)
            await trio.sleep(3)
            split(net, ["a", "b"], ["c", "d"])
            await wait_for(
                lambda: all(
                    n.partition_status()["status"] == "awaiting_operator" for n in nodes.values()
                ),
                limit=120,
            )
            # a confirmed scream now (issue 9): the detector's words are the signal's data
            assert pains and pains[0].data["data"]["reason"] == "partition awaiting operator"
            assert pains[0].data["source"] == "partition_detector"
            with pytest.raises(ResolutionError, match="span 2 components"):
                await nodes["a"].resolve_partition(keep=["a", "c"])
            st = await nodes["a"].resolve_partition(keep=["a"], operator="alice")
            assert st["status"] == "partitioned"
            assert st["decision"]["survivors"] == ["a", "b"]
            # b hears of it over the wire; c and d cannot, and keep waiting
            await wait_for(lambda: nodes["b"].partition_status()["status"] == "partitioned")
            assert "alice via a" in nodes["b"].detector.resolutions[0]["operator"]
            await nodes["c"].check_partitions()
            assert nodes["c"].partition_status()["status"] == "awaiting_operator"


async def test_resolve_on_healthy_cluster_is_an_error(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with cluster(net, ["a", "b"], strategy="manual") as nodes:
            await wait_for(lambda: full_mesh(nodes))
            await trio.sleep(3)
            with pytest.raises(ResolutionError, match="healthy"):
                await nodes["a"].resolve_partition(keep=["a"])
