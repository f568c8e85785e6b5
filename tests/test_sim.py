"""The simulated network: TCP-like streams, datagrams and per-link faults under MockClock."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from node.sim import LinkStats, SimNetwork, SimStream

pytestmark = pytest.mark.trio


async def pair(net: SimNetwork, a: str = "a", b: str = "b") -> tuple[SimStream, SimStream]:
    """A connected (client on ``a``, server on ``b``) pair of streams."""
    listener, address = await net.transport(b).listen(f"{b}:0")
    client = await net.transport(a).connect(address)
    server = await listener.accept()
    await listener.aclose()
    return client, server


async def read_exactly(stream: SimStream, n: int) -> bytes:
    data = b""
    for _ in range(n):  # bounded: every read returns at least one byte or EOF
        if len(data) >= n:
            break
        chunk = await stream.receive_some(n - len(data))
        assert chunk, "unexpected EOF"
        data += chunk
    return data


# --- streams: basics -------------------------------------------------------------


async def test_listen_connect_echo() -> None:
    net = SimNetwork()
    listener, address = await net.transport("b").listen("b:7000")
    assert address == "b:7000"

    async def echo_once() -> None:
        stream = await listener.accept()
        assert stream.remote_address.startswith("a:")
        data = await stream.receive_some()
        await stream.send_all(data.upper())
        await stream.aclose()

    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo_once)
            client = await net.transport("a").connect("b:7000")
            assert client.remote_address == "b:7000"
            await client.send_all(b"hello")
            assert await client.receive_some() == b"HELLO"
            assert await client.receive_some() == b""
            await client.aclose()
    await listener.aclose()


async def test_port_zero_allocates_distinct_ports_and_wildcards_mean_own_host() -> None:
    net = SimNetwork()
    transport = net.transport("b")
    l1, a1 = await transport.listen("b:0")
    l2, a2 = await transport.listen("0.0.0.0:0")
    l3, a3 = await transport.listen("*:0")
    hosts = {a.rpartition(":")[0] for a in (a1, a2, a3)}
    ports = {int(a.rpartition(":")[2]) for a in (a1, a2, a3)}
    assert hosts == {"b"}
    assert len(ports) == 3 and all(p > 0 for p in ports)
    assert net.transport("b") is transport
    for listener in (l1, l2, l3):
        await listener.aclose()


async def test_connect_refused_when_nobody_listens() -> None:
    net = SimNetwork()
    net.transport("b")
    with trio.fail_after(1), pytest.raises(ConnectionRefusedError):
        await net.transport("a").connect("b:7000")
    listener, _ = await net.transport("b").listen("b:7000")
    await listener.aclose()
    with trio.fail_after(1), pytest.raises(ConnectionRefusedError):
        await net.transport("a").connect("b:7000")


async def test_address_in_use_and_foreign_host() -> None:
    net = SimNetwork()
    transport = net.transport("b")
    listener, _ = await transport.listen("b:7000")
    with pytest.raises(OSError) as info:
        await transport.listen("b:7000")
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        await transport.listen("c:7001")
    assert info.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(ValueError):
        await transport.listen("b")
    await listener.aclose()
    again, _ = await transport.listen("b:7000")  # free once closed
    await again.aclose()


async def test_receive_some_respects_max_bytes_and_coalesces() -> None:
    net = SimNetwork()
    client, server = await pair(net)
    await client.send_all(b"abc")
    await client.send_all(b"def")
    assert await server.receive_some(4) == b"abcd"
    assert await server.receive_some() == b"ef"
    with pytest.raises(ValueError):
        await server.receive_some(0)


async def test_busy_when_two_tasks_receive(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    _, server = await pair(net)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.receive_some)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await server.receive_some()
            nursery.cancel_scope.cancel()


async def test_stream_methods_checkpoint() -> None:
    net = SimNetwork()
    client, server = await pair(net)
    with trio.testing.assert_checkpoints():
        await client.send_all(b"x")
    with trio.testing.assert_checkpoints():
        await server.receive_some()
    with trio.testing.assert_checkpoints():
        await client.wait_send_all_might_not_block()
    with trio.testing.assert_checkpoints():
        await client.send_eof()
    with trio.testing.assert_checkpoints():
        await client.aclose()


async def test_generic_stream_conformance() -> None:
    # trio's own conformance suite for half-closeable streams.
    from trio.testing import check_half_closeable_stream

    net = SimNetwork(send_buffer=64 * 1024)

    async def maker() -> tuple[SimStream, SimStream]:
        return await pair(net)

    await check_half_closeable_stream(maker, None)


# --- streams: faults -----------------------------------------------------------


async def test_cut_stalls_then_heal_delivers_everything_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork()
    client, server = await pair(net)
    net.cut("a", "b")
    assert not net.reachable("a", "b") and not net.reachable("b", "a")
    for i in range(10):
        await client.send_all(b"%d," % i)
    with trio.move_on_after(30) as stalled:
        await server.receive_some()
    assert stalled.cancelled_caught  # nothing arrives while cut, however long we wait
    assert net.stats()["a", "b"].bytes_held == 20
    net.heal("a", "b")
    with trio.fail_after(1):
        data = await read_exactly(server, 20)
    assert data == b"".join(b"%d," % i for i in range(10))
    assert net.stats()["a", "b"] == LinkStats(bytes_sent=20, bytes_delivered=20)


async def test_cut_holds_bytes_already_on_the_wire(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    client, server = await pair(net)
    net.delay("a", "b", 1.0)
    start = trio.current_time()
    await client.send_all(b"in flight")
    await trio.sleep(0.5)
    net.cut("a", "b")
    await trio.sleep(10)
    net.heal("a", "b")
    with trio.fail_after(5):
        assert await server.receive_some() == b"in flight"
    # retransmitted at the heal, so it crosses the link's delay again
    assert trio.current_time() == start + 11.5


async def test_one_way_cut(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    client, server = await pair(net)
    net.cut("a", "b", one_way=True)
    assert not net.reachable("a", "b") and net.reachable("b", "a")
    await client.send_all(b"lost for now")
    await server.send_all(b"still flows")
    with trio.fail_after(1):
        assert await client.receive_some() == b"still flows"
    with trio.move_on_after(10) as stalled:
        await server.receive_some()
    assert stalled.cancelled_caught
    net.heal("a", "b")
    with trio.fail_after(1):
        assert await server.receive_some() == b"lost for now"


async def test_send_buffer_backpressure_blocks_then_resumes_on_heal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(send_buffer=1000)
    client, server = await pair(net)
    net.cut("a", "b")
    await client.send_all(b"x" * 600)  # fits
    with trio.move_on_after(10) as blocked:
        await client.send_all(b"y" * 600)  # 400 fit, then the buffer is full
    assert blocked.cancelled_caught
    assert net.stats()["a", "b"].bytes_held == 1000
    with trio.move_on_after(10) as blocked:
        await client.wait_send_all_might_not_block()
    assert blocked.cancelled_caught

    healed_at = trio.current_time() + 5
    received = bytearray()

    async def drain() -> None:
        await trio.sleep_until(healed_at)
        net.heal("a", "b")
        for _ in range(100):
            if len(received) >= 1600:
                break
            received.extend(await server.receive_some(100))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await client.send_all(b"z" * 600)
            assert trio.current_time() == healed_at  # unblocked by the heal, not before
    assert bytes(received) == b"x" * 600 + b"y" * 400 + b"z" * 600


async def test_slow_reader_also_exerts_backpressure(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork(send_buffer=100)
    client, server = await pair(net)
    await client.send_all(b"a" * 100)
    with trio.move_on_after(1) as blocked:
        await client.send_all(b"b")
    assert blocked.cancelled_caught
    assert await server.receive_some(10) == b"a" * 10
    with trio.fail_after(1):
        await client.wait_send_all_might_not_block()
        await client.send_all(b"b" * 10)


async def test_delay_timing_is_exact(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    net.delay("a", "b", 0.25)
    listener, address = await net.transport("b").listen("b:0")
    start = trio.current_time()
    accepted_at: list[float] = []
    accepted: list[SimStream] = []

    async def accept() -> None:
        accepted.append(await listener.accept())
        accepted_at.append(trio.current_time())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept)
            client = await net.transport("a").connect(address)
    assert accepted_at == [start + 0.25]  # the SYN crossed once
    assert trio.current_time() == start + 0.5  # a full round trip for the client
    server = accepted[0]
    sent_at = trio.current_time()
    await client.send_all(b"one")
    await trio.sleep(0.125)
    await client.send_all(b"two")
    with trio.fail_after(5):
        assert await server.receive_some() == b"one"
        assert trio.current_time() == sent_at + 0.25
        assert await server.receive_some() == b"two"
        assert trio.current_time() == sent_at + 0.375
    net.delay("a", "b", 0.0)  # later bytes must still not overtake earlier ones
    net.delay("a", "b", 1.0)
    await client.send_all(b"slow")
    net.delay("a", "b", 0.0)
    await client.send_all(b"fast")
    with trio.fail_after(5):
        assert await read_exactly(server, 8) == b"slowfast"
    assert trio.current_time() == sent_at + 1.375
    await listener.aclose()


async def test_loopback_is_never_delayed_or_cut(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    with pytest.raises(ValueError):
        net.cut("a", "a")
    net.delay("a", "a", 5.0)
    net.isolate("a")
    client, server = await pair(net, "a", "a")
    start = trio.current_time()
    await client.send_all(b"local")
    assert await server.receive_some() == b"local"
    assert trio.current_time() == start


async def test_isolate_and_rejoin(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    for host in "abc":
        net.transport(host)
    net.isolate("a")
    assert not net.reachable("a", "b") and not net.reachable("c", "a")
    assert net.reachable("b", "c")
    net.rejoin("a")
    assert net.reachable("a", "b") and net.reachable("c", "a")
    net.isolate("a")
    net.heal_all()
    assert net.reachable("a", "c")


# --- streams: close, EOF and reset ----------------------------------------------


async def test_send_eof_half_closes() -> None:
    net = SimNetwork()
    client, server = await pair(net)
    await client.send_all(b"request")
    await client.send_eof()
    await client.send_eof()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"more")
    assert await server.receive_some() == b"request"
    assert await server.receive_some() == b""
    assert await server.receive_some() == b""  # EOF is sticky
    await server.send_all(b"response")  # the other direction still works
    assert await client.receive_some() == b"response"


async def test_close_semantics(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    client, server = await pair(net)
    await client.send_all(b"last words")
    await client.aclose()
    await client.aclose()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await client.receive_some()
    assert await server.receive_some() == b"last words"
    assert await server.receive_some() == b""
    with pytest.raises(trio.BrokenResourceError):  # EPIPE: the peer has gone
        await server.send_all(b"anyone there?")
    await server.aclose()


async def test_close_interrupts_blocked_receive(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    _, server = await pair(net)

    async def receive() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await server.receive_some()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            await server.aclose()


async def test_eof_stalls_across_a_cut(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    client, server = await pair(net)
    net.cut("a", "b")
    await client.send_all(b"bye")
    await client.aclose()
    # b does not know yet: its sends succeed (and are held towards a)
    await server.send_all(b"still talking")
    with trio.move_on_after(10) as stalled:
        await server.receive_some()
    assert stalled.cancelled_caught
    net.heal("a", "b")
    with trio.fail_after(1):
        assert await server.receive_some() == b"bye"
        assert await server.receive_some() == b""
    with pytest.raises(trio.BrokenResourceError):
        await server.send_all(b"x")
    assert net.stats()["b", "a"].bytes_lost == len(b"still talking")


async def test_reset_breaks_both_ends(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    client, server = await pair(net)
    other_client, other_server = await pair(net, "a", "c")
    net.cut("a", "b")
    await client.send_all(b"doomed")

    async def blocked_receive() -> None:
        with pytest.raises(trio.BrokenResourceError):
            await server.receive_some()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_receive)
            await trio.testing.wait_all_tasks_blocked()
            net.reset("b", "a")
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"x")
    with pytest.raises(trio.BrokenResourceError):
        await client.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await server.send_all(b"x")
    assert net.stats()["a", "b"].bytes_lost == len(b"doomed")
    await client.aclose()
    await server.aclose()
    # streams between other hosts are untouched
    await other_client.send_all(b"fine")
    assert await other_server.receive_some() == b"fine"


async def test_listener_close_wakes_accept_and_resets_backlog(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork()
    listener, address = await net.transport("b").listen("b:0")
    client = await net.transport("a").connect(address)  # never accepted
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def accept() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await listener.accept()

            await listener.aclose()
            nursery.start_soon(accept)
    with pytest.raises(trio.BrokenResourceError):
        await client.receive_some()


# --- connect under faults ---------------------------------------------------------


async def test_connect_blocks_while_cut_and_completes_on_heal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork()
    listener, address = await net.transport("b").listen("b:0")
    net.cut("b", "a", one_way=True)  # SYN gets through, SYN-ACK does not
    with trio.move_on_after(60) as timed_out:
        await net.transport("a").connect(address)
    assert timed_out.cancelled_caught
    start = trio.current_time()

    async def heal_later() -> None:
        await trio.sleep(3)
        net.heal("a", "b")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(heal_later)
            client = await net.transport("a").connect(address)
    assert trio.current_time() == start + 3
    server = await listener.accept()
    await client.send_all(b"ok")
    assert await server.receive_some() == b"ok"
    await listener.aclose()


async def test_cancelled_connect_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork()
    net.delay("a", "b", 1.0)
    listener, address = await net.transport("b").listen("b:0")
    # cancelled after the SYN arrived but before the SYN-ACK got back
    with trio.move_on_after(1.5) as scope:
        await net.transport("a").connect(address)
    assert scope.cancelled_caught
    server = await listener.accept()  # the server had accepted it...
    with pytest.raises(trio.BrokenResourceError):  # ...and sees it reset
        await server.receive_some()
    await listener.aclose()


# --- datagrams ------------------------------------------------------------------------


async def test_datagram_unicast(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    net.delay("a", "b", 0.5)
    sa = await net.transport("a").open_datagram(5000)
    sb = await net.transport("b").open_datagram(5000)
    with pytest.raises(OSError) as info:
        await net.transport("b").open_datagram(5000)
    assert info.value.errno == errno.EADDRINUSE
    start = trio.current_time()
    assert await sa.sendto(b"ping", ("b", 5000)) == 4
    await sa.sendto(b"nobody home", ("b", 5001))
    with trio.fail_after(5):
        assert await sb.recvfrom(65536) == (b"ping", ("a", 5000))
    assert trio.current_time() == start + 0.5
    await sb.sendto(b"0123456789", sa.getsockname())
    with trio.fail_after(5):
        assert await sa.recvfrom(4) == (b"0123", ("b", 5000))  # truncated like UDP
    assert net.stats()["a", "b"] == LinkStats(
        datagrams_sent=2, datagrams_delivered=1, datagrams_lost=1
    )
    sa.close()
    sa.close()
    with pytest.raises(OSError) as info:
        await sa.sendto(b"x", ("b", 5000))
    assert info.value.errno == errno.EBADF
    sb.close()


async def test_datagram_multicast_reaches_every_member(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork()
    group = ("224.1.1.2", 45892)
    sockets = {}
    for host in "abcd":
        sockets[host] = await net.transport(host).open_datagram(group[1])
    for host in "abc":
        sockets[host].join_group(group[0])  # d never joins
    other_port = await net.transport("e").open_datagram(45893)
    other_port.join_group(group[0])  # right group, wrong port
    net.cut("a", "c")
    await sockets["a"].sendto(b"announce", group)
    with trio.fail_after(1):
        assert await sockets["a"].recvfrom(100) == (b"announce", ("a", 45892))  # loop
        assert await sockets["b"].recvfrom(100) == (b"announce", ("a", 45892))
    for silent in (sockets["c"], sockets["d"], other_port):
        with trio.move_on_after(5) as nothing:
            await silent.recvfrom(100)
        assert nothing.cancelled_caught
    assert net.stats()["a", "c"].datagrams_lost == 1
    with pytest.raises(OSError):
        sockets["d"].join_group("10.0.0.1")


async def test_datagram_loss_is_deterministic_with_seed() -> None:
    async def survivors(seed: int) -> list[int]:
        net = SimNetwork(seed=seed)
        net.loss("a", "b", 0.5)
        sa = await net.transport("a").open_datagram(1)
        sb = await net.transport("b").open_datagram(1)
        for i in range(100):
            await sa.sendto(b"%d" % i, ("b", 1))
        stats = net.stats()["a", "b"]
        assert stats.datagrams_held + stats.datagrams_lost == 100
        with trio.fail_after(1):
            return [int((await sb.recvfrom(10))[0]) for _ in range(stats.datagrams_held)]

    first = await survivors(7)
    assert first == await survivors(7)
    assert 20 < len(first) < 80
    assert first != await survivors(8)


async def test_close_wakes_blocked_recvfrom(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    sock = await net.transport("a").open_datagram(0)

    async def receive() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await sock.recvfrom(10)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            sock.close()
