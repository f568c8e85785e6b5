"""Discovery strategies: static parsing, signed gossip, DNS.

Gossip runs over an in-memory multicast hub under ``autojump_clock`` (exact
counts and times), and once over real UDP multicast on 127.0.0.1, skipped with
the reason when this machine does not carry multicast on loopback.
"""

from __future__ import annotations

import errno
import os
import random
import socket
from collections.abc import Callable, Sequence

import msgpack
import pytest
import trio
import trio.testing

from node.errors import ConfigError
from node.runtime import discovery as disc
from node.runtime.discovery import (
    Announcement,
    DnsDiscovery,
    GossipDiscovery,
    GossipFilter,
    StaticDiscovery,
    encode_announcement,
    make_discovery,
    normalize_address,
    open_multicast_socket,
    parse_address,
)

pytestmark = pytest.mark.trio

TIMEOUT = 60  # virtual seconds under autojump_clock
EPOCH = 1_700_000_000.0


def fake_wall_clock() -> float:
    """Wall time that moves with trio's (virtual) clock."""
    return EPOCH + trio.current_time()


# --- addresses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7401", ("127.0.0.1", 7401)),
        ("Node-A.Example.COM:1", ("node-a.example.com", 1)),
        ("localhost.:65535", ("localhost", 65535)),
        ("vsm-0.vsm_headless.default.svc.cluster.local:7401", None),
        ("[::1]:7401", ("::1", 7401)),
        ("[0:0:0:0:0:0:0:1]:7401", ("::1", 7401)),
        ("[FD00::2]:80", ("fd00::2", 80)),
    ],
)
async def test_parse_address_accepts_and_normalises(
    text: str, expected: tuple[str, int] | None
) -> None:
    host, port = parse_address(text)
    if expected is not None:
        assert (host, port) == expected
    assert normalize_address(normalize_address(text)) == normalize_address(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "host",
        "host:",
        ":7401",
        "host:0",
        "host:65536",
        "host:abc",
        "host:+1",
        "host:\u0663",  # an Arabic-Indic digit: isdigit() but not a port
        "::1:7401",
        "::1",
        "[::1]7401",
        "[::1]",
        "[::1",
        "[127.0.0.1]:1",
        "[nothost]:1",
        "ho st:1",
        "300.1.1.1:1",
        "1.2.3:1",
        "-bad:1",
        "bad-:1",
        "a..b:1",
        "x" * 254 + ":1",
        "h\u00e9:1",
    ],
)
async def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="peer address"):
        parse_address(text)


async def test_parse_address_rejects_non_strings() -> None:
    with pytest.raises(ConfigError, match="must be a string"):
        parse_address(7401)  # type: ignore[arg-type]


# --- static --------------------------------------------------------------------------


async def test_static_reports_each_host_once_in_order(autojump_clock: object) -> None:
    seen: list[str] = []
    static = StaticDiscovery(["b.example:7401", "[::1]:7401", "B.example:7401", "10.0.0.1:7401"])
    assert static.hosts == ("b.example:7401", "[::1]:7401", "10.0.0.1:7401")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(static.run, seen.append)
            # reported before started(): a caller may dial right away
            assert seen == ["b.example:7401", "[::1]:7401", "10.0.0.1:7401"]
            await trio.sleep(30)
            assert len(seen) == 3
            nursery.cancel_scope.cancel()


async def test_static_rejects_bad_entries() -> None:
    with pytest.raises(ConfigError, match="'nope'"):
        StaticDiscovery(["a:1", "nope"])
    with pytest.raises(ConfigError, match="IPv6"):
        StaticDiscovery(["::1:7401"])
    with pytest.raises(ConfigError, match="list"):
        StaticDiscovery("a:1")
    assert StaticDiscovery([]).hosts == ()


# --- gossip over an in-memory multicast hub --------------------------------------


