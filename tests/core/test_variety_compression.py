"""Variety engineering core: semantic compression (aggregates, signatures, windows).

Every test drives time by hand through ``now``.
"""

from __future__ import annotations

import enum
import math
from typing import Any

import msgpack
import pytest
from varietytest import GEN, S1, A, C, T, channel_stats, ev, unique

from node.core.events import Channel, Event
from node.core.hlc import Timestamp
from node.core.variety import VarietyManager

# --- semantic compression ---------------------------------------------------------


def test_lone_over_quota_event_is_throttled_and_becomes_company() -> None:
    vm = VarietyManager({"s1_operational": 1})
    assert vm.admit(unique(0), 0.0) is A
    first = ev("status_update", {"cpu": 1})
    assert vm.admit(first, 0.0) is T  # nothing like it yet this window
    assert vm.admit(ev("status_update", {"cpu": 2}), 0.0) is C
    assert vm.admit(ev("status_update", {"cpu": 3}), 0.0) is C
    [agg] = vm.flush(1.0)
    assert agg.data["count"] == 2  # the folded ones only; the throttled one is counted apart
    s = channel_stats(vm)
    assert (s["admitted"], s["compressed"], s["throttled"], s["aggregates"]) == (1, 2, 1, 1)


def test_admitted_event_is_company_for_over_quota_ones() -> None:
    vm = VarietyManager({"s1_operational": 1})
    assert vm.admit(ev(data={"task": "a", "ms": 1}), 0.0) is A
    assert vm.admit(ev(data={"task": "b", "ms": 2}), 0.0) is C  # same signature as the admitted


def test_company_is_per_window() -> None:
    vm = VarietyManager({"s1_operational": 1})
    assert vm.admit(ev(data={"x": 1}), 0.0) is A
    assert vm.admit(ev(data={"x": 2}), 0.0) is C
    assert len(vm.flush(1.0)) == 1
    assert vm.admit(unique(1), 1.0) is A  # spends the new token
    assert vm.admit(ev(data={"x": 3}), 1.0) is T  # last window's company is gone
    assert vm.admit(ev(data={"x": 4}), 1.0) is C


def test_window_flush_aggregate_contents() -> None:
    vm = VarietyManager({"s1_operational": 1})
    assert vm.admit(ev(data={"task": "a", "ms": 0, "ok": True, "inner": {"x": 0}}), 0.0) is A
    folded = [
        ev(data={"task": "b", "ms": 10, "ok": True, "inner": {"x": 1.5, "y": "s"}}, hops=1),
        ev(data={"task": "c", "ms": 30, "ok": False, "inner": {"x": -2.5, "y": "t"}}, hops=3),
        ev(data={"task": "d", "ms": 20, "ok": True, "inner": {"x": 4.0, "y": "u"}}),
    ]
    # The admitted one has a different nested key set: it is not their company.
    assert [vm.admit(e, 0.2) for e in folded] == [T, C, C]
    assert vm.flush_due(0.5) is False
    assert vm.flush_due(1.2) is True
    [agg] = vm.flush(1.2)
    assert agg.compressed is True
    assert (agg.type, agg.channel, agg.source) == ("task_execution", S1, "a")
    assert agg.hlc == folded[2].hlc  # the latest folded HLC
    assert agg.hops == 3  # the most travelled, so relaying limits still hold
    assert agg.data == {
        "count": 2,
        "first_hlc": folded[1].hlc.to_wire(),
        "last_hlc": folded[2].hlc.to_wire(),
        "sample": folded[1].data,
        "stats": {
            "ms": {"min": 20, "max": 30, "mean": 25.0},
            "inner.x": {"min": -2.5, "max": 4.0, "mean": 0.75},
        },  # bools and strings are not numeric fields
    }
    assert vm.flush(2.5) == []
    s = channel_stats(vm)
    assert (s["aggregates"], s["pending"], s["compression_ratio"]) == (1, 0, 2.0)


def test_aggregate_is_msgpack_able_and_a_valid_wire_event() -> None:
    vm = VarietyManager({"s1_operational": 1})
    vm.admit(ev(data={"n": 1, "deep": {"a": {"b": 2}}}), 0.0)
    vm.admit(ev(data={"n": 2, "deep": {"a": {"b": 3}}}), 0.0)
    [agg] = vm.flush(1.0)
    assert agg.data["stats"]["deep.a.b"] == {"min": 3, "max": 3, "mean": 3.0}
    raw = msgpack.unpackb(msgpack.packb(agg.to_wire()))
    back = Event.from_wire(raw)
    assert back.compressed is True
    assert back.data["first_hlc"] == agg.hlc.to_wire()


def test_aggregate_hlc_bounds_are_min_and_max_not_arrival_order() -> None:
    vm = VarietyManager({"s1_operational": 1})
    vm.admit(ev(data={"v": 0}), 0.0)
    stamps = [
        Timestamp(50, 0, "a"),
        Timestamp(10, 5, "a"),
        Timestamp(90, 1, "a"),
        Timestamp(10, 5, "b"),
    ]
    for h in stamps:
        assert vm.admit(ev(data={"v": 1}, hlc=h), 0.0) is C
    [agg] = vm.flush(1.0)
    assert agg.data["first_hlc"] == [10, 5, "a"]
    assert agg.data["last_hlc"] == [90, 1, "a"]
    assert agg.hlc == Timestamp(90, 1, "a")


