"""ClusterBridge: connections to peers (dialing, admission, sessions).

Owns the listener, one dial loop per known address, one session per
connected peer (a reader and a writer) and the heartbeat timer. What travels
over a session is the Replicator's business (node.runtime.replication): the
bridge's one reader dispatches every message through one table, events and
acks to the replicator, heartbeats and BYE here, the rest to the handlers
given at construction.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import attrs
import trio

from node.config import NodeConfig
from node.core.admission import DEFAULT_MAX_PENDING, LogBudget, PendingHandshakes
from node.core.algedonic import SIGNAL_ROLE
from node.core.breaker import CircuitBreaker, Transition
from node.core.events import Event
from node.core.hlc import HLC
from node.core.link import InboundLink
from node.core.variety import VarietyManager, Verdict
from node.core.wire import Ack, AnyMessage, Bye, Events, Heartbeat, encode
from node.errors import (
    ConnectionClosedError,
    ForgedFrameError,
    FrameTooLargeError,
    HandshakeError,
    ProtocolError,
)
from node.runtime.busypoll import BusyPoll
from node.runtime.peer import (
    DUPLICATE_CONNECTION,
    DUPLICATE_NAME,
    MAX_BAD_FRAMES,
    OWN_NAME,
    SHUTTING_DOWN,
    FramedStream,
    Identity,
    PeerInfo,
    handshake,
)
from node.runtime.peerlink import PeerLink
from node.runtime.replication import STREAMING, Replicator
from node.runtime.transport import Transport

log = logging.getLogger("vsm.bridge")

Handler = Callable[[str, Any], None]

# Connections still in their handshake (not yet authenticated) at once; how
# they share the slots is node.core.admission's business.
MAX_PENDING_HANDSHAKES = DEFAULT_MAX_PENDING


class ClusterBridge:
    """Replication between this node and its peers. See the module docstring."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        transport: Transport,
        hlc: HLC,
        variety: VarietyManager,
        deliver: Callable[[Event], None],
        incarnation: int,
        deliver_many: Callable[[list[Event], bool], None] | None = None,
        heartbeat_factory: Callable[[], Heartbeat] | None = None,
        handlers: dict[type, Handler] | None = None,
        on_peer_change: Callable[[str, bool], None] | None = None,
        on_breaker: Callable[[str, Transition], None] | None = None,
        # serves an inbound signal-only connection (HELLO role
        # SIGNAL_ROLE) instead of a session; None refuses them like any duplicate.
        signal_session: Callable[[PeerInfo, FramedStream], Awaitable[None]] | None = None,
        # opens the algedonic UDP socket, given the bound TCP address, once
        # listening and before any handshake; held open while the bridge runs;
        # its value is the UDP port advertised in HELLO (0: none).
        datagrams: Callable[[str], AbstractAsyncContextManager[int]] | None = None,
        # called between frames by the reader and the writers: work that must
        # not wait for a scheduler round (the algedonic datagrams waiting).
        urgent: Callable[[], object] | None = None,
    ) -> None:
        self.config = config
        self.transport = transport
        self.hlc = hlc
        self.variety = variety
        self.deliver = deliver
        self.incarnation = incarnation
        self.heartbeat_factory = heartbeat_factory or self._default_heartbeat
        self.handlers: dict[type, Handler] = dict(handlers or {})
        self.on_peer_change = on_peer_change
        self.on_breaker = on_breaker
        self.signal_session = signal_session
        self.datagrams = datagrams
        self.algedonic_port = 0
        self.peers: dict[str, PeerLink] = {}
        self.members: dict[str, str] = {}
        self.departed: set[str] = set()
        self.address = ""
        self.counters: dict[str, int] = {}
        self._dialing: set[str] = set()
        self._self_addresses: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._rng = random.Random(f"{config.name}/{incarnation}")
        self._seq = 0
        self._stopping = False
        self._handshaking = 0
        self._pending = PendingHandshakes(total=MAX_PENDING_HANDSHAKES)
        self._pending_scopes: dict[object, trio.CancelScope] = {}
        self._log_budget = LogBudget()
        # Keeps the loop turning briefly after connection I/O (busy_poll_us).
        self.busy = BusyPoll(config.busy_poll_us / 1e6)
        self.replication = Replicator(
            config,
            hlc=hlc,
            variety=variety,
            deliver=deliver,
            deliver_many=deliver_many,
            peers=self.peers,
            count=self.count,
            urgent=urgent,
        )
        self._dispatch: dict[type, Callable[[PeerLink, Any], str | None]] = {
            Events: self.replication.on_events,
            Ack: self.replication.on_ack,
            Heartbeat: self._on_heartbeat,
            Bye: self._on_bye,
        }

    # --- counting and identity ---------------------------------------------------

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def identity(self) -> Identity:
        c = self.config
        return Identity(
            c.cluster, c.name, c.role, self.address, self.incarnation, c.cookie, self.algedonic_port
        )

    # --- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, dial seeds, keep timers; ``started(address)`` once listening."""
        listener, bound = await self.transport.listen(self.config.listen)
        self.address = self.config.advertise or bound
        self._self_addresses = {self.address, bound, self.config.listen}
        self.members[self.config.name] = self.address
        udp = self.datagrams(bound) if self.datagrams else contextlib.nullcontext(0)
        try:
            # The UDP socket is bound before the first HELLO goes out, so every
            # HELLO advertises the port that is really open.
            async with udp as self.algedonic_port, trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._accept_loop, listener)
                if self.busy.enabled:
                    nursery.start_soon(self.busy.run)
                nursery.start_soon(self._heartbeat_loop)
                for seed in self.config.seeds:
                    self._ensure_dialing(seed)
                task_status.started(self.address)
        finally:
            self._nursery = None
            self.algedonic_port = 0
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await listener.aclose()

    async def shutdown(self, reason: str = "shutdown") -> None:
        """Say BYE to every connected peer (they count a departure, not a failure)."""
        self._stopping = True
        self.replication.drain_stage()  # staged events are counted as queued
        bye = encode(Bye(self.config.name, reason))
        with trio.move_on_after(1):
            async with trio.open_nursery() as nursery:
                for peer in list(self.peers.values()):
                    if peer.framed is not None:
                        nursery.start_soon(self._send_bye, peer.framed, bye)

    @staticmethod
    async def _send_bye(framed: FramedStream, data: bytes) -> None:
        with contextlib.suppress(ConnectionClosedError):
            await framed.send_bytes(data)

    # --- replication (delegated) ----------------------------------------------------

    def replicate(self, event: Event) -> Verdict:
        """Admit ``event`` through variety control and queue it for every peer."""
        return self.replication.replicate(event)

    def send_control(self, name: str, message: AnyMessage) -> bool:
        """Queue a control message (ahead of events) for one connected peer."""
        peer = self.peers.get(name)
        if peer is None or not peer.connected:
            return False
        peer.outbox.control.append(message)
        peer.notify()
        return True

    def broadcast_control(self, message: AnyMessage) -> list[str]:
        return [name for name in list(self.peers) if self.send_control(name, message)]

    # --- timers ------------------------------------------------------------------------

    def _default_heartbeat(self) -> Heartbeat:
        self._seq += 1
        reach = tuple(sorted(n for n, p in self.peers.items() if p.connected))
        return Heartbeat(
            self.config.name, self._seq, reach, dict(self.members), {}, self.config.role
        )

    async def _heartbeat_loop(self) -> None:
        while True:
            await trio.sleep(self.config.heartbeat_interval_s)
            hb = self.heartbeat_factory()
            self.broadcast_control(attrs.evolve(hb, wall_ms=self.hlc.wall()))

    # --- peers --------------------------------------------------------------------------

    def _peer(self, name: str, address: str = "") -> PeerLink:
        peer = self.peers.get(name)
        if peer is None:
            peer = PeerLink(
                name,
                address,
                self.replication.new_outbox(),
                CircuitBreaker(on_transition=functools.partial(self._on_breaker, name)),
            )
            self.peers[name] = peer
        elif address:
            peer.address = address
        return peer

    def _on_breaker(self, name: str, t: Transition) -> None:
        log.info("breaker %s: %s -> %s (%s)", name, t.from_state, t.to_state, t.reason)
        self.count(f"breaker_{t.to_state}")
        if self.on_breaker is not None:
            self.on_breaker(name, t)

    def learn_member(self, name: str, address: str) -> None:
        """A member (from HELLO or a heartbeat): remember it and dial it."""
        if name == self.config.name or not address or name in self.departed:
            return
        if self.members.get(name) != address:
            self.members[name] = address
            self._peer(name, address)
        self._ensure_dialing(address)

    def discovered(self, address: str) -> None:
        """An address from discovery (static, gossip, DNS): dial it unless it is us."""
        self._ensure_dialing(address)

    def _ensure_dialing(self, address: str) -> None:
        if address in self._dialing or address in self._self_addresses or self._nursery is None:
            return
        self._dialing.add(address)
        self._nursery.start_soon(self._dial_loop, address)

    def _peer_at(self, address: str) -> PeerLink | None:
        for peer in self.peers.values():
            if peer.address == address:
                return peer
        return None

    async def _dial_loop(self, address: str) -> None:
        attempt = 0
        cfg = self.config
        rested = False
        while not self._stopping:
            peer = self._peer_at(address)
            if peer is not None and peer.connected:
                await peer.changed.wait()
                rested = False
                continue
            if peer is not None and peer.departed and not rested:
                # It said BYE: it is going away, not failing. Look for it again
                # (a restart) only at the slow pace, and never trip its breaker.
                await trio.sleep(cfg.reconnect_max_s * self._rng.uniform(0.5, 1.0))
                rested = True
                continue
            now = trio.current_time()
            if peer is not None and not peer.breaker.allow(now):
                until = peer.breaker.open_until
                await trio.sleep(max((until or now) - now, cfg.reconnect_base_s))
                continue
            ok = await self._dial_once(address)
            rested = False
            if ok is None:  # it was ourselves
                self._self_addresses.add(address)
                self._dialing.discard(address)
                return
            if ok:
                attempt = 0
                continue
            peer = self._peer_at(address)
            if peer is not None and not peer.departed:
                peer.breaker.record_failure(trio.current_time())
            attempt += 1
            departed = peer is not None and peer.departed
            base = cfg.reconnect_max_s if departed else cfg.reconnect_base_s * 2 ** min(attempt, 16)
            await trio.sleep(min(base, cfg.reconnect_max_s) * self._rng.uniform(0.5, 1.0))

    async def _dial_once(self, address: str) -> bool | None:
        """One connect + handshake + session. True if a session ran; None if self."""
        try:
            with trio.fail_after(self.config.connect_timeout_s):
                stream = await self.transport.connect(address)
        except (OSError, trio.TooSlowError) as exc:
            self.count("connect_failed")
            log.debug("connect to %s failed: %s", address, exc or type(exc).__name__)
            return False
        try:
            return await self._establish(stream, dialed=address)
        except HandshakeError as exc:
            if exc.kind == OWN_NAME and address not in self.members.values():
                return None
            return False

    async def _accept_loop(self, listener: Any) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # e.g. EMFILE: keep serving
                    self.count("accept_failed")
                    log.warning("accept failed: %s", exc)
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(self._accepted, stream)

    async def _accepted(self, stream: trio.abc.Stream) -> None:
        # Unauthenticated connections cost us memory and a timer each: each
        # takes a slot by node.core.admission's rules, displacing the oldest
        # idle stranger when the share is full, so none can block a member.
        host = source_host(stream)
        key = object()
        scope = trio.CancelScope()
        for old in self._pending.admit(key, host, member=host in self._member_hosts()):
            self.count("handshake_evicted")
            evicted = self._pending_scopes.pop(old, None)
            if evicted is not None:
                evicted.cancel()
        self._pending_scopes[key] = scope
        with contextlib.suppress(HandshakeError):  # counted and logged in _establish
            await self._establish(stream, dialed=None, slot=(key, scope))

    def _member_hosts(self) -> set[str]:
        """Hosts where a known member lives (their connections go ahead of strangers)."""
        hosts = {_host_of(a) for n, a in self.members.items() if n != self.config.name}
        hosts.update(_host_of(p.address) for p in self.peers.values() if p.address)
        hosts.discard("")
        return hosts

    async def _establish(
        self,
        stream: trio.abc.Stream,
        *,
        dialed: str | None,
        slot: tuple[object, trio.CancelScope] | None = None,
    ) -> bool:
        """Handshake on a fresh stream (dialed by us if ``dialed``), then run the session.

        A failed handshake is counted by its kind, logged, and re-raised. An
        inbound handshake holds ``slot`` (its key and the scope that evicts it).
        """
        cfg = self.config
        framed = FramedStream(
            stream, max_frame=cfg.max_frame, max_hops=cfg.max_hops, on_io=self.busy.poke
        )
        self._handshaking += 1
        scope = trio.CancelScope() if slot is None else slot[1]
        try:
            with scope:
                info = await handshake(
                    framed,
                    self.identity(),
                    initiator=dialed is not None,
                    time_limit_s=cfg.handshake_timeout_s,
                    admit=lambda i: self._admit(i, cfg.name if dialed is not None else i.name),
                )
            if scope.cancelled_caught:
                await framed.aclose()
                log.debug("evicted a pending handshake to make room")
                return False
        except HandshakeError as exc:
            await framed.aclose()
            self.count(exc.kind)
            benign = exc.kind in (DUPLICATE_CONNECTION, SHUTTING_DOWN) or self._stopping
            level = logging.DEBUG if benign else logging.WARNING
            held = 0
            if dialed is None and not benign:  # strangers may flood: rate-limit their lines
                allowed, held = self._log_budget.allow(exc.kind, trio.current_time())
                level = level if allowed else logging.DEBUG
            log.log(
                level,
                "handshake with %s failed (%s): %s%s",
                dialed or "inbound peer",
                exc.kind,
                exc,
                f" ({held} more like it not logged)" if held else "",
            )
            raise
        finally:
            self._handshaking -= 1
            if slot is not None:
                self._pending.release(slot[0])
                self._pending_scopes.pop(slot[0], None)
        if dialed is None and info.role == SIGNAL_ROLE and self.signal_session is not None:
            # A one-shot connection carrying algedonic signals only (node.runtime.algedonic).
            self.count("signal_connections")
            try:
                await self.signal_session(info, framed)
            finally:
                await framed.aclose()
            return True
        if dialed is not None and not info.address:
            info = attrs.evolve(info, address=dialed)
        initiator = cfg.name if dialed is not None else info.name
        await self._session(info, framed, initiator=initiator, dialed=dialed)
        return True

    def _admit(self, info: PeerInfo, initiator: str) -> tuple[str, str] | None:
        """One connection per pair: the one dialed by the smaller name wins."""
        if self._stopping:
            return SHUTTING_DOWN, "node is shutting down"
        if info.role == SIGNAL_ROLE and initiator == info.name and self.signal_session is not None:
            return None  # an inbound signal-only connection lives beside the session
        peer = self.peers.get(info.name)
        if peer is None or peer.framed is None:
            return None
        if peer.incarnation != info.incarnation:
            idle = trio.current_time() - (peer.last_received or 0.0)
            if idle > 2 * self.config.heartbeat_interval_s + 1:
                return None  # the old connection is silent: a restart, take the new one
            return DUPLICATE_NAME, f"{info.name!r} is already connected"
        if initiator < peer.initiator:
            return None  # the new one wins; _session closes the old one
        return DUPLICATE_CONNECTION, f"already connected to {info.name!r}"

    async def _session(
        self, info: PeerInfo, framed: FramedStream, *, initiator: str, dialed: str | None
    ) -> None:
        """Run one established connection until it ends."""
        peer = self._peer(info.name, info.address or dialed or "")
        if peer.framed is not None:
            # Both sides dialed and both handshakes passed admission at once:
            # apply the same tie-break on both sides, so both keep the same one.
            if not initiator < peer.initiator or peer.cancel is None:
                self.count("duplicate_connection")
                await framed.aclose()
                return
            peer.cancel.cancel()
            with trio.move_on_after(1):
                while peer.framed is not None:
                    await peer.changed.wait()
        now = trio.current_time()
        self.departed.discard(info.name)
        peer.departed = False
        peer.role, peer.incarnation, peer.initiator = info.role, info.incarnation, initiator
        peer.algedonic_port = info.algedonic_port
        if peer.inbound is None or peer.inbound.incarnation != info.incarnation:
            peer.inbound = InboundLink(info.incarnation)  # a new sender numbers anew
        else:
            peer.inbound.reconnected()
        peer.framed, peer.connected_since, peer.last_received = framed, now, now
        peer.connects += 1
        peer.breaker.record_success(now)
        peer.outbox.set_connected(True)
        peer.signal_change()
        if info.address:
            self.learn_member(info.name, info.address)
        self.count("connections")
        log.info("connected to %s at %s", info.name, info.address or "?")
        if self.on_peer_change:
            self.on_peer_change(info.name, True)
        outcome: list[tuple[str, bool]] = []
        try:
            with trio.CancelScope() as scope:
                peer.cancel = scope
                async with trio.open_nursery() as nursery:
                    cancel = nursery.cancel_scope
                    writer = self.replication.writer
                    nursery.start_soon(self._guard, writer, peer, framed, outcome, cancel)
                    nursery.start_soon(self._guard, self._reader, peer, framed, outcome, cancel)
        finally:
            reason, failed = outcome[0] if outcome else ("replaced or stopped", False)
            if failed and not peer.departed and not self._stopping:
                peer.breaker.record_failure(trio.current_time())
            peer.cancel = None
            peer.framed = None
            peer.connected_since = None
            peer.disconnects += 1
            self.replication.session_ended(peer)
            peer.wake.set()
            peer.signal_change()
            await framed.aclose()
            if self.on_peer_change:
                self.on_peer_change(info.name, False)
            log.info("disconnected from %s: %s", info.name, reason)

    @staticmethod
    async def _guard(
        part: Callable[[PeerLink, FramedStream], Any],
        peer: PeerLink,
        framed: FramedStream,
        outcome: list[tuple[str, bool]],
        cancel: trio.CancelScope,
    ) -> None:
        """Run reader or writer; the first to end records why and ends the session.

        Broken streams, write timeouts and oversize frames count as failures
        (they trip the breaker); a BYE does not.
        """
        try:
            reason = await part(peer, framed)
            outcome.append((str(reason or "closed"), False))
        except (ConnectionClosedError, trio.TooSlowError, FrameTooLargeError) as exc:
            what = "write timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
            outcome.append((what, True))
        cancel.cancel()

    async def _reader(self, peer: PeerLink, framed: FramedStream) -> str:
        cfg = self.config
        idle = cfg.acceptable_heartbeat_pause_s + 2 * cfg.heartbeat_interval_s
        # One scope for the session, its deadline moved on only when an eighth
        # of ``idle`` is used up (a scope per message cost more than the message):
        # a silent peer is hung up on after 7/8 to 8/8 of ``idle``.
        slack = idle / 8
        clock = trio.lowlevel.current_clock().current_time
        urgent = self.replication.urgent
        with trio.CancelScope(deadline=clock() + idle) as scope:
            while True:
                try:
                    msg = await framed.receive()
                except FrameTooLargeError:
                    self.count("bad_frames")
                    raise
                except ForgedFrameError as exc:
                    # Not from the peer that did the handshake: nothing after it can
                    # be trusted on this connection. Hang up; the peer reconnects.
                    self.count("forged_frames")
                    log.warning("forged frame on the connection to %s: %s", peer.name, exc)
                    raise ConnectionClosedError(f"forged frame: {exc}") from exc
                except ProtocolError as exc:
                    framed.bad_frames += 1
                    self.count("bad_frames")
                    log.warning("bad frame from %s: %s", peer.name, exc)
                    if framed.bad_frames > MAX_BAD_FRAMES:
                        raise ConnectionClosedError("too many bad frames") from exc
                    continue
                now = peer.last_received = clock()
                if scope.deadline - now < idle - slack:
                    scope.deadline = now + idle
                handler = self._dispatch.get(type(msg))
                if handler is not None:
                    ended = handler(peer, msg)
                    if ended:
                        return ended
                    if type(msg) is Events:
                        if msg.count >= STREAMING:
                            urgent()  # a stream: the scheduler's rounds are long
                        # One frame of events at a time, then the others run
                        # (an alarm's datagram, a reply's requester): a read
                        # of 64 KiB can hold a few hundred events. With
                        # nothing left from the last read, the next read
                        # lets them run (it waits, or checkpoints first).
                        if framed.buffered_frames:
                            await trio.lowlevel.checkpoint()
                    continue
                other = self.handlers.get(type(msg))
                if other is None:
                    self.count("unexpected_messages")
                    log.warning("unexpected %s from %s", type(msg).__name__, peer.name)
                else:
                    other(peer.name, msg)
        self.count("idle_timeouts")
        raise ConnectionClosedError(f"peer silent for {idle:g} s")

    def _on_bye(self, peer: PeerLink, msg: Bye) -> str:
        peer.departed = True
        self.departed.add(peer.name)
        self.count("departures")
        log.info("%s left: %s", peer.name, msg.reason or "bye")
        return f"peer left ({msg.reason})"

    # --- receiving ------------------------------------------------------------------------

    def _on_heartbeat(self, peer: PeerLink, msg: Heartbeat) -> None:
        if msg.node != peer.name:
            self.count("source_mismatch")
            return
        self.replication.on_heartbeat_clock(peer, msg)
        for name, address in msg.members.items():
            self.learn_member(name, address)
        handler = self.handlers.get(Heartbeat)
        if handler is not None:
            handler(peer.name, msg)

    # --- views ---------------------------------------------------------------------------

    def peer_states(self) -> dict[str, dict[str, Any]]:
        self.replication.drain_stage()  # queue figures include what publish staged
        now = trio.current_time()
        out = {}
        for name, peer in sorted(self.peers.items()):
            out[name] = {
                "connected": peer.connected,
                "address": peer.address,
                "role": peer.role,
                "breaker": str(peer.breaker.state(now)),
                "departed": peer.departed,
                "connects": peer.connects,
                "disconnects": peer.disconnects,
                "events_in": peer.events_in,
                "queue_depth": peer.outbox.depth,
                "unacked": peer.outbox.unacked,
                "clock_offset_ms": peer.clock_offset_ms,
                "round_trip_ms": (
                    None if peer.round_trip_s is None else round(peer.round_trip_s * 1000.0, 3)
                ),
                "clock_skewed": peer.clock_skewed,
                "last_received_s_ago": (
                    None if peer.last_received is None else round(now - peer.last_received, 3)
                ),
                "backlog": peer.outbox.backlogged,
            }
        return out

    def stats(self) -> dict[str, Any]:
        repl = self.replication.stats()
        # events_in is kept per peer only (once per event on the receive
        # path); the node-wide figure is their sum.
        counters = {**self.counters, "events_in": sum(p.events_in for p in self.peers.values())}
        return {
            "peers": repl["peers"],
            "counters": dict(sorted(counters.items())),
            "dedup": repl["dedup"],
            "busy_poll": self.busy.stats(),
        }


def _host_of(address: str) -> str:
    """The host part of ``host:port`` (``[v6]:port`` too)."""
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host.strip("[]")


def source_host(stream: Any) -> str:
    """Where an accepted stream comes from: its remote host, or "" if unknown."""
    remote = getattr(stream, "remote_address", None)  # the simulated network
    if isinstance(remote, str):
        return _host_of(remote)
    inner = getattr(stream, "transport_stream", stream)  # trio.SSLStream wraps the socket
    sock = getattr(inner, "socket", None)
    try:
        peer = sock.getpeername() if sock is not None else None
    except OSError:
        return ""
    host = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
    # a dual-stack listener reports IPv4 peers as IPv4-mapped IPv6 addresses
    return host.removeprefix("::ffff:")
