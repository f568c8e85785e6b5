"""A simulated network of named hosts with per-link faults, for tests and ``--demo``.

``SimNetwork`` hands out one ``SimTransport`` per host. A transport listens, connects
and opens datagram sockets the way the real TCP/UDP transport does, so the runtime
runs unchanged over it, and faults are injected by host name at any moment:
``cut`` (both ways or one way), ``delay``, ``loss``, ``isolate``, ``reset`` and
``heal``. Nothing here reads the wall clock, starts a thread or a task, or draws
an unseeded random number, so a scenario under trio's ``MockClock`` replays
exactly.

Streams resemble TCP closely enough for failure detection to be tested on them:

* Bytes arrive in order, each chunk ``delay`` seconds after it was sent.
* Across a cut nothing is lost: bytes (and the EOF) are held, as TCP keeps
  retransmitting, and arrive ``delay`` after the link heals. A cut also holds
  bytes that were on the wire but had not arrived yet.
* At most ``send_buffer`` bytes may be sent and not yet read by the peer
  application (TCP's send buffer plus the peer's receive window, as one bound),
  so a writer to a partitioned or stalled peer blocks in ``send_all``.
* Stream loss is ignored: TCP retransmits; ``loss`` only drops datagrams.
* ``aclose`` sends EOF like data. Once it has reached the other end, sending
  there raises ``BrokenResourceError`` (EPIPE); bytes that reach a closed reader
  are dropped. ``reset`` is a RST: both ends break at once and in-flight bytes
  are lost.

Links from a host to itself are loopback: never cut, never delayed.
"""

from __future__ import annotations

import errno
import math
import operator
import random
from collections import deque
from collections.abc import Mapping

import attrs
import trio

from node.sim.datagram import SimDatagramSocket
from node.sim.links import Address, LinkCounters, LinkStats, is_multicast

DEFAULT_SEND_BUFFER = 256 * 1024
# What receive_some(None) returns at most; trio leaves the size to the stream.
DEFAULT_RECEIVE_SIZE = 64 * 1024
# Ports handed out for port 0 and for the client end of connections (IANA dynamic range).
EPHEMERAL_PORTS = range(49152, 65536)
WILDCARD_HOSTS = frozenset({"0.0.0.0", "*", "", "::"})


@attrs.define(eq=False)
class _Chunk:
    data: bytes
    eof: bool
    # None while held by a cut; otherwise when it becomes readable.
    arrive_at: float | None


@attrs.define(eq=False)
class _Pipe:
    """One direction of a connection: bytes from ``src`` on their way to ``dst``."""

    src: str
    dst: str
    counters: LinkCounters
    # Invariant: arrived chunks first, then either scheduled or held chunks, never
    # both (a cut holds everything not yet arrived, a heal schedules it all).
    chunks: deque[_Chunk] = attrs.field(factory=deque)
    unread: int = 0  # payload bytes not yet taken by the reader: the send_buffer bound
    eof_sent: bool = False
    reader_closed: bool = False

    def push(self, data: bytes, eof: bool, arrive_at: float | None) -> None:
        if arrive_at is not None and self.chunks:
            last = self.chunks[-1].arrive_at
            if last is not None:
                # A delay lowered mid-stream must not let later bytes overtake earlier ones.
                arrive_at = max(arrive_at, last)
        self.chunks.append(_Chunk(data, eof, arrive_at))
        self.unread += len(data)
        self.counters.bytes_sent += len(data)
        self.counters.bytes_held += len(data)

    def arrived(self, now: float) -> bool:
        head = self.chunks[0] if self.chunks else None
        return head is not None and head.arrive_at is not None and head.arrive_at <= now

    def next_arrival(self) -> float:
        head = self.chunks[0] if self.chunks else None
        return math.inf if head is None or head.arrive_at is None else head.arrive_at

    def take(self, now: float, max_bytes: int) -> bytes | None:
        """Arrived bytes up to ``max_bytes``; ``b""`` at EOF; None if nothing arrived."""
        if not self.arrived(now):
            return None
        if self.chunks[0].eof:
            return b""  # the EOF chunk stays, so every later read sees EOF too
        parts: list[bytes] = []
        room = max_bytes
        while room and self.arrived(now) and not self.chunks[0].eof:
            head = self.chunks[0]
            if len(head.data) <= room:
                parts.append(self.chunks.popleft().data)
                room -= len(head.data)
            else:
                parts.append(head.data[:room])
                head.data = head.data[room:]
                room = 0
        data = b"".join(parts)
        self.unread -= len(data)
        self.counters.bytes_held -= len(data)
        self.counters.bytes_delivered += len(data)
        return data

    def drop(self, now: float | None) -> None:
        """Drop payload that has arrived by ``now`` (None: everything), counting it lost."""
        kept: deque[_Chunk] = deque()
        for chunk in self.chunks:
            gone = now is None or (chunk.arrive_at is not None and chunk.arrive_at <= now)
            if gone and not chunk.eof:
                self.unread -= len(chunk.data)
                self.counters.bytes_held -= len(chunk.data)
                self.counters.bytes_lost += len(chunk.data)
            else:
                kept.append(chunk)
        self.chunks = kept

    def eof_arrival(self) -> float:
        """When this pipe's EOF arrives (inf if not sent or held by a cut)."""
        if self.chunks and self.chunks[-1].eof and self.chunks[-1].arrive_at is not None:
            return self.chunks[-1].arrive_at
        return math.inf


