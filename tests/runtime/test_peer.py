"""Handshake over simulated streams: success and every refusal."""

from __future__ import annotations

import attrs
import pytest
import trio

from node.core.events import Channel, Event
from node.core.hlc import Timestamp
from node.core.wire import Bye, Events, Hello
from node.errors import AuthenticationError, ConnectionClosedError, HandshakeError
from node.runtime.peer import FramedStream, Identity, PeerInfo, handshake
from node.sim import SimNetwork

pytestmark = pytest.mark.trio


def ident(name: str, cookie: str = "cookie-123", cluster: str = "vsm") -> Identity:
    return Identity(cluster, name, "member", f"{name}:7401", 7, cookie)


async def pair(net: SimNetwork) -> tuple[FramedStream, FramedStream]:
    listener, addr = await net.transport("b").listen("b:7401")
    client = await net.transport("a").connect(addr)
    server = await listener.accept()
    await listener.aclose()
    return (
        FramedStream(client, max_frame=1 << 20, max_hops=8),
        FramedStream(server, max_frame=1 << 20, max_hops=8),
    )


async def both(a: Identity, b: Identity, *, admit_b: object = None) -> tuple[object, object]:
    net = SimNetwork()
    fa, fb = await pair(net)
    results: dict[str, object] = {}

    async def side(key: str, framed: FramedStream, me: Identity, initiator: bool) -> None:
        kwargs = {}
        if admit_b is not None and key == "b":
            kwargs["admit"] = admit_b
        try:
            results[key] = await handshake(
                framed, me, initiator=initiator, time_limit_s=5, **kwargs
            )
        except HandshakeError as exc:
            results[key] = exc
            await framed.aclose()

    async with trio.open_nursery() as n:
        n.start_soon(side, "a", fa, a, True)
        n.start_soon(side, "b", fb, b, False)
    return results["a"], results["b"]