class Hub:
    """A multicast segment: every datagram goes to every open socket (loop on).

    With ``gated``, opening a socket waits for ``gate``, so a test can have every
    node listening before the first announcement goes out.
    """

    def __init__(self, *, gated: bool = False) -> None:
        self.sockets: list[HubSocket] = []
        self.sent: list[bytes] = []
        self.gate = trio.Event()
        if not gated:
            self.gate.set()

    async def open(self) -> HubSocket:
        sock = HubSocket(self, f"10.0.0.{len(self.sockets) + 1}")
        self.sockets.append(sock)
        await self.gate.wait()
        await trio.lowlevel.checkpoint()
        return sock

    async def open_gate(self, expected: int) -> None:
        await trio.testing.wait_all_tasks_blocked()
        assert len(self.sockets) == expected
        self.gate.set()

    def inject(self, data: bytes, sender: str = "10.9.9.9") -> None:
        for sock in self.sockets:
            sock.deliver(data, sender)


class HubSocket:
    def __init__(self, hub: Hub, host: str) -> None:
        self.hub = hub
        self.host = host
        self.closed = False
        self._send, self._receive = trio.open_memory_channel[tuple[bytes, tuple[str, int]]](100)

    def deliver(self, data: bytes, sender: str) -> None:
        if not self.closed:
            self._send.send_nowait((data, (sender, 45892)))

    async def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        await trio.lowlevel.checkpoint()
        assert address == (disc.DEFAULT_GOSSIP_GROUP, disc.DEFAULT_GOSSIP_PORT)
        self.hub.sent.append(data)
        self.hub.inject(data, self.host)
        return len(data)

    async def recvfrom(self, bufsize: int) -> tuple[bytes, tuple[str, int]]:
        data, sender = await self._receive.receive()
        return data[:bufsize], sender

    def close(self) -> None:
        self.closed = True
        self.hub.sockets.remove(self)


def gossip(hub: Hub, name: str, **overrides: object) -> GossipDiscovery:
    options: dict[str, object] = {
        "cluster": "prod",
        "node": name,
        "address": f"{name}.example:7401",
        "cookie": "s3cret",
        "socket_factory": hub.open,
        "wall_clock": fake_wall_clock,
    }
    options.update(overrides)
    return GossipDiscovery(**options)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.found: list[tuple[float, str]] = []

    def __call__(self, address: str) -> None:
        self.found.append((trio.current_time(), address))

    @property
    def addresses(self) -> list[str]:
        return [a for _, a in self.found]


async def test_two_nodes_find_each_other(autojump_clock: object) -> None:
    hub = Hub(gated=True)
    a, b = gossip(hub, "a"), gossip(hub, "b")
    found_a, found_b = Recorder(), Recorder()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run, found_a)
            nursery.start_soon(b.run, found_b)
            await hub.open_gate(2)
            await trio.sleep(3.5)
            nursery.cancel_scope.cancel()
    # one announcement each at t = 0, 1, 2, 3
    assert found_a.found == [(t, "b.example:7401") for t in (0.0, 1.0, 2.0, 3.0)]
    assert found_b.addresses == ["a.example:7401"] * 4
    for node in (a, b):
        assert node.counters["sent"] == 4
        assert node.counters["received"] == 8
        assert node.counters["accepted"] == 4
        assert node.counters["own"] == 4  # our own datagrams loop back and are skipped
        assert node.counters["rejected_signature"] == node.counters["malformed"] == 0
    assert hub.sockets == []  # both closed on cancel


async def test_foreign_cluster_and_wrong_cookie_are_ignored(autojump_clock: object) -> None:
    hub = Hub(gated=True)
    a = gossip(hub, "a")
    foreign = gossip(hub, "f", cluster="staging")
    impostor = gossip(hub, "x", cookie="guess")
    found = Recorder()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run, found)
            nursery.start_soon(foreign.run, Recorder())
            nursery.start_soon(impostor.run, Recorder())
            await hub.open_gate(3)
            await trio.sleep(2.5)
            nursery.cancel_scope.cancel()
    assert found.found == []
    assert a.counters["rejected_cluster"] == 3
    assert a.counters["rejected_signature"] == 3
    assert a.counters["accepted"] == 0 and a.counters["own"] == 3
    # and the impostor learns nothing from us either
    assert impostor.counters["rejected_signature"] == 3
    assert impostor.counters["rejected_cluster"] == 3
    assert impostor.counters["accepted"] == 0


