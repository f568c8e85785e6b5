"""Datagram sockets of the simulated network (``node.sim``): UDP with faults.

Split from ``node.sim.network`` to keep modules small; ``SimTransport.open_datagram``
is how they are made. Loss and cuts are decided when a datagram is sent, by
the network the socket belongs to, seen through ``DatagramNet`` (the few parts
of it a socket uses), so this module does not import ``network`` back.
"""

from __future__ import annotations

import errno
import heapq
import math
import random
from typing import Protocol

import trio

from node.sim.links import Address, LinkCounters, is_multicast

# Like a UDP socket's receive buffer: arrivals beyond this many queued datagrams
# are dropped (and counted as lost) instead of growing memory without bound.
DEFAULT_DATAGRAM_QUEUE = 1024
# Largest UDP payload over IPv4; bigger sends fail with EMSGSIZE as on a real socket.
MAX_DATAGRAM = 65507


class DatagramNet(Protocol):
    """What a datagram socket needs of its network (``SimNetwork`` provides it)."""

    _udp: dict[Address, SimDatagramSocket]
    _losses: dict[tuple[str, str], float]
    _rng: random.Random

    def _link(self, a: str, b: str) -> LinkCounters: ...

    def _delay_of(self, a: str, b: str) -> float: ...

    def reachable(self, a: str, b: str) -> bool: ...


class SimDatagramSocket:
    """A UDP socket on a simulated host: the subset of ``trio.socket.SocketType`` used.

    Operations on a closed socket raise ``OSError(EBADF)``; a ``recvfrom``
    blocked when the socket is closed raises ``trio.ClosedResourceError``, both as
    trio sockets do. Loss and cuts are decided when a datagram is sent.
    """

    def __init__(self, net: DatagramNet, host: str, port: int) -> None:
        self._net = net
        self.host = host
        self.port = port
        self._groups: set[str] = set()
        # (arrive_at, sequence, payload, sender): datagrams may overtake each other
        # when links have different delays, as UDP allows.
        self._queue: list[tuple[float, int, bytes, Address]] = []
        self._sequence = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False

    def getsockname(self) -> Address:
        """The bound ``(host, port)``."""
        return self.host, self.port

    def join_group(self, group: str) -> None:
        """Receive datagrams sent to multicast ``group`` on this socket's port."""
        self._check_open()
        if not is_multicast(group):
            raise OSError(errno.EINVAL, f"{group} is not a multicast group")
        self._groups.add(group)

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "socket is closed")

    async def sendto(self, data: bytes, address: Address) -> int:
        """Send one datagram to ``(host, port)`` or a multicast ``(group, port)``."""
        await trio.lowlevel.checkpoint()
        self._check_open()
        payload = bytes(data)
        if len(payload) > MAX_DATAGRAM:
            raise OSError(
                errno.EMSGSIZE, f"datagram of {len(payload)} bytes exceeds {MAX_DATAGRAM}"
            )
        host, port = address
        net = self._net
        if is_multicast(host):
            for sock in list(net._udp.values()):
                if sock.port == port and host in sock._groups:
                    self._deliver(sock.host, sock, payload)
        else:
            self._deliver(host, net._udp.get((host, port)), payload)
        return len(payload)

    def _deliver(self, host: str, sock: SimDatagramSocket | None, payload: bytes) -> None:
        net = self._net
        counters = net._link(self.host, host)
        counters.datagrams_sent += 1
        probability = 0.0 if host == self.host else net._losses.get((self.host, host), 0.0)
        # Draw only for lossy links, so adding a lossless link keeps other draws unchanged.
        lost = probability > 0.0 and net._rng.random() < probability
        if (
            sock is None
            or lost
            or not net.reachable(self.host, host)
            or len(sock._queue) >= DEFAULT_DATAGRAM_QUEUE
        ):
            counters.datagrams_lost += 1
            return
        counters.datagrams_held += 1
        arrive_at = trio.current_time() + net._delay_of(self.host, host)
        sock._sequence += 1
        heapq.heappush(sock._queue, (arrive_at, sock._sequence, payload, (self.host, self.port)))
        sock._lot.unpark_all()

    async def recvfrom(self, bufsize: int) -> tuple[bytes, Address]:
        """The next datagram (truncated to ``bufsize``) and its sender ``(host, port)``."""
        await trio.lowlevel.checkpoint()
        self._check_open()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("socket was closed while receiving")
            if self._queue and self._queue[0][0] <= trio.current_time():
                _, _, payload, sender = heapq.heappop(self._queue)
                counters = self._net._link(sender[0], self.host)
                counters.datagrams_held -= 1
                counters.datagrams_delivered += 1
                return payload[:bufsize], sender
            with trio.move_on_at(self._queue[0][0] if self._queue else math.inf):
                await self._lot.park()

    def close(self) -> None:
        """Unbind; queued datagrams are lost. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._net._udp.get((self.host, self.port)) is self:
            del self._net._udp[self.host, self.port]
        for _, _, _, sender in self._queue:
            counters = self._net._link(sender[0], self.host)
            counters.datagrams_held -= 1
            counters.datagrams_lost += 1
        self._queue.clear()
        self._lot.unpark_all()

    def __enter__(self) -> SimDatagramSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
