"""One peer's outbound queue and its accounting (sans-IO).

Lanes by channel (algedonic first, then S5 ... S1, general), a bounded backlog
ring for while the peer is unreachable, and a control queue (heartbeats, BYE)
that always goes first. Every event offered for this peer is in exactly one
place at any moment, so ``offered == sent + compressed + throttled + queued +
backlogged + dropped`` holds exactly, at every instant.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from node.core.events import Channel, Event

DEFAULT_LANE_SIZE = 10_000
DEFAULT_BACKLOG_SIZE = 10_000
_N_LANES = len(Channel)


class Outbox:
    """Queued events for one peer. The driver takes batches and reports back."""

    __slots__ = (
        "_inflight",
        "_lanes",
        "_queued",
        "aggregates_sent",
        "backlog",
        "backlog_size",
        "compressed",
        "connected",
        "control",
        "dropped",
        "lane_size",
        "offered",
        "sent",
        "throttled",
    )

    def __init__(
        self, *, lane_size: int = DEFAULT_LANE_SIZE, backlog_size: int = DEFAULT_BACKLOG_SIZE
    ) -> None:
        if lane_size < 1 or backlog_size < 0:
            raise ValueError("lane_size must be >= 1 and backlog_size >= 0")
        self.lane_size = lane_size
        self.backlog_size = backlog_size
        self._lanes: list[deque[Event]] = [deque() for _ in range(_N_LANES)]
        self._queued = 0  # events in lanes (not in flight)
        self._inflight: list[Event] = []
        self.backlog: deque[Event] = deque()
        self.control: deque[Any] = deque()
        self.connected = False
        self.offered = 0
        self.sent = 0
        self.compressed = 0
        self.throttled = 0
        self.aggregates_sent = 0
        self.dropped: dict[str, int] = {}

    # --- accounting of the variety verdicts (nothing to queue) ---

    def count_compressed(self) -> None:
        self.offered += 1
        self.compressed += 1

    def count_throttled(self) -> None:
        self.offered += 1
        self.throttled += 1

    # --- queueing ---

    def offer(self, event: Event) -> None:
        """Queue an event (or aggregate) for this peer."""
        if not event.compressed:
            self.offered += 1
        if self.connected and self._queued < self.lane_size:
            self._lanes[event.channel.priority].append(event)
            self._queued += 1
        else:
            # Unreachable, or connected but too slow to keep up: hold it in the
            # ring, which is replayed (oldest first) before newer lanes.
            self._to_backlog(event)

    def _to_backlog(self, event: Event) -> None:
        if self.backlog_size == 0:
            self._drop(event, "no_backlog")
            return
        if len(self.backlog) >= self.backlog_size:
            self._drop(self.backlog.popleft(), "backlog_overflow")
        self.backlog.append(event)

    def _drop(self, event: Event, reason: str) -> None:
        if not event.compressed:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def drop_oversize(self, event: Event) -> None:
        """The writer found ``event`` (already taken) too large for one frame."""
        self._inflight.remove(event)
        self._drop(event, "too_large")

    @property
    def pending(self) -> int:
        """Events waiting to be taken (backlog first, then lanes)."""
        return len(self.backlog) + self._queued if self.connected else 0

    def take_batch(self, limit: int) -> list[Event]:
        """Up to ``limit`` events: backlog (oldest first), then lanes by priority."""
        batch: list[Event] = []
        backlog = self.backlog
        while backlog and len(batch) < limit:
            batch.append(backlog.popleft())
        if len(batch) < limit and self._queued:
            for lane in self._lanes:
                while lane and len(batch) < limit:
                    batch.append(lane.popleft())
                    self._queued -= 1
                if len(batch) >= limit:
                    break
        self._inflight.extend(batch)
        return batch

    def mark_sent(self, batch: list[Event]) -> None:
        """The batch was written to the stream."""
        for event in batch:
            if event.compressed:
                self.aggregates_sent += 1
            else:
                self.sent += 1
        if len(batch) == len(self._inflight):
            self._inflight.clear()
        else:
            ids = {id(e) for e in batch}
            self._inflight = [e for e in self._inflight if id(e) not in ids]

    def set_connected(self, connected: bool) -> None:
        """On disconnect, everything not known written goes back to the backlog.

        The receiver deduplicates, so replaying a batch that may have arrived
        is safe; losing one is not.
        """
        if not connected and self.connected:
            # In flight first (it was the oldest), then the rest of the
            # backlog, then the lanes; the ring bound still applies.
            order = [*self._inflight, *self.backlog]
            for lane in self._lanes:
                order.extend(lane)
                lane.clear()
            self._inflight = []
            self._queued = 0
            self.backlog.clear()
            for event in order:
                self._to_backlog(event)
            self.control.clear()
        self.connected = connected

    @property
    def queued(self) -> int:
        """Original events in lanes or in flight (aggregates are not offered)."""
        in_lanes = sum(1 for lane in self._lanes for e in lane if not e.compressed)
        return in_lanes + sum(1 for e in self._inflight if not e.compressed)

    def stats(self) -> dict[str, Any]:
        backlogged = sum(1 for e in self.backlog if not e.compressed)
        return {
            "offered": self.offered,
            "sent": self.sent,
            "compressed": self.compressed,
            "throttled": self.throttled,
            "queued": self.queued,
            "backlogged": backlogged,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(self.dropped),
            "aggregates_sent": self.aggregates_sent,
            "connected": self.connected,
        }