def signed(
    *,
    cluster: str = "prod",
    node: str = "b",
    address: str = "b.example:7401",
    ts_ms: int | None = None,
    nonce: bytes | None = None,
    cookie: str = "s3cret",
) -> bytes:
    ts = int(fake_wall_clock() * 1000) if ts_ms is None else ts_ms
    announcement = Announcement(cluster, node, address, ts, nonce or os.urandom(16))
    return encode_announcement(announcement, cookie)


def envelope(body: object, mac: object = b"\x00" * 32, magic: object = "vsm-gossip") -> bytes:
    raw = msgpack.packb(body, use_bin_type=True) if not isinstance(body, bytes) else body
    return msgpack.packb([magic, 1, raw, mac], use_bin_type=True)  # type: ignore[no-any-return]


GOOD_BODY = {
    "cluster": "prod",
    "node": "b",
    "address": "b.example:7401",
    "ts": int(EPOCH * 1000),
    "nonce": b"n" * 16,
}


async def test_garbage_is_ignored_and_counted(autojump_clock: object) -> None:
    hub = Hub()
    a = gossip(hub, "a", interval_s=100.0)
    found = Recorder()
    garbage: dict[str, list[bytes]] = {
        "malformed": [
            b"",
            b"\xc1",  # never-used msgpack byte
            b"\x93\x01\x02",  # truncated array
            msgpack.packb({"cluster": "prod"}),  # a bare map, no envelope
            msgpack.packb(["vsm-gossip", 1, b"x"]),  # three fields
            msgpack.packb(["vsm-gossip", 2, b"x", b"y"]),  # unknown version
            envelope(GOOD_BODY, magic="other"),
            envelope(b"\xc1"),  # body not msgpack
            envelope({**GOOD_BODY, "extra": 1}),
            envelope({**GOOD_BODY, "nonce": b"short"}),
            envelope({**GOOD_BODY, "ts": -1}),
            envelope({**GOOD_BODY, "ts": "soon"}),
            envelope({**GOOD_BODY, "node": ""}),
            envelope({**GOOD_BODY, "address": "no port"}),
            envelope({**GOOD_BODY, "address": 7401}),
            envelope([1, 2, 3]),
            msgpack.packb([[[[[[[[[[[[]]]]]]]]]]]]),
        ],
        "oversized": [b"\x00" * 5000, b"x" * (disc.MAX_ANNOUNCEMENT + 1)],
        # unsigned (empty MAC), zero MAC, and a valid MAC with a changed body
        "rejected_signature": [
            envelope(GOOD_BODY, mac=b""),
            envelope(GOOD_BODY),
            envelope(
                msgpack.packb({**GOOD_BODY, "address": "evil.example:7401"}),
                mac=msgpack.unpackb(signed())[3],
            ),
        ],
        "rejected_cluster": [signed(cluster="other"), envelope({**GOOD_BODY, "cluster": "x"})],
    }
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run, found)
            for items in garbage.values():
                for item in items:
                    hub.inject(item)
            hub.inject(signed())  # one good one among them still gets through
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert found.addresses == ["b.example:7401"]
    expected = {counter: len(items) for counter, items in garbage.items()}
    assert {k: a.counters[k] for k in expected} == expected
    assert a.counters["received"] == sum(expected.values()) + 1 + 1  # + good + own
    assert a.counters["accepted"] == 1


