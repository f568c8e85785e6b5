"""Multi-node behaviour on the simulated network, under MockClock."""

from __future__ import annotations

import pytest
import trio
from vsmtest import cluster, full_mesh, wait_for

from node.core.events import Event
from node.core.wire import Events
from node.sim import SimNetwork

pytestmark = pytest.mark.trio


async def test_five_nodes_form_a_full_mesh_from_one_seed(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    names = ["a", "b", "c", "d", "e"]
    with trio.fail_after(120):
        async with cluster(net, names) as nodes:
            took = await wait_for(lambda: full_mesh(nodes))
            assert took < 10
            for name, node in nodes.items():
                assert set(node.bridge.members) == set(names)
                assert node.topology()["peers"] == sorted(set(names) - {name})
            # one connection per pair: every node has exactly 4 live sessions
            for node in nodes.values():
                assert sum(p.connected for p in node.bridge.peers.values()) == 4


async def test_every_event_delivered_exactly_once_everywhere(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    names = ["a", "b", "c"]
    with trio.fail_after(120):
        async with cluster(net, names) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            seen: dict[str, list[Event]] = {n: [] for n in names}
            for name, node in nodes.items():
                node.subscribe("*", seen[name].append)
            published = []
            for i in range(30):
                for name, node in nodes.items():
                    published.append(node.publish("task_execution", {"i": i, "from": name}))
                await trio.sleep(0.01)
            want = {e.id for e in published}
            await wait_for(lambda: all(len(v) >= len(want) for v in seen.values()))
            await trio.sleep(2)  # nothing more arrives
            for events in seen.values():
                ids = [e.id for e in events]
                assert len(ids) == len(set(ids)) == len(want)
                assert set(ids) == want
            for node in nodes.values():
                for stats in node.variety_stats()["peers"].values():
                    assert stats["sent"] == 30 and stats["dropped"] == 0


async def test_replayed_batch_is_deduplicated(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with cluster(net, ["a", "b"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            got: list[Event] = []
            nodes["b"].subscribe("*", got.append)
            ev = nodes["a"].publish("task_execution", {"i": 1})
            await wait_for(lambda: len(got) == 1)
            # the same frame arrives again, twice (e.g. replayed after a reconnect):
            # its link sequence number (1) was processed, so it is skipped
            link = nodes["b"].bridge.peers["a"]
            replay = Events.of((ev,), first_seq=1, ack_floor=1)
            nodes["b"].bridge.replication.on_events(link, replay)
            nodes["b"].bridge.replication.on_events(link, replay)
            assert len(got) == 1
            assert nodes["b"].bridge.counters["duplicates"] == 2


async def test_hlc_order_follows_causality_across_nodes(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with cluster(net, ["a", "b", "c"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            at_c: list[Event] = []
            nodes["c"].subscribe("*", at_c.append)

            def answer(event: Event) -> None:
                if event.type == "task_execution":
                    nodes["b"].publish("status_update", {"re": event.data["i"]})

            nodes["b"].subscribe("task_execution", answer)
            cause = nodes["a"].publish("task_execution", {"i": 7})
            await wait_for(lambda: len(at_c) == 2)
            effect = next(e for e in at_c if e.type == "status_update")
            assert effect.hlc > cause.hlc
            assert sorted(at_c, key=lambda e: e.hlc)[0].id == cause.id


async def test_source_mismatch_is_rejected(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with cluster(net, ["a", "b", "c"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            got: list[Event] = []
            nodes["b"].subscribe("*", got.append)
            forged = nodes["c"].publish("task_execution", {"forged": True})
            await wait_for(lambda: len(got) == 1)
            link = nodes["b"].bridge.peers["a"]
            fake = Event(
                forged.type,
                forged.channel,
                {"x": 1},
                "c",
                forged.hlc.__class__(forged.hlc.physical + 1, 0, "c"),
            )
            assert link.inbound is not None
            seq = (link.inbound.processed or 0) + 1
            nodes["b"].bridge.replication.on_events(link, Events.of((fake,), seq, seq))
            assert len(got) == 1
            assert nodes["b"].bridge.counters["source_mismatch"] == 1


async def test_dead_peer_opens_breaker_and_backlog_is_replayed_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    with trio.fail_after(300):
        async with cluster(net, ["a", "b", "c"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            got_c: list[Event] = []
            nodes["c"].subscribe("*", got_c.append)
            net.isolate("c")
            link = nodes["a"].bridge.peers["c"]
            # the silent connection is dropped, reconnects fail, the breaker opens
            await wait_for(lambda: link.breaker.state(trio.current_time()) == "open", limit=120)
            assert not link.connected
            sent = [nodes["a"].publish("task_execution", {"i": i}) for i in range(50)]
            stats = nodes["a"].variety_stats()["peers"]["c"]
            assert stats["backlogged"] == 50
            assert stats["offered"] == stats["sent"] + stats["backlogged"] + stats["queued"]
            net.rejoin("c")
            await wait_for(lambda: link.connected, limit=120)
            want = {e.id for e in sent}
            await wait_for(lambda: want <= {e.id for e in got_c}, limit=60)
            await trio.sleep(3)
            from_a = [e.id for e in got_c if e.source == "a"]
            assert len(from_a) == len(set(from_a)) == 50
            stats = nodes["a"].variety_stats()["peers"]["c"]
            assert stats["backlogged"] == 0 and stats["sent"] == 50 and stats["dropped"] == 0
            assert any(t.to_state == "open" for t in link.breaker.transitions), (
                "the open transition was reported"
            )


async def test_gossip_discovery_forms_a_mesh_without_seeds(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    with trio.fail_after(120):
        async with cluster(net, ["a", "b", "c"], seed="nobody", discovery="gossip") as nodes:
            for node in nodes.values():
                assert node.config.seeds == ("nobody:7401",)
            took = await wait_for(lambda: full_mesh(nodes))
            assert took < 10
            # the last node to start is found by the others before it hears them
            assert nodes["a"].discovery.counters["accepted"] >= 2
            assert all(n.discovery.counters["sent"] >= 1 for n in nodes.values())


async def test_a_stalled_peer_never_blocks_the_others(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork(send_buffer=4096)  # a small TCP window fills fast
    with trio.fail_after(120):
        async with cluster(net, ["a", "b", "c"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            got_b: list[Event] = []
            nodes["b"].subscribe("*", got_b.append)
            net.cut("a", "c", one_way=True)  # a's bytes to c stall; a's writer to c blocks
            start = trio.current_time()
            sent = [
                nodes["a"].publish("task_execution", {"i": i, "pad": "x" * 200}) for i in range(500)
            ]
            assert trio.current_time() == start  # publishing is synchronous, never waits
            took = await wait_for(lambda: len(got_b) >= 500, limit=30)
            assert took < 2, f"b waited {took} s behind a stalled c"
            assert {e.id for e in got_b} >= {e.id for e in sent}
            c_stats = nodes["a"].variety_stats()["peers"]["c"]
            assert c_stats["sent"] < 500  # c is behind, its events wait in lanes or backlog
            assert c_stats["offered"] == (
                c_stats["sent"]
                + c_stats["queued"]
                + c_stats["backlogged"]
                + c_stats["dropped"]
                + c_stats["compressed"]
                + c_stats["throttled"]
            )


async def test_crashing_component_is_restarted_rest_for_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    with trio.fail_after(120):
        async with cluster(net, ["a", "b"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            node = nodes["a"]
            real = node.bridge.replication.variety
            crashes: list[float] = []

            class BrokenOnce:
                def __getattr__(self, name: str) -> object:
                    return getattr(real, name)

                def flush(self, now: float) -> list[Event]:
                    if not crashes:
                        crashes.append(now)
                        raise RuntimeError("variety window crashed on purpose")
                    return real.flush(now)

            node.bridge.replication.variety = BrokenOnce()  # type: ignore[assignment]
            await wait_for(lambda: node.supervisor.restarts["bridge"] == 1, limit=30)
            sup = node.supervisor
            # rest_for_one: variety and everything after it restarted, the detector did not
            assert sup.crashes["variety"] == 1
            assert sup.restarts["variety"] == 1 and sup.restarts["discovery"] == 1
            assert sup.restarts["partition_detector"] == 0
            # the restarted bridge reconnects and replicates again
            await wait_for(lambda: full_mesh(nodes), limit=60)
            got: list[Event] = []
            nodes["b"].subscribe("*", got.append)
            ev = node.publish("task_execution", {"after": "restart"})
            await wait_for(lambda: any(e.id == ev.id for e in got), limit=30)


async def test_duplicate_name_is_refused(autojump_clock: trio.abc.Clock) -> None:
    from vsmtest import config

    from node.node import open_node

    net = SimNetwork()
    with trio.fail_after(120):
        async with cluster(net, ["a", "b"]) as nodes:
            await wait_for(lambda: full_mesh(nodes))
            impostor_cfg = config("b", listen="b2:7401", seeds=["a:7401"])
            async with open_node(impostor_cfg, transport=net.transport("b2")) as impostor:
                await wait_for(lambda: nodes["a"].bridge.counters.get("duplicate_name", 0) >= 1)
                assert impostor.bridge.counters.get("duplicate_name", 0) >= 1
                assert not any(p.connected for p in impostor.bridge.peers.values())
                # the real b keeps its connection
                assert nodes["a"].bridge.peers["b"].connected
                assert nodes["a"].bridge.peers["b"].address == "b:7401"


async def test_restarted_node_rejoins_and_gets_its_backlog(autojump_clock: trio.abc.Clock) -> None:
    from vsmtest import config

    from node.node import open_node

    net = SimNetwork()
    with trio.fail_after(300):
        async with cluster(net, ["a"]) as nodes:
            a = nodes["a"]
            async with open_node(config("b", seeds=["a:7401"]), transport=net.transport("b")) as b:
                await wait_for(lambda: "b" in a.bridge.peers and a.bridge.peers["b"].connected)
                first_incarnation = b.incarnation
            await wait_for(lambda: "b" in a.bridge.departed)
            missed = [a.publish("task_execution", {"i": i}) for i in range(10)]
            assert a.variety_stats()["peers"]["b"]["backlogged"] == 10
            async with open_node(config("b", seeds=["a:7401"]), transport=net.transport("b")) as b2:
                assert b2.incarnation != first_incarnation
                got: list[Event] = []
                b2.subscribe("*", got.append)
                await wait_for(lambda: {e.id for e in missed} <= {e.id for e in got}, limit=60)
                assert "b" not in a.bridge.departed
                assert a.variety_stats()["peers"]["b"]["backlogged"] == 0


async def test_leaving_while_the_writer_is_blocked_is_prompt_and_clean(
    autojump_clock: trio.abc.Clock,
) -> None:
    from vsmtest import config

    from node.node import open_node

    net = SimNetwork(send_buffer=8192)
    with trio.fail_after(120):
        async with cluster(net, ["a"]) as nodes:
            a = nodes["a"]
            async with open_node(config("b", seeds=["a:7401"]), transport=net.transport("b")) as b:
                await wait_for(lambda: "a" in b.bridge.peers and b.bridge.peers["a"].connected)
                net.cut("b", "a", one_way=True)
                for i in range(3000):
                    b.publish("task_execution", {"i": i, "pad": "y" * 100})
                await trio.sleep(0.5)  # b's writer is now stuck in send_all
                leaving = trio.current_time()
            # BYE waits its turn behind the stuck writer, briefly, then gives up
            assert trio.current_time() - leaving <= 1.5
            net.heal_all()
            # the BYE never left b, so a sees the stream end: a failure, not a departure
            await wait_for(lambda: not a.bridge.peers["b"].connected, limit=30)
            assert "b" not in a.bridge.departed


async def test_crash_loop_stops_the_node_with_the_original_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    from vsmtest import config

    from node.errors import EscalationError
    from node.node import open_node

    net = SimNetwork()
    with trio.fail_after(120):
        with pytest.raises(EscalationError) as info:
            async with open_node(config("a"), transport=net.transport("a")) as node:
                real = node.bridge.replication.variety

                class AlwaysBroken:
                    def __getattr__(self, name: str) -> object:
                        return getattr(real, name)

                    def flush(self, now: float) -> list[Event]:
                        raise RuntimeError("variety window keeps crashing")

                node.bridge.replication.variety = AlwaysBroken()  # type: ignore[assignment]
                await trio.sleep_forever()
        assert isinstance(info.value.__cause__, RuntimeError)
        assert "keeps crashing" in str(info.value.__cause__)
