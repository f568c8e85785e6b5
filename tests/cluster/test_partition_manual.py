"""Manual resolution with epochs, restarts during a partition, and the journal.

Nodes keep their state in a data_dir each, and are stopped and started one by
one (:class:`Cluster`), on the simulated network under MockClock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from test_partition_governance import no_split_brain, role, split, status
from vsmtest import config, full_mesh, wait_for

from node.core.events import Event
from node.errors import DegradedError, JournalError, ResolutionError
from node.node import Node, open_node
from node.sim import SimNetwork

pytestmark = pytest.mark.trio


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Autojump, except while a worker thread (``trio.to_thread``) is running.

    These nodes write their journal and state file on worker threads, which
    MockClock cannot see: it would jump to the next deadline while a write is
    in flight (at shutdown, even to a test's fail_after). Holding the jump
    until the thread is done keeps virtual time deterministic. (MockClock is
    final, so its jump hook is wrapped on the instance.)
    """
    mock = trio.testing.MockClock(autojump_threshold=0)
    jump = mock._autojump

    def autojump_unless_a_thread_runs() -> None:
        if trio.testing.active_thread_count() == 0:
            jump()

    mock._autojump = autojump_unless_a_thread_runs  # type: ignore[method-assign]
    return mock


class Cluster:
    """Nodes that can be stopped and restarted one at a time, each with its data_dir."""

    def __init__(self, net: SimNetwork, nursery: trio.Nursery, root: Path, **kw: Any) -> None:
        self.net, self.nursery, self.root, self.kw = net, nursery, root, kw
        self.nodes: dict[str, Node] = {}
        self._stop: dict[str, trio.Event] = {}
        self._done: dict[str, trio.Event] = {}

    async def start(self, name: str, *, seed: str = "a") -> Node:
        seeds = [] if name == seed else [f"{seed}:7401"]
        cfg = config(name, seeds=seeds, data_dir=str(self.root / name), **self.kw)
        stop, done = trio.Event(), trio.Event()

        async def hold(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            try:
                async with open_node(cfg, transport=self.net.transport(name)) as node:
                    task_status.started(node)
                    await stop.wait()
            finally:
                done.set()

        node: Node = await self.nursery.start(hold)
        self.nodes[name], self._stop[name], self._done[name] = node, stop, done
        return node

    async def stop(self, name: str) -> None:
        self._stop[name].set()
        await self._done[name].wait()

    async def restart(self, name: str) -> Node:
        await self.stop(name)
        return await self.start(name)


@asynccontextmanager
async def running(net: SimNetwork, root: Path, names: str, **kw: Any) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        c = Cluster(net, nursery, root, **kw)
        for name in names:
            await c.start(name)
        yield c
        for name in names:
            await c.stop(name)


def epoch(node: Node) -> int:
    return int(node.partition_status()["epoch"])


async def test_manual_epochs_across_partition_restart_and_heal(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    net = SimNetwork()
    with trio.fail_after(900):
        async with running(net, tmp_path, "abcd", strategy="manual", stable_after_s=3.0) as c:
            nodes = c.nodes
            async with no_split_brain(nodes):
                await wait_for(lambda: full_mesh(nodes))
                await wait_for(lambda: all(role(n) == "primary" for n in nodes.values()))
                pains: dict[str, list[Event]] = {x: [] for x in "abcd"}
                for x in "abcd":
                    nodes[x].subscribe("algedonic_pain", pains[x].append)

                # a partition: every side waits for the operator, degraded, and screams once
                split(net, "ab", "cd")
                await wait_for(
                    lambda: all(status(n) == "awaiting_operator" for n in nodes.values()),
                    limit=60,
                )
                await trio.sleep(5)
                for x in "abcd":
                    assert role(nodes[x]) == "degraded"
                    own = [e for e in pains[x] if e.source == x]
                    assert len(own) == 1 and own[0].data["severity"] == 8  # a real scream
                with pytest.raises(DegradedError, match="awaiting the operator"):
                    nodes["a"].publish("policy_update", {})

                with pytest.raises(ResolutionError, match="span 2 components"):
                    await nodes["a"].resolve_partition(keep=["a", "c"])
                with pytest.raises(ResolutionError, match="not members"):
                    await nodes["a"].resolve_partition(keep=["zz"])
                st = await nodes["a"].resolve_partition(keep=["a"], operator="alice@host")
                assert (st["role"], st["status"], st["epoch"]) == ("primary", "partitioned", 1)
                assert st["survivors"] == ["a", "b"]
                # b hears of it over the wire; c and d cannot, and keep waiting
                await wait_for(lambda: role(nodes["b"]) == "primary")
                assert epoch(nodes["b"]) == 1
                assert nodes["b"].detector.resolutions[-1]["operator"] == "alice@host via a"
                assert status(nodes["c"]) == "awaiting_operator" and epoch(nodes["c"]) == 0
                nodes["a"].publish("policy_update", {"v": 1})

                # restarts during the partition: a keeps the decision, c remembers its
                # members and does not call itself a cluster of one
                await c.restart("a")
                assert role(nodes["a"]) == "primary" and epoch(nodes["a"]) == 1
                await c.restart("c")
                st = nodes["c"].partition_status()
                assert st["role"] == "degraded" and st["members"] == ["a", "b", "c", "d"]
                assert "a cluster of one" not in st["reason"]
                await wait_for(lambda: status(nodes["c"]) == "awaiting_operator", limit=60)
                await wait_for(lambda: status(nodes["a"]) == "partitioned", limit=60)
                assert nodes["a"].partition_status()["survivors"] == ["a", "b"]

                # heal: the decision reaches c and d with its epoch, then all are primary
                net.heal_all()
                await wait_for(lambda: all(epoch(n) == 1 for n in nodes.values()), limit=60)
                await wait_for(
                    lambda: all(
                        role(n) == "primary" and status(n) == "healthy" for n in nodes.values()
                    ),
                    limit=120,
                )
                res = nodes["d"].partition_status()["resolution"]
                assert (res["operator"], res["keep"], res["retired"]) == ("alice@host", ["a"], True)

                # next partition: both sides resolve (epoch 2 each), naming the same side;
                # the later HLC wins the tie: on heal, a's decision is stale at c, and
                # c's reaches a; everyone ends with c's
                split(net, "ab", "cd")
                await wait_for(
                    lambda: all(status(n) == "awaiting_operator" for n in nodes.values()),
                    limit=60,
                )
                st = await nodes["a"].resolve_partition(keep=["a", "b"], operator="alice@host")
                assert st["epoch"] == 2 and st["role"] == "primary"
                await trio.sleep(1)
                st = await nodes["c"].resolve_partition(keep=["a"], operator="bob@host")
                assert st["epoch"] == 2 and st["role"] == "degraded"
                winner = st["resolution"]["decision_id"]
                net.heal_all()
                await wait_for(
                    lambda: all(
                        n.partition_status()["resolution"]["decision_id"] == winner
                        for n in nodes.values()
                    ),
                    limit=60,
                )
                await wait_for(lambda: all(role(n) == "primary" for n in nodes.values()), limit=120)

            stale = await nodes["c"].history(50, ["resolution_received"])
            assert any(
                r["data"]["outcome"] == "stale" and r["data"]["operator"] == "alice@host"
                for r in stale
            ), stale
            made = await nodes["a"].history(50, ["operator_resolution"])
            assert [(r["data"]["operator"], r["data"]["epoch"]) for r in made] == [
                ("alice@host", 2),
                ("alice@host", 1),
            ]
            assert made[0]["hlc"] and made[0]["wall"] > 0


async def test_journal_records_the_partition_lifecycle(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    net = SimNetwork()
    with trio.fail_after(300):
        async with running(net, tmp_path, "abc", stable_after_s=3.0) as c:
            nodes = c.nodes
            await wait_for(lambda: full_mesh(nodes))
            await wait_for(lambda: all(role(n) == "primary" for n in nodes.values()))
            split(net, "ab", "c")
            await wait_for(lambda: role(nodes["c"]) == "degraded", limit=60)
            nodes["c"].publish("viability_threat", {"why": "cut off"})
            net.heal_all()
            await wait_for(lambda: role(nodes["c"]) == "primary", limit=120)
            rows = await nodes["c"].history(200)
            kinds = [r["kind"] for r in rows][::-1]  # oldest first
            for expected in (
                "node_started",
                "peer_joined",
                "picture_changed",
                "peer_lost",
                "partition_decided",
                "role_changed",
                "algedonic_sent",
                "partition_healed",
            ):
                assert expected in kinds, (expected, kinds)
            assert kinds.index("partition_decided") < kinds.index("partition_healed")
            only = await nodes["c"].history(5, ["role_changed"])
            assert [r["data"]["to"] for r in only] == ["primary", "degraded", "primary"][::-1][
                : len(only)
            ]
            heard = await nodes["a"].history(200, ["algedonic_received"])
            assert any(r["data"]["data"] == {"why": "cut off"} for r in heard)


async def test_corrupt_journal_refuses_to_start_unless_no_journal(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    net = SimNetwork()
    (tmp_path / "journal.sqlite3").write_bytes(b"garbage, not sqlite " * 200)
    cfg = config("a", data_dir=str(tmp_path))
    with trio.fail_after(60):
        with pytest.raises(JournalError, match=r"journal\.sqlite3 is corrupt"):
            async with open_node(cfg, transport=net.transport("a")):
                pass  # pragma: no cover
        async with open_node(cfg.evolve(journal=False), transport=net.transport("a")) as node:
            with pytest.raises(JournalError, match=r"no journal \(--no-journal\)"):
                await node.history()
            node.publish("policy_update", {})  # a founder: primary at once
    async with open_node(config("b"), transport=net.transport("b")) as node:
        with pytest.raises(JournalError, match="no data_dir"):
            await node.history()


async def test_corrupt_state_file_is_reported_at_start(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    (tmp_path / "state.json").write_text("{oops")
    with trio.fail_after(60), pytest.raises(JournalError, match=r"state\.json is corrupt"):
        async with open_node(
            config("a", data_dir=str(tmp_path)), transport=SimNetwork().transport("a")
        ):
            pass  # pragma: no cover


async def test_a_member_that_left_with_bye_is_not_counted_after_restart(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    net = SimNetwork()
    with trio.fail_after(300):
        async with running(net, tmp_path, "abc", stable_after_s=3.0) as c:
            nodes = c.nodes
            await wait_for(lambda: full_mesh(nodes))
            await wait_for(lambda: all(role(n) == "primary" for n in nodes.values()))
            await c.stop("c")  # BYE: a departure, not a failure
            await trio.sleep(3)
            await c.restart("b")
            st = nodes["b"].partition_status()
            assert st["members"] == ["a", "b"]
            await wait_for(lambda: role(nodes["b"]) == "primary", limit=60)
            await c.start("c")  # so that running() can stop it again