async def test_stale_future_and_replayed_announcements_are_ignored(
    autojump_clock: object,
) -> None:
    hub = Hub()
    a = gossip(hub, "a", interval_s=100.0)
    found = Recorder()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run, found)
            now_ms = int(fake_wall_clock() * 1000)
            hub.inject(signed(ts_ms=now_ms - 31_000))  # too old
            hub.inject(signed(ts_ms=now_ms + 31_000))  # too far ahead
            hub.inject(signed(ts_ms=now_ms - 29_000, node="c", address="c.example:1"))
            fresh = signed()
            hub.inject(fresh)
            hub.inject(fresh)  # replayed at once
            await trio.testing.wait_all_tasks_blocked()
            assert found.addresses == ["c.example:1", "b.example:7401"]
            await trio.sleep(20)
            hub.inject(fresh)  # replayed 20 s later: still in the window, nonce remembered
            await trio.sleep(20)
            hub.inject(fresh)  # 40 s later: now too old
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert found.addresses == ["c.example:1", "b.example:7401"]
    assert a.counters["rejected_stale"] == 3
    assert a.counters["rejected_replay"] == 2
    assert a.counters["accepted"] == 2


async def test_filter_is_sans_io_and_bounds_its_memory() -> None:
    f = GossipFilter("prod", "a", "s3cret", max_skew_s=30.0)
    now = EPOCH
    ts = int(now * 1000)
    first = encode_announcement(Announcement("prod", "b", "b:1", ts, b"0" * 16), "s3cret")
    assert f.receive(first, now) == "b:1"
    assert f.receive(first, now + 1) is None and f.counters["rejected_replay"] == 1
    for i in range(disc.MAX_REMEMBERED_NONCES + 10):
        datagram = encode_announcement(
            Announcement("prod", "b", "b:1", ts, i.to_bytes(16, "big")), "s3cret"
        )
        assert f.receive(datagram, now) == "b:1"
    assert len(f._seen) <= disc.MAX_REMEMBERED_NONCES
    # entries older than the window are forgotten as time passes
    late = encode_announcement(Announcement("prod", "b", "b:1", ts + 40_000, b"z" * 16), "s3cret")
    assert f.receive(late, now + 40) == "b:1"
    assert len(f._seen) == 1
    # own announcements are recognised, not reported
    own = encode_announcement(Announcement("prod", "a", "a:1", ts + 40_000, b"o" * 16), "s3cret")
    assert f.receive(own, now + 40) is None and f.counters["own"] == 1


