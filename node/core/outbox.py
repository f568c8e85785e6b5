"""The sending side of one link (this node -> one peer), sans-IO.

Modelled on Kafka's idempotent producer: every event taken for the wire gets
the link's next sequence number, stays *in flight* until the receiver
acknowledges it (cumulative acks), and is sent again, with the same number,
after a reconnect. The receiver delivers each number once (node.core.link), so
"sent" here means acknowledged by the peer, never merely written to a socket.

Queues, by channel (lane 0 is algedonic, then S5 ... S1, general):

- Algedonic events have a queue of their own (``algedonic_size``) that other
  channels can neither take nor evict; they go out ahead of every other queued
  event and are not held back by the send window.
- The other lanes share ``lane_size`` while the peer is connected and
  ``backlog_size`` while it is not (the backlog, replayed when it returns).
  When full, the oldest event of the lowest-priority non-empty lane gives way
  (or the new event, if everything queued outranks it), counted as dropped.
- At most ``window`` events are in flight unacknowledged (alarms aside): the
  bound on what a stalled peer can cost in memory, and on how much S1 data
  can sit in the pipe ahead of an alarm.

Accounting: for every event offered, ``offered == sent + compressed +
throttled + queued + backlogged + dropped`` holds at every instant. Queued
(connected) and backlogged (not) both cover the lanes and what is in flight.
Aggregates from semantic compression travel like events but are not
"offered": the originals they fold were counted as compressed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from node.core.events import Channel, Event

DEFAULT_LANE_SIZE = 50_000
DEFAULT_BACKLOG_SIZE = 10_000
DEFAULT_ALGEDONIC_SIZE = 1_000
DEFAULT_WINDOW = 1_024
FIRST_SEQ = 1

_N_LANES = len(Channel)

# Drop reasons (dropped_by_reason keys; the receiver's refusals add theirs).
QUEUE_FULL = "queue_full"
BACKLOG_OVERFLOW = "backlog_overflow"
NO_BACKLOG = "no_backlog"
ALGEDONIC_OVERFLOW = "algedonic_overflow"
TOO_LARGE = "too_large"


class Outbox:
    """Queued and in-flight events for one peer. The driver takes batches and
    reports acknowledgements back."""

    __slots__ = (
        "_aggregates",
        "_base",
        "_inflight",
        "_lanes",
        "_originals",
        "_queued",
        "_resend",
        "aggregates_sent",
        "algedonic_size",
        "backlog_size",
        "compressed",
        "connected",
        "control",
        "dropped",
        "lane_size",
        "offered",
        "sent",
        "throttled",
        "window",
    )

    def __init__(
        self,
        *,
        lane_size: int = DEFAULT_LANE_SIZE,
        backlog_size: int = DEFAULT_BACKLOG_SIZE,
        algedonic_size: int = DEFAULT_ALGEDONIC_SIZE,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        if lane_size < 1 or backlog_size < 0 or algedonic_size < 1 or window < 1:
            raise ValueError(
                "lane_size, algedonic_size and window must be >= 1 and backlog_size >= 0"
            )
        self.lane_size = lane_size
        self.backlog_size = backlog_size
        self.algedonic_size = algedonic_size
        self.window = window
        self._lanes: list[deque[Event]] = [deque() for _ in range(_N_LANES)]
        self._queued = 0  # events in lanes 1.. (not algedonic, not in flight)
        # _inflight[i] carries seq _base + i. A list, not a deque: an ack settles
        # a whole frame with one slice deletion (at most ``window`` pointers moved).
        self._inflight: list[Event] = []
        self._base = FIRST_SEQ
        self._resend = 0  # _inflight[: _resend] were written on the current connection
        self._originals = 0  # queued or in flight, not aggregates
        self._aggregates = 0  # queued or in flight, aggregates
        self.control: deque[Any] = deque()
        self.connected = False
        self.offered = 0
        self.sent = 0
        self.compressed = 0
        self.throttled = 0
        self.aggregates_sent = 0
        self.dropped: dict[str, int] = {}

    # --- accounting of the variety verdicts (nothing to queue) ---

    def count_compressed(self, n: int = 1) -> None:
        self.offered += n
        self.compressed += n

    def count_throttled(self, n: int = 1) -> None:
        self.offered += n
        self.throttled += n

    # --- queueing ---

    def offer(self, event: Event) -> None:
        """Queue an event (or aggregate) for this peer; never blocks, never raises."""
        if event.compressed:
            self._aggregates += 1
        else:
            self.offered += 1
            self._originals += 1
        priority = event.channel.rank
        lane = self._lanes[priority]
        if priority and self._queued < (self.lane_size if self.connected else self.backlog_size):
            lane.append(event)  # the common case: room in the lanes
            self._queued += 1
            return
        if priority == 0:
            if len(lane) >= self.algedonic_size:
                self._drop(lane.popleft(), ALGEDONIC_OVERFLOW)
            lane.append(event)
            return
        cap = self.lane_size if self.connected else self.backlog_size
        if self._queued >= cap:
            reason = QUEUE_FULL if self.connected else BACKLOG_OVERFLOW
            if cap == 0:
                self._drop(event, NO_BACKLOG)
                return
            victim = self._lowest_lane()
            if victim is None or victim < priority:
                # Everything queued outranks the newcomer: it is the one to go.
                self._drop(event, reason)
                return
            self._drop(self._lanes[victim].popleft(), reason)
            self._queued -= 1
        lane.append(event)
        self._queued += 1

    def offer_many(self, events: list[Event], rank: int | None = None) -> None:
        """:meth:`offer` each of ``events``, in order. ``rank``: the lane they all
        go to, if the caller knows that they are originals (not aggregates) of
        one channel other than algedonic; then, while the lanes have room for
        all of them, they are queued with one extend."""
        n = len(events)
        if rank and self._queued + n <= (self.lane_size if self.connected else self.backlog_size):
            self._lanes[rank].extend(events)
            self._queued += n
            self.offered += n
            self._originals += n
            return
        offer = self.offer
        for event in events:
            offer(event)

    def _lowest_lane(self) -> int | None:
        lanes = self._lanes
        for i in range(_N_LANES - 1, 0, -1):
            if lanes[i]:
                return i
        return None

    def _drop(self, event: Event, reason: str) -> None:
        if event.compressed:
            self._aggregates -= 1
        else:
            self._originals -= 1
            self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _trim(self, cap: int, reason: str) -> None:
        while self._queued > cap:
            victim = self._lowest_lane()
            if victim is None:  # pragma: no cover - _queued counts lanes 1..
                break
            self._drop(self._lanes[victim].popleft(), reason)
            self._queued -= 1

    # --- the link ---

    @property
    def next_seq(self) -> int:
        """The sequence number the next new event will get."""
        return self._base + len(self._inflight)

    @property
    def ack_floor(self) -> int:
        """The lowest unacknowledged sequence number: everything below is settled
        and will never be sent again. Sent in every EVENTS frame, so a receiver
        that has no state for this link (it restarted) knows where to start."""
        return self._base

    @property
    def unacked(self) -> int:
        return len(self._inflight)

    @property
    def pending(self) -> int:
        """Events waiting to be written on the current connection (0 if none)."""
        if not self.connected:
            return 0
        resend = len(self._inflight) - self._resend
        fresh = len(self._lanes[0])
        if len(self._inflight) < self.window:
            fresh += self._queued
        return resend + fresh

    @property
    def depth(self) -> int:
        """Everything not yet acknowledged: lanes plus in flight (backpressure)."""
        return self._queued + len(self._lanes[0]) + len(self._inflight)

    def take_batch(self, limit: int) -> tuple[int, list[Event]]:
        """Up to ``limit`` events to write now, and the sequence number of the first.

        After a reconnect, what is still unacknowledged goes first, with its
        old numbers and in order (the receiver skips what it already has).
        Then alarms, then the lanes by priority while the window has room. The
        numbers of one batch are consecutive.
        """
        inflight = self._inflight
        first = self._base + self._resend
        if self._resend < len(inflight):
            end = min(len(inflight), self._resend + limit)
            batch = inflight[self._resend : end]
            self._resend = end
            return first, batch
        batch = []
        alarms = self._lanes[0]
        while alarms and len(batch) < limit:
            batch.append(alarms.popleft())
        room = min(limit - len(batch), self.window - len(inflight) - len(batch))
        if room > 0 and self._queued:
            for lane in self._lanes[1:]:
                n = len(lane)
                if not n:
                    continue
                if n <= room:
                    batch += lane
                    lane.clear()
                else:
                    popleft = lane.popleft
                    batch += [popleft() for _ in range(room)]
                    n = room
                room -= n
                self._queued -= n
                if room <= 0:
                    break
        inflight += batch
        self._resend = len(inflight)
        return first, batch

    def drop_unwritten(self, event: Event, reason: str = TOO_LARGE) -> None:
        """The writer could not encode ``event`` (taken, not yet written): drop it.

        Only events of the batch just taken qualify; later events of that
        batch move down one number, which is safe because none was written.
        """
        index = len(self._inflight) - 1
        while index >= 0 and self._inflight[index] is not event:
            index -= 1
        if index < 0:
            raise ValueError("event is not in flight")
        del self._inflight[index]
        self._resend -= 1
        self._drop(event, reason)

    def on_ack(self, upto: int, refused: Mapping[int, str] | None = None) -> int:
        """The peer has processed everything up to ``upto`` (cumulative).

        Events it refused (``refused``: seq -> reason, e.g. clock_offset) are
        counted as dropped with that reason, the rest as sent. Returns how many
        events this ack settled; stale or repeated acks settle nothing.
        """
        inflight = self._inflight
        n = min(upto - self._base + 1, len(inflight))
        if n <= 0:
            return 0
        if not refused:  # the common case, kept tight: one ack settles a whole frame
            settled = inflight[:n] if self._aggregates else None
            del inflight[:n]
            aggregates = 0
            if settled is not None:
                for event in settled:
                    if event.compressed:
                        aggregates += 1
                self._aggregates -= aggregates
            self.aggregates_sent += aggregates
            self.sent += n - aggregates
            self._originals -= n - aggregates
            self._base += n
            self._resend = max(0, self._resend - n)
            return n
        seq = self._base
        settled = inflight[:n]
        del inflight[:n]
        for event in settled:
            if event.compressed:
                self._aggregates -= 1
                self.aggregates_sent += 1
            else:
                reason = refused.get(seq) if refused else None
                if reason is None:
                    self.sent += 1
                    self._originals -= 1
                else:
                    self._drop(event, reason)
            seq += 1
        self._base = seq
        self._resend = max(0, self._resend - n)
        return n

    def set_connected(self, connected: bool) -> None:
        """On disconnect, the lanes shrink to the backlog bound and everything in
        flight waits to be sent again; on connect, it is resent first."""
        if not connected and self.connected:
            self.control.clear()
            self._trim(self.backlog_size, BACKLOG_OVERFLOW)
        self._resend = 0
        self.connected = connected

    # --- views ---

    @property
    def queued(self) -> int:
        """Original events in lanes or in flight while connected."""
        return self._originals if self.connected else 0

    @property
    def backlogged(self) -> int:
        """Original events in lanes or in flight while the peer is unreachable."""
        return 0 if self.connected else self._originals

    def stats(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "sent": self.sent,
            "compressed": self.compressed,
            "throttled": self.throttled,
            "queued": self.queued,
            "backlogged": self.backlogged,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(self.dropped),
            "aggregates_sent": self.aggregates_sent,
            "unacked": len(self._inflight),
            "next_seq": self.next_seq,
            "connected": self.connected,
        }
