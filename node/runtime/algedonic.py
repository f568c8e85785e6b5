"""AlgedonicBroadcast: alarms over redundant paths, acknowledged by every node.

The trio driver around ``node.core.algedonic``. A scream goes to every member
other than this node, at once, over:

1. the existing connection, as a control message (ahead of every queued event);
2. an HMAC-signed UDP datagram (``node.runtime.datagrams``) to the peer's
   algedonic port, as it advertised in HELLO (``algedonic_port`` in its
   config; by default the number of its TCP port); a peer that advertised 0
   has no datagram path and is skipped (said once in the log, listed in
   stats); a member we never shook hands with is assumed to use the default;
3. for a target that has not confirmed within the first deadline, a fresh TCP
   connection through the normal authenticated handshake, with HELLO role
   ``algedonic_signal`` so the receiver handles the signal on it and never
   mistakes it for a second session;
4. this node's own S5 handlers and subscribers.

A receiver handles each signal id once, whatever the number of copies and
paths, and acknowledges every copy on the path it came by. The sender waits
for an ack from each target, retries the unconfirmed ones with backoff, and
returns once all have confirmed or failed: the call never outlives
``AlgedonicSettings.ceiling_s`` (plus scheduling).

No variety limit, breaker or backlog applies: control messages bypass the
outbox lanes, the datagram path has no state, and the fresh connection does
not ask the peer's breaker.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import attrs
import trio

from node.core.algedonic import (
    CONNECTION,
    DATAGRAM,
    FRESH,
    IMMEDIATE,
    LOCAL,
    SIGNAL_ROLE,
    AlgedonicLedger,
    AlgedonicSettings,
    Broadcast,
    Signal,
    check_signal,
)
from node.core.events import Event
from node.core.hlc import HLC
from node.core.wire import Algedonic, AlgedonicAck
from node.errors import (
    ClockError,
    ConnectionClosedError,
    HandshakeError,
    InvalidMessageError,
    ProtocolError,
)
from node.runtime.datagrams import AlgedonicDatagrams
from node.runtime.peer import FramedStream, Identity, PeerInfo, handshake
from node.telemetry import ALGEDONIC_BROADCAST_LATENCY, ALGEDONIC_CONFIRMATION

log = logging.getLogger("vsm.algedonic")

#: Telemetry callbacks: ``fn(name, measurements, metadata)`` (the node wires
#: node.telemetry's ``emit`` here; the names are that module's).
Telemetry = Callable[[tuple[str, ...], Mapping[str, float], Mapping[str, Any]], None]
BROADCAST_LATENCY = ALGEDONIC_BROADCAST_LATENCY
CONFIRMATION = ALGEDONIC_CONFIRMATION

# A signal-only connection is for one signal and its retries: bounded in
# frames and time, whoever is on the other end.
MAX_SIGNALS_PER_CONNECTION = 16
SIGNAL_CONNECTION_LIMIT_S = 10.0


class Links(Protocol):
    """What the broadcast needs of the cluster bridge."""

    members: dict[str, str]
    departed: set[str]
    address: str

    @property
    def peers(self) -> Mapping[str, Any]: ...

    def send_control(self, name: str, message: Any) -> bool: ...

    def identity(self) -> Identity: ...


class AlgedonicBroadcast:
    """Confirmed algedonic broadcast for one node. See the module docstring.

    ``links()`` returns the bridge (late-bound: the bridge is built with this
    object's handlers). ``deliver(event)`` hands a signal to local subscribers.
    """

    def __init__(
        self,
        config: Any,
        *,
        hlc: HLC,
        transport: Any,
        deliver: Callable[[Event], None],
        links: Callable[[], Links],
        settings: AlgedonicSettings | None = None,
    ) -> None:
        self.config = config
        self.name: str = config.name
        self.hlc = hlc
        self.transport = transport
        self.deliver = deliver
        self._links = links
        self.settings = settings or AlgedonicSettings()
        self.ledger = AlgedonicLedger(self.name, self.settings)
        #: Path 2, the signed UDP socket (the bridge opens it, the supervisor
        #: runs its receiver, the replication tasks poll it between frames).
        self.datagrams = AlgedonicDatagrams(
            config,
            hlc=hlc,
            transport=transport,
            ledger=self.ledger,
            settings=self.settings,
            peers=lambda: self._links().peers,
            on_signal=lambda peer, msg: self._receive(peer, msg, DATAGRAM),
            on_ack=lambda peer, ack: self._acked(peer, ack, DATAGRAM),
            later=self._later,
        )
        #: S5's handlers, called once per signal (ours and received) before subscribers.
        self.s5_handlers: list[Callable[[Signal], None]] = [_log_to_s5]
        #: Telemetry callbacks (see ``Telemetry``).
        self.telemetry: list[Telemetry] = []
        #: Message handlers for the bridge's reader.
        self.handlers: dict[type, Callable[[str, Any], None]] = {
            Algedonic: self.on_signal,
            AlgedonicAck: self.on_ack,
        }
        self._wakers: dict[str, trio.Event] = {}
        self._fresh: set[tuple[str, str]] = set()  # (signal id, target) connections open
        self._nursery: trio.Nursery | None = None

    # --- components ----------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The supervised service: runs screams raised from synchronous code."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def _later(self, fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Start ``fn(*args)`` in the service's nursery; none (stopping): the
        datagram is counted lost (the connection's copy is acked anyway)."""
        nursery = self._nursery
        if nursery is None:
            self.ledger.count("datagram_send_errors")
            return
        nursery.start_soon(fn, *args)

    # --- screaming ------------------------------------------------------------------

    def targets(self) -> list[str]:
        """Every member but this node (observers included), minus those who left."""
        links = self._links()
        names = set(links.members) | set(links.peers)
        return sorted(n for n in names if n != self.name and n not in links.departed)

    def reachable(self) -> list[str]:
        """Peers connected now."""
        return sorted(n for n, p in self._links().peers.items() if p.connected)

    async def scream(
        self, raw: Mapping[str, Any], *, targets: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Raise a signal and wait until every target confirmed or failed.

        ValueError (naming the field) if ``raw`` is not a valid signal. Returns
        ``{"id", "directive", "confirmed", "failed", "latency_ms", "attempts"}``.
        """
        spec = check_signal(raw)
        signal = Signal.make(f"{self.name}-{secrets.token_hex(8)}", spec, self.name, self.hlc.now())
        names = self.targets() if targets is None else list(targets)
        broadcast = self.ledger.start(signal, names, trio.current_time())
        self._wakers[signal.id] = trio.Event()
        message = signal.to_message()
        try:
            async with trio.open_nursery() as nursery:
                self._send_all(nursery, broadcast, message, broadcast.targets, 1)
                # Path 4, after the others are on their way: a slow local
                # subscriber must not hold the alarm back from the cluster.
                self._deliver(signal, LOCAL)
                await trio.lowlevel.checkpoint()
                while not broadcast.done:
                    with trio.move_on_at(broadcast.next_deadline):
                        await self._wakers[signal.id].wait()
                    self._wakers[signal.id] = trio.Event()
                    retry, failed = broadcast.due(trio.current_time())
                    for name, attempt in retry:
                        self.ledger.count("retries")
                        log.info("signal %s: no ack from %s, attempt %d", signal.id, name, attempt)
                        self._send_all(nursery, broadcast, message, [name], attempt)
                    for name in failed:
                        log.warning("signal %s: %s did not confirm", signal.id, name)
                nursery.cancel_scope.cancel()
        finally:
            del self._wakers[signal.id]
            result = self.ledger.finish(broadcast, trio.current_time())
        if result["latency_ms"] is not None:
            self._emit(
                BROADCAST_LATENCY,
                {"latency_ms": result["latency_ms"]},
                {
                    "signal_id": signal.id,
                    "type": signal.kind,
                    "severity": signal.severity,
                    "confirmed": len(result["confirmed"]),
                    "failed": len(result["failed"]),
                },
            )
        return result

    def scream_soon(self, raw: Mapping[str, Any], *, targets: Iterable[str] | None = None) -> bool:
        """Raise a signal from synchronous code; the outcome is logged.

        ValueError at once for a bad signal. False (logged, counted) when the
        service is not running, e.g. while it restarts.
        """
        check_signal(raw)
        if self._nursery is None:
            self.ledger.count("not_running")
            log.error("algedonic service not running: signal %r not sent", raw)
            return False
        self._nursery.start_soon(self._scream_and_log, raw, targets)
        return True

    async def _scream_and_log(self, raw: Mapping[str, Any], targets: Iterable[str] | None) -> None:
        try:
            result = await self.scream(raw, targets=targets)
        except Exception:  # one alarm's failure must not restart the service
            self.ledger.count("scream_errors")
            log.exception("algedonic signal %r could not be sent", raw)
            return
        level = logging.WARNING if result["failed"] else logging.INFO
        log.log(
            level,
            "signal %s (%s): confirmed by %s, failed %s",
            result["id"],
            result["directive"],
            result["confirmed"],
            result["failed"],
        )

    def partition_alarm(self, kind: str, data: Mapping[str, Any]) -> object:
        """For the partition detector's ``alarm(kind, data)``: the awaiting-operator
        alarm as a real scream (pain, severity 8) to every reachable member."""
        self.ledger.count("partition_alarms")
        return self.scream_soon(
            {"type": "pain", "severity": 8, "source": "partition_detector", "data": dict(data)},
            targets=self.reachable(),
        )

    def _send_all(
        self,
        nursery: trio.Nursery,
        broadcast: Broadcast,
        message: Algedonic,
        names: Iterable[str],
        attempt: int,
    ) -> None:
        """One attempt to each of ``names``: the datagrams first (the fastest
        path: the receiver reads them apart from any queue), sealed once for
        all (a fresh nonce per attempt), then the connections' copies."""
        links, datagrams = self._links(), self.datagrams
        sealed = datagrams.seal(message) if datagrams.raw is not None else None
        addresses = {name: self._address_of(name) for name in names}
        for name, address in addresses.items():
            udp = datagrams.target(name, address)
            if udp and not datagrams.send_now(message, udp, sealed):
                nursery.start_soon(datagrams.send, message, udp)
        for name, address in addresses.items():
            if links.send_control(name, message):
                self.ledger.count("copies_out_connection")
            key = (message.signal_id, name)
            if address and attempt >= self.settings.fresh_from_attempt and key not in self._fresh:
                self._fresh.add(key)
                nursery.start_soon(self._fresh_connection, name, address, message)

    def _address_of(self, name: str) -> str:
        links = self._links()
        address = links.members.get(name)
        if not address:
            peer = links.peers.get(name)
            address = getattr(peer, "address", "") if peer is not None else ""
        return address or ""

    async def _fresh_connection(self, name: str, address: str, message: Algedonic) -> None:
        """Path 3: a one-shot authenticated connection carrying just this signal."""
        cfg = self.config
        self.ledger.count("fresh_connections")
        try:
            try:
                with trio.fail_after(cfg.connect_timeout_s):
                    stream = await self.transport.connect(address)
            except (OSError, trio.TooSlowError) as exc:
                self.ledger.count("fresh_connect_failed")
                log.debug("signal connection to %s failed: %s", address, exc)
                return
            framed = FramedStream(stream, max_frame=cfg.max_frame, max_hops=cfg.max_hops)
            try:
                identity = attrs.evolve(self._links().identity(), role=SIGNAL_ROLE)
                info = await handshake(
                    framed, identity, initiator=True, time_limit_s=cfg.handshake_timeout_s
                )
                if info.name != name:
                    self.ledger.count("fresh_wrong_peer")
                    log.warning("signal connection to %s reached %s", address, info.name)
                    return
                self.ledger.count("copies_out_fresh_connection")
                await framed.send(message)
                for _ in range(MAX_SIGNALS_PER_CONNECTION):
                    reply = await framed.receive()
                    if isinstance(reply, AlgedonicAck):
                        self._acked(name, reply, FRESH)
                        return
                    if not isinstance(reply, Algedonic):
                        return  # BYE or anything unexpected ends it
            except (HandshakeError, ConnectionClosedError, ProtocolError) as exc:
                self.ledger.count("fresh_failed")
                log.debug("signal connection to %s: %s", name, exc)
            finally:
                await framed.aclose()
        finally:
            self._fresh.discard((message.signal_id, name))

    # --- receiving ------------------------------------------------------------------

    def on_signal(self, peer: str, msg: Algedonic) -> None:
        """A signal on the existing connection (the bridge's reader calls this)."""
        ack = self._receive(peer, msg, CONNECTION)
        if ack is not None and self._links().send_control(peer, ack):
            self.ledger.count("acks_out")

    def on_ack(self, peer: str, ack: AlgedonicAck) -> None:
        """An ack on the existing connection."""
        self._acked(peer, ack, CONNECTION)

    async def serve_signal_connection(self, info: PeerInfo, framed: FramedStream) -> None:
        """The receiving end of path 3 (the bridge hands over signal-only connections)."""
        with trio.move_on_after(SIGNAL_CONNECTION_LIMIT_S):
            for _ in range(MAX_SIGNALS_PER_CONNECTION):
                try:
                    msg = await framed.receive()
                except (ConnectionClosedError, ProtocolError):
                    return
                if not isinstance(msg, Algedonic):
                    return
                ack = self._receive(info.name, msg, FRESH)
                if ack is None:
                    return
                try:
                    await framed.send(ack)
                except ConnectionClosedError:
                    return
                self.ledger.count("acks_out")

    def _receive(self, peer: str, msg: Algedonic, path: str) -> AlgedonicAck | None:
        """Handle one copy: deliver the first, ack every valid one (None: ignore it)."""
        if msg.event.source != peer:
            self.ledger.count("source_mismatch")
            log.warning("%s sent a signal claiming origin %s", peer, msg.event.source)
            return None
        try:
            signal = Signal.from_message(msg)
        except InvalidMessageError as exc:
            self.ledger.count("invalid_signals")
            log.warning("invalid signal from %s: %s", peer, exc)
            return None
        try:
            self.hlc.update(signal.hlc)
        except ClockError as exc:
            # An alarm is not refused for a clock: deliver it, say so.
            self.ledger.count("clock_skew")
            log.warning("signal %s from %s: %s", signal.id, peer, exc)
        if self.ledger.receive(signal.origin, signal.id, path):
            self.ledger.delivered(signal, path)
            self._deliver(signal, path)
        return AlgedonicAck(signal.id, signal.origin, self.name)

    def _acked(self, peer: str, ack: AlgedonicAck, path: str) -> None:
        if ack.node != peer:
            self.ledger.count("source_mismatch")
            return
        now = trio.current_time()
        if self.ledger.ack(ack.signal_id, ack.origin, ack.node, path, now):
            broadcast = self.ledger.open[ack.signal_id]
            waker = self._wakers.get(ack.signal_id)
            if waker is not None:
                waker.set()
            self._emit(
                CONFIRMATION,
                {"latency_ms": round((now - broadcast.started) * 1000, 3)},
                {
                    "signal_id": ack.signal_id,
                    "node": peer,
                    "path": path,
                    "attempt": broadcast.attempts.get(peer, 0),
                },
            )

    def _deliver(self, signal: Signal, path: str) -> None:
        for handler in list(self.s5_handlers):
            try:
                handler(signal)
            except Exception:
                self.ledger.count("s5_handler_errors")
                log.exception("S5 handler failed on signal %s", signal.id)
        self.deliver(signal.to_event())

    def _emit(
        self, name: tuple[str, ...], measurements: Mapping[str, float], meta: Mapping[str, Any]
    ) -> None:
        for callback in list(self.telemetry):
            try:
                callback(name, measurements, meta)
            except Exception:
                self.ledger.count("telemetry_errors")
                log.exception("telemetry callback failed on %s", ".".join(name))

    # --- views ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        out = self.ledger.stats()
        out["datagram"] = self.datagrams.stats()
        s = self.settings
        out["settings"] = {
            "ack_timeout_ms": s.ack_timeout_s * 1000,
            "max_retries": s.max_retries,
            "ceiling_ms": round(s.ceiling_s * 1000, 3),
        }
        return out


def _log_to_s5(signal: Signal) -> None:
    """The default S5 handler: the signal in the log, where an operator sees it."""
    level = logging.ERROR if signal.directive == IMMEDIATE else logging.WARNING
    log.log(
        level,
        "S5: %s signal %s severity %d from %s@%s: %s",
        signal.kind,
        signal.id,
        signal.severity,
        signal.source,
        signal.origin,
        signal.directive,
    )
