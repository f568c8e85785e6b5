"""Events in runs (node.core.batch): grouping, the wire, bulk and per-event checks."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.batch import Run, runs_of
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


def roundtrip(events: list[Event]) -> Events:
    d = Decoder()
    d.feed(encode(Events.of(events, 5, 3, 2)))
    (msg,) = list(d)
    assert isinstance(msg, Events)
    return msg


def delivered(msg: Events, max_hops: int = 8) -> list[Event | str]:
    """What a receiver makes of each event: the Event, or why it was refused."""
    out: list[Event | str] = []
    for run in msg.runs:
        events = run.events(max_hops)
        if events is not None:
            out += events
            continue
        for raw in run.rows():
            try:
                out.append(Event.from_wire(raw, max_hops=max_hops))
            except ProtocolError as exc:
                out.append(type(exc).__name__)
    return out


def test_consecutive_events_of_one_kind_are_one_run() -> None:
    events = [ev(logical=i, data={"i": i}) for i in range(5)]
    (run,) = runs_of(events)
    assert run.type == "task_execution" and run.source == "a" and run.size == 5
    assert run.data == [{"i": i} for i in range(5)]
    assert run.logical == [0, 1, 2, 3, 4] and run.nodes is None


def test_runs_keep_the_order_and_split_where_anything_shared_changes() -> None:
    events = [
        ev(logical=0),
        ev(logical=1),
        ev("status_update", logical=2, channel=Channel.GENERAL),
        ev(logical=3),
        ev(logical=4, hops=1),
        ev(source="b", logical=5),
    ]
    runs = runs_of(events)
    assert [r.size for r in runs] == [2, 1, 1, 1, 1]
    assert [e for r in runs for e in r.events(8) or ()] == events


def test_a_frame_roundtrips_with_its_numbering() -> None:
    events = [ev(logical=i, data={"i": i, "s": "x", "f": 1.5, "n": None}) for i in range(300)]
    msg = roundtrip(events)
    assert (msg.first_seq, msg.ack_floor, msg.ack, msg.count) == (5, 3, 2, 300)
    assert delivered(msg) == events


def test_a_stamp_naming_another_node_travels_in_the_nodes_column() -> None:
    events = [ev(logical=0), ev(logical=1, node="z")]
    (run,) = runs_of(events)
    assert run.nodes == ["a", "z"]
    # not plain: checked one by one, where from_wire takes the long way
    assert roundtrip(events).runs[0].events(8) is None
    assert delivered(roundtrip(events)) == events


def test_nested_data_is_checked_event_by_event() -> None:
    events = [ev(logical=0), ev(logical=1, data={"deep": {"list": [1, 2]}})]
    msg = roundtrip(events)
    assert msg.runs[0].events(8) is None
    assert delivered(msg) == events


def test_one_bad_event_is_refused_alone_and_the_rest_delivered() -> None:
    raw = Events.of([ev(logical=i) for i in range(3)]).to_wire()
    run = raw[3][0]
    run = list(run)
    run[1] = "s1_operational"
    run[6] = [1, -1, 3]  # the second event's clock is negative
    frame = msgpack.packb([4, *raw[:3], [run], False], use_bin_type=True)
    d = Decoder()
    d.feed(len(frame).to_bytes(4, "big") + frame)
    (msg,) = list(d)
    result = delivered(msg)
    assert isinstance(result[0], Event) and isinstance(result[2], Event)
    assert result[1] == "InvalidMessageError"


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
    run = list(Events.of([ev(logical=i) for i in range(3)]).to_wire()[3][0])
    run[1] = "s1_operational"
    run[index] = value
    checked = Run.from_wire(run, 10)
    assert checked.events(8) is None
    assert delivered(Events((checked,))) == ["InvalidMessageError"] * 3


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (5, {"k": b"\x00" * 3, 1: 2}),  # a key that is not a string
        (5, "not a map"),
        (6, MAX_PHYSICAL + 1),
        (6, 1.5),
        (6, True),  # a bool is not an int here
        (7, MAX_LOGICAL + 1),
        (7, -1),
    ],
)
def test_a_bad_column_value_refuses_that_event_only(column: int, value: object) -> None:
    run = list(Events.of([ev(logical=i) for i in range(3)]).to_wire()[3][0])
    run[1] = "s1_operational"
    run[column] = list(run[column])
    run[column][1] = value
    checked = Run.from_wire(run, 10)
    assert checked.events(8) is None
    result = delivered(Events((checked,)))
    assert isinstance(result[0], Event) and isinstance(result[2], Event)
    assert result[1] in ("InvalidMessageError", "LimitExceededError")


@pytest.mark.parametrize(
    "raw",
    [
        "run",
        ["t", "c", "a", 0, False, [{}], [1], [0]],  # 8 fields
        ["t", "c", "a", 0, False, [], [], [], None],  # empty
        ["t", "c", "a", 0, False, [{}], [1, 2], [0], None],  # columns differ
        ["t", "c", "a", 0, False, [{}], [1], [0], []],  # nodes column too short
        ["t", "c", "a", 0, False, {}, [1], [0], None],  # data not a list
    ],
)
def test_a_run_of_the_wrong_shape_makes_the_frame_invalid(raw: object) -> None:
    with pytest.raises(InvalidMessageError, match="run"):
        Run.from_wire(raw, 10)


def test_a_frame_may_not_carry_more_events_than_max_batch() -> None:
    run = ["t", "general", "a", 0, False, [{}] * 6, [1] * 6, [0] * 6, None]
    with pytest.raises(InvalidMessageError, match=r"1\.\.4"):
        Run.from_wire(run, 4)


def test_tail_skips_what_was_delivered() -> None:
    events = [ev(logical=i, node="z" if i == 3 else None) for i in range(5)]
    (run,) = runs_of(events)
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


@settings(max_examples=200, deadline=None)
@given(st.lists(event_strategy, max_size=30))
def test_any_sequence_of_events_comes_back_as_it_went(events: list[Event]) -> None:
    msg = roundtrip(events)
    assert msg.count == len(events)
    assert delivered(msg) == events
    for skip in range(len(events) + 1):
        rest: list[Event | str] = []
        left = skip
        for run in msg.runs:
            if left >= run.size:
                left -= run.size
                continue
            part = run.tail(left) if left else run
            left = 0
            rest += delivered(Events((part,)))
        assert rest == events[skip:]
