"""Whatever an authenticated peer puts in an EVENTS frame, the receiver accounts
for every sequence number: delivered once, or refused and counted, never lost
and never an exception (hypothesis over the decoder and ``on_events``)."""

from __future__ import annotations

from typing import Any

import msgpack
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node import NodeConfig
from node.core.batch import items_of
from node.core.breaker import CircuitBreaker
from node.core.events import Channel, Event
from node.core.hlc import Timestamp, wall_clock_ms
from node.core.link import InboundLink
from node.core.wire import Events, decode_payload
from node.errors import ProtocolError
from node.node import Node
from node.runtime.peerlink import PeerLink
from node.sim import SimNetwork

COUNTED = ("invalid_events", "source_mismatch", "clock_rejected", "own_events_returned")
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(-(2**63), 2**63 - 1), max_size=2),
)


def event(i: int, now: int, **kw: Any) -> Event:
    fields: dict[str, Any] = {
        "type": "task_execution",
        "channel": Channel.S1_OPERATIONAL,
        "data": {"i": i},
        "source": "r",
        "hlc": Timestamp(now, i, "r"),
    }
    fields.update(kw)
    return Event(**fields)


@st.composite
def frames(draw: st.DrawFn) -> list[Any]:
    """An EVENTS frame's items as msgpack would carry them: runs and single
    events, some of them damaged, and junk."""
    now = wall_clock_ms()
    items: list[Any] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["run", "single", "damaged run", "damaged single", "junk"]))
        n = draw(st.integers(4, 8)) if "run" in kind else 1
        source = draw(st.sampled_from(["r", "r", "r", "b", "a"]))  # a: the receiver itself
        hops = draw(st.integers(0, 1)) if source != "r" else 0
        start = len(items) * 10
        evs = [
            event(start + i, now, source=source, hlc=Timestamp(now, start + i, source), hops=hops)
            for i in range(n)
        ]
        packed = msgpack.unpackb(msgpack.packb(Events.of(evs).to_wire(), default=_default))[3]
        if kind == "junk":
            items.append(draw(JUNK))
            continue
        for item in packed:
            if kind.startswith("damaged"):
                where = draw(st.integers(0, len(item) - 1))
                if "run" in kind and where >= 5:  # a value in a column, not its shape
                    column = list(item[where] or [None] * n)
                    column[draw(st.integers(0, n - 1))] = draw(JUNK)
                    item[where] = column if where < 8 or column != [None] * n else None
                else:
                    item[where] = draw(JUNK)
            items.append(item)
    return items


def _default(obj: object) -> Any:
    if isinstance(obj, Channel):
        return obj.value
    raise TypeError(type(obj).__name__)


async def receive(items: list[Any]) -> None:
    net = SimNetwork()
    node = Node(
        NodeConfig(name="a", listen="a:7401", cookie="c" * 16), transport=net.transport("a")
    )
    delivered: list[Event] = []
    node.subscribe("*", delivered.append)
    peer = PeerLink("r", "r:7401", node.bridge.replication.new_outbox(), CircuitBreaker())
    peer.inbound = InboundLink(1)
    try:
        msg = decode_payload(msgpack.packb([4, 1, 1, 0, items, True]))
    except ProtocolError:
        return  # a run of the wrong shape: the frame is refused whole (counted by the bridge)
    assert isinstance(msg, Events)
    counters = node.bridge.counters
    node.bridge.replication.on_events(peer, msg)
    counted = sum(counters.get(name, 0) for name in COUNTED)
    relayed_twice = counters.get("duplicates", 0)
    assert len(delivered) + counted + relayed_twice == msg.count
    if delivered:  # the clock moved past everything delivered (causality)
        assert node.hlc.now()[:2] > max(e.hlc[:2] for e in delivered)
    assert peer.inbound.processed == (msg.count or None)
    refused = peer.inbound.refused
    assert len(refused) == sum(counters.get(n, 0) for n in COUNTED[:3])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_every_sequence_number_is_delivered_or_counted(items: list[Any]) -> None:
    trio.run(receive, items)


def test_items_of_a_clean_frame_are_all_delivered() -> None:
    now = wall_clock_ms()
    evs = [event(i, now) for i in range(6)] + [event(9, now, type="status_update")]
    (run,) = items_of(evs)  # one run, its types a column
    assert run.type == ["task_execution"] * 6 + ["status_update"]
    packed = msgpack.unpackb(msgpack.packb(Events.of(evs).to_wire(), default=_default))[3]
    trio.run(receive, packed)


def test_each_type_of_a_run_goes_to_its_own_subscribers() -> None:
    """A run of one type is routed once; a run whose types are a column is
    routed event by event (no subscriber gets another type's events)."""

    async def main() -> None:
        net = SimNetwork()
        node = Node(
            NodeConfig(name="a", listen="a:7401", cookie="c" * 16), transport=net.transport("a")
        )
        got: dict[str, list[Event]] = {"task_execution": [], "status_update": []}
        for key, sink in got.items():
            node.subscribe(key, sink.append)
        peer = PeerLink("r", "r:7401", node.bridge.replication.new_outbox(), CircuitBreaker())
        peer.inbound = InboundLink(1)
        now = wall_clock_ms()
        mixed = [
            event(i, now, type=("status_update" if i % 3 else "task_execution")) for i in range(9)
        ]
        # stamped ahead of our clock (within max_offset_ms), the highest in mid-run
        same = [
            event(10 + i, now, type="status_update", hlc=Timestamp(now + 300, count, "r"))
            for i, count in enumerate((3, 40, 7, 12, 1))
        ]
        seq = 1
        for evs in (mixed, same):
            items = msgpack.unpackb(msgpack.packb(Events.of(evs).to_wire(), default=_default))[3]
            msg = decode_payload(msgpack.packb([4, seq, seq, 0, items, True]))
            assert isinstance(msg, Events)
            node.bridge.replication.on_events(peer, msg)
            seq += len(evs)
        assert [e.data["i"] for e in got["task_execution"]] == [0, 3, 6]
        assert [e.data["i"] for e in got["status_update"]] == [1, 2, 4, 5, 7, 8, 10, 11, 12, 13, 14]
        assert node.hlc.now()[:2] > (now + 300, 40)  # past the run's highest stamp

    trio.run(main)
