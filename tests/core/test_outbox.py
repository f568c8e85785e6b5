"""Outbox: lanes by priority, alarms apart, link numbers, acks, and exact accounting."""

from __future__ import annotations

import pytest
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


def ids(batch: list[Event]) -> list[int]:
    return [e.hlc.physical for e in batch]


def test_lanes_drain_by_priority_and_numbers_follow_the_write_order() -> None:
    o = Outbox()
    o.set_connected(True)
    o.offer(ev(1, Channel.GENERAL))
    o.offer(ev(2, Channel.S1_OPERATIONAL))
    o.offer(ev(3, Channel.ALGEDONIC))
    o.offer(ev(4, Channel.S5_POLICY))
    first, batch = o.take_batch(10)
    assert first == 1 and ids(batch) == [3, 4, 2, 1]
    assert o.stats()["sent"] == 0 and o.unacked == 4  # written is not sent
    assert o.on_ack(4) == 4
    assert o.stats()["sent"] == 4 and o.unacked == 0 and o.next_seq == 5
    invariant(o)


def test_sent_means_acknowledged_and_refusals_are_dropped_with_their_reason() -> None:
    o = Outbox()
    o.set_connected(True)
    for i in range(5):
        o.offer(ev(i))
    first, batch = o.take_batch(10)
    assert first == 1 and len(batch) == 5
    assert o.on_ack(2) == 2
    assert o.on_ack(2) == 0  # repeated ack settles nothing
    assert o.on_ack(1) == 0  # stale ack too
    o.on_ack(5, {4: "clock_offset"})
    s = o.stats()
    assert s["sent"] == 4 and s["dropped_by_reason"] == {"clock_offset": 1}
    invariant(o)


def test_unacknowledged_events_are_resent_after_a_reconnect_with_their_numbers() -> None:
    o = Outbox()
    o.set_connected(True)
    for i in range(6):
        o.offer(ev(i))
    first, batch = o.take_batch(4)
    assert (first, ids(batch)) == (1, [0, 1, 2, 3])
    o.on_ack(2)
    o.set_connected(False)
    s = o.stats()
    assert s["backlogged"] == 4 and s["queued"] == 0
    invariant(o)
    o.offer(ev(10, Channel.ALGEDONIC))
    o.set_connected(True)
    assert o.ack_floor == 3
    first, batch = o.take_batch(10)
    assert (first, ids(batch)) == (3, [2, 3])  # resent alone, in order, old numbers
    first, batch = o.take_batch(10)
    assert (first, ids(batch)) == (5, [10, 4, 5])  # then alarms, then lanes
    invariant(o)


def test_ack_beyond_what_was_resent_skips_the_resend() -> None:
    o = Outbox()
    o.set_connected(True)
    for i in range(4):
        o.offer(ev(i))
    o.take_batch(10)
    o.set_connected(False)
    o.set_connected(True)
    o.on_ack(3)  # the peer had them; only the ack was lost
    first, batch = o.take_batch(10)
    assert (first, ids(batch)) == (4, [3])


def test_alarms_have_their_own_space_and_are_never_evicted_by_other_channels() -> None:
    o = Outbox(lane_size=3, backlog_size=3, algedonic_size=2)
    o.set_connected(True)
    o.offer(ev(100, Channel.ALGEDONIC))
    for i in range(50):
        o.offer(ev(i))
    o.offer(ev(101, Channel.ALGEDONIC))
    s = o.stats()
    assert s["dropped_by_reason"] == {"queue_full": 47}
    _, batch = o.take_batch(3)
    assert ids(batch) == [100, 101, 47]
    o.offer(ev(102, Channel.ALGEDONIC))
    o.offer(ev(103, Channel.ALGEDONIC))
    o.offer(ev(104, Channel.ALGEDONIC))  # the alarm queue itself is bounded
    assert o.stats()["dropped_by_reason"]["algedonic_overflow"] == 1
    invariant(o)


def test_full_queue_evicts_lowest_priority_first() -> None:
    o = Outbox(lane_size=3)
    o.set_connected(True)
    o.offer(ev(1, Channel.S5_POLICY))
    o.offer(ev(2, Channel.S1_OPERATIONAL))
    o.offer(ev(3, Channel.GENERAL))
    o.offer(ev(4, Channel.S3_CONTROL))  # general's oldest gives way
    o.offer(ev(5, Channel.GENERAL))  # everything queued outranks it: it goes
    _, batch = o.take_batch(10)
    assert ids(batch) == [1, 4, 2]
    assert o.stats()["dropped_by_reason"] == {"queue_full": 2}
    invariant(o)