def test_stamp_callable_gives_aggregates_fresh_timestamps() -> None:
    fresh = Timestamp(99_999, 0, "relay")
    vm = VarietyManager({"s1_operational": 1}, stamp=lambda: fresh)
    vm.admit(ev(), 0.0)
    vm.admit(ev(), 0.0)
    [agg] = vm.flush(1.0)
    assert agg.hlc == fresh
    assert agg.data["last_hlc"] != fresh.to_wire()


def test_numeric_stats_skip_nan_and_bools_and_handle_missing_fields() -> None:
    vm = VarietyManager({"s1_operational": 1})
    vm.admit(ev(data={"v": 1, "f": True}), 0.0)
    for v in (math.nan, 4, 2.0, "n/a"):
        vm.admit(ev(data={"v": v, "f": False}), 0.0)
    [agg] = vm.flush(1.0)
    assert agg.data["count"] == 4
    assert agg.data["stats"] == {"v": {"min": 2.0, "max": 4, "mean": 3.0}}


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 5


def test_exotic_values_take_the_general_walk_to_the_same_signature() -> None:
    vm = VarietyManager({"s1_operational": 1})
    assert vm.admit(ev(data={"level": Level.LOW, "n": 1}), 0.0) is A
    assert vm.admit(ev(data={"level": Level.HIGH, "n": 2}), 0.0) is C
    assert vm.admit(ev(data={"level": 3, "n": 3}), 0.0) is C  # plain ints: the fast path
    [agg] = vm.flush(1.0)
    assert agg.data["stats"] == {
        "level": {"min": 3, "max": 5, "mean": 4.0},
        "n": {"min": 2, "max": 3, "mean": 2.5},
    }


def test_flush_orders_aggregates_by_channel_priority() -> None:
    vm = VarietyManager({"general": 1, "s5_policy": 1, "s1_operational": 1})
    for etype in ("custom", "task_execution", "policy_update"):
        for _ in range(3):
            vm.admit(ev(etype), 0.0)
    out = vm.flush(1.0)
    assert [a.channel for a in out] == [Channel.S5_POLICY, S1, GEN]
    assert all(a.data["count"] == 2 for a in out)


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ({"a": 1, "b": "x"}, {"a": 2, "b": "y"}, True),  # values do not matter
        ({"a": 1, "b": "x"}, {"b": "y", "a": 2}, True),  # nor key order
        ({"l": [1]}, {"l": [1, 2, {"z": 3}]}, True),  # lists are values
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": 1}, {"a": {"b": 1}}, False),  # a map is structure
        ({"a": {"b": 1}}, {"a": {"c": 1}}, False),  # nested keys count
        ({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": "x"}}}, True),
        ({}, {}, True),
    ],
)
def test_signature_is_key_structure_not_values(
    first: dict[str, Any], second: dict[str, Any], same: bool
) -> None:
    vm = VarietyManager({"s1_operational": 1})
    vm.admit(unique(-1), 0.0)
    vm.admit(ev(data=first), 0.0)  # lone: throttled, now company
    assert vm.admit(ev(data=second), 0.0) is (C if same else T)


@pytest.mark.parametrize(
    "other",
    [
        ev("status_update"),  # another type
        ev(source="b"),  # another source
        ev(channel=Channel.S2_COORDINATION),  # another channel
    ],
)
def test_signature_includes_type_source_and_channel(other: Event) -> None:
    vm = VarietyManager({"s1_operational": 1, "s2_coordination": 1})
    vm.admit(unique(-1), 0.0)
    vm.admit(ev(channel=Channel.S2_COORDINATION, data={"z": 0}), 0.0)
    assert vm.admit(ev(), 0.0) is T
    assert vm.admit(other, 0.0) is T


def test_signature_bound() -> None:
    vm = VarietyManager({"s1_operational": 1}, max_signatures=3)
    assert vm.admit(unique(0), 0.0) is A  # takes one slot when the channel goes over quota
    assert [vm.admit(unique(i), 0.0) for i in (1, 2, 3, 4)] == [T, T, T, T]
    s = channel_stats(vm)
    assert (s["signatures"], s["throttled"], s["throttled_overflow"]) == (3, 4, 2)
    assert vm.admit(unique(1), 0.0) is C  # a live signature still folds
    assert vm.admit(unique(3), 0.0) is T  # an overflowed one never gets a slot
    assert channel_stats(vm)["throttled_overflow"] == 3
    [agg] = vm.flush(1.0)
    assert agg.data["count"] == 1
    assert channel_stats(vm)["signatures"] == 0  # the bound is per window


def test_admitted_events_recorded_beyond_limit_are_still_company() -> None:
    vm = VarietyManager({"s1_operational": 100}, max_recorded=4)
    for i in range(10):
        assert vm.admit(unique(i), 0.0) is A
    assert channel_stats(vm)["signatures"] == 10
    for _ in range(90):
        vm.admit(unique(99), 0.0)
    assert vm.admit(unique(7), 0.0) is C
