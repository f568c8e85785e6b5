"""The algedonic datagram path: signed UDP, apart from every queue.

Path 2 of ``node.runtime.algedonic``: one UDP socket per node, bound beside
the TCP listener (``algedonic_port``; by default the number of the TCP port)
and advertised in HELLO. Every datagram is sealed with the cookie (HMAC,
nonce, HLC: ``node.core.algedonic.seal``); forged, unsigned, replayed and
stale ones are counted and ignored. Sends to an IP address go out at once
with a non-blocking ``sendto``; what cannot (a host name, a full buffer, the
simulated network) goes through trio.

Received datagrams are handled by the supervised task ``run`` and, while the
node streams events, by ``poll`` from the replication reader and writers
between frames. What a datagram carries is the broadcast's business: a
signal goes to ``on_signal`` (which returns the ack to send back), an ack to
``on_ack``.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket as stdlib_socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from node.config import format_address, parse_address
from node.core.algedonic import (
    AlgedonicLedger,
    AlgedonicSettings,
    DatagramError,
    DatagramGuard,
    seal,
    unseal,
)
from node.core.hlc import HLC
from node.core.wire import NONCE_SIZE, Algedonic, AlgedonicAck
from node.runtime.busypoll import sched_yield

log = logging.getLogger("vsm.algedonic")

RECV_SIZE = 65_536
MAX_DRAIN = 64  # datagrams handled per wakeup, so a flood cannot starve the loop
# poll() looks at the socket at most this often (a system call each time).
POLL_INTERVAL_S = 0.0005
WILDCARDS = frozenset({"*", "", "0.0.0.0"})

Message = Algedonic | AlgedonicAck


class AlgedonicDatagrams:
    """One node's algedonic UDP socket. See the module docstring.

    ``peers()`` returns the bridge's peer links (for the ports they
    advertised); ``later(fn, *args)`` runs an async send in the broadcast's
    nursery.
    """

    def __init__(
        self,
        config: Any,
        *,
        hlc: HLC,
        transport: Any,
        ledger: AlgedonicLedger,
        settings: AlgedonicSettings,
        peers: Callable[[], Mapping[str, Any]],
        on_signal: Callable[[str, Algedonic], AlgedonicAck | None],
        on_ack: Callable[[str, AlgedonicAck], None],
        later: Callable[..., None],
    ) -> None:
        self.config = config
        self.name: str = config.name
        self.hlc = hlc
        self.transport = transport
        self.ledger = ledger
        self.guard = DatagramGuard(stale_after_s=settings.stale_after_s, remember=settings.remember)
        self._peers = peers
        self._on_signal = on_signal
        self._on_ack = on_ack
        self._later = later
        self.address: tuple[str, int] | None = None
        self.status = "not started"
        self.sock: Any = None
        # The real socket under ``sock``: sends to an IP address go out at once
        # with a non-blocking sendto, without waiting for the scheduler.
        self.raw: stdlib_socket.socket | None = None
        self._no_port_logged: set[str] = set()  # peers said (once) to have no UDP port
        self._polled = 0.0  # perf_counter of poll's last look

    # --- the socket ------------------------------------------------------------------

    @asynccontextmanager
    async def open(self, tcp_address: str) -> AsyncIterator[int]:
        """The socket, for the bridge: bound once the TCP listener is
        (``tcp_address`` is what it bound), before any handshake, and open
        while the bridge runs. Yields the bound port, which HELLO advertises.

        The port is ``algedonic_port`` from the config (0: a free one), or by
        default the number of the TCP port. If it cannot be bound the datagram
        path is off (said in stats and the log), HELLO advertises 0 and the
        other paths carry the signals.
        """
        try:
            sock = await self._open_socket(tcp_address)
        except OSError as exc:
            self.status = f"unavailable: {exc}"
            self.ledger.count("datagram_bind_failed")
            log.warning("algedonic datagram path off: %s", exc)
            sock = None
        if sock is None:
            yield 0
            return
        self.sock = sock
        self.status = "bound"
        try:
            yield int(sock.getsockname()[1])
        finally:
            self.sock = self.raw = None
            self.status = "closed"
            sock.close()

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
            self.raw = raw
        self.address = sock.getsockname()[:2]
        return sock

    # --- receiving -------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Receive on the socket that ``open`` bound.

        Supervised after the bridge, which holds the socket open; without a
        socket (it could not be bound) this waits, and the other paths carry
        the signals.
        """
        sock = self.sock
        if sock is None:
            task_status.started()
            await trio.sleep_forever()
        self.status = "open"
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
                ack = self._handle(data, sender)
                if ack is not None:
                    await self.send(ack, tuple(sender[:2]))
                self._drain()  # the others that came with it
        finally:
            if self.sock is sock:
                self.status = "bound"  # not receiving until restarted

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
        # Streaming keeps this process runnable for whole time slices, and on a
        # machine it shares with other nodes, one of them may have an alarm
        # waiting for the CPU: offer it now (a no-op when nobody waits).
        sched_yield()
        try:
            return self._drain()
        except Exception:  # a fault of ours must not end the caller's session
            self.ledger.count("datagram_handler_errors")
            log.exception("algedonic datagram handling failed (from a replication task)")
            return 0

    def _drain(self) -> int:
        """Handle what waits on the real socket now (at most MAX_DRAIN), without
        a scheduler round for each: acks from several peers arrive together."""
        raw = self.raw
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
            ack = self._handle(data, sender)
            if ack is not None:  # the socket's buffer is full: a task waits to send it
                self._later(self.send, ack, tuple(sender[:2]))
        return MAX_DRAIN

    def _handle(self, data: bytes, sender: Any) -> AlgedonicAck | None:
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
            ack = self._on_signal(sealed.sender, msg)
            if ack is not None and not self.send_now(ack, sender[:2]):
                return ack
        else:
            self._on_ack(sealed.sender, msg)
        return None

    # --- sending ---------------------------------------------------------------------

    def target(self, name: str, address: str) -> str | None:
        """``host:port`` of ``name``'s algedonic socket: the host of its TCP
        address and the port from its HELLO; None if it advertised none (or
        this node has no socket)."""
        if not address or self.sock is None:
            return None
        peer = self._peers().get(name)
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

    def seal(self, message: Message) -> bytes:
        return seal(
            message,
            cookie=self.config.cookie,
            cluster=self.config.cluster,
            sender=self.name,
            hlc=self.hlc.now(),
            nonce=secrets.token_bytes(NONCE_SIZE),
        )

    def send_now(self, message: Message, to: Any, sealed: bytes | None = None) -> bool:
        """Send at once on the real socket if ``to`` is an IP address (True: done);
        ``sealed``: the message already sealed (one signal to several targets).

        False leaves it to ``send`` (a host name to resolve, a full buffer, or
        the simulated network, whose sockets are async only).
        """
        raw = self.raw
        if raw is None:
            return False
        try:
            target = parse_address(to) if isinstance(to, str) else tuple(to)
            ipaddress.ip_address(target[0])
        except ValueError:
            return False
        try:
            raw.sendto(self.seal(message) if sealed is None else sealed, target)
        except BlockingIOError:
            return False
        except OSError as exc:
            self.ledger.count("datagram_send_errors")
            log.debug("algedonic datagram to %s: %s", to, exc)
            return True
        self._sent(message)
        return True

    async def send(self, message: Message, to: Any) -> None:
        """Send through trio: resolves a host name, waits for buffer room."""
        sock = self.sock
        if sock is None:
            return
        try:
            target = parse_address(to) if isinstance(to, str) else to
            await sock.sendto(self.seal(message), target)
        except (OSError, ValueError) as exc:
            self.ledger.count("datagram_send_errors")
            log.debug("algedonic datagram to %s: %s", to, exc)
            return
        self._sent(message)

    def _sent(self, message: Message) -> None:
        self.ledger.count("copies_out_datagram" if isinstance(message, Algedonic) else "acks_out")

    # --- views -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        address = self.address
        peers = self._peers()
        return {
            "status": self.status,
            "address": None if address is None else format_address(*address[:2]),
            "peer_ports": {n: getattr(p, "algedonic_port", None) for n, p in sorted(peers.items())},
            "peers_without_port": sorted(
                n for n, p in peers.items() if getattr(p, "algedonic_port", None) == 0
            ),
        }
