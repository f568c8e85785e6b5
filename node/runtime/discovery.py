"""Peer discovery: static host lists, signed UDP multicast gossip, DNS.

Every strategy has the same shape: ``await strategy.run(found)`` calls
``found("host:port")`` for each peer address it learns, possibly many times
(the caller dedups and dials), and runs until cancelled. Addresses are
normalised by :func:`parse_address`: hostnames lower-cased, IPv6 compressed
and bracketed (``"[::1]:7401"``).

Gossip security, in short: announcements are HMAC-SHA256-signed with the
cluster cookie (domain-separated from the peer handshake's use of the same
key), compared in constant time; a valid signature only makes a node *dial*
an address, and the dialled peer must still pass the authenticated handshake,
so a forged or replayed announcement at worst causes a failed dial. Replays are
bounded by a timestamp window (announcements more than
``max_skew_s`` = 30 s older or newer than our wall clock are rejected; nodes'
clocks must agree that well, which the HLC's 500 ms max offset demands anyway)
and, within it, by remembering ``(node, nonce)`` pairs.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs
import msgpack
import trio

from node.core.hlc import MAX_NODE_NAME
from node.errors import ConfigError

DEFAULT_GOSSIP_GROUP = "224.1.1.2"
DEFAULT_GOSSIP_PORT = 45892
DEFAULT_GOSSIP_TTL = 1
DEFAULT_GOSSIP_INTERVAL_S = 1.0
# Announcements are at most ~800 bytes with maximal names; refusing anything
# bigger keeps a datagram within one Ethernet frame and the parser cheap.
MAX_ANNOUNCEMENT = 1200
DEFAULT_MAX_SKEW_S = 30.0
# Bound on remembered (node, nonce) pairs: one per node per interval over the
# skew window is 30 per node at the default 1 s, so this covers ~130 nodes; past
# it the oldest are forgotten and only the timestamp window guards them.
MAX_REMEMBERED_NONCES = 4096
NONCE_SIZE = 16
MAC_SIZE = 32
GOSSIP_MAGIC = "vsm-gossip"
GOSSIP_VERSION = 1
# Prefixed to what is signed so a gossip MAC can never stand in for a handshake
# proof (or anything else) made with the same cookie.
_MAC_DOMAIN = b"vsm-console gossip v1\x00"

DEFAULT_DNS_INTERVAL_S = 5.0
MAX_HOSTNAME = 253

log = logging.getLogger("vsm.discovery")

Found = Callable[[str], None]


class Discovery(Protocol):
    """What every discovery strategy offers."""

    async def run(
        self, found: Found, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...


class DatagramSocketLike(Protocol):
    """The part of a UDP socket gossip uses: a trio socket or a simulated one."""

    def sendto(self, data: bytes, address: tuple[str, int], /) -> Awaitable[object]: ...

    def recvfrom(self, bufsize: int, /) -> Awaitable[tuple[bytes, Any]]: ...

    def close(self) -> None: ...


SocketFactory = Callable[[], Awaitable[DatagramSocketLike]]
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


# --- addresses -------------------------------------------------------------------

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
# Letters, digits, "-" inside labels, and "_" (seen in SRV-style and k8s names).
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def format_address(host: str, port: int) -> str:
    """``"host:port"``, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str) -> tuple[str, int]:
    """Split and validate ``"host:port"`` / ``"[v6]:port"``; ConfigError if bad.

    The host comes back normalised (hostnames lower-case without a trailing
    dot, IPv6 compressed, no brackets), so the same peer is one string.
    """
    if not isinstance(text, str):
        raise ConfigError(f"peer address must be a string 'host:port', got {type(text).__name__}")
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ConfigError(f"peer address {text!r:.80}: IPv6 must be '[addr]:port'")
        raw_host, raw_port = text[1:close], text[close + 2 :]
        try:
            host = ipaddress.IPv6Address(raw_host).compressed
        except ValueError:
            raise ConfigError(f"peer address {text!r:.80}: {raw_host!r} is not IPv6") from None
    else:
        raw_host, sep, raw_port = text.rpartition(":")
        if not sep or not raw_host:
            raise ConfigError(f"peer address {text!r:.80} must be 'host:port'")
        if ":" in raw_host:
            raise ConfigError(f"peer address {text!r:.80}: write IPv6 as '[addr]:port'")
        host = _check_host(raw_host, text)
    if not (raw_port.isascii() and raw_port.isdigit()) or not 0 < int(raw_port) <= 65535:
        raise ConfigError(f"peer address {text!r:.80}: port must be 1..65535")
    return host, int(raw_port)


