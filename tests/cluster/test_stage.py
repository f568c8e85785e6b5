"""The staged publish path (Replicator.replicate / drain_stage) and batch delivery.

While every connected peer's writer is sure to run soon, ``publish`` only
appends to the stage; the writer (or a reader of the queues) admits and queues
the whole burst in one pass. These tests hold it to what the direct path
promised: exactly once, in order, counted, alarms first, no wait behind a
blocked writer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from vsmtest import meshed_cluster, wait_for

from node.core.events import Channel, Event
from node.node import Node
from node.runtime.replication import STAGE_MAX, Replicator
from node.sim import SimNetwork

pytestmark = pytest.mark.trio


@asynccontextmanager
async def pair(key: str) -> AsyncIterator[tuple[Node, list[Event]]]:
    """Nodes a and b, meshed; what b's subscriber to ``key`` receives."""
    async with meshed_cluster(["a", "b"]) as nodes:
        got: list[Event] = []
        nodes["b"].subscribe(key, got.append)
        yield nodes["a"], got


def staged_burst(a: Node, n: int) -> Replicator:
    """Publish events 0..n-1 without yielding: the first wakes the writer, the
    rest wait in the stage. Returns a's replicator."""
    replication = a.bridge.replication
    for i in range(n):
        a.publish("task_execution", {"i": i})
    assert replication.stage_open and len(replication.staged) == n - 1
    return replication


def accounted(stats: dict[str, int]) -> int:
    return sum(
        stats[k] for k in ("sent", "queued", "backlogged", "dropped", "compressed", "throttled")
    )


async def test_a_burst_is_staged_then_queued_whole_and_delivered_once_in_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with pair("task_execution") as (a, got):
        replication = a.bridge.replication
        sent = [a.publish("task_execution", {"i": 0})]  # wakes the writer
        assert replication.stage_open
        sent += [a.publish("task_execution", {"i": i}) for i in range(1, 100)]
        assert len(replication.staged) == 99  # nothing admitted or queued yet
        stats = a.variety_stats()  # a reader of the counters drains the stage
        assert not replication.staged and not replication.stage_open
        assert stats["peers"]["b"]["offered"] == 100 == accounted(stats["peers"]["b"])
        assert stats["channels"]["s1_operational"]["offered"] == 100
        await wait_for(lambda: len(got) >= 100)
        await trio.sleep(1)
        assert [e.id for e in got] == [e.id for e in sent]
        assert a.variety_stats()["peers"]["b"]["sent"] == 100


async def test_the_writer_drains_the_stage_and_a_producer_that_never_yields_is_capped(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with pair("task_execution") as (a, got):
        replication = a.bridge.replication
        most = 0
        for i in range(3 * STAGE_MAX):
            a.publish("task_execution", {"i": i})
            most = max(most, len(replication.staged))
        assert most == STAGE_MAX - 1  # publish drains it at the cap itself
        await wait_for(lambda: len(got) >= 3 * STAGE_MAX)
        assert not replication.staged
        assert [e.data["i"] for e in got] == list(range(3 * STAGE_MAX))


async def test_an_alarm_is_never_staged_and_overtakes_the_burst(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with pair("*") as (a, got):
        replication = staged_burst(a, 50)
        alarm = a.publish("system_panic", {"why": "test"})
        assert alarm.channel is Channel.ALGEDONIC
        assert alarm not in replication.staged  # queued at once, in its own lane
        await wait_for(lambda: len(got) >= 51)
        assert got[0].id == alarm.id  # ahead of every staged S1 event


async def test_an_alarm_that_closes_the_stage_queues_what_waits_there_first(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pair("*") as (a, got):
        replication = staged_burst(a, 20)
        # As if a write to b had begun meanwhile (another sender on the stream):
        # the alarm's replicate closes the stage, and must leave nothing in it.
        framed = a.bridge.peers["b"].framed
        assert framed is not None
        with monkeypatch.context() as patch:
            patch.setattr(type(framed), "sending", property(lambda _: True))
            alarm = a.publish("system_panic", {"why": "test"})
            assert not replication.stage_open and not replication.staged
        a.publish("task_execution", {"i": 20})
        await wait_for(lambda: len(got) >= 22)
        s1 = [e.data["i"] for e in got if e.id != alarm.id]
        assert s1 == list(range(21))  # nothing published later overtook them


async def test_a_writer_blocked_on_one_peer_never_holds_events_for_another(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork(send_buffer=4096)  # a small TCP window fills fast
    async with meshed_cluster(["a", "b", "c"], net=net) as nodes:
        a, got = nodes["a"], []
        nodes["b"].subscribe("task_execution", got.append)
        net.cut("a", "c", one_way=True)  # a's writer to c blocks in a write
        for i in range(200):
            a.publish("task_execution", {"i": i, "pad": "x" * 200})
        await wait_for(lambda: len(got) >= 200)
        assert a.bridge.peers["c"].framed is not None
        assert a.bridge.peers["c"].framed.sending
        # No staging while a write blocks (the stage would wait for it to
        # end), and a sporadic producer's every event reaches b at once.
        for i in range(5):
            event = a.publish("task_execution", {"i": 1000 + i})
            assert not a.bridge.replication.stage_open
            took = await wait_for(lambda e=event: got[-1].id == e.id, step=0.0005)
            assert took < 0.005


async def test_a_batch_reaches_a_lone_subscriber_that_may_cancel_or_fail(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with meshed_cluster(["a", "b"]) as nodes:
        a, b = nodes["a"], nodes["b"]
        first: list[Event] = []
        late: list[Event] = []

        def take_three(event: Event) -> None:
            first.append(event)
            if event.data["i"] == 1:
                raise RuntimeError("a subscriber's bug")  # counted, not fatal
            if len(first) == 3:
                sub.cancel()
                b.subscribe("task_execution", late.append)  # from the next batch

        sub = b.subscribe("task_execution", take_three)
        for i in range(10):  # one frame: one run at b
            a.publish("task_execution", {"i": i})
        await wait_for(lambda: a.variety_stats()["peers"]["b"]["sent"] == 10)
        assert [e.data["i"] for e in first] == [0, 1, 2]
        assert b.delivery_errors == 1
        assert late == []  # subscribed during the batch: none of it
        a.publish("task_execution", {"i": 10})
        await wait_for(lambda: len(late) == 1)
        assert late[0].data["i"] == 10