@attrs.define(eq=False)
class _Conn:
    """Both directions of one connection; all its waiters share one parking lot.

    Every change (data, read, close, fault) wakes every waiter, who re-checks its
    own condition: simpler than per-condition wakeups and cheap at this scale.
    """

    forward: _Pipe  # client -> server
    backward: _Pipe  # server -> client
    lot: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot)
    broken: bool = False
    open_ends: int = 2


class SimNetwork:
    """Named hosts joined by links whose faults can be changed at any moment.

    Fault methods are synchronous and take effect immediately, also on open
    streams; call them from inside the trio run (they read ``trio.current_time``).
    """

    def __init__(self, *, seed: int = 0, send_buffer: int = DEFAULT_SEND_BUFFER) -> None:
        if send_buffer < 1:
            raise ValueError(f"send_buffer must be at least 1 byte, got {send_buffer}")
        self.send_buffer = send_buffer
        self._rng = random.Random(seed)
        self._transports: dict[str, SimTransport] = {}
        self._cuts: set[tuple[str, str]] = set()  # directed: (a, b) means a -> b is cut
        self._delays: dict[tuple[str, str], float] = {}
        self._losses: dict[tuple[str, str], float] = {}
        self._listeners: dict[Address, SimListener] = {}
        self._udp: dict[Address, SimDatagramSocket] = {}
        self._next_port: dict[str, int] = {}
        # dicts, not sets: iteration in insertion order keeps wakeups deterministic
        self._conns: dict[_Conn, None] = {}
        self._counters: dict[tuple[str, str], LinkCounters] = {}
        self._topology_changed = trio.lowlevel.ParkingLot()

    def transport(self, host: str) -> SimTransport:
        """The transport of ``host`` (created on first use; the same object after)."""
        if not host or ":" in host or host in WILDCARD_HOSTS or is_multicast(host):
            raise ValueError(f"bad host name {host!r}")
        if host not in self._transports:
            self._transports[host] = SimTransport(self, host)
        return self._transports[host]

    # --- faults ------------------------------------------------------------

    def cut(self, a: str, b: str, *, one_way: bool = False) -> None:
        """Stop traffic between ``a`` and ``b`` (only ``a -> b`` if ``one_way``)."""
        if a == b:
            raise ValueError(f"cannot cut host {a!r} from itself")
        self._cuts.add((a, b))
        if not one_way:
            self._cuts.add((b, a))
        self._faults_changed()

    def heal(self, a: str, b: str) -> None:
        """Restore both directions between ``a`` and ``b``; held bytes start moving."""
        self._cuts.discard((a, b))
        self._cuts.discard((b, a))
        self._faults_changed()

    def heal_all(self) -> None:
        """Remove every cut (delays and loss stay)."""
        self._cuts.clear()
        self._faults_changed()

    def isolate(self, host: str) -> None:
        """Cut ``host`` from every other host known now (hosts created later are not cut)."""
        for other in self._transports:
            if other != host:
                self._cuts.update({(host, other), (other, host)})
        self._faults_changed()

    def rejoin(self, host: str) -> None:
        """Undo ``isolate``: heal every link of ``host``."""
        self._cuts = {(a, b) for a, b in self._cuts if host not in (a, b)}
        self._faults_changed()

    def delay(self, a: str, b: str, seconds: float) -> None:
        """Add ``seconds`` of latency both ways; applies to chunks sent from now on."""
        if not seconds >= 0:
            raise ValueError(f"delay must be >= 0 seconds, got {seconds}")
        self._delays[a, b] = self._delays[b, a] = seconds

    def loss(self, a: str, b: str, probability: float) -> None:
        """Drop datagrams both ways with ``probability`` (seeded). Streams ignore it."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"loss probability must be within [0, 1], got {probability}")
        self._losses[a, b] = self._losses[b, a] = probability

    def reachable(self, a: str, b: str) -> bool:
        """Whether ``a`` can send to ``b`` now."""
        return a == b or (a, b) not in self._cuts

    def reset(self, a: str, b: str) -> None:
        """Break every open stream between ``a`` and ``b`` at once, like a RST."""
        for conn in list(self._conns):
            if {conn.forward.src, conn.forward.dst} == {a, b}:
                self._reset_conn(conn)

    def stats(self) -> dict[tuple[str, str], LinkStats]:
        """Counters per directed link ``(src, dst)`` that carried any traffic."""
        now = trio.current_time()
        for conn in self._conns:
            for pipe in (conn.forward, conn.backward):
                if pipe.reader_closed:
                    pipe.drop(now)  # bytes that reached a closed reader are lost by now
        return {
            link: LinkStats(**attrs.asdict(counters))
            for link, counters in sorted(self._counters.items())
        }

    # --- internals -----------------------------------------------------------

    def _delay_of(self, a: str, b: str) -> float:
        return 0.0 if a == b else self._delays.get((a, b), 0.0)

    def _link(self, a: str, b: str) -> LinkCounters:
        if (a, b) not in self._counters:
            self._counters[a, b] = LinkCounters()
        return self._counters[a, b]

    def _arrival(self, src: str, dst: str) -> float | None:
        if not self.reachable(src, dst):
            return None
        return trio.current_time() + self._delay_of(src, dst)

    def _faults_changed(self) -> None:
        now = trio.current_time()
        for conn in self._conns:
            for pipe in (conn.forward, conn.backward):
                if self.reachable(pipe.src, pipe.dst):
                    # Retransmission after the heal still crosses the link: delay again.
                    resend_at = now + self._delay_of(pipe.src, pipe.dst)
                    for chunk in pipe.chunks:
                        if chunk.arrive_at is None:
                            chunk.arrive_at = resend_at
                else:
                    for chunk in pipe.chunks:
                        if chunk.arrive_at is not None and chunk.arrive_at > now:
                            chunk.arrive_at = None
            conn.lot.unpark_all()
        self._topology_changed.unpark_all()

    def _free_port(self, host: str, taken: Mapping[Address, object]) -> int:
        span = len(EPHEMERAL_PORTS)
        start = self._next_port.get(host, 0)  # an index into EPHEMERAL_PORTS, rotating
        for i in range(span):
            port = EPHEMERAL_PORTS[(start + i) % span]
            if (host, port) not in taken:
                self._next_port[host] = (start + i + 1) % span
                return port
        raise OSError(errno.EADDRINUSE, f"no free port left on {host}")

    def _reset_conn(self, conn: _Conn) -> None:
        conn.broken = True
        for pipe in (conn.forward, conn.backward):
            pipe.drop(None)
        self._conns.pop(conn, None)
        conn.lot.unpark_all()

    def _close_end(self, conn: _Conn, out: _Pipe, inp: _Pipe) -> None:
        if not conn.broken:
            if not out.eof_sent and not out.reader_closed:
                out.eof_sent = True
                out.push(b"", True, self._arrival(out.src, out.dst))
            inp.reader_closed = True
            inp.drop(trio.current_time())  # already arrived: freed with the socket
        conn.open_ends -= 1
        if conn.open_ends == 0:
            for pipe in (conn.forward, conn.backward):
                pipe.drop(None)
            self._conns.pop(conn, None)
        conn.lot.unpark_all()


def _parse_address(address: str) -> Address:
    host, sep, port_text = address.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not 0 <= port <= 65535:
        raise ValueError(f"address {address!r} is not host:port")
    return host, port


class SimStream(trio.abc.HalfCloseableStream):
    """One end of a simulated TCP connection."""

    def __init__(
        self, net: SimNetwork, conn: _Conn, out: _Pipe, inp: _Pipe, local: str, remote: str
    ) -> None:
        self._net = net
        self._conn = conn
        self._out = out
        self._inp = inp
        self.local_address = local
        """This end, ``"host:port"``."""
        self.remote_address = remote
        """The other end, ``"host:port"``."""
        self._closed = False
        self._sending = False
        self._receiving = False

    def _check_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream is closed")
        if self._out.eof_sent:
            raise trio.ClosedResourceError("cannot send after send_eof")
        if self._conn.broken:
            raise trio.BrokenResourceError("connection reset")
        if self._peer_gone_at() <= trio.current_time():
            raise trio.BrokenResourceError("peer closed the connection (broken pipe)")

    def _peer_gone_at(self) -> float:
        # The peer has gone once it closed its reading side and its EOF reached us.
        return self._inp.eof_arrival() if self._out.reader_closed else math.inf

    def _dropping_at(self) -> float:
        # Bytes reaching a closed reader are dropped on arrival, which frees buffer room.
        return self._out.next_arrival() if self._out.reader_closed else math.inf

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; blocks while ``send_buffer`` bytes are unread by the peer."""
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            payload = bytes(data)  # copy: the caller may reuse its buffer after we return
            pos = 0
            out = self._out
            while True:
                self._check_send()
                if out.reader_closed:
                    out.drop(trio.current_time())
                if pos == len(payload):
                    return
                room = self._net.send_buffer - out.unread
                if room > 0:
                    piece = payload[pos : pos + room]
                    out.push(piece, False, self._net._arrival(out.src, out.dst))
                    pos += len(piece)
                    self._conn.lot.unpark_all()
                    continue
                # Full: wait for a read, a fault change, or a time-based event
                # (bytes reaching a closed reader, the peer's EOF arriving).
                wake = min(self._dropping_at(), self._peer_gone_at())
                with trio.move_on_at(wake):
                    await self._conn.lot.park()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Return once ``send_all`` could queue at least one byte without blocking."""
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream is closed")
                now = trio.current_time()
                if self._out.reader_closed:
                    self._out.drop(now)
                if (
                    self._conn.broken
                    or self._out.eof_sent
                    or self._peer_gone_at() <= now
                    or self._out.unread < self._net.send_buffer
                ):
                    return  # send_all will not block (it may raise)
                wake = min(self._dropping_at(), self._peer_gone_at())
                with trio.move_on_at(wake):
                    await self._conn.lot.park()
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Bytes that have arrived, up to ``max_bytes``; ``b""`` once EOF has arrived."""
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        else:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint()
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream is closed")
                if self._conn.broken:
                    raise trio.BrokenResourceError("connection reset")
                data = self._inp.take(trio.current_time(), max_bytes)
                if data is not None:
                    if data:
                        self._conn.lot.unpark_all()  # a blocked sender has room now
                    return data
                with trio.move_on_at(self._inp.next_arrival()):
                    await self._conn.lot.park()
        finally:
            self._receiving = False

    async def send_eof(self) -> None:
        """Half-close: the peer reads EOF after the data already sent."""
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("stream is closed")
        if self._out.eof_sent:
            return
        if self._conn.broken:
            raise trio.BrokenResourceError("connection reset")
        self._out.eof_sent = True
        self._out.push(b"", True, self._net._arrival(self._out.src, self._out.dst))
        self._conn.lot.unpark_all()

    async def aclose(self) -> None:
        """Close this end: EOF travels to the peer; unread incoming bytes are dropped."""
        if not self._closed:
            self._closed = True
            self._net._close_end(self._conn, self._out, self._inp)
        await trio.lowlevel.checkpoint()


