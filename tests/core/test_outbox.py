"""Outbox: lanes by priority, backlog ring, and exact accounting."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.events import Channel, Event
from node.core.hlc import Timestamp
from node.core.outbox import Outbox


def ev(i: int, channel: Channel = Channel.S1_OPERATIONAL, compressed: bool = False) -> Event:
    return Event("t", channel, {"i": i}, "a", Timestamp(i, 0, "a"), compressed=compressed)


def invariant(o: Outbox) -> None:
    s = o.stats()
    assert s["offered"] == (
        s["sent"] + s["compressed"] + s["throttled"] + s["queued"] + s["backlogged"] + s["dropped"]
    ), s


def test_lanes_drain_by_priority() -> None:
    o = Outbox()
    o.set_connected(True)
    o.offer(ev(1, Channel.GENERAL))
    o.offer(ev(2, Channel.S1_OPERATIONAL))
    o.offer(ev(3, Channel.ALGEDONIC))
    o.offer(ev(4, Channel.S5_POLICY))
    batch = o.take_batch(10)
    assert [e.hlc.physical for e in batch] == [3, 4, 2, 1]
    o.mark_sent(batch)
    assert o.stats()["sent"] == 4
    invariant(o)


def test_unreachable_peer_gets_a_bounded_backlog_replayed_first() -> None:
    o = Outbox(backlog_size=3)
    for i in range(5):
        o.offer(ev(i))
    s = o.stats()
    assert s["backlogged"] == 3 and s["dropped_by_reason"] == {"backlog_overflow": 2}
    invariant(o)
    o.set_connected(True)
    o.offer(ev(10, Channel.ALGEDONIC))
    batch = o.take_batch(10)
    assert [e.hlc.physical for e in batch] == [2, 3, 4, 10]  # backlog first, then lanes
    o.mark_sent(batch)
    invariant(o)


def test_disconnect_returns_inflight_and_lanes_to_backlog() -> None:
    o = Outbox()
    o.set_connected(True)
    for i in range(4):
        o.offer(ev(i))
    batch = o.take_batch(2)
    assert len(batch) == 2
    invariant(o)
    o.set_connected(False)
    assert [e.hlc.physical for e in o.backlog] == [0, 1, 2, 3]
    assert o.stats()["queued"] == 0
    invariant(o)


def test_lane_full_spills_to_backlog() -> None:
    o = Outbox(lane_size=2, backlog_size=10)
    o.set_connected(True)
    for i in range(5):
        o.offer(ev(i))
    assert o.stats()["queued"] == 2 and o.stats()["backlogged"] == 3
    invariant(o)


def test_aggregates_are_sent_but_not_offered() -> None:
    o = Outbox()
    o.set_connected(True)
    o.count_compressed()
    o.count_compressed()
    o.offer(ev(1, compressed=True))
    batch = o.take_batch(5)
    o.mark_sent(batch)
    s = o.stats()
    assert s["offered"] == 2 and s["compressed"] == 2 and s["aggregates_sent"] == 1
    invariant(o)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["offer", "agg", "comp", "thr", "take", "sent", "up", "down"]),
        max_size=200,
    )
)
def test_invariant_holds_at_every_step(ops: list[str]) -> None:
    o = Outbox(lane_size=5, backlog_size=7)
    taken: list[Event] = []
    for i, op in enumerate(ops):
        if op == "offer":
            o.offer(ev(i, list(Channel)[i % 7]))
        elif op == "agg":
            o.offer(ev(i, compressed=True))
        elif op == "comp":
            o.count_compressed()
        elif op == "thr":
            o.count_throttled()
        elif op == "take" and o.connected:
            taken = o.take_batch(3)
        elif op == "sent" and o.connected and taken:
            o.mark_sent(taken)
            taken = []
        elif op == "up":
            o.set_connected(True)
        elif op == "down":
            o.set_connected(False)
            taken = []
        invariant(o)
