"""Events in runs (node.core.batch): grouping, the wire, bulk and per-event checks."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.batch import MIN_RUN, Run, item_size, items_of
from node.core.events import Channel, Event
from node.core.hlc import MAX_LOGICAL, MAX_PHYSICAL, Timestamp
from node.core.wire import Decoder, Events, encode
from node.errors import InvalidMessageError, ProtocolError


def ev(
    etype: str = "task_execution",
    data: dict[str, object] | None = None,
    source: str = "a",
    physical: int = 1_700_000_000_000,
    logical: int = 0,
    *,
    node: str | None = None,
    hops: int = 0,
    channel: Channel = Channel.S1_OPERATIONAL,
) -> Event:
    stamp = Timestamp(physical, logical, source if node is None else node)
    return Event(etype, channel, {"i": 1} if data is None else data, source, stamp, hops)


def flood(n: int = 5, **kw: Any) -> list[Event]:
    return [ev(logical=i, data={"i": i}, **kw) for i in range(n)]


def roundtrip(events: list[Event]) -> Events:
    d = Decoder()
    d.feed(encode(Events.of(events, 5, 3, 2)))
    (msg,) = list(d)
    assert isinstance(msg, Events)
    return msg


def checked(raw: Any, max_hops: int) -> Event | str:
    if isinstance(raw, Event):  # built here: as the receiver would see it
        raw = raw.to_wire()
    try:
        return Event.from_wire(raw, max_hops=max_hops)
    except ProtocolError as exc:
        return type(exc).__name__


def delivered(items: Any, max_hops: int = 8) -> list[Event | str]:
    """What a receiver makes of each event: the Event, or why it was refused."""
    out: list[Event | str] = []
    for item in items:
        if not isinstance(item, Run):
            out.append(checked(item, max_hops))
            continue
        events = item.events(max_hops)
        if events is not None:
            out += events
        else:
            out += [checked(raw, max_hops) for raw in item.rows()]
    return out


def wire_run(events: list[Event]) -> list[Any]:
    """The first item of the frame for ``events``, as the receiver's msgpack gives it."""
    item = msgpack.unpackb(encode(Events.of(events))[4:])[4][0]
    assert isinstance(item, list) and len(item) == 9
    return item


def test_a_flood_of_one_kind_is_one_run() -> None:
    (run,) = items_of(flood(5))
    assert isinstance(run, Run)
    assert run.type == "task_execution" and run.source == "a" and run.size == 5
    assert run.data == [{"i": i} for i in range(5)]
    assert run.logical == [0, 1, 2, 3, 4] and run.nodes is None


def test_a_lone_event_and_short_stretches_go_on_their_own() -> None:
    assert items_of([ev()]) == (ev(),)
    few = flood(MIN_RUN - 1)
    assert items_of(few) == tuple(few)
    msg = roundtrip(few)
    assert msg.count == MIN_RUN - 1 and delivered(msg.items) == few


def test_types_and_channels_that_vary_travel_as_columns() -> None:
    mixed = [
        ev("status_update" if i % 2 else "task_execution", logical=i, data={"i": i})
        for i in range(6)
    ]
    mixed[4] = mixed[4]._replace(channel=Channel.GENERAL)
    (run,) = items_of(mixed)
    assert isinstance(run, Run)
    assert run.type == ["task_execution", "status_update"] * 3
    assert run.channel == [Channel.S1_OPERATIONAL] * 4 + [Channel.GENERAL, Channel.S1_OPERATIONAL]
    (back,) = roundtrip(mixed).items
    assert back.events(8) == mixed
    assert back.tail(3).events(8) == mixed[3:]
    assert [Event.from_wire(r) for r in back.rows()] == mixed


@pytest.mark.parametrize(("column", "value"), [(0, ""), (0, 5), (1, "s9"), (1, ["x"])])
def test_a_bad_type_or_channel_in_a_column_refuses_that_event_only(
    column: int, value: object
) -> None:
    mixed = [ev("status_update" if i % 2 else "task_execution", logical=i) for i in range(5)]
    mixed[2] = mixed[2]._replace(channel=Channel.GENERAL)  # channels vary too
    run = wire_run(mixed)
    run[column][3] = value
    checked_run = Run.from_wire(run, 10)
    assert checked_run.events(8) is None
    result = delivered([checked_run])
    assert result[3] == "InvalidMessageError"
    assert result[:3] + result[4:] == mixed[:3] + mixed[4:]


def test_items_keep_the_order_and_split_where_source_hops_or_marker_change() -> None:
    events = [
        *flood(4),
        ev("status_update", logical=9, channel=Channel.GENERAL),
        *flood(4, hops=1),
        ev(logical=10),
        *flood(4, source="b"),
    ]
    items = items_of(events)
    assert [type(i).__name__ for i in items] == ["Run", "Run", "Event", "Run"]
    assert [item_size(i) for i in items] == [5, 4, 1, 4]
    assert delivered(items) == events
    assert delivered(roundtrip(events).items) == events


def test_a_frame_roundtrips_with_its_numbering() -> None:
    events = [ev(logical=i, data={"i": i, "s": "x", "f": 1.5, "n": None}) for i in range(300)]
    msg = roundtrip(events)
    assert (msg.first_seq, msg.ack_floor, msg.ack, msg.count) == (5, 3, 2, 300)
    assert delivered(msg.items) == events


def test_a_stamp_naming_another_node_travels_in_the_nodes_column() -> None:
    events = [*flood(4), ev(logical=7, node="z")]
    (run,) = items_of(events)
    assert isinstance(run, Run) and run.nodes == ["a"] * 4 + ["z"]
    # not plain: checked one by one, where from_wire takes the long way
    (back,) = roundtrip(events).items
    assert back.events(8) is None
    assert delivered([back]) == events


