"""Hostile input against a live node on 127.0.0.1 (real sockets, real clock, seconds).

The peer port gets random bytes, truncated and oversize frames, absurd length
prefixes, deep nesting, wrong types, valid frames before authentication, a
replayed handshake, forged frames after a real handshake and a crowd of idle
connections; the algedonic UDP port forged, unsigned and replayed datagrams;
the control socket malformed JSON, unknown commands and huge lines.
Throughout, the node stays up, its memory stays bounded, a good peer is
served, a new member joins at once, and every bad connection is closed and
counted by its reason.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from vsmtest import FAST_TCP, until

from node.config import NodeConfig, parse_address
from node.core.algedonic import Signal, check_signal, seal
from node.core.auth import auth_mac
from node.core.events import Channel, Event
from node.core.hlc import Timestamp, wall_clock_ms
from node.core.wire import PROTOCOL_VERSION, Auth, Bye, Events, Hello, encode
from node.node import Node, open_node
from node.runtime.control import ControlServer, bind_control
from node.runtime.peer import FramedStream, Identity, handshake

pytestmark = pytest.mark.trio

COOKIE = "hostile-suite-cookie"
FAST: dict[str, Any] = {**FAST_TCP, "handshake_timeout_s": 1.0}
PAIN = {"type": "pain", "severity": 6, "source": "hostile", "data": {}}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def connected(node: Node, name: str) -> bool:
    link = node.bridge.peers.get(name)
    return link is not None and link.connected


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[Node, Node]]:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_node(NodeConfig(name="a", listen="127.0.0.1:0", cookie=COOKIE, **FAST))
        )
        cfg = NodeConfig(name="b", listen="127.0.0.1:0", seeds=[a.address], cookie=COOKIE, **FAST)
        b = await stack.enter_async_context(open_node(cfg))
        await until(lambda: connected(a, "b") and connected(b, "a"))
        await until(lambda: all(n.algedonic.datagrams.status == "open" for n in (a, b)))
        yield a, b


async def closed_by_peer(stream: trio.SocketStream, limit: float = 3.0) -> bool:
    """Read until the node hangs up (True) or ``limit`` passes (False)."""
    with trio.move_on_after(limit):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


def frame(obj: object) -> bytes:
    payload = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


async def send_quietly(stream: trio.SocketStream, data: bytes) -> None:
    """Send what the node may refuse halfway (it hangs up at a bad prefix)."""
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)


async def test_peer_port_survives_hostile_input(caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(60):
        async with pair() as (a, b):
            host, port = parse_address(a.address)
            got: list[Event] = []
            a.subscribe("*", got.append)
            rss_before = rss_bytes()

            async def connect() -> trio.SocketStream:
                return await trio.open_tcp_stream(host, port)

            rng = random.Random(13)
            now = Timestamp(wall_clock_ms(), 0, "b")
            forged_event = Event("control_override", Channel.S3_CONTROL, {"x": 1}, "b", now)
            bad_hellos = [
                [1, PROTOCOL_VERSION, 7, "x", "member", b"n" * 16, "", 0, 0],  # int cluster
                [1, PROTOCOL_VERSION, "vsm", "x", "member", "not bytes", "", 0, 0],
                [1, "4", "vsm", "x", "member", b"n" * 16, "", 0, 0],
                [1, PROTOCOL_VERSION, "vsm", "x", "member", b"n" * 16, "", 0, -1],  # udp port
                {"kind": 1},
                [],
            ]
            hostile: list[tuple[str, bytes]] = [
                ("absurd prefix", b"\xff\xff\xff\xff"),
                ("1 MiB frame", struct.pack(">I", 1 << 20) + b"\x90" * (1 << 20)),
                ("deep nesting", struct.pack(">I", 4001) + b"\x91" * 4000 + b"\xc0"),
                ("not msgpack", struct.pack(">I", 2) + b"\xc1\xc1"),
                ("events before auth", encode(Events.of((forged_event,)))),
                *((f"wrong types {i}", frame(h)) for i, h in enumerate(bad_hellos)),
                *((f"random {i}", rng.randbytes(rng.randint(1, 4000))) for i in range(20)),
            ]
            for what, data in hostile:
                stream = await connect()
                await send_quietly(stream, data)
                # random bytes may announce a frame they never finish: the deadline ends them
                assert await closed_by_peer(stream), what
                await stream.aclose()

            # a truncated frame, then silence: closed at the pre-auth deadline
            stream = await connect()
            await stream.send_all(struct.pack(">I", 100) + b"\x00" * 10)
            with trio.fail_after(FAST["handshake_timeout_s"] + 2):
                assert await closed_by_peer(stream, 5)
            await stream.aclose()

            # a replayed handshake: HELLO and AUTH as recorded from an earlier
            # connection; the node's fresh nonce makes the old proof worthless
            stream = await connect()
            nonce = b"i" * 16
            old_mac = auth_mac(
                COOKIE,
                cluster="vsm",
                initiator="b",
                responder="a",
                initiator_nonce=nonce,
                responder_nonce=b"o" * 16,
                from_initiator=True,
            )
            hello = Hello(PROTOCOL_VERSION, "vsm", "b", "member", nonce, "", 1)
            await stream.send_all(encode(hello) + encode(Auth(old_mac)))
            assert await closed_by_peer(stream)
            await stream.aclose()
            await until(lambda: a.bridge.counters.get("auth_failed", 0) == 1)

            # forged frames after a real handshake (EVENTS, then BYE), injected raw
            for forged in (encode(Events.of((forged_event,))), encode(Bye("r", "forged"))):
                stream = await connect()
                framed = FramedStream(stream, max_frame=1 << 20, max_hops=8)
                me = Identity("vsm", "r", "member", "", 1, COOKIE)
                await handshake(framed, me, initiator=True, time_limit_s=5)
                await stream.send_all(forged)
                assert await closed_by_peer(stream)
                await stream.aclose()
            await until(lambda: a.bridge.counters.get("forged_frames", 0) == 2)

            # a crowd of idle connections does not keep a new member out
            idle = [await connect() for _ in range(80)]
            started = trio.current_time()
            cfg = NodeConfig(
                name="c", listen="127.0.0.1:0", seeds=[a.address], cookie=COOKIE, **FAST
            )
            async with open_node(cfg) as c:
                await until(lambda: connected(a, "c") and connected(c, "a"))
                joined_s = trio.current_time() - started
                for s in idle:
                    await s.aclose()

                # the good peer was served throughout: never disconnected, still delivering
                assert a.bridge.peers["b"].connects == 1 and connected(a, "b")
                ev = b.publish("task_execution", {"still": "served"})
                await until(lambda: any(e.id == ev.id for e in got))
            assert all(e.data != {"x": 1} for e in got)  # nothing forged was delivered

            counters = a.bridge.counters
            print(f"joined in {joined_s:.3f} s; counters {counters}")
            assert joined_s < 2.0
            assert counters["bad_handshake_message"] >= 10
            assert counters["handshake_evicted"] >= 80 - 4
            assert rss_bytes() - rss_before < 64 << 20
            # the log is rate-limited per reason (5 lines per 10 s); the counters see all
            failed = [
                r
                for r in caplog.records
                if r.levelno >= logging.WARNING and "handshake with inbound" in r.getMessage()
            ]
            assert 0 < len(failed) <= 5 * 4


async def test_algedonic_port_counts_forged_unsigned_and_replayed_datagrams() -> None:
    with trio.fail_after(30):
        async with pair() as (a, b):
            host, port = parse_address(a.address)
            msg = Signal.make("b-udp", check_signal(PAIN), "b", b.hlc.now()).to_message()
            args: dict[str, Any] = dict(cluster="vsm", sender="b", hlc=b.hlc.now())
            good = seal(msg, cookie=COOKIE, nonce=b"g" * 16, **args)
            rng = random.Random(7)
            with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                await sock.bind(("127.0.0.1", 0))
                for _ in range(50):
                    await sock.sendto(rng.randbytes(rng.randint(0, 1400)), (host, port))
                unsigned = good[:-32] + b"\x00" * 32  # the body with a blank signature
                await sock.sendto(unsigned, (host, port))
                forged = seal(msg, cookie="not-the-cookie-at-all", nonce=b"f" * 16, **args)
                await sock.sendto(forged, (host, port))
                await sock.sendto(good, (host, port))
                await sock.sendto(good, (host, port))  # replayed
                await until(
                    lambda: a.algedonic.stats()["counters"].get("datagrams_replayed", 0) == 1
                )
            stats = a.algedonic.stats()
            ignored = sum(v for k, v in stats["counters"].items() if k.startswith("datagrams_"))
            assert ignored >= 50 + 2  # junk, unsigned, forged and the replay, each counted
            assert stats["received"] == 1
            # and a real alarm still goes through both ways
            result = await b.algedonic_scream(PAIN)
            assert result["confirmed"] == ["a"]


async def test_control_socket_survives_hostile_requests(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with pair() as (a, _b):
            server = ControlServer(a, max_line=4096)
            listener = await bind_control(str(tmp_path / "ctl.sock"))
            async with trio.open_nursery() as nursery:
                path = await nursery.start(server.serve, listener)
                stream = await trio.open_unix_socket(path)
                lines = [
                    b"{not json\n",
                    b'["a", "list"]\n',
                    b'{"cmd": "rm -rf /"}\n',
                    b'{"cmd": 7}\n',
                    b"\xff\xfe\x00garbage\n",
                    b'{"cmd": "publish", "args": {"type": "x", "count": 10000000}}\n',
                    b"x" * 100_000 + b"\n",  # a huge line: refused once, then skipped
                    b'{"cmd": "ping"}\n',
                ]
                async with stream:
                    for line in lines:
                        await stream.send_all(line)
                    replies: list[dict[str, Any]] = []
                    buffer = b""
                    with trio.fail_after(10):
                        while len(replies) < len(lines):
                            data = await stream.receive_some(65536)
                            assert data, "the control socket hung up"
                            buffer += data
                            while b"\n" in buffer:
                                reply, buffer = buffer.split(b"\n", 1)
                                replies.append(json.loads(reply))
                assert [r["ok"] for r in replies] == [False] * 7 + [True]
                assert replies[-1]["result"]["node"] == "a"
                assert sum(server.errors.values()) == 7
                assert server.errors["unknown_command"] == 1
                nursery.cancel_scope.cancel()