async def test_handshake_succeeds_both_ways(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        ra, rb = await both(ident("a"), ident("b"))
    assert ra.name == "b" and ra.we_initiated and ra.address == "b:7401"  # type: ignore[attr-defined]
    assert rb.name == "a" and not rb.we_initiated and rb.incarnation == 7  # type: ignore[attr-defined]


async def test_wrong_cookie_is_refused_on_both_sides(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        ra, rb = await both(ident("a", cookie="wrong-one"), ident("b"))
    assert isinstance(rb, AuthenticationError) and "wrong cookie" in str(rb)
    assert isinstance(ra, HandshakeError)
    assert ra.kind == rb.kind == "auth_failed"


async def test_wrong_cluster(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        ra, rb = await both(ident("a", cluster="other"), ident("b"))
    assert isinstance(rb, HandshakeError) and "cluster 'other'" in str(rb)
    assert isinstance(ra, HandshakeError)
    assert ra.kind == rb.kind == "wrong_cluster"


async def test_own_name_is_refused(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        ra, rb = await both(ident("a"), ident("a"))
    assert isinstance(ra, HandshakeError) and "own name" in str(ra) and ra.kind == "own_name"
    assert isinstance(rb, HandshakeError)


async def test_admit_can_refuse_with_reason(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        ra, rb = await both(
            ident("a"), ident("b"), admit_b=lambda info: ("duplicate_name", "b is taken")
        )
    assert isinstance(ra, HandshakeError) and "b is taken" in str(ra)
    assert isinstance(rb, HandshakeError)
    assert ra.kind == rb.kind == "duplicate_name"  # both sides count the same cause


async def test_silent_peer_times_out(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    fa, _fb = await pair(net)
    with trio.fail_after(30):
        start = trio.current_time()
        with pytest.raises(HandshakeError, match="timed out after 2 s"):
            await handshake(fa, ident("a"), initiator=True, time_limit_s=2)
        assert trio.current_time() - start == pytest.approx(2)


async def test_version_mismatch(autojump_clock: trio.abc.Clock) -> None:
    import msgpack

    net = SimNetwork()
    fa, fb = await pair(net)
    payload = msgpack.packb([1, 99, "vsm", "b", "member", b"x" * 16, "", 0, "extra"])
    await fb.stream.send_all(len(payload).to_bytes(4, "big") + payload)
    with trio.fail_after(30), pytest.raises(HandshakeError, match="peer speaks 99"):
        await handshake(fa, ident("a"), initiator=True, time_limit_s=5)


async def test_a_version_3_peer_is_refused_as_a_version_mismatch(
    autojump_clock: trio.abc.Clock,
) -> None:
    # A node of protocol 3 sends HELLO of 7 fields (no algedonic port).
    import msgpack

    net = SimNetwork()
    fa, fb = await pair(net)
    payload = msgpack.packb([1, 3, "vsm", "b", "member", b"x" * 16, "b:7401", 5])
    await fb.stream.send_all(len(payload).to_bytes(4, "big") + payload)
    with trio.fail_after(30):
        with pytest.raises(HandshakeError, match="peer speaks 3, we speak 6") as info:
            await handshake(fa, ident("a"), initiator=True, time_limit_s=5)
        assert info.value.kind == "version_mismatch"
        # and the old peer is told why, after our HELLO of 8 fields
        hello = await fb.receive()
        assert isinstance(hello, Hello) and hello.version == 6 and len(hello.to_wire()) == 8
        bye = await fb.receive()
        assert isinstance(bye, Bye) and bye.reason == "version_mismatch: we speak version 6"


async def test_hello_carries_each_sides_algedonic_port(autojump_clock: trio.abc.Clock) -> None:
    a = attrs.evolve(ident("a"), algedonic_port=7501)
    b = attrs.evolve(ident("b"), algedonic_port=0)
    with trio.fail_after(30):
        ra, rb = await both(a, b)
    assert isinstance(ra, PeerInfo) and isinstance(rb, PeerInfo)
    assert ra.algedonic_port == 0 and rb.algedonic_port == 7501


async def test_unexpected_message_during_handshake(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    fa, fb = await pair(net)
    await fb.send(Events(()))
    with trio.fail_after(30), pytest.raises(HandshakeError, match="expected HELLO, got EVENTS"):
        await handshake(fa, ident("a"), initiator=True, time_limit_s=5)


async def test_write_now_keeps_what_the_socket_refuses_and_sends_it_first() -> None:
    """The publish path's direct write on a real socket: frames the kernel does not
    take at once are kept and go out first, in order, with the next send."""
    from node.core.wire import Heartbeat, encode

    left, right = trio.socket.socketpair()
    with left, right:
        a = FramedStream(trio.SocketStream(left), max_frame=1 << 22, max_hops=8)
        b = FramedStream(trio.SocketStream(right), max_frame=1 << 22, max_hops=8)
        a.established(None, initiator=True)
        b.established(None, initiator=False)
        assert a.can_write_now
        events = [
            Event("t", Channel.S1_OPERATIONAL, {"k": "x" * 1000}, "a", Timestamp(1, i, "a"))
            for i in range(3000)
        ]
        big = encode(Events.of(events), max_frame=1 << 22)
        a.write_now(big)  # ~3 MB: more than the socket buffers take
        assert a.has_tail and not a.can_write_now
        last = Heartbeat("a", 1, (), {}, {}, "member", 5)
        received: list[object] = []

        async def read() -> None:
            for _ in range(2):
                received.append(await b.receive())

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await a.send(last)  # the tail first, then this frame
        assert not a.has_tail and a.can_write_now
        first, second = received
        assert isinstance(first, Events) and first.count == 3000
        assert second == last
        assert a.bytes_out == len(big) + len(encode(last))


async def test_write_now_is_not_offered_where_it_cannot_work() -> None:
    """TLS and other streams, and a closed socket: the writer task sends instead."""
    net = SimNetwork()
    fa, _ = await pair(net)
    assert not fa.can_write_now  # not a plain TCP socket stream
    left, right = trio.socket.socketpair()
    right.close()
    stream = FramedStream(trio.SocketStream(left), max_frame=1 << 20, max_hops=8)
    assert stream.can_write_now
    left.close()
    assert not stream.can_write_now


async def test_receive_reads_the_socket_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a plain socket receive() reads the descriptor directly: a frame split
    over two writes is waited for and assembled, a wakeup without data waits
    again, and EOF or a broken socket ends the stream with ConnectionClosedError."""
    from node.core.wire import Heartbeat, encode

    left, right = trio.socket.socketpair()
    with left, right:
        a = FramedStream(trio.SocketStream(left), max_frame=1 << 20, max_hops=8)
        b = FramedStream(trio.SocketStream(right), max_frame=1 << 20, max_hops=8)
        beat = Heartbeat("a", 1, (), {}, {}, "member", 5)
        data = encode(beat)
        waits = 0
        real_wait = trio.lowlevel.wait_readable

        async def spurious_first(sock: object) -> None:
            nonlocal waits
            waits += 1
            if waits > 1:  # the first wakeup comes with nothing to read
                await real_wait(sock)  # type: ignore[arg-type]

        monkeypatch.setattr(trio.lowlevel, "wait_readable", spurious_first)
        received: list[object] = []

        async def read() -> None:
            received.append(await b.receive())
            received.append(await b.receive())

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await trio.sleep(0.01)
                await a.send_bytes(data[:7])  # half a frame: the reader waits for the rest
                await trio.sleep(0.01)
                assert received == []
                await a.send_bytes(data[7:] + data)  # the rest, and a whole second one
        assert received == [beat, beat]
        assert waits >= 3 and b.bytes_in == 2 * len(data)
        assert not b.buffered_frames
        left.close()  # EOF
        with trio.fail_after(10), pytest.raises(ConnectionClosedError, match="peer closed"):
            await b.receive()
        right.close()  # this side's socket gone
        with trio.fail_after(10), pytest.raises(ConnectionClosedError, match="receive failed"):
            await b.receive()
