"""Delivery on the simulated network under MockClock: no idle floor, alarms first,
nothing lost to stalls, resets or clocks, backpressure in trio's idiom."""

from __future__ import annotations

import pytest
import trio
from vsmtest import cluster, full_mesh, wait_for

from node.core.events import Event
from node.errors import BackpressureTimeout
from node.runtime.datagrams import AlgedonicDatagrams
from node.sim import SimNetwork

pytestmark = pytest.mark.trio


async def test_a_lone_event_is_written_at_once(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with cluster(net, ["a", "b"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            await trio.sleep(0.5)
            arrived: list[float] = []
            nodes["b"].subscribe("task_execution", lambda e: arrived.append(trio.current_time()))
            sent_at = trio.current_time()
            nodes["a"].publish("task_execution", {"i": 1})
            await wait_for(lambda: bool(arrived), step=0.0001)
            # No batch timer: the network has no delay, so neither has the event.
            assert arrived == [sent_at]
            await nodes["a"].flush(timeout=1)
            assert nodes["a"].variety_stats()["peers"]["b"]["sent"] == 1
            # send() too: it yields when its last yield is a while ago, so a
            # sporadic sender's event is not held back by the batching of checks
            await trio.sleep(1)
            sent_at = trio.current_time()
            await nodes["a"].send("task_execution", {"i": 2})
            await wait_for(lambda: len(arrived) == 2, step=0.0001)
            assert arrived[1] == sent_at


async def test_alarm_overtakes_a_full_s1_lane(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    quotas = {"s1_operational": None}
    with trio.fail_after(120):
        async with cluster(net, ["a", "b"], quotas=quotas) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            order: list[str] = []
            nodes["b"].subscribe("*", lambda e: order.append(e.type))
            net.cut("a", "b", one_way=True)  # a's bytes to b are held: its lanes fill
            for i in range(5_000):
                nodes["a"].publish("task_execution", {"i": i})
            nodes["a"].publish("system_panic", {"why": "test"})
            await trio.sleep(0.1)
            net.heal("a", "b")
            await wait_for(lambda: len(order) == 5_001)
            # Only what was already written (at most the send window) came first.
            window = nodes["a"].config.send_window
            assert order.index("system_panic") <= window
            await nodes["a"].flush(timeout=5)
            stats = nodes["a"].variety_stats()["peers"]["b"]
            assert stats["sent"] == 5_001 and stats["dropped"] == 0


async def test_the_reader_and_the_writer_look_for_urgent_work_between_frames(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood keeps the scheduler busy for milliseconds a round; the replication
    reader and writers call the node's ``urgent`` (AlgedonicDatagrams.poll, which
    handles the alarm datagrams waiting) between the frames of a stream."""
    calls: dict[str, int] = {}

    def counting_poll(self: AlgedonicDatagrams) -> int:
        calls[self.name] = calls.get(self.name, 0) + 1
        return 0

    monkeypatch.setattr(AlgedonicDatagrams, "poll", counting_poll)
    net = SimNetwork()
    with trio.fail_after(60):
        async with cluster(net, ["a", "b"], quotas={"s1_operational": None}) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            got: list[Event] = []
            nodes["b"].subscribe("task_execution", got.append)
            before = dict(calls)
            for i in range(2_000):
                nodes["a"].publish("task_execution", {"i": i})
            await nodes["a"].flush(timeout=5)
            frames_out = nodes["a"].bridge.peers["b"].frames_out
            assert len(got) == 2_000 and frames_out >= 2_000 // nodes["a"].config.batch_max
            # 2,000 events are 8 frames of at most batch_max (256), each of at
            # least STREAMING (64): a's writer looked before every one, b's
            # reader after every one
            assert calls["a"] - before.get("a", 0) >= frames_out
            assert calls["b"] - before.get("b", 0) >= frames_out


async def test_a_stall_then_reset_loses_nothing(autojump_clock: trio.abc.Clock) -> None:
    """What was written but not received is resent after the reconnect, exactly once."""
    net = SimNetwork()
    quotas = {"s1_operational": None}
    with trio.fail_after(300):
        async with cluster(net, ["a", "b"], quotas=quotas) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            got: list[int] = []
            nodes["b"].subscribe("task_execution", lambda e: got.append(e.data["i"]))
            for i in range(2_000):
                nodes["a"].publish("task_execution", {"i": i})
            await trio.lowlevel.checkpoint()
            net.cut("a", "b", one_way=True)
            for i in range(2_000, 5_000):
                nodes["a"].publish("task_execution", {"i": i})
            await trio.sleep(0.5)
            net.reset("a", "b")  # like a RST: held bytes are lost
            net.heal("a", "b")
            await wait_for(lambda: len(got) >= 5_000, limit=120)
            await trio.sleep(2)
            assert sorted(got) == list(range(5_000))  # all of them, once each
            await nodes["a"].flush(timeout=10)
            stats = nodes["a"].variety_stats()["peers"]["b"]
            assert stats["sent"] == 5_000 and stats["dropped"] == 0
            assert nodes["a"].topology()["peer_states"]["b"]["disconnects"] >= 1


async def test_events_from_a_clock_ahead_are_refused_and_counted_on_both_sides(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with cluster(net, ["a", "b"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            a, b = nodes["a"], nodes["b"]
            real = a.hlc.wall
            a.hlc.wall = lambda: real() + 2_000  # a's wall clock runs 2 s ahead
            await wait_for(lambda: b.topology()["peer_states"]["a"]["clock_skewed"], limit=5)
            await wait_for(lambda: a.topology()["peer_states"]["b"]["clock_skewed"], limit=5)
            got: list[Event] = []
            b.subscribe("task_execution", got.append)
            for i in range(10):
                a.publish("task_execution", {"i": i})
            await a.flush(timeout=5)
            assert got == []
            stats = a.variety_stats()["peers"]["b"]
            assert stats["sent"] == 0 and stats["dropped_by_reason"] == {"clock_offset": 10}
            assert b.variety_stats()["counters"]["clock_rejected"] == 10
            refusals = [r for r in caplog.records if "refusing events from a" in r.getMessage()]
            assert len(refusals) == 1  # once per episode, not per event
            # the other way is fine: b's clock is behind a's, within any bound
            at_a: list[Event] = []
            a.subscribe("task_execution", at_a.append)
            b.publish("task_execution", {"i": 99})
            await b.flush(timeout=5)
            assert [e.data["i"] for e in at_a] == [99]


async def test_send_waits_for_a_slow_member_and_times_out(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    kw = {"quotas": {"s1_operational": None}, "send_high_water": 100, "send_low_water": 50}
    with trio.fail_after(120):
        async with cluster(net, ["a", "b"], **kw) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            a = nodes["a"]
            for i in range(100):
                await a.send("task_execution", {"i": i})  # the peer keeps up: no wait
            net.cut("a", "b", one_way=True)  # b stops hearing a, the session lives on
            start = trio.current_time()
            with pytest.raises(BackpressureTimeout, match="high water 100"):
                for i in range(1_000):
                    await a.send("task_execution", {"i": i}, timeout=1.0)
            assert trio.current_time() - start == pytest.approx(1.0)
            with pytest.raises(BackpressureTimeout, match="not acknowledged yet by b"):
                await a.flush(timeout=0.5)
            net.heal("a", "b")
            await a.flush(timeout=10)
            stats = a.variety_stats()["peers"]["b"]
            assert stats["queued"] == 0 and stats["dropped"] == 0


async def test_unreachable_peers_and_observers_never_block_send(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    kw = {"quotas": {"s1_operational": None}, "send_high_water": 10, "send_low_water": 5}
    with trio.fail_after(120):
        async with cluster(net, ["a", "b"], **kw) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            net.isolate("b")
            states = nodes["a"].topology
            await wait_for(lambda: not states()["peer_states"]["b"]["connected"], limit=30)
            start = trio.current_time()
            for i in range(500):
                await nodes["a"].send("task_execution", {"i": i}, timeout=1.0)
            assert trio.current_time() == start  # backlogged, not waited for
            assert nodes["a"].variety_stats()["peers"]["b"]["backlogged"] == 500
            net.rejoin("b")
            got: list[Event] = []
            nodes["b"].subscribe("task_execution", got.append)
            await wait_for(lambda: len(got) == 500, limit=60)


async def test_acks_reopen_the_window_without_waiting_for_a_heartbeat(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    kw = {"quotas": {"s1_operational": None}, "send_window": 16, "heartbeat_interval_s": 5.0}
    with trio.fail_after(60):
        async with cluster(net, ["a", "b"], **kw) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            got: list[Event] = []
            nodes["b"].subscribe("task_execution", got.append)
            start = trio.current_time()
            for i in range(2_000):
                nodes["a"].publish("task_execution", {"i": i})
            await nodes["a"].flush(timeout=30)
            # 125 windows' worth, each reopened by an ack at once: no virtual time passes
            assert len(got) == 2_000
            assert trio.current_time() - start < 0.01


async def test_round_trip_is_measured_from_acks(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with cluster(net, ["a", "b"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            net.delay("a", "b", 0.010)  # 10 ms each way
            for i in range(20):
                nodes["a"].publish("task_execution", {"i": i})
                await trio.sleep(0.05)
            await nodes["a"].flush(timeout=5)
            rtt = nodes["a"].topology()["peer_states"]["b"]["round_trip_ms"]
            assert rtt == pytest.approx(20.0, abs=0.5)
            assert nodes["a"].peer_report()["peers"]["b"]["round_trip_ms"] == rtt


async def test_a_late_heartbeat_is_not_taken_for_a_clock_behind(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with cluster(net, ["a", "b"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            base = nodes["a"].hlc.wall()
            for node in nodes.values():  # wall clocks that follow virtual time
                node.hlc.wall = lambda: base + int(trio.current_time() * 1000)
            await trio.sleep(3)  # a few heartbeats on time
            net.delay("a", "b", 0.8)  # heartbeats held back 800 ms, as retransmissions
            flagged = []
            for _ in range(20):
                await trio.sleep(0.1)
                flagged.append(nodes["b"].topology()["peer_states"]["a"]["clock_skewed"])
            net.delay("a", "b", 0.0)
            assert not any(flagged)
            assert abs(nodes["b"].topology()["peer_states"]["a"]["clock_offset_ms"]) < 100


async def test_an_ack_rides_on_the_reply_or_waits_at_most_the_ack_delay(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Delayed ACK: a lone event's ack is held for a reply to carry it (no bare
    ACK frame on a request/reply), and sent alone after ACK_DELAY_S if none comes."""
    from node.runtime.replication import ACK_DELAY_S

    net = SimNetwork()
    with trio.fail_after(60):
        async with cluster(net, ["a", "b"], heartbeat_interval_s=5.0) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            a, b = nodes["a"], nodes["b"]
            bare_acks = {"a": 0, "b": 0}
            acked_at: list[float] = []
            for name, node in nodes.items():
                replication = node.bridge.replication
                original = replication._send_ack

                async def counted(*args: object, _o=original, _n=name) -> None:  # type: ignore[no-untyped-def]
                    bare_acks[_n] += 1
                    acked_at.append(trio.current_time())
                    await _o(*args)

                replication._send_ack = counted  # type: ignore[method-assign]
            b.subscribe("task_execution", lambda e: b.publish("status_update", e.data))
            answers: list[Event] = []
            answered_at: list[float] = []
            a.subscribe("status_update", answers.append)
            a.subscribe("status_update", lambda e: answered_at.append(trio.current_time()))
            await trio.sleep(1)
            # A first question and answer: their frames measure the round trip
            # (acked at once); the next probes are RTT_PROBE_INTERVAL_S away.
            a.publish("task_execution", {"i": 0})
            await wait_for(lambda: len(answers) == 1, step=0.0001)
            await trio.sleep(0.01)
            for name in bare_acks:
                bare_acks[name] = 0
            # The next question: its answer carries b's ack, no bare ACK from b.
            a.publish("task_execution", {"i": 1})
            await wait_for(lambda: len(answers) == 2, step=0.0001)
            assert bare_acks["b"] == 0
            # a's ack of the answer waits for something to ride on; none comes,
            # so it goes alone after the delay.
            await wait_for(lambda: bare_acks["a"] == 1, step=0.0001)
            assert acked_at[-1] - answered_at[-1] == pytest.approx(ACK_DELAY_S, abs=1e-6)
            await wait_for(lambda: b.variety_stats()["peers"]["a"]["sent"] == 2, step=0.0001)