async def test_send_and_receive_errors_are_counted_not_fatal(autojump_clock: object) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.sends = 0
            self.receives = 0
            self.closed = False

        async def sendto(self, data: bytes, address: tuple[str, int]) -> int:
            await trio.lowlevel.checkpoint()
            self.sends += 1
            if self.sends % 2:
                raise OSError(errno.ENETUNREACH, "network is unreachable")
            return len(data)

        async def recvfrom(self, bufsize: int) -> tuple[bytes, object]:
            await trio.lowlevel.checkpoint()
            self.receives += 1
            if self.receives <= 3:
                raise OSError(errno.ECONNREFUSED, "refused")
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        def close(self) -> None:
            self.closed = True

    flaky = Flaky()

    async def factory() -> Flaky:
        return flaky

    g = GossipDiscovery(
        cluster="prod",
        node="a",
        address="a:1",
        cookie="k",
        socket_factory=factory,
        wall_clock=fake_wall_clock,
    )
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(g.run, Recorder())
            await trio.sleep(9.5)
            nursery.cancel_scope.cancel()
    assert flaky.sends == 10
    assert g.counters["send_errors"] == 5 and g.counters["sent"] == 5
    assert g.counters["receive_errors"] == 3 and flaky.receives == 4
    assert flaky.closed


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"cookie": ""}, "cookie"),
        ({"cluster": ""}, "cluster"),
        ({"node": "n" * 256}, "node"),
        ({"address": "0.0.0.0:7401"}, "reachable"),
        ({"address": "[::]:7401"}, "reachable"),
        ({"address": "nope"}, "host:port"),
        ({"group": "10.0.0.1"}, "not an IPv4 multicast"),
        ({"group": "ff02::1"}, "IPv4"),
        ({"interface": "lo"}, "IPv4"),
        ({"port": 0}, "port"),
        ({"ttl": 256}, "ttl"),
        ({"interval_s": 0}, "interval_s"),
        ({"max_skew_s": float("inf")}, "max_skew_s"),
    ],
)
async def test_gossip_rejects_bad_configuration(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        gossip(Hub(), "a", **overrides)


# --- gossip over real UDP multicast on loopback ----------------------------------------


async def _loopback_multicast_works(group: str, port: int) -> str | None:
    """None if a datagram to ``group`` on 127.0.0.1 comes back; else why not."""
    try:
        receiver = await open_multicast_socket(group, port, interface="127.0.0.1")
    except OSError as exc:
        return f"cannot join {group} on 127.0.0.1: {exc}"
    try:
        sender = await open_multicast_socket(group, port, interface="127.0.0.1")
    except OSError as exc:
        receiver.close()
        return f"cannot open a second socket on port {port}: {exc}"
    with receiver, sender:
        try:
            await sender.sendto(b"probe", (group, port))
        except OSError as exc:
            return f"cannot send to {group} via 127.0.0.1: {exc}"
        with trio.move_on_after(2.0):
            data, _ = await receiver.recvfrom(100)
            if data == b"probe":
                return None
        return f"multicast to {group} is not delivered on loopback (no reply in 2 s)"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_real_multicast_on_loopback() -> None:
    # An administratively scoped group and a free port, so nothing else on this
    # machine hears us or talks to us; TTL 1 and 127.0.0.1 keep it on this host.
    group = f"239.255.{random.randrange(256)}.{random.randrange(1, 255)}"
    port = _free_udp_port()
    with trio.fail_after(20):
        reason = await _loopback_multicast_works(group, port)
        if reason is not None:
            pytest.skip(f"UDP multicast on loopback unavailable here: {reason}")
        nodes = [
            GossipDiscovery(
                cluster="loop",
                node=name,
                address=f"127.0.0.1:{7400 + i}",
                cookie="s3cret",
                group=group,
                port=port,
                interface="127.0.0.1",
                interval_s=0.05,
            )
            for i, name in enumerate(("a", "b", "c"))
        ]
        seen: dict[str, set[str]] = {n.node: set() for n in nodes}
        done = trio.Event()

        def recorder(name: str) -> Callable[[str], None]:
            def found(address: str) -> None:
                seen[name].add(address)
                if all(len(s) == 2 for s in seen.values()):
                    done.set()

            return found

        async with trio.open_nursery() as nursery:
            for n in nodes:
                await nursery.start(n.run, recorder(n.node))
            with trio.move_on_after(10):
                await done.wait()
            nursery.cancel_scope.cancel()
    assert seen == {
        "a": {"127.0.0.1:7401", "127.0.0.1:7402"},
        "b": {"127.0.0.1:7400", "127.0.0.1:7402"},
        "c": {"127.0.0.1:7400", "127.0.0.1:7401"},
    }
    for n in nodes:
        assert n.counters["own"] >= 1  # IP_MULTICAST_LOOP brings our own back
        assert n.counters["rejected_signature"] == n.counters["malformed"] == 0


# --- DNS ----------------------------------------------------------------------------


class ScriptedResolver:
    """Answers from a script, one entry per call; exceptions are raised."""

    def __init__(self, script: Sequence[Sequence[str] | BaseException | float]) -> None:
        self.script = list(script)
        self.calls: list[tuple[float, str, int]] = []

    async def __call__(self, name: str, port: int) -> Sequence[str]:
        self.calls.append((trio.current_time(), name, port))
        answer = self.script.pop(0) if self.script else []
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, float):
            await trio.sleep(answer)  # a resolver that hangs
            return ["10.0.0.99"]
        return answer