def test_nested_data_is_checked_event_by_event() -> None:
    events = [*flood(4), ev(logical=8, data={"deep": {"list": [1, 2]}})]
    (back,) = roundtrip(events).items
    assert back.events(8) is None
    assert delivered([back]) == events


def test_one_bad_event_is_refused_alone_and_the_rest_delivered() -> None:
    run = wire_run(flood(5))
    run[6][1] = -1  # the second event's clock is negative
    result = delivered([Run.from_wire(run, 10)])
    assert result[1] == "InvalidMessageError"
    assert result[:1] + result[2:] == flood(5)[:1] + flood(5)[2:]


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, ""),  # empty type
        (0, 7),  # type not a string
        (1, "s9_unknown"),  # unknown channel
        (2, ""),  # empty source
        (3, -1),  # hops below 0
        (3, 9),  # hops beyond max
        (4, 1),  # compressed not a bool
    ],
)
def test_a_bad_shared_field_refuses_every_event_of_the_run(index: int, value: object) -> None:
    run = wire_run(flood(5))
    run[index] = value
    checked_run = Run.from_wire(run, 10)
    assert checked_run.events(8) is None
    assert delivered([checked_run]) == ["InvalidMessageError"] * 5


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (5, {"k": b"\x00" * 3, 1: 2}),  # a key that is not a string
        (5, {"task": 1, b"task": 2}),  # a bytes key (the decoder's other kind)
        (5, "not a map"),
        (6, MAX_PHYSICAL + 1),
        (6, 1.5),
        (6, True),  # a bool is not an int here
        (7, MAX_LOGICAL + 1),
        (7, -1),
    ],
)
def test_a_bad_column_value_refuses_that_event_only(column: int, value: object) -> None:
    run = wire_run(flood(5))
    run[column][1] = value
    checked_run = Run.from_wire(run, 10)
    assert checked_run.events(8) is None
    result = delivered([checked_run])
    assert all(isinstance(e, Event) for e in result[:1] + result[2:])
    assert result[1] in ("InvalidMessageError", "LimitExceededError")


@pytest.mark.parametrize(
    "raw",
    [
        ["t", "c", "a", 0, False, [], [], [], None],  # empty
        ["t", "c", "a", 0, False, [{}], [1, 2], [0], None],  # columns differ
        ["t", "c", "a", 0, False, [{}], [1], [0], []],  # nodes column too short
        ["t", "c", "a", 0, False, {}, [1], [0], None],  # data not a list
        [["t", "u"], "c", "a", 0, False, [{}], [1], [0], None],  # type column too long
        ["t", [], "a", 0, False, [{}], [1], [0], None],  # channel column too short
    ],
)
def test_a_run_of_the_wrong_shape_makes_the_frame_invalid(raw: list[Any]) -> None:
    with pytest.raises(InvalidMessageError, match="run"):
        Run.from_wire(raw, 10)
    with pytest.raises(InvalidMessageError, match="run"):
        Events.from_wire([1, 1, 0, [raw], False])


def test_anything_else_is_one_event_refused_on_its_own() -> None:
    msg = Events.from_wire([1, 1, 0, ["junk", ["t", "c", "a", 0, False, [{}], [1], [0]]], False])
    assert msg.count == 2
    assert delivered(msg.items) == ["InvalidMessageError"] * 2


def test_a_frame_may_not_carry_more_events_than_max_batch() -> None:
    run = ["t", "general", "a", 0, False, [{}] * 6, [1] * 6, [0] * 6, None]
    with pytest.raises(InvalidMessageError, match=r"1\.\.4"):
        Run.from_wire(run, 4)
    with pytest.raises(InvalidMessageError, match="more than"):
        Events.from_wire([1, 1, 0, [run, *(["x"] * 9_995)], False])


def test_tail_skips_what_was_delivered() -> None:
    events = [ev(logical=i, node="z" if i == 3 else None) for i in range(5)]
    (run,) = items_of(events)
    assert isinstance(run, Run)
    rest = run.tail(2)
    assert rest.size == 3 and rest.nodes == ["a", "z", "a"]
    assert [Event.from_wire(r) for r in rest.rows()] == events[2:]


names = st.sampled_from(["a", "b"])
event_strategy = st.builds(
    ev,
    etype=st.sampled_from(["task_execution", "status_update"]),
    data=st.dictionaries(
        st.text(max_size=3),
        st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none(), st.lists(st.integers(0, 9))),
        max_size=3,
    ),
    source=names,
    physical=st.integers(0, 10),
    logical=st.integers(0, 3),
    node=st.one_of(st.none(), names),
    hops=st.integers(0, 2),
)
# long stretches too: the same event repeated makes runs
stretches = st.lists(
    st.tuples(event_strategy, st.integers(1, 6)).map(lambda t: [t[0]] * t[1]), max_size=8
).map(lambda parts: [e for part in parts for e in part])


@settings(max_examples=200, deadline=None)
@given(stretches)
def test_any_sequence_of_events_comes_back_as_it_went(events: list[Event]) -> None:
    msg = roundtrip(events)
    assert msg.count == len(events)
    assert delivered(msg.items) == events
    for skip in range(len(events) + 1):  # what a receiver delivers after skipping
        rest: list[Event | str] = []
        left = skip
        for item in msg.items:
            size = item_size(item)
            if left >= size:
                left -= size
                continue
            part = item.tail(left) if left else item
            left = 0
            rest += delivered([part])
        assert rest == events[skip:]
