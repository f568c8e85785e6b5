"""AlgedonicBroadcast: alarms over redundant paths, acknowledged by every node.

The trio driver around ``node.core.algedonic``. A scream goes to every member
other than this node, at once, over:

1. the existing connection, as a control message (ahead of every queued event);
2. an HMAC-signed UDP datagram to the peer's algedonic port, as it advertised
   in HELLO (``algedonic_port`` in its config; by default the number of its
   TCP port); a peer that advertised 0 has no datagram path and is skipped
   (said once in the log, listed in stats); a member we never shook hands
   with is assumed to use the default;
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

import ipaddress
import logging
import secrets
import socket as stdlib_socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import attrs
import trio

from node.config import format_address, parse_address
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
    DatagramError,
    DatagramGuard,
    Signal,
    check_signal,
    seal,
    unseal,
)
from node.core.events import Event
from node.core.hlc import HLC
from node.core.wire import NONCE_SIZE, Algedonic, AlgedonicAck
from node.errors import (
    ClockError,
    ConnectionClosedError,
    HandshakeError,
    InvalidMessageError,
    ProtocolError,
)
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
RECV_SIZE = 65_536
MAX_DRAIN = 64  # datagrams handled per wakeup, so a flood cannot starve the loop
# poll() looks at the socket at most this often (a system call each time).
POLL_INTERVAL_S = 0.0005
WILDCARDS = frozenset({"*", "", "0.0.0.0"})


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
        self.guard = DatagramGuard(
            stale_after_s=self.settings.stale_after_s, remember=self.settings.remember
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
        self.datagram_address: tuple[str, int] | None = None
        self.datagram_status = "not started"
        self._sock: Any = None
        # The real socket under ``_sock``: sends to an IP address go out at once
        # with a non-blocking sendto, without waiting for the scheduler.
        self._raw: stdlib_socket.socket | None = None
        self._wakers: dict[str, trio.Event] = {}
        self._fresh: set[tuple[str, str]] = set()  # (signal id, target) connections open
        self._no_port_logged: set[str] = set()  # peers said (once) to have no UDP port
        self._nursery: trio.Nursery | None = None
        self._polled = 0.0  # perf_counter of poll's last look

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

    @asynccontextmanager
    async def open_datagrams(self, tcp_address: str) -> AsyncIterator[int]:
        """The UDP algedonic socket, for the bridge: bound once the TCP listener
        is (``tcp_address`` is what it bound), before any handshake, and open
        while the bridge runs. Yields the bound port, which HELLO advertises.

        The port is ``algedonic_port`` from the config (0: a free one), or by
        default the number of the TCP port. If it cannot be bound the datagram
        path is off (said in stats and the log), HELLO advertises 0 and the
        other paths carry the signals.
        """
        try:
            sock = await self._open_socket(tcp_address)
        except OSError as exc:
            self.datagram_status = f"unavailable: {exc}"
            self.ledger.count("datagram_bind_failed")
            log.warning("algedonic datagram path off: %s", exc)
            sock = None
        if sock is None:
            yield 0
            return
        self._sock = sock
        self.datagram_status = "bound"
        try:
            yield int(sock.getsockname()[1])
        finally:
            self._sock = self._raw = None
            self.datagram_status = "closed"
            sock.close()

    async def run_datagrams(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Receive on the UDP algedonic socket that ``open_datagrams`` bound.

        Supervised after the bridge, which holds the socket open; without a
        socket (it could not be bound) this waits, and the other paths carry
        the signals.
        """
        sock = self._sock
        if sock is None:
            task_status.started()
            await trio.sleep_forever()
        self.datagram_status = "open"
        try:
            task_status.started()
            while True:
                try:
                    data, sender = await sock.recvfrom(RECV_SIZE)
                except OSError as exc:  # e.g. ICMP port unreachable surfacing as ECONNREFUSED
                    self.ledger.count("datagram_receive_errors")
                    log.debug("algedonic datagram receive: %s", exc)
                    await trio.lowlevel.checkpoint()
                    continue
                await self._on_datagram(data, sender)
                self._drain()  # the others that came with it
        finally:
            if self._sock is sock:
                self.datagram_status = "bound"  # not receiving until restarted

    def poll(self) -> int:
        """Handle the datagrams waiting on the socket now, in whichever task
        calls; returns how many (at most MAX_DRAIN).

        The replication reader and writers call this between frames
        (``urgent`` of the bridge), so a signal or an ack does not wait for
        the scheduler to reach the datagram task: in a flooded loop that is a
        whole round of every task's work, milliseconds. At most once per
        ``POLL_INTERVAL_S`` (each look is a system call); without a real
        socket (the simulated network) it does nothing.
        """
        now = time.perf_counter()
        if now - self._polled < POLL_INTERVAL_S:
            return 0
        self._polled = now
        try:
            return self._drain()
        except Exception:  # a fault of ours must not end the caller's session
            self.ledger.count("datagram_handler_errors")
            log.exception("algedonic datagram handling failed (from a replication task)")
            return 0

    def _drain(self) -> int:
        """Handle what waits on the real socket now (at most MAX_DRAIN), without
        a scheduler round for each: acks from several peers arrive together."""
        raw = self._raw
        if raw is None:
            return 0
        for n in range(MAX_DRAIN):
            try:
                data, sender = raw.recvfrom(RECV_SIZE)
            except BlockingIOError:
                return n
            except OSError as exc:
                self.ledger.count("datagram_receive_errors")
                log.debug("algedonic datagram receive: %s", exc)
                return n
            ack = self._handle_datagram(data, sender)
            if ack is not None:  # the socket's buffer is full: a task waits to send it
                self._later(self._send_datagram, ack, tuple(sender[:2]))
        return MAX_DRAIN

    def _later(self, fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        nursery = self._nursery
        if nursery is None:  # not running (stopping): the connection's copy is acked
            self.ledger.count("datagram_send_errors")
            return
        nursery.start_soon(fn, *args)

    async def _open_socket(self, tcp_address: str) -> Any:
        host = parse_address(self.config.listen)[0]
        port = self.config.algedonic_port
        if port is None:
            port = parse_address(tcp_address)[1]
        open_datagram = getattr(self.transport, "open_datagram", None)
        if open_datagram is not None:  # the simulated network
            sock = await open_datagram(port)
        else:
            sockaddr: Any
            if host in WILDCARDS:
                family, sockaddr = stdlib_socket.AF_INET, ("0.0.0.0", port)
            elif host == "::":
                family, sockaddr = stdlib_socket.AF_INET6, ("::", port)
            else:
                infos = await trio.socket.getaddrinfo(host, port, type=stdlib_socket.SOCK_DGRAM)
                family, _, _, _, sockaddr = infos[0]
            raw = stdlib_socket.socket(family, stdlib_socket.SOCK_DGRAM)
            try:
                raw.setblocking(False)
                if family == stdlib_socket.AF_INET6:
                    raw.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY, 0)
                raw.bind(sockaddr)  # a resolved address: no lookup, does not block
            except BaseException:
                raw.close()
                raise
            sock = trio.socket.from_stdlib_socket(raw)
            self._raw = raw
        self.datagram_address = sock.getsockname()[:2]
        return sock

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
        links = self._links()
        sealed = self._seal(message) if self._raw is not None else None
        addresses = {name: self._address_of(name) for name in names}
        for name, address in addresses.items():
            udp = self._datagram_target(name, address) if self._sock is not None else None
            if udp and not self._datagram_now(message, udp, sealed):
                nursery.start_soon(self._send_datagram, message, udp)
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

    def _datagram_target(self, name: str, address: str) -> str | None:
        """``host:port`` of ``name``'s algedonic socket: the host of its TCP
        address and the port from its HELLO; None if it advertised none."""
        if not address:
            return None
        peer = self._links().peers.get(name)
        port = getattr(peer, "algedonic_port", None)
        if port is None:  # no HELLO from it yet: assume the default, the TCP port
            return address
        if port == 0:
            self.ledger.count("datagram_skipped_no_port")
            if name not in self._no_port_logged:
                self._no_port_logged.add(name)
                log.warning("%s advertised no algedonic port: no datagram path to it", name)
            return None
        self._no_port_logged.discard(name)
        try:  # the address came from the network: never let it raise here
            return format_address(parse_address(address)[0], port)
        except ValueError:
            self.ledger.count("datagram_bad_address")
            return None

    def _seal(self, message: Algedonic | AlgedonicAck) -> bytes:
        return seal(
            message,
            cookie=self.config.cookie,
            cluster=self.config.cluster,
            sender=self.name,
            hlc=self.hlc.now(),
            nonce=secrets.token_bytes(NONCE_SIZE),
        )

    def _sent_datagram(self, message: Algedonic | AlgedonicAck) -> None:
        self.ledger.count("copies_out_datagram" if isinstance(message, Algedonic) else "acks_out")

    def _datagram_now(
        self, message: Algedonic | AlgedonicAck, to: Any, sealed: bytes | None = None
    ) -> bool:
        """Send at once on the real socket if ``to`` is an IP address (True: done);
        ``sealed``: the message already sealed (one signal to several targets).

        False leaves it to ``_send_datagram`` (a host name to resolve, a full
        buffer, or the simulated network, whose sockets are async only).
        """
        raw = self._raw
        if raw is None:
            return False
        try:
            target = parse_address(to) if isinstance(to, str) else tuple(to)
            ipaddress.ip_address(target[0])
        except ValueError:
            return False
        try:
            raw.sendto(self._seal(message) if sealed is None else sealed, target)
        except BlockingIOError:
            return False
        except OSError as exc:
            self.ledger.count("datagram_send_errors")
            log.debug("algedonic datagram to %s: %s", to, exc)
            return True
        self._sent_datagram(message)
        return True

    async def _send_datagram(self, message: Algedonic | AlgedonicAck, to: Any) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            target = parse_address(to) if isinstance(to, str) else to
            await sock.sendto(self._seal(message), target)
        except (OSError, ValueError) as exc:
            self.ledger.count("datagram_send_errors")
            log.debug("algedonic datagram to %s: %s", to, exc)
            return
        self._sent_datagram(message)

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

    async def _on_datagram(self, data: bytes, sender: Any) -> None:
        ack = self._handle_datagram(data, sender)
        if ack is not None:
            await self._send_datagram(ack, tuple(sender[:2]))

    def _handle_datagram(self, data: bytes, sender: Any) -> AlgedonicAck | None:
        """Check and handle one datagram. Returns an ack the socket did not
        take at once (the caller sends it the slow way), else None."""
        try:
            sealed = unseal(data, cookie=self.config.cookie, cluster=self.config.cluster)
            self.guard.check(sealed, self.hlc.wall())
        except DatagramError as exc:
            key = f"datagrams_{exc.reason}"
            self.ledger.count(key)
            n = self.ledger.counters[key]
            if n == 1 or n % 1000 == 0:
                log.warning("algedonic datagram from %s ignored (%d so far): %s", sender, n, exc)
            return None
        msg = sealed.message
        if isinstance(msg, Algedonic):
            ack = self._receive(sealed.sender, msg, DATAGRAM)
            if ack is not None and not self._datagram_now(ack, sender[:2]):
                return ack
        else:
            self._acked(sealed.sender, msg, DATAGRAM)
        return None

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
        address = self.datagram_address
        peers = self._links().peers
        out["datagram"] = {
            "status": self.datagram_status,
            "address": None if address is None else format_address(*address[:2]),
            "peer_ports": {n: getattr(p, "algedonic_port", None) for n, p in sorted(peers.items())},
            "peers_without_port": sorted(
                n for n, p in peers.items() if getattr(p, "algedonic_port", None) == 0
            ),
        }
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