async def test_dns_reports_addresses_as_they_come_and_go(autojump_clock: object) -> None:
    resolver = ScriptedResolver(
        [
            ["10.0.0.1", "10.0.0.2"],
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            ["10.0.0.2", "fd00::5", "10.0.0.2"],
            [],
            100.0,  # hangs past the timeout
            ["FD00:0::5", "not a host!", "vsm-2.vsm.default.svc"],
        ]
    )
    dns = DnsDiscovery("vsm.default.svc", 7401, interval_s=5.0, resolver=resolver)
    found = Recorder()
    snapshots: list[frozenset[str]] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(dns.run, found)
            assert trio.current_time() == 0.0
            await trio.sleep(2.5)  # look between resolutions, never at the same instant
            for _ in range(6):
                snapshots.append(dns.addresses)
                await trio.sleep(5.0)
            nursery.cancel_scope.cancel()
    assert [t for t, _, _ in resolver.calls] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert {(n, p) for _, n, p in resolver.calls} == {("vsm.default.svc", 7401)}
    assert found.found == [
        (0.0, "10.0.0.1:7401"),
        (0.0, "10.0.0.2:7401"),
        (10.0, "10.0.0.2:7401"),
        (10.0, "[fd00::5]:7401"),
        (25.0, "[fd00::5]:7401"),
        (25.0, "vsm-2.vsm.default.svc:7401"),
    ]
    assert snapshots == [
        {"10.0.0.1:7401", "10.0.0.2:7401"},
        {"10.0.0.1:7401", "10.0.0.2:7401"},  # a failure keeps the last answer
        {"10.0.0.2:7401", "[fd00::5]:7401"},
        frozenset(),  # an empty answer is an answer
        frozenset(),  # still resolving (it will time out at 25 s)
        {"[fd00::5]:7401", "vsm-2.vsm.default.svc:7401"},
    ]
    assert dns.counters == {"resolutions": 7, "failures": 2, "invalid": 1}


async def test_dns_starts_even_when_the_first_resolution_fails(autojump_clock: object) -> None:
    resolver = ScriptedResolver([OSError("no network"), ["10.0.0.1"]])
    dns = DnsDiscovery("vsm", 1, interval_s=2.0, resolver=resolver)
    found = Recorder()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(dns.run, found)
            assert dns.counters["failures"] == 1 and found.found == []
            await trio.sleep(2.5)
            nursery.cancel_scope.cancel()
    assert found.found == [(2.0, "10.0.0.1:1")]


async def test_dns_real_resolution_of_localhost() -> None:
    dns = DnsDiscovery("localhost", 7401, interval_s=60.0)
    seen: list[str] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(dns.run, seen.append)
            nursery.cancel_scope.cancel()
    assert dns.counters["failures"] == 0
    assert seen and set(seen) <= {"127.0.0.1:7401", "[::1]:7401"}


async def test_dns_rejects_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="name"):
        DnsDiscovery("", 1)
    with pytest.raises(ConfigError, match="hostname"):
        DnsDiscovery("bad name", 1)
    with pytest.raises(ConfigError, match="port"):
        DnsDiscovery("vsm", 0)
    with pytest.raises(ConfigError, match="interval_s"):
        DnsDiscovery("vsm", 1, interval_s=-1)


# --- factory ---------------------------------------------------------------------------


async def test_make_discovery_builds_each_kind() -> None:
    static = make_discovery("static", hosts=["a:1"])
    assert isinstance(static, StaticDiscovery) and static.hosts == ("a:1",)
    g = make_discovery("gossip", cluster="c", node="n", address="n:1", cookie="k", port=5000)
    assert isinstance(g, GossipDiscovery) and g.port == 5000
    dns = make_discovery("dns", name="vsm", port=7401, interval_s=2.0)
    assert isinstance(dns, DnsDiscovery) and dns.interval_s == 2.0


async def test_make_discovery_rejects_unknown_kinds_and_options() -> None:
    with pytest.raises(ConfigError, match="unknown discovery 'epmd'; known: static, gossip, dns"):
        make_discovery("epmd")
    with pytest.raises(ConfigError, match="bad options for dns"):
        make_discovery("dns", name="vsm", port=1, colour="blue")
    with pytest.raises(ConfigError, match="bad options for static"):
        make_discovery("static")
    with pytest.raises(ConfigError, match="peer address"):
        make_discovery("static", hosts=["nope"])
