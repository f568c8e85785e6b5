"""PeerLink: everything a node keeps about one named peer, connected or not.

The bridge (node.runtime.bridge) owns them; replication and the detector read
and update them. Per-peer state only: no behaviour beyond waking the writer.
"""

from __future__ import annotations

from collections import deque

import attrs
import trio

from node.core.breaker import CircuitBreaker
from node.core.link import InboundLink
from node.core.outbox import Outbox
from node.runtime.peer import FramedStream

# Heartbeats whose clock offsets are kept per peer: the largest is the estimate
# (node.runtime.replication.Replicator.on_heartbeat_clock says why).
CLOCK_SAMPLES = 5


@attrs.define(eq=False)
class PeerLink:
    """Everything this node keeps about one named peer, connected or not."""

    name: str
    address: str
    outbox: Outbox
    breaker: CircuitBreaker
    role: str = "member"
    incarnation: int = 0
    framed: FramedStream | None = None
    initiator: str = ""  # who dialed the current connection (tie-break)
    cancel: trio.CancelScope | None = None
    connected_since: float | None = None
    last_received: float | None = None
    departed: bool = False
    wake: trio.Event = attrs.Factory(trio.Event)
    writer_waiting: bool = False
    changed: trio.Event = attrs.Factory(trio.Event)
    inbound: InboundLink | None = None  # what we processed of its link
    events_in: int = 0
    frames_out: int = 0
    connects: int = 0
    disconnects: int = 0
    clock_offset_ms: int | None = None  # its wall clock minus ours, from heartbeats
    clock_samples: deque[int] = attrs.Factory(lambda: deque(maxlen=CLOCK_SAMPLES))
    clock_skewed: bool = False  # |offset| beyond max_offset_ms (logged once per episode)
    refusing_clock: bool = False  # we are refusing its events (clock too far ahead)
    refused_by_peer: bool = False  # it is refusing ours
    # Round trip: a frame's last number and when it was written, until the ack
    # that covers it; smoothed like TCP's SRTT (RFC 6298, alpha 1/8).
    rtt_probe: tuple[int, float] | None = None
    next_probe: float = float("-inf")  # no new probe before (replication's clock)
    round_trip_s: float | None = None
    ack_now: bool = False  # its last frame asked for an ack without delay
    ack_deadline: float = float("inf")  # a held (delayed) ack goes out by then
    idle_scope: trio.CancelScope | None = None  # the writer's wait for work
    # Its algedonic UDP port from its last HELLO (0: it has none; None: no HELLO yet).
    algedonic_port: int | None = None

    @property
    def connected(self) -> bool:
        return self.framed is not None

    def notify(self) -> None:
        if self.writer_waiting:
            self.writer_waiting = False
            self.wake.set()

    def signal_change(self) -> None:
        self.changed.set()
        self.changed = trio.Event()
