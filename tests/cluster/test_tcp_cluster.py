"""The real thing: nodes over TCP on 127.0.0.1 (real clock, bounded waits)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
from vsmtest import FAST_TCP, meshed, until

from node.config import NodeConfig
from node.core.events import Event
from node.node import Node, open_node

pytestmark = pytest.mark.trio

FAST = FAST_TCP


@asynccontextmanager
async def two_nodes(
    a_settings: dict[str, Any], b_settings: dict[str, Any]
) -> AsyncIterator[tuple[Node, Node]]:
    """Nodes a and b on 127.0.0.1, b seeded with a (not yet waited for)."""
    cookie = "right-cookie-0123"
    cfg = NodeConfig(name="a", listen="127.0.0.1:0", cookie=cookie, **a_settings)
    async with open_node(cfg) as a:
        seeded = NodeConfig(
            name="b", listen="127.0.0.1:0", seeds=[a.address], cookie=cookie, **b_settings
        )
        async with open_node(seeded) as b:
            yield a, b


async def test_three_nodes_form_replicate_and_refuse_a_wrong_cookie() -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_node(
                NodeConfig(name="a", listen="127.0.0.1:0", cookie="right-cookie-0123", **FAST)
            )
        )
        assert a.address.startswith("127.0.0.1:") and not a.address.endswith(":0")
        nodes = [a]
        for name in ("b", "c"):
            cfg = NodeConfig(
                name=name,
                listen="127.0.0.1:0",
                seeds=[a.address],
                cookie="right-cookie-0123",
                **FAST,
            )
            nodes.append(await stack.enter_async_context(open_node(cfg)))
        await until(lambda: meshed(nodes))

        got: dict[str, list[Event]] = {n.name: [] for n in nodes}
        for n in nodes:
            n.subscribe("*", got[n.name].append)
        sent = [
            n.publish("task_execution", {"i": i, "from": n.name}) for n in nodes for i in range(20)
        ]
        want = {e.id for e in sent}
        await until(lambda: all({e.id for e in got[n]} >= want for n in got))
        for events in got.values():
            assert len(events) == len(want)

        intruder_cfg = NodeConfig(
            name="x", listen="127.0.0.1:0", seeds=[a.address], cookie="wrong-cookie-0123", **FAST
        )
        intruder = await stack.enter_async_context(open_node(intruder_cfg))
        await until(lambda: a.bridge.counters.get("auth_failed", 0) >= 1)
        assert "x" not in a.bridge.peers or not a.bridge.peers["x"].connected
        assert not any(link.connected for link in intruder.bridge.peers.values())
        # the listener kept serving: the cluster is intact and still replicating
        assert meshed(nodes)
        late = a.publish("task_execution", {"late": True})
        await until(lambda: any(e.id == late.id for e in got["c"]))
        status = await a.check_partitions()
        assert status["members"] == ["a", "b", "c"]


async def test_bye_is_a_departure_not_a_failure() -> None:
    async with open_node(NodeConfig(name="a", listen="127.0.0.1:0", cookie="k" * 16, **FAST)) as a:
        cfg = NodeConfig(name="b", listen="127.0.0.1:0", seeds=[a.address], cookie="k" * 16, **FAST)
        async with open_node(cfg) as b:
            await until(lambda: meshed([a, b]))
            framed = a.bridge.peers["b"].framed
            assert framed is not None and framed.authenticated_frames  # no TLS: tagged frames
        await until(lambda: "b" in a.bridge.departed)
        link = a.bridge.peers["b"]
        assert not link.connected and link.departed
        assert a.bridge.counters["departures"] == 1
        assert link.breaker.state(trio.current_time()) == "closed"
        status = await a.check_partitions()
        assert status["status"] == "healthy" and status["members"] == ["a"]


async def test_mutual_tls_cluster_replicates(tmp_path: Any) -> None:
    import trustme

    from node.config import TlsConfig

    ca = trustme.CA()
    paths = {}
    for name in ("a", "b"):
        cert = ca.issue_cert("127.0.0.1", f"{name}.vsm.test")
        cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        cert.private_key_pem.write_to_path(str(key_path))
        paths[name] = (str(cert_path), str(key_path))
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))

    def tls(name: str) -> TlsConfig:
        cert, key = paths[name]
        return TlsConfig(cert=cert, key=key, ca=str(ca_path), require_client_cert=True)

    cookie = "tls-cluster-cookie"
    async with open_node(
        NodeConfig(name="a", listen="127.0.0.1:0", cookie=cookie, tls=tls("a"), **FAST)
    ) as a:
        cfg_b = NodeConfig(
            name="b", listen="127.0.0.1:0", seeds=[a.address], cookie=cookie, tls=tls("b"), **FAST
        )
        async with open_node(cfg_b) as b:
            await until(lambda: meshed([a, b]))
            framed = a.bridge.peers["b"].framed
            assert framed is not None and not framed.authenticated_frames  # TLS protects them
            got: list[Event] = []
            b.subscribe("*", got.append)
            ev = a.publish("policy_update", {"policy": "p1"})
            await until(lambda: any(e.id == ev.id for e in got))
            # a plain-TCP node with the right cookie cannot join a TLS cluster
            cfg_c = NodeConfig(
                name="c", listen="127.0.0.1:0", seeds=[a.address], cookie=cookie, **FAST
            )
            async with open_node(cfg_c) as c:
                await until(lambda: c.bridge.counters.get("connection_lost", 0) >= 1)
                assert not any(link.connected for link in c.bridge.peers.values())


async def test_a_flood_through_send_loses_nothing_over_tcp() -> None:
    quotas = {"s1_operational": None}
    water = dict(send_high_water=1_000, send_low_water=500)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_node(
                NodeConfig(
                    name="a",
                    listen="127.0.0.1:0",
                    cookie="right-cookie-0123",
                    quotas=quotas,
                    **water,
                )
            )
        )
        cfg = NodeConfig(
            name="b", listen="127.0.0.1:0", seeds=[a.address], cookie="right-cookie-0123"
        )
        b = await stack.enter_async_context(open_node(cfg))
        await until(lambda: meshed([a, b]))
        got: list[int] = []
        b.subscribe("task_execution", lambda e: got.append(e.data["i"]))
        n = 30_000
        with trio.fail_after(60):
            for i in range(n):
                await a.send("task_execution", {"i": i, "worker": "w3", "ms": 12.5})
                # high water, plus at most the 128 sends between two looks
                assert a.topology()["peer_states"]["b"]["queue_depth"] <= 1_000 + 128
            await a.flush(timeout=30)
        assert got == list(range(n))  # one link, one channel: in order, once each
        stats = a.variety_stats()["peers"]["b"]
        assert stats["sent"] == n and stats["dropped"] == 0 and stats["queued"] == 0


async def test_an_ack_taken_by_a_publish_disarms_the_writers_deadline() -> None:
    """The held ack of an answer armed the idle writer's deadline; when the next
    publish carries the ack (written by the publish path itself, a plain
    socket), the writer is not woken for that deadline: a scheduler round per
    round trip for nothing."""
    slow_beats = {**FAST, "heartbeat_interval_s": 5.0, "acceptable_heartbeat_pause_s": 30.0}
    with trio.fail_after(30):
        async with two_nodes(slow_beats, slow_beats) as (a, b):
            await until(lambda: meshed([a, b]))
            b.subscribe("task_execution", lambda e: b.publish("status_update", e.data))
            answered = [trio.Event()]
            a.subscribe("status_update", lambda e: answered[0].set())
            replication = a.bridge.replication
            idles: list[float] = []
            original = replication._idle

            async def counted(peer: Any) -> None:
                idles.append(trio.current_time())
                await original(peer)

            replication._idle = counted  # type: ignore[method-assign]
            peer = a.bridge.peers["b"]
            for i in range(50):  # until an answer that is not a round-trip probe
                answered[0] = trio.Event()
                a.publish("task_execution", {"i": i})
                await answered[0].wait()  # the round after the answer's frame
                if peer.ack_deadline != float("inf"):
                    break  # a holds its ack of this answer, for something to ride on
                await trio.sleep(0.01)
            assert peer.ack_deadline != float("inf")
            assert peer.framed is not None and peer.framed.can_write_now
            a.publish("note", {})  # ... this event, which the publish path writes
            assert peer.ack_deadline == float("inf")
            before = len(idles)
            await trio.sleep(0.05)  # well past the armed deadline (ACK_DELAY_S)
            assert idles[before:] == []  # the writer slept on: nothing to do
            await a.flush(timeout=5)


async def test_request_reply_over_tcp_keeps_the_loop_turning_unless_turned_off() -> None:
    """busy_poll_us: a node answering requests spins after its I/O (the window
    stays open while the gaps are short); with 0 it never does."""
    with trio.fail_after(30):
        async with two_nodes(FAST, {**FAST, "busy_poll_us": 0}) as (a, b):
            await until(lambda: meshed([a, b]))
            b.subscribe("task_execution", lambda e: b.publish("status_update", e.data))
            answered = [trio.Event()]
            a.subscribe("status_update", lambda e: answered[0].set())
            before = a.variety_stats()["busy_poll"]
            # enough round trips that a busy machine stretching some gaps past the
            # window (closing it for a while) still leaves many that spin
            for i in range(1_000):
                answered[0] = trio.Event()
                a.publish("task_execution", {"i": i})
                await answered[0].wait()
            after = a.variety_stats()["busy_poll"]
            assert after["ceiling_us"] == 200  # the default
            assert after["spins"] > before["spins"] and after["turns"] > before["turns"]
            assert after["open_s"] > before["open_s"]
            off = b.variety_stats()["busy_poll"]
            assert off["ceiling_us"] == 0 and off["spins"] == 0 and off["turns"] == 0


async def test_a_burst_leaves_in_one_turn_of_the_writer_while_the_window_has_room() -> None:
    # A producer that yields every 800 events (more than batch_max, 256, less
    # than send_window, 1,024): if the writer sent one frame per turn of the
    # scheduler, each turn would queue 800 and send 256, and the queue would
    # overflow. It sends frame after frame while the window has room.
    settings = dict(quotas={"s1_operational": None}, busy_poll_us=0)
    async with two_nodes(settings, {}) as (a, b):
        await until(lambda: meshed([a, b]))
        got: list[int] = []
        b.subscribe("task_execution", lambda e: got.append(e.data["i"]))
        await a.flush(timeout=10)
        link = a.bridge.peers["b"]
        before = link.frames_out
        for i in range(800):
            a.publish("task_execution", {"i": i})
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()  # the writer has had its turn
        assert link.frames_out - before >= 4  # 256 + 256 + 256 + 32
        await a.flush(timeout=30)
        assert got == list(range(800))
        assert a.variety_stats()["peers"]["b"]["dropped"] == 0
