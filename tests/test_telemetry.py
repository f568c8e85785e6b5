"""Telemetry: attach/detach/emit like :telemetry, the repeat limiter, events from state."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from vsmtest import cluster, full_mesh, wait_for

from node.errors import TelemetryError
from node.sim import SimNetwork
from node.telemetry import (
    BREAKER_OPENED,
    EVENTS,
    NODE_CONNECTED,
    NODE_DISCONNECTED,
    PARTITION_DETECTED,
    PARTITION_HEALED,
    PARTITION_RESOLVED,
    VARIETY_COMPRESSED,
    VARIETY_FLOW,
    VARIETY_THROTTLED,
    RepeatLimiter,
    StateWatcher,
    Telemetry,
)

Seen = list[tuple[tuple[str, ...], dict[str, Any], dict[str, Any], Any]]


def recorder(seen: Seen) -> Any:
    def handler(name: Any, measurements: Any, metadata: Any, config: Any) -> None:
        seen.append((name, dict(measurements), dict(metadata), config))

    return handler


def test_attach_emit_detach() -> None:
    t = Telemetry()
    seen: Seen = []
    t.attach("h", [NODE_CONNECTED, NODE_DISCONNECTED], recorder(seen), config={"x": 1})
    t.emit(NODE_CONNECTED, {"count": 1}, {"peer": "b"})
    t.emit(BREAKER_OPENED, {"count": 1})  # nobody attached: nothing happens
    t.emit(NODE_DISCONNECTED, {"count": 1})
    assert seen == [
        (NODE_CONNECTED, {"count": 1}, {"peer": "b"}, {"x": 1}),
        (NODE_DISCONNECTED, {"count": 1}, {}, {"x": 1}),
    ]
    assert t.handlers(("vsm", "cluster", "node")) == [
        {"id": "h", "events": [list(NODE_CONNECTED), list(NODE_DISCONNECTED)]}
    ]
    assert t.handlers(("vsm", "cluster", "variety")) == []
    assert t.detach("h") is True
    assert t.detach("h") is False
    t.emit(NODE_CONNECTED, {"count": 1})
    assert len(seen) == 2


def test_handlers_run_in_attach_order() -> None:
    t = Telemetry()
    order: list[str] = []
    t.attach("first", [NODE_CONNECTED], lambda *_: order.append("first"))
    t.attach("second", [NODE_CONNECTED], lambda *_: order.append("second"))
    t.emit(NODE_CONNECTED, {})
    assert order == ["first", "second"]


def test_duplicate_id_and_bad_names_are_refused() -> None:
    t = Telemetry()
    t.attach("h", [NODE_CONNECTED], lambda *_: None)
    with pytest.raises(TelemetryError, match="already attached"):
        t.attach("h", [NODE_DISCONNECTED], lambda *_: None)
    with pytest.raises(TelemetryError, match="tuple of strings"):
        t.attach("g", ["vsm.cluster"], lambda *_: None)  # type: ignore[list-item]
    with pytest.raises(TelemetryError, match="no event names"):
        t.attach("g", [], lambda *_: None)


def test_failing_handler_is_detached_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    t = Telemetry()
    seen: Seen = []

    def broken(*_: Any) -> None:
        raise RuntimeError("boom")

    t.attach("broken", [NODE_CONNECTED], broken)
    t.attach("good", [NODE_CONNECTED], recorder(seen))
    with caplog.at_level(logging.ERROR, logger="vsm.telemetry"):
        for _ in range(3):
            t.emit(NODE_CONNECTED, {"count": 1})
    assert len(seen) == 3  # the good handler still ran, every time
    assert t.failed == {"broken": "RuntimeError: boom"}
    assert [h["id"] for h in t.handlers()] == ["good"]
    assert caplog.text.count("telemetry handler broken failed") == 1


def test_event_names_are_the_seeds() -> None:
    assert len(set(EVENTS)) == 13
    assert all(name[:2] == ("vsm", "cluster") and len(name) == 4 for name in EVENTS)


# --- the repeat limiter --------------------------------------------------------------


def _record(msg: str, level: int = logging.WARNING, name: str = "vsm.bridge") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, ("x",), None)


def test_repeat_limiter_lets_a_burst_through_then_counts() -> None:
    now = [0.0]
    limiter = RepeatLimiter(burst=3, per_s=0.5, clock=lambda: now[0])
    passed = [limiter.filter(_record("handshake with %s failed")) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert limiter.suppressed == 7
    # Other kinds, and anything below WARNING, are not affected.
    assert limiter.filter(_record("bad frame from %s"))
    assert all(limiter.filter(_record("connected to %s", logging.INFO)) for _ in range(20))
    now[0] = 2.0  # one token back (0.5 per second)
    record = _record("handshake with %s failed")
    assert limiter.filter(record)
    assert record.getMessage() == "handshake with x failed (7 similar suppressed)"
    assert not limiter.filter(_record("handshake with %s failed"))


def test_repeat_limiter_bounds_a_flood() -> None:
    now = [0.0]
    limiter = RepeatLimiter(burst=5, per_s=0.2, clock=lambda: now[0])
    passed = 0
    for i in range(100_000):  # 10 s of 10,000 warnings a second
        now[0] = i / 10_000
        passed += limiter.filter(_record("handshake with %s failed"))
    assert passed == 5 + 1  # the burst, then one token per 5 s
    assert limiter.suppressed == 100_000 - passed


def test_repeat_limiter_memory_is_bounded() -> None:
    from node.telemetry import MAX_KINDS

    limiter = RepeatLimiter(clock=lambda: 0.0)
    for i in range(MAX_KINDS * 3):  # messages formatted before logging: a new kind each
        assert limiter.filter(_record(f"peer {i} failed"))
    assert len(limiter._tokens) == MAX_KINDS


# --- events from state -----------------------------------------------------------------


def _channel(offered: int, admitted: int, compressed: int, throttled: int) -> dict[str, int]:
    return dict(offered=offered, admitted=admitted, compressed=compressed, throttled=throttled)


def test_state_watcher_emits_variety_deltas() -> None:
    t = Telemetry()
    seen: Seen = []
    t.attach("h", [VARIETY_FLOW, VARIETY_THROTTLED, VARIETY_COMPRESSED], recorder(seen))
    w = StateWatcher(t)
    healthy = {"status": "healthy", "components": [["a"]], "decision": None}
    w.observe({"s1_operational": _channel(10, 10, 0, 0), "general": _channel(0, 0, 0, 0)}, healthy)
    w.observe({"s1_operational": _channel(25, 18, 5, 2), "general": _channel(0, 0, 0, 0)}, healthy)
    w.observe({"s1_operational": _channel(25, 18, 5, 2), "general": _channel(0, 0, 0, 0)}, healthy)
    meta = {"channel": "s1_operational"}
    assert [(n, m, md) for n, m, md, _ in seen] == [
        (VARIETY_FLOW, {"offered": 10, "admitted": 10}, meta),
        (VARIETY_FLOW, {"offered": 15, "admitted": 8}, meta),
        (VARIETY_THROTTLED, {"count": 2}, meta),
        (VARIETY_COMPRESSED, {"count": 5}, meta),
    ]


def test_state_watcher_emits_partition_transitions() -> None:
    t = Telemetry()
    seen: Seen = []
    t.attach("h", [PARTITION_DETECTED, PARTITION_HEALED, PARTITION_RESOLVED], recorder(seen))
    w = StateWatcher(t)
    decision = {"survivors": ["a", "b"], "downed": ["c"], "awaiting_operator": False}
    waiting = {"survivors": [], "downed": [], "awaiting_operator": True}
    healthy = {"survivors": ["a", "b", "c"], "downed": [], "awaiting_operator": False}
    steps = [
        {"status": "starting", "components": []},
        {"status": "unstable", "components": [["a"], ["b", "c"]]},  # forming: not a partition
        {"status": "healthy", "components": [["a", "b", "c"]], "decision": healthy},
        {"status": "unstable", "components": [["a", "b"], ["c"]]},
        {"status": "partitioned", "components": [["a", "b"], ["c"]], "decision": decision},
        {"status": "partitioned", "components": [["a", "b"], ["c"]], "decision": decision},
        {"status": "healthy", "components": [["a", "b", "c"]]},
        {"status": "awaiting_operator", "components": [["a"], ["b", "c"]], "decision": waiting},
    ]
    for step in steps:
        w.observe({}, step)
    assert [(n, m) for n, m, _, _ in seen] == [
        (PARTITION_DETECTED, {"components": 2}),
        (PARTITION_RESOLVED, {"components": 2}),
        (PARTITION_HEALED, {"components": 1}),
        (PARTITION_DETECTED, {"components": 2}),
    ]


# --- a node emits ------------------------------------------------------------------------


@pytest.mark.trio
async def test_node_emits_connections_and_breaker_transitions(autojump_clock: Any) -> None:
    net = SimNetwork()
    seen: Seen = []
    async with cluster(net, ["a", "b"]) as nodes:
        a = nodes["a"]
        a.telemetry.attach("t", [NODE_CONNECTED, NODE_DISCONNECTED, BREAKER_OPENED], recorder(seen))
        await wait_for(lambda: full_mesh(nodes))
        net.cut("a", "b")
        await wait_for(lambda: any(n == BREAKER_OPENED for n, *_ in seen), limit=120)
    names = [n for n, *_ in seen]
    assert NODE_DISCONNECTED in names and BREAKER_OPENED in names
    disconnected = next(md for n, _, md, _ in seen if n == NODE_DISCONNECTED)
    assert disconnected == {"node": "a", "peer": "b"}
    opened = next(md for n, _, md, _ in seen if n == BREAKER_OPENED)
    assert opened["peer"] == "b" and opened["from"] in ("closed", "half_open")


@pytest.mark.trio
async def test_node_emits_variety_flow_once_per_check(autojump_clock: Any) -> None:
    net = SimNetwork()
    seen: Seen = []
    async with cluster(net, ["a"]) as nodes:
        a = nodes["a"]
        a.telemetry.attach("t", [VARIETY_FLOW], recorder(seen))
        for _ in range(7):
            a.publish("task_execution", {"n": 1})
        await trio.sleep(a.config.check_interval_s * 1.5)
    assert [(m, md) for _, m, md, _ in seen] == [
        ({"offered": 7, "admitted": 7}, {"channel": "s1_operational"})
    ]


@pytest.mark.trio
async def test_node_emits_partition_detected_resolved_healed(autojump_clock: Any) -> None:
    net = SimNetwork()
    seen: Seen = []
    names = [PARTITION_DETECTED, PARTITION_RESOLVED, PARTITION_HEALED]
    async with cluster(net, ["a", "b", "c"]) as nodes:
        await wait_for(lambda: full_mesh(nodes))
        # healthy, and decided so: a joiner starts degraded and turns primary (and
        # "healed") only once the picture has been stable for stable_after_s
        await wait_for(
            lambda: all(
                n.partition_status()["status"] == "healthy"
                and n.partition_status()["role"] == "primary"
                for n in nodes.values()
            )
        )
        nodes["a"].telemetry.attach("t", names, recorder(seen))
        net.cut("a", "c")
        net.cut("b", "c")
        await wait_for(lambda: any(n == PARTITION_RESOLVED for n, *_ in seen), limit=120)
        net.heal_all()
        await wait_for(lambda: any(n == PARTITION_HEALED for n, *_ in seen), limit=120)
    order = [n for n, *_ in seen]
    assert order == [PARTITION_DETECTED, PARTITION_RESOLVED, PARTITION_HEALED]
    resolved = seen[1][2]["decision"]
    assert resolved["survivors"] == ["a", "b"] and resolved["downed"] == ["c"]
