"""The link end to end, sans-IO: Outbox (sender) + InboundLink (receiver) over a lossy
connection, as a hypothesis state machine with a model of where every event is.

Random schedules of offers on every channel, batch takes, frame deliveries, acks,
refusals, disconnects (frames in flight lost), reconnects and receiver restarts;
then a drain. Exactly once: every event is delivered once per receiver process, or
counted as dropped; alarms are never dropped while their queue has room.
"""

from __future__ import annotations

from collections import deque

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node.core.events import Channel, Event
from node.core.hlc import Timestamp
from node.core.link import InboundLink
from node.core.outbox import Outbox

CHANNELS = list(Channel)


def test_receiver_skips_what_it_processed_and_starts_at_the_floor() -> None:
    link = InboundLink(incarnation=7)
    assert link.begin(first_seq=5, ack_floor=5, count=3) == 0  # fresh: starts at the floor
    assert link.processed == 7 and link.gaps == 0
    assert link.begin(6, 5, 4) == 2  # 6, 7 again; 8, 9 new
    assert link.processed == 9 and link.duplicates == 2
    assert link.begin(6, 5, 2) == 2  # all old
    assert link.take_ack() == (9, {})
    assert not link.ack_due


def test_refusals_are_repeated_until_the_sender_settles_them() -> None:
    link = InboundLink(1)
    link.begin(1, 1, 3)
    link.refuse(2, "clock_offset")
    assert link.take_ack() == (3, {2: "clock_offset"})
    link.reconnected()  # the ack may have been lost with the connection
    assert link.ack_due
    assert link.take_ack() == (3, {2: "clock_offset"})
    link.begin(4, 4, 1)  # the sender's floor passed 2: it heard
    assert link.take_ack() == (4, {})


def test_a_gap_is_counted_and_processed_never_refused() -> None:
    link = InboundLink(1)
    link.begin(1, 1, 2)
    assert link.begin(5, 1, 1) == 0
    assert link.gaps == 2 and link.processed == 5


class LinkMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.out = Outbox(lane_size=12, backlog_size=9, window=6, algedonic_size=1_000)
        self.incarnation = 1
        self.inbound = InboundLink(self.incarnation)
        self.to_receiver: deque[tuple[int, int, list[Event]]] = deque()
        self.to_sender: deque[tuple[int, dict[int, str]]] = deque()
        self.next_id = 0
        self.alarms: set[int] = set()
        self.delivered: dict[int, set[int]] = {1: set()}  # receiver incarnation -> ids
        self.outcome: dict[int, str] = {}  # the last receiver's verdict per event
        self.out.set_connected(True)

    def _event(self, channel: Channel) -> Event:
        i = self.next_id
        self.next_id += 1
        return Event("t", channel, {"i": i}, "a", Timestamp(i, 0, "a"))

    @rule(channel=st.sampled_from(CHANNELS[1:]), n=st.integers(1, 8))
    def offer(self, channel: Channel, n: int) -> None:
        for _ in range(n):
            self.out.offer(self._event(channel))

    @rule()
    def alarm(self) -> None:
        event = self._event(Channel.ALGEDONIC)
        self.alarms.add(event.data["i"])
        self.out.offer(event)

    @precondition(lambda self: self.out.connected)
    @rule(limit=st.integers(1, 5))
    def write(self, limit: int) -> None:
        first, batch = self.out.take_batch(limit)
        if batch:
            self.to_receiver.append((first, self.out.ack_floor, batch))

    @precondition(lambda self: bool(self.to_receiver))
    @rule(refuse_every=st.sampled_from([0, 0, 0, 3]))
    def receive(self, refuse_every: int) -> None:
        first, floor, batch = self.to_receiver.popleft()
        skip = self.inbound.begin(first, floor, len(batch))
        mine = self.delivered[self.incarnation]
        for offset, event in enumerate(batch[skip:], start=skip):
            i = event.data["i"]
            if refuse_every and i % refuse_every == 0 and i not in self.alarms:
                self.inbound.refuse(first + offset, "clock_offset")
                self.outcome[i] = "refused"
                continue
            assert i not in mine, f"event {i} delivered twice to one receiver"
            mine.add(i)
            self.outcome[i] = "delivered"

    @precondition(lambda self: self.inbound.ack_due and self.out.connected)
    @rule()
    def ack(self) -> None:
        # (an ack written after the connection died never arrives: no rule for it)
        self.to_sender.append(self.inbound.take_ack())

    @precondition(lambda self: bool(self.to_sender))
    @rule()
    def settle(self) -> None:
        upto, refused = self.to_sender.popleft()
        self.out.on_ack(upto, refused)

    @precondition(lambda self: self.out.connected)
    @rule()
    def disconnect(self) -> None:
        self.to_receiver.clear()
        self.to_sender.clear()
        self.out.set_connected(False)

    @precondition(lambda self: not self.out.connected)
    @rule()
    def reconnect(self) -> None:
        self.inbound.reconnected()
        self.out.set_connected(True)

    @precondition(lambda self: not self.out.connected)
    @rule()
    def restart_receiver(self) -> None:
        self.incarnation += 1
        self.inbound = InboundLink(self.incarnation)
        self.delivered[self.incarnation] = set()

    @invariant()
    def accounting(self) -> None:
        s = self.out.stats()
        assert s["offered"] == s["sent"] + s["queued"] + s["backlogged"] + s["dropped"]
        assert "algedonic_overflow" not in s["dropped_by_reason"]

    def teardown(self) -> None:
        # Drain: reconnect and run the link until nothing moves.
        if not self.out.connected:
            self.reconnect()
        for _ in range(10_000):
            if not (self.out.pending or self.to_receiver or self.to_sender or self.inbound.ack_due):
                break
            if self.out.pending:
                self.write(50)
            while self.to_receiver:
                self.receive(0)
            if self.inbound.ack_due:
                self.ack()
            while self.to_sender:
                self.settle()
        s = self.out.stats()
        assert s["queued"] == 0 and s["backlogged"] == 0
        verdicts = list(self.outcome.values())
        dropped = s["dropped_by_reason"]
        lost = dropped.get("queue_full", 0) + dropped.get("backlog_overflow", 0)
        # each event offered: delivered (and acked: sent), refused, or counted as lost
        assert s["sent"] == verdicts.count("delivered")
        assert dropped.get("clock_offset", 0) == verdicts.count("refused")
        assert len(self.outcome) + lost == s["offered"] == self.next_id
        assert all(self.outcome.get(i) == "delivered" for i in self.alarms)


LinkMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestLink = LinkMachine.TestCase
