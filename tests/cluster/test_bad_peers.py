"""A misbehaving but authenticated peer: the node counts, logs, survives."""

from __future__ import annotations

import struct

import msgpack
import pytest
import trio
from vsmtest import COOKIE, cluster, full_mesh, wait_for

from node.core.events import Channel, Event
from node.core.hlc import Timestamp, wall_clock_ms
from node.core.wire import Ack, Events
from node.node import Node
from node.runtime.peer import FramedStream, Identity, handshake
from node.sim import SimNetwork

pytestmark = pytest.mark.trio


async def rogue(net: SimNetwork, name: str, target: str, node: Node | None = None) -> FramedStream:
    """Complete a real handshake as ``name`` (it knows the cookie), return the stream;
    given the ``node`` it connected to, once that node counts it as connected."""
    stream = await net.transport(name).connect(target)
    framed = FramedStream(stream, max_frame=1 << 20, max_hops=8)
    me = Identity("vsm", name, "member", "", 1, COOKIE)
    await handshake(framed, me, initiator=True, time_limit_s=5)
    if node is not None:
        await wait_for(lambda: name in node.bridge.peers and node.bridge.peers[name].connected)
    return framed


async def test_garbage_frames_are_counted_and_the_node_survives(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    with trio.fail_after(120):
        async with cluster(net, ["a", "b"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            a = nodes["a"]
            got: list[Event] = []
            a.subscribe("*", got.append)
            framed = await rogue(net, "r", "a:7401", a)

            # not msgpack, unknown kind, wrong shape: each counted, connection kept
            junk = [b"\xc1\xc1", msgpack.packb([99]), msgpack.packb([4, "x"])]
            for payload in junk:
                await framed.send_bytes(struct.pack(">I", len(payload)) + payload)
            await wait_for(lambda: a.bridge.counters.get("bad_frames", 0) == 3)
            assert a.bridge.peers["r"].connected

            # an event claiming another source, and one from a clock far ahead
            ahead = Timestamp(wall_clock_ms() + 60_000, 0, "r")
            forged = Event("task_execution", Channel.S1_OPERATIONAL, {}, "b", ahead)
            future = Event("task_execution", Channel.S1_OPERATIONAL, {}, "r", ahead)
            fine = Event(
                "task_execution",
                Channel.S1_OPERATIONAL,
                {"ok": 1},
                "r",
                Timestamp(wall_clock_ms(), 0, "r"),
            )
            await framed.send(Events.of((forged, future, fine)))
            await wait_for(lambda: len(got) == 1)
            assert got[0].data == {"ok": 1}
            assert a.bridge.counters["source_mismatch"] == 1
            assert a.bridge.counters["clock_rejected"] == 1

            # an oversize length prefix: that connection is closed, nothing else
            await framed.send_bytes(struct.pack(">I", 1 << 30))
            await wait_for(lambda: not a.bridge.peers["r"].connected)
            assert a.bridge.counters["bad_frames"] == 4
            assert full_mesh(nodes)
            ev = nodes["b"].publish("task_execution", {"still": "fine"})
            await wait_for(lambda: any(e.id == ev.id for e in got))


async def test_one_invalid_event_of_a_run_is_refused_alone_and_reported_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A run whose middle event is invalid: its neighbours are delivered, it is
    refused (counted), and the refusal goes back to the sender in an ACK."""
    net = SimNetwork()
    with trio.fail_after(120):
        async with cluster(net, ["a"]) as nodes:
            a = nodes["a"]
            got: list[Event] = []
            a.subscribe("task_execution", got.append)
            framed = await rogue(net, "r", "a:7401", a)
            now = wall_clock_ms()
            s1 = Channel.S1_OPERATIONAL
            events = [
                Event("task_execution", s1, {"i": i}, "r", Timestamp(now, i, "r")) for i in range(5)
            ]
            (run,) = Events.of(events).items
            bad = run._replace(channel=run.channel.value, physical=[now, -1, now, now, now])
            await framed.send(Events((bad,), first_seq=1, ack_floor=1, ack_now=True))
            await wait_for(lambda: len(got) == 4)
            assert [e.data["i"] for e in got] == [0, 2, 3, 4]
            assert a.bridge.counters["invalid_events"] == 1
            with trio.fail_after(5):
                while not isinstance(msg := await framed.receive(), Ack):
                    pass
            assert msg.upto == 5 and msg.refused == ((2, "invalid_event"),)


async def test_observer_is_not_a_voting_member(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    with trio.fail_after(120):
        async with cluster(net, ["a", "b"]) as nodes:
            from vsmtest import config

            from node.node import open_node

            async with open_node(
                config("o", role="observer", seeds=["a:7401"]), transport=net.transport("o")
            ) as obs:
                nodes["o"] = obs
                await wait_for(lambda: full_mesh(nodes))
                await trio.sleep(3)
                status = await nodes["a"].check_partitions()
                assert status["members"] == ["a", "b"]
                assert status["status"] == "healthy"
                got: list[Event] = []
                obs.subscribe("*", got.append)
                ev = nodes["a"].publish("policy_update", {"v": 2})
                await wait_for(lambda: any(e.id == ev.id for e in got))


async def test_silent_and_excess_connections_do_not_hurt(autojump_clock: trio.abc.Clock) -> None:
    """64+ idle strangers from one host displace each other, never a joining member."""
    from node.core.admission import DEFAULT_PER_HOST
    from node.runtime.bridge import MAX_PENDING_HANDSHAKES

    net = SimNetwork()
    with trio.fail_after(120):
        async with cluster(net, ["a"]) as nodes:
            a = nodes["a"]
            flood = net.transport("flood")
            extra = MAX_PENDING_HANDSHAKES + 5
            streams = [await flood.connect("a:7401") for _ in range(extra)]
            evicted = extra - DEFAULT_PER_HOST
            await wait_for(lambda: a.bridge.counters.get("handshake_evicted", 0) == evicted)
            assert len(a.bridge._pending) == DEFAULT_PER_HOST
            # a member joins at once, without waiting for the idle ones to time out
            started = trio.current_time()
            framed = await rogue(net, "r", "a:7401", a)
            assert trio.current_time() - started < 1
            assert a.bridge.counters.get("handshake_timeout", 0) == 0
            for s in streams:
                await s.aclose()
            await framed.aclose()


async def test_a_member_joins_from_the_flooding_host_itself(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Same source address as the flood (as on 127.0.0.1): the newest wins its slot."""
    net = SimNetwork()
    with trio.fail_after(120):
        async with cluster(net, ["a"]) as nodes:
            a = nodes["a"]
            flood = net.transport("r")
            streams = [await flood.connect("a:7401") for _ in range(70)]
            framed = await rogue(net, "r", "a:7401", a)
            for s in streams:
                await s.aclose()
            await framed.aclose()


async def test_a_large_frame_before_authentication_is_refused_at_its_prefix(
    autojump_clock: trio.abc.Clock,
) -> None:
    from node.runtime.peer import PREAUTH_MAX_FRAME

    net = SimNetwork()
    with trio.fail_after(60):
        async with cluster(net, ["a"]) as nodes:
            a = nodes["a"]
            stream = await net.transport("x").connect("a:7401")
            # only the prefix of a 1 MiB frame: refused without waiting for the body
            await stream.send_all(struct.pack(">I", 1 << 20))
            await wait_for(lambda: a.bridge.counters.get("bad_handshake_message", 0) == 1)
            assert PREAUTH_MAX_FRAME < 1 << 20
            # the connection is closed on us
            with trio.fail_after(5):
                while await stream.receive_some(65536):
                    pass
            await stream.aclose()


async def test_frames_injected_after_a_real_handshake_are_refused(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Someone on the path (without the session key) injects EVENTS or BYE: refused,
    counted, and that connection is closed; the real peer is served again."""
    from node.core.wire import Bye, encode

    net = SimNetwork()
    with trio.fail_after(120):
        async with cluster(net, ["a"]) as nodes:
            a = nodes["a"]
            got: list[Event] = []
            a.subscribe("*", got.append)
            now = Timestamp(wall_clock_ms(), 0, "r")
            ev = Event("control_override", Channel.S3_CONTROL, {"x": 1}, "r", now)
            for n, forged in enumerate([encode(Events.of((ev,))), encode(Bye("r", "forged"))]):
                framed = await rogue(net, "r", "a:7401")
                assert framed.authenticated_frames
                await wait_for(lambda: "r" in a.bridge.peers and a.bridge.peers["r"].connected)
                # raw bytes on the stream, as an injector would write them: no valid tag
                await framed.stream.send_all(forged)
                await wait_for(lambda n=n: a.bridge.counters.get("forged_frames", 0) == n + 1)
                await wait_for(lambda: not a.bridge.peers["r"].connected)
                assert not a.bridge.peers["r"].departed  # the forged BYE was not believed
                await framed.aclose()
            assert got == []

            # a replayed frame (sealed for position 0, sent again) fails too
            framed = await rogue(net, "r", "a:7401")
            await wait_for(lambda: a.bridge.peers["r"].connected)
            assert framed._sealer is not None
            sealed_payload = framed._sealer.seal(encode(Events.of((ev,)))[4:])
            frame = struct.pack(">I", len(sealed_payload)) + sealed_payload
            await framed.stream.send_all(frame)
            await wait_for(lambda: len(got) == 1)
            await framed.stream.send_all(frame)
            await wait_for(lambda: a.bridge.counters.get("forged_frames", 0) == 3)
            await wait_for(lambda: not a.bridge.peers["r"].connected)
            assert len(got) == 1
            await framed.aclose()