class SimListener(trio.abc.Listener[SimStream]):
    """Accepts connections made to one ``host:port``."""

    def __init__(self, net: SimNetwork, address: Address) -> None:
        self._net = net
        self._address = address
        self._backlog: deque[tuple[_Conn, SimStream]] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False

    @property
    def address(self) -> str:
        """The bound ``"host:port"``."""
        return f"{self._address[0]}:{self._address[1]}"

    def _enqueue(self, conn: _Conn, stream: SimStream) -> None:
        self._backlog.append((conn, stream))
        self._lot.unpark_all()

    async def accept(self) -> SimStream:
        """Wait for the next incoming connection."""
        await trio.lowlevel.checkpoint()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("listener is closed")
            if self._backlog:
                return self._backlog.popleft()[1]
            await self._lot.park()

    async def aclose(self) -> None:
        """Stop listening; connections not yet accepted are reset."""
        if not self._closed:
            self._closed = True
            self._net._listeners.pop(self._address, None)
            while self._backlog:
                self._net._reset_conn(self._backlog.popleft()[0])
            self._lot.unpark_all()
        await trio.lowlevel.checkpoint()


class SimTransport:
    """The network as seen from one host; duck-types the real transport."""

    def __init__(self, net: SimNetwork, host: str) -> None:
        self._net = net
        self.host = host

    async def listen(self, address: str) -> tuple[SimListener, str]:
        """Listen on ``"host:port"`` (port 0: a free one); returns the bound address.

        The host part must be this host or a wildcard (``0.0.0.0``, ``*``, ``::``).
        """
        host, port = _parse_address(address)
        await trio.lowlevel.checkpoint()
        if host in WILDCARD_HOSTS:
            host = self.host
        if host != self.host:
            raise OSError(errno.EADDRNOTAVAIL, f"cannot bind {address} on host {self.host}")
        net = self._net
        if port == 0:
            port = net._free_port(host, net._listeners)
        elif (host, port) in net._listeners:
            raise OSError(errno.EADDRINUSE, f"address {host}:{port} already in use")
        listener = SimListener(net, (host, port))
        net._listeners[host, port] = listener
        return listener, listener.address

    async def connect(self, address: str) -> SimStream:
        """Open a stream to ``"host:port"``; takes one round trip of link delay.

        Blocks while either direction of the link is cut (SYN or SYN-ACK lost) and
        raises ``ConnectionRefusedError`` when nobody listens there.
        """
        host, port = _parse_address(address)
        net = self._net
        here = self.host
        while True:
            while not (net.reachable(here, host) and net.reachable(host, here)):
                await net._topology_changed.park()
            await trio.sleep(net._delay_of(here, host))  # the SYN crossing
            if net.reachable(here, host) and net.reachable(host, here):
                break  # otherwise the SYN was lost on the way: retransmit
        listener = net._listeners.get((host, port))
        if listener is None:
            await trio.sleep(net._delay_of(host, here))  # the RST coming back
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"connection to {address} refused")
        local = f"{here}:{net._free_port(here, net._listeners)}"
        conn = _Conn(
            _Pipe(here, host, net._link(here, host)), _Pipe(host, here, net._link(host, here))
        )
        net._conns[conn] = None
        client = SimStream(net, conn, conn.forward, conn.backward, local, listener.address)
        listener._enqueue(
            conn, SimStream(net, conn, conn.backward, conn.forward, listener.address, local)
        )
        try:
            await trio.sleep(net._delay_of(host, here))  # the SYN-ACK coming back
        except BaseException:
            net._reset_conn(conn)  # a half-open connection must not linger at the server
            raise
        return client

    async def open_datagram(self, port: int) -> SimDatagramSocket:
        """Bind a datagram socket to ``port`` on this host (0: a free one)."""
        await trio.lowlevel.checkpoint()
        net = self._net
        if port == 0:
            port = net._free_port(self.host, net._udp)
        elif not 0 < port <= 65535:
            raise ValueError(f"port {port} out of range")
        elif (self.host, port) in net._udp:
            raise OSError(errno.EADDRINUSE, f"udp address {self.host}:{port} already in use")
        sock = SimDatagramSocket(net, self.host, port)
        net._udp[self.host, port] = sock
        return sock
