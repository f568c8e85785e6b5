"""Replication: what crosses each link, exactly once or counted.

The bridge (node.runtime.bridge) manages connections; this module moves
events over them. Per peer, the sending side is an Outbox (node.core.outbox:
lanes, link sequence numbers, what is in flight until acknowledged) and the
receiving side an InboundLink (node.core.link: the highest number processed).

- ``replicate`` (the publish path) is synchronous: variety control, then an
  append to each peer's outbox. Publishing never waits on the network;
  ``wait_for_room`` (``Node.send``) and ``flush`` are the waiting forms.
- Sending follows Nagle's rule, not a timer: on an idle link (writer waiting,
  nothing in flight) the publish path writes the frame to the socket itself
  (``_write_now``; plain TCP only); events that arrive while frames are in
  flight or being written form the next batch, written by the connection's
  writer task. Control messages (heartbeats, acks) and alarms go first.
- The receiver validates each event on its own (a bad one is refused, the
  rest delivered), refuses events whose clock is too far ahead, updates the
  HLC once per batch with the batch's maximum before delivering (so replies
  stamped by subscribers come after what they answer), and acknowledges
  cumulatively; refusals travel back with the ack and are counted by the
  sender as dropped with their reason.
- Acks ride on frames going back where they can. A bare ACK goes at once for
  ACK_EVERY events, refusals, or a frame flagged ``ack_now`` (the sender's
  window is full, a producer waits, or it measures the round trip), and
  otherwise after at most ACK_DELAY_S (TCP's delayed ACK).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from node.core.batch import Run
from node.core.dedup import Deduplicator
from node.core.events import Event
from node.core.hlc import HLC, Timestamp
from node.core.outbox import TOO_LARGE, Outbox
from node.core.variety import VarietyManager, Verdict
from node.core.wire import HEADER, Ack, Events, Heartbeat, encode
from node.errors import ClockError, FrameTooLargeError, ProtocolError
from node.runtime.flow import FlowControl

if TYPE_CHECKING:
    from node.config import NodeConfig
    from node.core.link import InboundLink
    from node.runtime.peer import FramedStream
    from node.runtime.peerlink import PeerLink

log = logging.getLogger("vsm.replication")

# Reasons a receiver refuses an event (sent back in ACK, counted by the sender).
CLOCK_OFFSET = "clock_offset"
INVALID = "invalid_event"
SOURCE_MISMATCH = "source_mismatch"

_HLC = operator.itemgetter(4)  # Event.hlc, in C
_new = tuple.__new__
_CHANNEL = operator.itemgetter(1)  # Event.channel
#: At most this many events wait in the stage (Replicator.replicate) before
#: publish drains it itself: a producer that never yields still queues them.
STAGE_MAX = 256
# Enum members looked up once (from their class: about 0.14 µs each in 3.11).
_ADMIT, _COMPRESS = Verdict.ADMIT, Verdict.COMPRESS

# Delayed ACK: fewer than ACK_EVERY events' ack waits up to ACK_DELAY_S for an
# outgoing frame to ride on (epoll's timeout has millisecond steps).
ACK_EVERY = 128
ACK_DELAY_S = 0.001
_NEVER = float("inf")
# A frame of this many events (or a queue this deep) is a stream, not a reply:
# between such frames the reader and writers call ``urgent`` (a lone event's
# round trip does not pay for the look).
STREAMING = 64

# Round-trip samples (frames whose ack is asked for at once): at most this often.
RTT_PROBE_INTERVAL_S = 0.1

# Room in a frame for everything but the events (kind, numbers, array header).
_FRAME_OVERHEAD = 64


class Replicator:
    """Moves events between this node and its peers. See the module docstring."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        hlc: HLC,
        variety: VarietyManager,
        deliver: Callable[[Event], None],
        peers: dict[str, PeerLink],
        count: Callable[[str, int], None],
        deliver_many: Callable[[list[Event], bool], None] | None = None,
        urgent: Callable[[], object] | None = None,
    ) -> None:
        self.config = config
        self.hlc = hlc
        self.variety = variety
        self.deliver = deliver
        # A received batch in one call (Node._dispatch_many: no call per event),
        # and whether its events share one type and channel (one run: no check).
        self.deliver_many = deliver_many or self._deliver_each
        self.peers = peers
        self.count = count
        # Only events relayed through a third node need identity-based dedup;
        # direct ones are deduplicated by link sequence numbers.
        self.dedup = Deduplicator(config.dedup_size)
        #: Called by the writers before each frame of a stream (and by the
        #: bridge's reader after each one): what must not wait for a
        #: scheduler round, which a stream makes long.
        self.urgent: Callable[[], object] = urgent or _nothing
        #: Node.send's backpressure and Node.flush (their waiting forms).
        self.flow = FlowControl(config, peers, self.drain_stage)
        #: Published, not yet admitted nor queued (Node.publish appends while
        #: stage_open; see replicate and drain_stage). Never rebound.
        self.staged: list[Event] = []
        self.stage_open = False
        # trio.current_time() looks the clock up on every call; the publish
        # path asks once per event.
        self._now: Callable[[], float] = trio.lowlevel.current_clock().current_time

    def new_outbox(self) -> Outbox:
        c = self.config
        return Outbox(
            lane_size=c.lane_size,
            backlog_size=c.backlog_size,
            algedonic_size=c.algedonic_queue_size,
            window=c.send_window,
        )

    # --- the publish path (synchronous) ------------------------------------------

    def replicate(self, event: Event) -> Verdict:
        """Admit ``event`` through variety control and queue it for every peer.

        Then opens the stage when every connected peer's writer is sure to
        run soon (busy, or just woken) and none is blocked in a write: until
        one of them drains it, ``Node.publish`` only appends its events to
        ``staged``, and they are admitted and queued together (see drain_stage).
        """
        verdict = self.variety.admit_by(event, self._now)
        peers = self.peers.values()
        if verdict is _ADMIT:
            live = stage = False
            for peer in peers:
                outbox = peer.outbox
                outbox.offer(event)
                if peer.writer_waiting:
                    self._wake_writer(peer)
                framed = peer.framed
                if framed is not None:
                    if not live:
                        live = stage = True
                    if peer.writer_waiting or framed.sending:
                        stage = False  # it would not see what is staged soon
            if self.staged and not stage:
                # An alarm (never staged) found the stage open and closes it:
                # what waits there is queued now, before anything published next.
                self.drain_stage()
            self.stage_open = stage
        elif verdict is _COMPRESS:
            for peer in peers:
                peer.outbox.count_compressed()
        else:
            for peer in peers:
                peer.outbox.count_throttled()
        return verdict

    def drain_stage(self) -> None:
        """Admit and queue what ``Node.publish`` staged, all in one pass: one
        admission for a channel without a limit, one extend per peer. Called by
        the writers before they take a batch, by publish when STAGE_MAX events
        wait, and before anything reads the queues or the counters."""
        self.stage_open = False
        staged = self.staged
        if not staged:
            return
        batch = staged.copy()
        staged.clear()
        channels = list(map(_CHANNEL, batch))
        first = channels[0]
        one = first if channels.count(first) == len(channels) else None
        admitted, compressed, throttled = self.variety.admit_many(batch, one, self._now())
        rank = None if one is None else one.rank  # staged events are originals
        for peer in self.peers.values():
            outbox = peer.outbox
            if admitted:
                outbox.offer_many(admitted, rank)
                if peer.writer_waiting:
                    self._wake_writer(peer)
            if compressed:
                outbox.count_compressed(compressed)
            if throttled:
                outbox.count_throttled(throttled)

    def _wake_writer(self, peer: PeerLink) -> None:
        """Events were queued for ``peer`` while its writer waits: on an idle
        link write them now, from here (Nagle); else wake the writer."""
        outbox = peer.outbox
        if outbox.unacked or not self._write_now(peer):
            peer.notify()
            if not outbox.unacked:
                # An idle link the publish path could not write to (TLS):
                # send() lets the writer run now. With frames in flight,
                # their ack wakes it anyway (Nagle), and yielding per
                # event would cut a flood into small frames.
                self.flow.woke = True

    async def run_variety(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The variety service: close compression windows, feed adaptive quotas."""
        task_status.started()
        while True:
            await trio.sleep(self.variety.window_s)
            now = trio.current_time()
            self.drain_stage()  # staged events count in the window closing now
            for event in self.variety.flush(now):
                for peer in self.peers.values():
                    peer.outbox.offer(event)
                    peer.notify()
            # Outbound congestion feeds adaptive quotas: the fullest outbox.
            self.variety.set_system_pressure(self.congestion(), now)

    def congestion(self) -> float:
        """The fullest connected outbox, as a share of lane_size (run_variety drains first)."""
        worst = 0.0
        cap = max(self.config.lane_size, 1)
        for peer in self.peers.values():
            if peer.connected:
                worst = max(worst, peer.outbox.depth / cap)
        return min(worst, 1.0)

    # --- sessions ------------------------------------------------------------------

    def session_ended(self, peer: PeerLink) -> None:
        self.drain_stage()  # what it missed goes to its backlog, counted as today
        peer.rtt_probe = None  # an ack for it cannot come now
        peer.ack_now, peer.ack_deadline, peer.idle_scope = False, _NEVER, None
        peer.outbox.set_connected(False)
        self.flow.signal_progress()  # an unreachable peer never blocks a producer

    # --- the writer (one per connection) ---------------------------------------------

    def _write_now(self, peer: PeerLink) -> bool:
        """Nagle's rule from the publish path: the link is idle (writer waiting,
        nothing in flight), so write what is queued now, from here, instead of
        waking the writer task (a trip through the scheduler on every hop of a
        request/reply). False if that cannot be done here (TLS, control
        messages or refusals first, a write in progress): wake the writer."""
        framed = self._writable_here(peer)
        inbound = peer.inbound
        if framed is None or (inbound is not None and inbound.refused):
            return False  # refusals travel in an ACK only: the writer sends it first
        frame = self._next_frame(peer)
        if frame is not None and frame[0]:
            framed.write_now(frame[0])
            self._wrote(peer, frame[1])
            if framed.has_tail:
                return False  # the writer sends the rest
        return True

    @staticmethod
    def _writable_here(peer: PeerLink) -> FramedStream | None:
        """The connection, if a frame may be written to it from outside the
        writer task right now: the writer idle, no control message queued
        ahead, a plain socket with nothing else being written (None if not)."""
        framed = peer.framed
        if (
            framed is None
            or not peer.writer_waiting
            or peer.outbox.control
            or not framed.can_write_now
        ):
            return None
        return framed

    def _next_frame(self, peer: PeerLink) -> tuple[bytes, bool] | None:
        """The next EVENTS frame(s) for ``peer`` (None: nothing to take; b"": every
        event taken was too large and dropped), the reverse direction's ack riding
        on it, and whether it is a round-trip probe."""
        outbox = peer.outbox
        inbound = peer.inbound
        first, batch = outbox.take_batch(self.config.batch_max)
        if not batch:
            return None
        ack = self._take_ack(peer, inbound)[0] if inbound is not None and inbound.ack_due else 0
        probe = self._probe_due(peer)
        return self._encode(outbox, first, batch, ack, probe=probe), probe

    def _wrote(self, peer: PeerLink, probe: bool) -> None:
        peer.frames_out += 1
        if probe:
            peer.rtt_probe = (peer.outbox.next_seq - 1, self._now())

    async def writer(self, peer: PeerLink, framed: FramedStream) -> None:
        cfg = self.config
        outbox = peer.outbox
        inbound = peer.inbound
        urgent = self.urgent
        while True:
            if self.stage_open:
                self.drain_stage()
            if outbox.pending >= STREAMING:
                urgent()
            if framed.has_tail:  # left by _write_now: it goes before anything else
                await self._send(framed, b"")
                continue
            if outbox.control:
                await self._send(framed, encode(outbox.control.popleft(), max_frame=cfg.max_frame))
                continue
            if inbound is not None and inbound.refused and inbound.ack_due:
                await self._send_ack(framed, peer, inbound)  # refusals travel in an ACK only
                continue
            frame = self._next_frame(peer) if outbox.pending else None
            if frame is not None:
                if frame[0]:
                    # While the window has room for more of what is queued, the
                    # next frame follows without a trip through the scheduler:
                    # up to send_window events leave in one turn, so a producer
                    # that yields every few hundred events is not outrun by
                    # one frame (batch_max) per turn.
                    await self._send(framed, frame[0], pause=not outbox.pending)
                    self._wrote(peer, frame[1])
                continue
            # Delayed ACK (TCP's, RFC 1122 4.2.3.2): a few events' ack waits up
            # to ACK_DELAY_S for data going back to ride on (a reply); many
            # events, or a frame that asks for it, are acked at once.
            if inbound is not None and inbound.ack_due and self._ack_goes_now(peer, inbound):
                await self._send_ack(framed, peer, inbound)
                continue
            await self._idle(peer)

    @staticmethod
    def _ack_urgent(peer: PeerLink, inbound: InboundLink) -> bool:
        """An owed ack that is not delayed: many events, refusals, or a frame
        that asked for it (``ack_now``)."""
        return peer.ack_now or inbound.unacknowledged >= ACK_EVERY or bool(inbound.refused)

    def _ack_deadline(self, peer: PeerLink) -> float:
        """When the owed ack goes out at the latest (armed on first asking)."""
        if peer.ack_deadline == _NEVER:
            peer.ack_deadline = self._now() + ACK_DELAY_S
        return peer.ack_deadline

    def _ack_goes_now(self, peer: PeerLink, inbound: InboundLink) -> bool:
        """Whether an owed ack goes out now; else its deadline is armed."""
        return self._ack_urgent(peer, inbound) or self._now() >= self._ack_deadline(peer)

    async def _idle(self, peer: PeerLink) -> None:
        """Wait for work: a notify, or the held ack's deadline (on_events moves
        it without waking us, so a reply published meanwhile carries the ack)."""
        peer.wake = trio.Event()
        peer.writer_waiting = True
        with trio.CancelScope(deadline=peer.ack_deadline) as scope:
            peer.idle_scope = scope
            await peer.wake.wait()
        peer.idle_scope = None
        peer.writer_waiting = False

    async def _send(self, framed: FramedStream, data: bytes, *, pause: bool = True) -> None:
        """Write frames: at once if the socket takes them (no scheduler trip, no
        timeout scope), else through the stream, bounded by write_timeout_s.
        ``pause=False``: a written frame is not followed by a checkpoint."""
        if data and framed.can_write_now:
            framed.write_now(data)
            if not framed.has_tail:
                if pause:
                    # As send_all would: let the others run (the publisher, the
                    # reader with acks, alarms) before the next frame is built.
                    await trio.lowlevel.checkpoint()
                return
            data = b""
        with trio.fail_after(self.config.write_timeout_s):
            await framed.send_bytes(data)

    def _probe_due(self, peer: PeerLink) -> bool:
        """Whether the next frame measures the round trip (it then asks for its
        ack at once). At most one probe per RTT_PROBE_INTERVAL_S: each costs the
        peer a bare ACK that could otherwise have ridden on a reply."""
        return peer.rtt_probe is None and self._now() >= peer.next_probe

    @staticmethod
    def _take_ack(peer: PeerLink, inbound: InboundLink) -> tuple[int, dict[int, str]]:
        """Everything processed is acknowledged now (cumulative, with the
        refusals still owed): nothing is held or urgent any more, and the
        idle writer is not woken for the deadline the held ack had armed."""
        peer.ack_now = False
        if peer.ack_deadline != _NEVER:
            peer.ack_deadline = _NEVER
            scope = peer.idle_scope
            if scope is not None:
                scope.deadline = _NEVER
        return inbound.take_ack()

    async def _send_ack(self, framed: FramedStream, peer: PeerLink, inbound: InboundLink) -> None:
        await self._send(framed, self._ack_frame(peer, inbound))

    def _ack_frame(self, peer: PeerLink, inbound: InboundLink) -> bytes:
        """A bare ACK for everything processed (with the refusals still owed)."""
        upto, refused = self._take_ack(peer, inbound)
        return encode(Ack(upto, tuple(sorted(refused.items()))), max_frame=self.config.max_frame)

    def _encode(
        self, outbox: Outbox, first: int, batch: list[Event], ack: int, *, probe: bool = False
    ) -> bytes:
        cfg = self.config
        floor = outbox.ack_floor
        # Ask for the ack at once when it is what lets more go out, or what a
        # producer waits for, or when the frame measures the round trip (an
        # ack delay would count as network); else the receiver may hold it.
        now = probe or outbox.unacked >= outbox.window or self.flow.waiting > 0
        try:
            return encode(Events.of(batch, first, floor, ack, now), max_frame=cfg.max_frame)
        except FrameTooLargeError:
            pass
        # Too big for one frame: drop only events too large alone (counted;
        # they were never written, so the numbers stay whole), and split the
        # rest into frames that fit.
        limit = cfg.max_frame - _FRAME_OVERHEAD
        sizes: list[tuple[Event, int]] = []
        for event in list(batch):
            size = len(encode(Events.of((event,)), max_frame=1 << 62)) - HEADER.size
            if size > limit:
                outbox.drop_unwritten(event, TOO_LARGE)
                self.count("oversize_events", 1)
                log.warning("event %s from %s exceeds max_frame: dropped", event.type, event.source)
            else:
                sizes.append((event, size))
        frames: list[bytes] = []
        chunk: list[Event] = []
        used = 0
        seq = first
        for event, size in sizes:
            if chunk and used + size > limit:
                frames.append(encode(Events.of(chunk, seq, floor, ack, now), max_frame=limit << 1))
                seq += len(chunk)
                chunk, used = [], 0
            chunk.append(event)
            used += size
        if chunk:
            frames.append(encode(Events.of(chunk, seq, floor, ack, now), max_frame=limit << 1))
        return b"".join(frames)

    # --- receiving -----------------------------------------------------------------

    def on_ack(self, peer: PeerLink, msg: Ack) -> None:
        self._settle(peer, msg.upto, dict(msg.refused))

    def _settle(self, peer: PeerLink, upto: int, refused: dict[int, str] | None) -> None:
        outbox = peer.outbox
        probe = peer.rtt_probe
        if probe is not None and upto >= probe[0]:
            now = self._now()
            peer.next_probe = now + RTT_PROBE_INTERVAL_S
            sample = now - probe[1]
            srtt = peer.round_trip_s
            peer.round_trip_s = sample if srtt is None else srtt + (sample - srtt) / 8
            peer.rtt_probe = None
        if refused:
            reasons = set(refused.values())
            if CLOCK_OFFSET in reasons and not peer.refused_by_peer:
                peer.refused_by_peer = True
                log.warning(
                    "%s refuses our events: our clock is more than its max offset ahead "
                    "(counted as dropped: %s)",
                    peer.name,
                    CLOCK_OFFSET,
                )
        elif peer.refused_by_peer and upto >= outbox.ack_floor:
            peer.refused_by_peer = False
            log.info("%s accepts our events again", peer.name)
        if outbox.on_ack(upto, refused):
            # Waiters want a queue below low water (send) or empty (flush):
            # waking them for every ack above that only costs a trip each.
            flow = self.flow
            if flow.waiting and outbox.depth <= self.config.send_low_water:
                flow.signal_progress()
            if outbox.pending:
                peer.notify()  # the window has room again

    def on_events(self, peer: PeerLink, msg: Events) -> None:
        if msg.ack:
            self._settle(peer, msg.ack, None)
        items = msg.items
        inbound = peer.inbound
        if not items or inbound is None:
            return
        if msg.ack_now:
            peer.ack_now = True
        skip = inbound.begin(msg.first_seq, msg.ack_floor, msg.count)
        if skip:
            self.count("duplicates", skip)
        name = peer.name
        max_hops = self.config.max_hops
        limit = self.hlc.wall() + self.config.max_offset_ms
        accepted: list[Event] = []
        # Per run accepted whole: its column maxima, a bound on its stamps (in C)
        tops: list[Timestamp] = []
        bulk, uniform = 0, False  # events in whole runs; one type and channel
        seq = msg.first_seq
        single: list[Any] = []  # consecutive single events, checked together
        for item in items:
            if type(item) is not Run:
                if skip:  # delivered before a reconnect
                    skip -= 1
                    seq += 1
                else:
                    single.append(item)
                continue
            if single:
                self._accept_each(peer, self._checked(single), seq, accepted, limit)
                seq += len(single)
                single = []
            run: Run = item
            n = len(run.data)
            if skip:
                if skip >= n:
                    skip -= n
                    seq += n
                    continue
                run = run.tail(skip)
                seq += skip
                n -= skip
                skip = 0
            events = run.events(max_hops)
            if events is not None and run.source == name and (high := max(run.physical)) <= limit:
                # the common case: the whole run, checked in bulk
                uniform = type(run.type) is str and type(run.channel) is not list
                accepted += events
                bulk += n
                tops.append(_new(Timestamp, (high, max(run.logical), name)))
            else:
                checked = self._checked(run.rows()) if events is None else events
                self._accept_each(peer, checked, seq, accepted, limit)
            seq += n
        if single:
            self._accept_each(peer, self._checked(single), seq, accepted, limit)
        if accepted:
            if bulk == len(accepted):
                top = max(tops)
            else:  # some checked one by one (single, relayed, refused in part)
                top = max([*map(_HLC, accepted), *tops])
                uniform = False
            if peer.refusing_clock:
                peer.refusing_clock = False
                log.info("events from %s are within the clock bound again", name)
            try:
                self.hlc.update(top)
            except ClockError as exc:  # overflow only: the offset was checked above
                self.count("clock_errors", 1)
                log.warning("clock update from %s failed: %s", name, exc)
        peer.events_in += len(accepted)
        self.deliver_many(accepted, uniform and len(tops) == 1)
        if inbound.ack_due:  # not if a reply from a subscriber carried it already
            self._ack_due(peer, inbound)

    def _checked(self, raws: list[Any]) -> list[Event | ProtocolError]:
        """Each event validated on its own (``Event.from_wire``), or why not."""
        max_hops = self.config.max_hops
        out: list[Event | ProtocolError] = []
        for raw in raws:
            try:
                if type(raw) is Event:  # built here (tests): checked as if received
                    raw = raw.to_wire()
                out.append(Event.from_wire(raw, max_hops=max_hops))
            except ProtocolError as exc:
                out.append(exc)
        return out

    def _accept_each(
        self,
        peer: PeerLink,
        checked: list[Event] | list[Event | ProtocolError],
        seq: int,
        accepted: list[Event],
        limit: int,
    ) -> None:
        """Events that are not the common case (single, relayed, refused in
        part, or not plain), one by one, numbered from ``seq``."""
        inbound = peer.inbound
        assert inbound is not None
        name = peer.name
        me = self.config.name
        for event in checked:
            if isinstance(event, ProtocolError):
                inbound.refuse(seq, INVALID)
                self.count("invalid_events", 1)
                log.warning("invalid event from %s refused: %s", name, event)
                seq += 1
                continue
            source = event.source
            if source != name:
                if event.hops == 0:
                    inbound.refuse(seq, SOURCE_MISMATCH)
                    self.count("source_mismatch", 1)
                    log.warning("%s sent an event claiming source %s", name, source)
                    seq += 1
                    continue
                if source == me:
                    self.count("own_events_returned", 1)
                    seq += 1
                    continue
                if self.dedup.seen(source, event.hlc):
                    self.count("duplicates", 1)
                    seq += 1
                    continue
            hlc = event.hlc
            if hlc.physical > limit:
                inbound.refuse(seq, CLOCK_OFFSET)
                self.count("clock_rejected", 1)
                if not peer.refusing_clock:
                    peer.refusing_clock = True
                    log.warning(
                        "refusing events from %s: its clock is %d ms ahead of ours "
                        "(max_offset_ms %d); told the sender",
                        name,
                        hlc.physical - limit + self.config.max_offset_ms,
                        self.config.max_offset_ms,
                    )
                seq += 1
                continue
            accepted.append(event)
            seq += 1

    def _ack_due(self, peer: PeerLink, inbound: InboundLink) -> None:
        """An ack is owed: if it is urgent, send it now (straight to the socket
        when the writer is idle, else by waking the writer); if not, arm the
        delayed-ack deadline on the writer's idle wait without waking it."""
        if self._ack_urgent(peer, inbound):
            framed = self._writable_here(peer)
            if framed is not None:
                # The writer is idle: send it from here, as publish does events;
                # a round through the scheduler would hold the sender's window.
                framed.write_now(self._ack_frame(peer, inbound))
                if not framed.has_tail:
                    return
            peer.notify()
            return
        deadline = self._ack_deadline(peer)
        scope = peer.idle_scope
        if scope is not None and scope.deadline != deadline:
            scope.deadline = deadline

    def on_heartbeat_clock(self, peer: PeerLink, msg: Heartbeat) -> None:
        """Compare the sender's wall clock with ours, so a skewed peer is flagged on
        both sides (once per episode) before any event of its is refused."""
        if not msg.wall_ms:
            return
        # A heartbeat's transit (and a TCP retransmission's) only makes the
        # sender's clock look further behind than it is, never ahead: the
        # largest of the last few offsets is the estimate, so a late heartbeat
        # after a healed cut is not taken for a clock running behind.
        peer.clock_samples.append(msg.wall_ms - self.hlc.wall())
        offset = max(peer.clock_samples)
        peer.clock_offset_ms = offset
        bound = self.config.max_offset_ms
        skewed = abs(offset) > bound
        if skewed and not peer.clock_skewed:
            side = "ahead of" if offset > 0 else "behind"
            consequence = (
                "its events will be refused" if offset > 0 else ("our events will be refused there")
            )
            log.warning(
                "clock of %s is %d ms %s ours (max_offset_ms %d): %s",
                peer.name,
                abs(offset),
                side,
                bound,
                consequence,
            )
            self.count("clock_skew_episodes", 1)
        elif not skewed and peer.clock_skewed:
            log.info("clock of %s is back within %d ms of ours", peer.name, bound)
        peer.clock_skewed = skewed

    def _deliver_each(self, events: list[Event], uniform: bool = False) -> None:
        deliver = self.deliver
        for event in events:
            deliver(event)

    # --- views ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        self.drain_stage()
        return {
            "peers": {name: peer.outbox.stats() for name, peer in sorted(self.peers.items())},
            "dedup": {
                "remembered": len(self.dedup),
                "duplicates": self.dedup.duplicates,
            },
        }


def _nothing() -> None:
    """The default ``urgent``: nothing is."""
