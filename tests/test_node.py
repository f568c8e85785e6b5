"""The Node facade on one node: subscriptions, publishing, views."""

from __future__ import annotations

import pytest
import trio
from vsmtest import config

from node import Channel, Event, NodeConfig, open_node
from node.errors import ConfigError, InvalidEventError, InvalidMessageError
from node.sim import SimNetwork

pytestmark = pytest.mark.trio


async def test_subscribe_by_type_channel_and_star_then_cancel(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    async with open_node(config("a"), transport=net.transport("a")) as n:
        by_type: list[Event] = []
        by_channel: list[Event] = []
        everything: list[Event] = []
        sub = n.subscribe("task_execution", by_type.append)
        n.subscribe(Channel.S5_POLICY, by_channel.append)
        n.subscribe("*", everything.append)
        n.publish("task_execution", {"t": 1})
        n.publish("policy_update", {"p": 1})
        n.publish("something_else")
        assert [e.type for e in by_type] == ["task_execution"]
        assert [e.type for e in by_channel] == ["policy_update"]
        assert [e.channel for e in everything] == [
            Channel.S1_OPERATIONAL,
            Channel.S5_POLICY,
            Channel.GENERAL,
        ]
        sub.cancel()
        sub.cancel()  # idempotent
        n.publish("task_execution", {"t": 2})
        assert len(by_type) == 1 and len(everything) == 4
        assert everything[0].hlc < everything[1].hlc < everything[2].hlc


async def test_a_failing_subscriber_is_counted_not_propagated(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    async with open_node(config("a"), transport=net.transport("a")) as n:
        got: list[Event] = []

        def broken(event: Event) -> None:
            raise ValueError("subscriber bug")

        n.subscribe("*", broken)
        n.subscribe("*", got.append)
        n.publish("status_update", {"ok": True})
        assert n.delivery_errors == 1 and len(got) == 1


async def test_bad_publish_and_subscribe_are_refused(autojump_clock: trio.abc.Clock) -> None:
    # Local misuse is the caller's fault: InvalidEventError, never the
    # InvalidMessageError kept for what a peer sent.
    net = SimNetwork()
    async with open_node(config("a"), transport=net.transport("a")) as n:
        with pytest.raises(InvalidEventError, match="event type"):
            n.publish("", {})
        with pytest.raises(InvalidEventError, match="must be a map"):
            n.publish("x", ["not", "a", "map"])  # type: ignore[arg-type]
        with pytest.raises(InvalidEventError, match="not msgpack-able"):
            n.publish("x", {"obj": object()})
        with pytest.raises(InvalidEventError):
            n.subscribe("", print)
        for bad in (InvalidEventError("x"),):
            assert not isinstance(bad, InvalidMessageError)


async def test_views_are_measurements(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    async with open_node(config("a", quotas={"s3_control": 2}), transport=net.transport("a")) as n:
        await trio.sleep(2)
        top = n.topology()
        assert set(top) >= {"node", "peers", "peer_states", "partition_status", "variety_pressure"}
        assert top["node"] == "a" and top["peers"] == []
        health = n.health_report()
        assert health["overall"] == 1.0 and health["connectivity"] == 1.0
        for _ in range(50):
            n.publish("control_override", {"x": 1})
            await trio.sleep(0.02)
        pressure = n.variety_pressure()
        assert pressure["channels"]["s3_control"] > 0.8 and pressure["level"] == "high"
        assert n.health_report()["s3"] < 0.2
        stats = n.variety_stats()["channels"]["s3_control"]
        assert stats["offered"] == 50
        assert stats["offered"] == stats["admitted"] + stats["compressed"] + stats["throttled"]


async def test_open_node_wants_a_config() -> None:
    with pytest.raises(ConfigError):
        async with open_node({"name": "a"}):  # type: ignore[arg-type]
            pass
    with pytest.raises(ConfigError):
        NodeConfig(name="a", cookie="")