def normalize_address(text: str) -> str:
    """``text`` validated and in the one canonical spelling; ConfigError if bad."""
    return format_address(*parse_address(text))


def _check_host(raw: str, text: str) -> str:
    host = raw.lower().removesuffix(".")
    if all(c.isdigit() or c == "." for c in host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ConfigError(f"peer address {text!r:.80}: {raw!r} is not IPv4") from None
    if len(host) > MAX_HOSTNAME or not _HOSTNAME.fullmatch(host):
        raise ConfigError(f"peer address {text!r:.80}: {raw!r:.80} is not a valid hostname")
    return host


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


# --- static ------------------------------------------------------------------------


class StaticDiscovery:
    """A fixed list of peers (like Erlang's ``.hosts.erlang``), each reported once."""

    def __init__(self, hosts: Sequence[str]) -> None:
        if isinstance(hosts, str):
            raise ConfigError("static hosts must be a list of 'host:port', not one string")
        # dict: dedup but keep the configured order, which is the dial order
        self.hosts: tuple[str, ...] = tuple(dict.fromkeys(normalize_address(h) for h in hosts))

    async def run(
        self, found: Found, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Report every host, then wait to be cancelled."""
        for address in self.hosts:
            found(address)
        task_status.started()
        await trio.sleep_forever()


# --- gossip: the sans-IO part ---------------------------------------------------


@attrs.frozen
class Announcement:
    """One node saying "I am here" to its cluster."""

    cluster: str
    node: str
    address: str
    timestamp_ms: int
    nonce: bytes

    def to_wire(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "node": self.node,
            "address": self.address,
            "ts": self.timestamp_ms,
            "nonce": self.nonce,
        }

    @classmethod
    def from_wire(cls, raw: object) -> Announcement:
        """Validate a decoded body; ``_Rejected("malformed")`` if it is not one."""
        if not isinstance(raw, dict) or set(raw) != {"cluster", "node", "address", "ts", "nonce"}:
            raise _Rejected("malformed", "body is not an announcement map")
        cluster, node, address = raw["cluster"], raw["node"], raw["address"]
        ts, nonce = raw["ts"], raw["nonce"]
        for field, value in (("cluster", cluster), ("node", node)):
            if type(value) is not str or not 0 < len(value) <= MAX_NODE_NAME:
                raise _Rejected("malformed", f"{field} must be 1..{MAX_NODE_NAME} chars")
        if type(ts) is not int or not 0 <= ts < 2**63:
            raise _Rejected("malformed", "ts must be a non-negative int")
        if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
            raise _Rejected("malformed", f"nonce must be {NONCE_SIZE} bytes")
        if type(address) is not str or len(address) > MAX_HOSTNAME + 8:
            raise _Rejected("malformed", "address must be a short string")
        try:
            address = normalize_address(address)
        except ConfigError as exc:
            raise _Rejected("malformed", str(exc)) from None
        return cls(cluster, node, address, ts, nonce)


class _Rejected(Exception):
    """Why a datagram was ignored: ``counter`` names the counter to bump."""

    def __init__(self, counter: str, reason: str) -> None:
        super().__init__(reason)
        self.counter = counter


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, _MAC_DOMAIN + body, hashlib.sha256).digest()


def encode_announcement(announcement: Announcement, cookie: str) -> bytes:
    """The signed datagram: msgpack ``[magic, version, body, mac]``."""
    body: bytes = msgpack.packb(announcement.to_wire(), use_bin_type=True)
    mac = _mac(cookie.encode(), body)
    datagram: bytes = msgpack.packb([GOSSIP_MAGIC, GOSSIP_VERSION, body, mac], use_bin_type=True)
    if len(datagram) > MAX_ANNOUNCEMENT:
        raise ConfigError(f"announcement of {len(datagram)} bytes exceeds {MAX_ANNOUNCEMENT}")
    return datagram


def _unpack(data: bytes) -> object:
    # Only ever fed <= MAX_ANNOUNCEMENT bytes, so the limits just keep the
    # parser from building anything larger than the datagram suggests.
    return msgpack.unpackb(
        data,
        raw=False,
        strict_map_key=True,
        max_str_len=MAX_ANNOUNCEMENT,
        max_bin_len=MAX_ANNOUNCEMENT,
        max_array_len=8,
        max_map_len=8,
        max_ext_len=0,
    )


@attrs.define
class GossipFilter:
    """Sans-IO acceptance of gossip datagrams: bytes and ``now`` in, address out.

    Checks, in order: size, envelope, body, cluster, signature, own node,
    timestamp window, replay. Each rejection bumps one counter in
    ``counters``; ``received`` counts every datagram offered.
    """

    cluster: str
    node: str
    cookie: str
    max_skew_s: float = DEFAULT_MAX_SKEW_S
    counters: dict[str, int] = attrs.field(
        factory=lambda: dict.fromkeys(
            (
                "received",
                "accepted",
                "own",
                "oversized",
                "malformed",
                "rejected_cluster",
                "rejected_signature",
                "rejected_stale",
                "rejected_replay",
            ),
            0,
        )
    )
    # (node, nonce) -> timestamp_ms, oldest first
    _seen: collections.OrderedDict[tuple[str, bytes], int] = attrs.field(
        factory=collections.OrderedDict
    )

    def receive(self, data: bytes, now: float) -> str | None:
        """The announced address if ``data`` is acceptable, else None (counted)."""
        self.counters["received"] += 1
        try:
            announcement = self._check(data, now)
        except _Rejected as rejected:
            self.counters[rejected.counter] += 1
            log.debug("gossip datagram ignored (%s): %s", rejected.counter, rejected)
            return None
        if announcement.node == self.node:
            self.counters["own"] += 1
            return None
        self.counters["accepted"] += 1
        return announcement.address

    def _check(self, data: bytes, now: float) -> Announcement:
        if len(data) > MAX_ANNOUNCEMENT:
            raise _Rejected("oversized", f"{len(data)} bytes > {MAX_ANNOUNCEMENT}")
        try:
            envelope = _unpack(data)
        except Exception as exc:  # untrusted bytes: any decoding failure is theirs
            raise _Rejected("malformed", f"not msgpack: {type(exc).__name__}") from None
        if (
            not isinstance(envelope, list)
            or len(envelope) != 4
            or envelope[0] != GOSSIP_MAGIC
            or envelope[1] != GOSSIP_VERSION
            or type(envelope[2]) is not bytes
            or type(envelope[3]) is not bytes
        ):
            raise _Rejected("malformed", "not a version 1 announcement envelope")
        body, mac = envelope[2], envelope[3]
        try:
            raw = _unpack(body)
        except Exception as exc:
            raise _Rejected("malformed", f"body not msgpack: {type(exc).__name__}") from None
        announcement = Announcement.from_wire(raw)
        # Cluster before signature: another cluster on the same group and port
        # is a setup mistake worth telling apart from a bad cookie.
        if announcement.cluster != self.cluster:
            raise _Rejected("rejected_cluster", f"cluster {announcement.cluster!r:.40}")
        if not hmac.compare_digest(mac, _mac(self.cookie.encode(), body)):
            raise _Rejected("rejected_signature", f"bad signature from {announcement.node!r:.40}")
        skew_s = abs(now * 1000 - announcement.timestamp_ms) / 1000
        if skew_s > self.max_skew_s:
            raise _Rejected("rejected_stale", f"timestamp {skew_s:.1f} s off our clock")
        self._remember(announcement, now)
        return announcement

    def _remember(self, announcement: Announcement, now: float) -> None:
        horizon_ms = (now - self.max_skew_s) * 1000
        while self._seen and (
            next(iter(self._seen.values())) < horizon_ms or len(self._seen) >= MAX_REMEMBERED_NONCES
        ):
            self._seen.popitem(last=False)
        key = (announcement.node, announcement.nonce)
        if key in self._seen:
            raise _Rejected("rejected_replay", f"nonce seen before from {announcement.node!r:.40}")
        self._seen[key] = announcement.timestamp_ms


# --- gossip: the trio driver -------------------------------------------------------


async def open_multicast_socket(
    group: str = DEFAULT_GOSSIP_GROUP,
    port: int = DEFAULT_GOSSIP_PORT,
    *,
    interface: str = "0.0.0.0",
    ttl: int = DEFAULT_GOSSIP_TTL,
) -> trio.socket.SocketType:
    """A UDP socket bound to ``port`` that has joined IPv4 ``group`` on ``interface``.

    Reusable address and port, so several nodes on one host can listen; our own
    datagrams loop back (the receiver recognises and counts them). With a
    specific ``interface`` (e.g. ``"127.0.0.1"``) sends go out there too.
    """
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            # some kernels define it but refuse it; SO_REUSEADDR then suffices on Linux
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind(("", port))
        membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        if interface != "0.0.0.0":
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    except BaseException:
        sock.close()
        raise
    return sock


class GossipDiscovery:
    """Find peers by UDP multicast announcements signed with the cluster cookie.

    Every ``interval_s`` the node multicasts ``address`` to ``group:port``; it
    reports the address of every valid announcement from another node of the
    same cluster. Invalid datagrams are counted in ``counters`` (see
    :class:`GossipFilter`; plus ``sent``, ``send_errors``, ``receive_errors``)
    and logged at debug. ``socket_factory`` replaces the real multicast socket,
    e.g. with the simulated network's; ``wall_clock`` (seconds since the epoch)
    stamps and checks announcements.
    """

    def __init__(
        self,
        *,
        cluster: str,
        node: str,
        address: str,
        cookie: str,
        group: str = DEFAULT_GOSSIP_GROUP,
        port: int = DEFAULT_GOSSIP_PORT,
        ttl: int = DEFAULT_GOSSIP_TTL,
        interval_s: float = DEFAULT_GOSSIP_INTERVAL_S,
        interface: str = "0.0.0.0",
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        socket_factory: SocketFactory | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        for field, value in (("cluster", cluster), ("node", node)):
            if not isinstance(value, str) or not 0 < len(value) <= MAX_NODE_NAME:
                raise ConfigError(f"gossip {field} must be 1..{MAX_NODE_NAME} chars")
        if not isinstance(cookie, str) or not cookie:
            raise ConfigError("gossip needs the cluster cookie: unsigned gossip is not supported")
        host, _ = parse_address(address)
        if _is_unspecified(host):
            raise ConfigError(f"gossip must announce a reachable address, not {address!r}")
        try:
            multicast = ipaddress.IPv4Address(group).is_multicast
            ipaddress.IPv4Address(interface)
        except ValueError as exc:
            raise ConfigError(f"gossip group and interface must be IPv4: {exc}") from None
        if not multicast:
            raise ConfigError(f"gossip group {group} is not an IPv4 multicast address")
        if not 0 < port <= 65535:
            raise ConfigError(f"gossip port must be 1..65535, got {port}")
        if not 0 <= ttl <= 255:
            raise ConfigError(f"gossip ttl must be 0..255, got {ttl}")
        for field, seconds in (("interval_s", interval_s), ("max_skew_s", max_skew_s)):
            if not (seconds > 0 and math.isfinite(seconds)):
                raise ConfigError(f"gossip {field} must be a positive number, got {seconds}")
        self.cluster = cluster
        self.node = node
        self.address = normalize_address(address)
        self.group = group
        self.port = port
        self.interval_s = interval_s
        self._cookie = cookie
        self._wall_clock = wall_clock
        self._socket_factory: SocketFactory = socket_factory or functools.partial(
            open_multicast_socket, group, port, interface=interface, ttl=ttl
        )
        self._filter = GossipFilter(cluster, node, cookie, max_skew_s)
        self.counters = self._filter.counters
        self.counters.update(sent=0, send_errors=0, receive_errors=0)
        # Fails now, at configuration time, if the names make it too big.
        self._announcement()

    def _announcement(self) -> bytes:
        return encode_announcement(
            Announcement(
                self.cluster,
                self.node,
                self.address,
                int(self._wall_clock() * 1000),
                os.urandom(NONCE_SIZE),
            ),
            self._cookie,
        )

    async def run(
        self, found: Found, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Announce and listen until cancelled; started once the socket is open."""
        sock = await self._socket_factory()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._announce_forever, sock)
                task_status.started()
                await self._receive_forever(sock, found)
        finally:
            sock.close()

    async def _announce_forever(self, sock: DatagramSocketLike) -> None:
        # Scheduled on a fixed grid so the period does not drift by send time.
        next_at = trio.current_time()
        while True:
            try:
                await sock.sendto(self._announcement(), (self.group, self.port))
                self.counters["sent"] += 1
            except OSError as exc:
                # e.g. ENETUNREACH while an interface comes up: try next time
                self.counters["send_errors"] += 1
                log.debug("gossip announcement not sent: %s", exc)
            next_at += self.interval_s
            await trio.sleep_until(next_at)

    async def _receive_forever(self, sock: DatagramSocketLike, found: Found) -> None:
        while True:
            try:
                data, sender = await sock.recvfrom(MAX_ANNOUNCEMENT + 1)
            except OSError as exc:
                self.counters["receive_errors"] += 1
                log.debug("gossip receive failed: %s", exc)
                # Pause so a persistent error cannot spin this loop.
                await trio.sleep(self.interval_s)
                continue
            address = self._filter.receive(bytes(data), self._wall_clock())
            if address is not None:
                log.debug("gossip from %s: peer at %s", sender, address)
                found(address)


# --- DNS -----------------------------------------------------------------------------


async def system_resolver(name: str, port: int) -> list[str]:
    """IPv4 and IPv6 addresses of ``name``, in resolver order, without repeats."""
    infos = await trio.socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class DnsDiscovery:
    """Resolve ``name`` every ``interval_s`` and report every address at ``port``.

    Meant for Kubernetes headless services, whose A/AAAA records are the ready
    pods: records come and go, so a failed resolution (error or timeout) is
    logged and counted (``counters``: resolutions, failures, invalid) and
    retried next interval, never fatal; an empty answer just reports nobody.
    ``addresses`` holds the last successful answer.
    """

    def __init__(
        self,
        name: str,
        port: int,
        *,
        interval_s: float = DEFAULT_DNS_INTERVAL_S,
        timeout_s: float | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError("dns discovery needs a name to resolve")
        try:
            _check_host(name, name)
        except ConfigError:
            raise ConfigError(f"dns discovery name {name!r:.80} is not a valid hostname") from None
        if not isinstance(port, int) or not 0 < port <= 65535:
            raise ConfigError(f"dns discovery port must be 1..65535, got {port}")
        timeout_s = interval_s if timeout_s is None else timeout_s
        for field, seconds in (("interval_s", interval_s), ("timeout_s", timeout_s)):
            if not (seconds > 0 and math.isfinite(seconds)):
                raise ConfigError(f"dns discovery {field} must be a positive number")
        self.name = name
        self.port = port
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._resolver: Resolver = resolver or system_resolver
        self.addresses: frozenset[str] = frozenset()
        self.counters = {"resolutions": 0, "failures": 0, "invalid": 0}

    async def run(
        self, found: Found, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Resolve now and every interval after, until cancelled.

        Started after the first attempt, successful or not, so a node starting
        next to its first pods dials them at once.
        """
        next_at = trio.current_time()
        await self._resolve_once(found)
        task_status.started()
        while True:
            next_at += self.interval_s
            await trio.sleep_until(next_at)
            await self._resolve_once(found)

    async def _resolve_once(self, found: Found) -> None:
        self.counters["resolutions"] += 1
        hosts: Sequence[str] = ()
        with trio.move_on_after(self.timeout_s) as timeout:
            try:
                hosts = await self._resolver(self.name, self.port)
            except OSError as exc:  # socket.gaierror included
                self.counters["failures"] += 1
                log.info("dns discovery: resolving %s failed: %s", self.name, exc)
                return
        if timeout.cancelled_caught:
            self.counters["failures"] += 1
            log.info("dns discovery: resolving %s took over %g s", self.name, self.timeout_s)
            return
        addresses: list[str] = []
        for host in hosts:
            try:
                addresses.append(normalize_address(format_address(host, self.port)))
            except ConfigError as exc:
                self.counters["invalid"] += 1
                log.debug("dns discovery: ignoring %r: %s", host, exc)
        current = frozenset(addresses)
        if current != self.addresses:
            log.info("dns discovery: %s -> %s", self.name, ", ".join(sorted(current)) or "nothing")
        self.addresses = current
        for address in dict.fromkeys(addresses):
            found(address)


# --- factory ---------------------------------------------------------------------------

_KINDS: dict[str, Callable[..., Discovery]] = {
    "static": StaticDiscovery,
    "gossip": GossipDiscovery,
    "dns": DnsDiscovery,
}


def make_discovery(kind: str, **options: Any) -> Discovery:
    """Build the strategy named ``kind`` (static, gossip, dns) from config options.

    ConfigError for an unknown kind or options the strategy does not take.
    """
    try:
        cls = _KINDS[kind]
    except (KeyError, TypeError):
        known = ", ".join(_KINDS)
        raise ConfigError(f"unknown discovery {kind!r:.40}; known: {known}") from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for {kind} discovery: {exc}") from None