def test_window_bounds_what_is_in_flight_but_not_alarms() -> None:
    o = Outbox(window=3)
    o.set_connected(True)
    for i in range(10):
        o.offer(ev(i))
    _, batch = o.take_batch(10)
    assert len(batch) == 3 and o.pending == 0
    o.offer(ev(50, Channel.ALGEDONIC))
    assert o.pending == 1
    _, batch = o.take_batch(10)
    assert ids(batch) == [50]
    o.on_ack(4)
    assert o.pending == 7
    invariant(o)


def test_unreachable_peer_gets_a_bounded_backlog() -> None:
    o = Outbox(backlog_size=3)
    for i in range(5):
        o.offer(ev(i))
    s = o.stats()
    assert s["backlogged"] == 3 and s["dropped_by_reason"] == {"backlog_overflow": 2}
    invariant(o)
    o.set_connected(True)
    _, batch = o.take_batch(10)
    assert ids(batch) == [2, 3, 4]


def test_disconnect_shrinks_lanes_to_the_backlog_bound() -> None:
    o = Outbox(lane_size=10, backlog_size=2)
    o.set_connected(True)
    for i in range(6):
        o.offer(ev(i))
    o.set_connected(False)
    assert o.stats()["backlogged"] == 2
    assert o.stats()["dropped_by_reason"] == {"backlog_overflow": 4}
    invariant(o)


def test_aggregates_are_sent_but_not_offered() -> None:
    o = Outbox()
    o.set_connected(True)
    o.count_compressed()
    o.count_compressed()
    o.offer(ev(1, compressed=True))
    first, _ = o.take_batch(5)
    o.on_ack(first)
    s = o.stats()
    assert s["offered"] == 2 and s["compressed"] == 2 and s["aggregates_sent"] == 1
    invariant(o)


def test_drop_unwritten_renumbers_only_what_was_not_written() -> None:
    o = Outbox()
    o.set_connected(True)
    for i in range(3):
        o.offer(ev(i))
    _, batch = o.take_batch(10)
    o.drop_unwritten(batch[1])
    assert o.next_seq == 3 and o.stats()["dropped_by_reason"] == {"too_large": 1}
    with pytest.raises(ValueError):
        o.drop_unwritten(batch[1])
    invariant(o)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["offer", "alarm", "agg", "comp", "thr", "take", "ack", "up", "down"]),
        max_size=300,
    )
)
def test_invariant_holds_at_every_step(ops: list[str]) -> None:
    o = Outbox(lane_size=5, backlog_size=7, window=4, algedonic_size=3)
    for i, op in enumerate(ops):
        if op == "offer":
            o.offer(ev(i, list(Channel)[1 + i % 6]))
        elif op == "alarm":
            o.offer(ev(i, Channel.ALGEDONIC))
        elif op == "agg":
            o.offer(ev(i, compressed=True))
        elif op == "comp":
            o.count_compressed()
        elif op == "thr":
            o.count_throttled()
        elif op == "take" and o.connected:
            o.take_batch(3)
        elif op == "ack":
            o.on_ack(o.next_seq - 1 - i % 3)
        elif op == "up":
            o.set_connected(True)
        elif op == "down":
            o.set_connected(False)
        invariant(o)


def test_offer_many_queues_a_burst_as_offer_would_one_by_one() -> None:
    burst = [ev(i) for i in range(10)]
    one, many = Outbox(lane_size=6), Outbox(lane_size=6)
    for o in (one, many):
        o.set_connected(True)
        o.offer(ev(99, Channel.GENERAL))  # the lowest lane goes first when full
    for e in burst:
        one.offer(e)
    many.offer_many(burst, Channel.S1_OPERATIONAL.rank)  # too many for the lanes
    assert one.stats() == many.stats()
    assert ids(one.take_batch(20)[1]) == ids(many.take_batch(20)[1]) == list(range(4, 10))
    roomy = Outbox()
    roomy.set_connected(True)
    roomy.offer_many(burst[:5], Channel.S1_OPERATIONAL.rank)  # one extend
    roomy.offer_many([ev(7, Channel.ALGEDONIC), ev(8)])  # mixed: offer by offer
    assert ids(roomy.take_batch(20)[1]) == [7, 0, 1, 2, 3, 4, 8]
    invariant(one)
    invariant(many)
    invariant(roomy)
