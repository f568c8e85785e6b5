"""Variety engineering core: buckets, compression, AIMD, pressure, stats.

Every test drives time by hand through ``now``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from varietytest import GEN, S1, A, T, admits, channel_stats, ev, unique

from node.core.events import Channel
from node.core.variety import (
    DEFAULT_QUOTAS,
    PRESSURE_HIGH,
    PRESSURE_MODERATE,
    VarietyManager,
    Verdict,
    pressure_level,
)
from node.errors import ConfigError

# --- configuration ---------------------------------------------------------------


def test_defaults() -> None:
    vm = VarietyManager()
    assert vm.effective_quotas() == dict(DEFAULT_QUOTAS)
    assert vm.effective_quotas()[Channel.S5_POLICY] == 50
    assert vm.effective_quotas()[Channel.ALGEDONIC] is None
    stats = vm.stats()
    assert list(stats) == [c.value for c in Channel]
    assert stats["s1_operational"]["capacity"] == 1000  # one second of quota
    assert stats["algedonic"]["capacity"] is None


def test_quotas_by_name_or_channel_others_keep_defaults() -> None:
    vm = VarietyManager({"s5_policy": 5, Channel.GENERAL: 2.5, "s1_operational": None})
    q = vm.effective_quotas()
    assert q[Channel.S5_POLICY] == 5
    assert q[GEN] == 2.5
    assert q[S1] is None
    assert q[Channel.S3_CONTROL] == 200


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quotas": {"s9_nonsense": 1}}, "unknown channel 's9_nonsense'"),
        ({"quotas": {"s1_operational": -1}}, "quotas.s1_operational must be a number >= 0"),
        ({"quotas": {"s1_operational": math.inf}}, "None or 'unlimited' for no limit"),
        ({"quotas": {"s1_operational": math.nan}}, "quotas.s1_operational must be"),
        ({"quotas": {"s1_operational": True}}, "must be a number"),
        ({"quotas": {"s1_operational": "10"}}, "must be a number"),
        ({"quotas": {"algedonic": 10}}, "algedonic bypasses every limit"),
        ({"quotas": {"general": 1, Channel.GENERAL: 2}}, "twice"),
        ({"capacities": {"general": 0.5}}, "capacities.general must be >= 1"),
        ({"capacities": {"algedonic": 5}}, "algedonic bypasses every limit"),
        ({"capacities": {"nope": 5}}, "unknown channel 'nope'"),
        ({"window_s": 0}, "window_s must be > 0"),
        ({"max_signatures": 0}, "max_signatures must be an int >= 1"),
        ({"max_recorded": 1.5}, "max_recorded must be an int >= 1"),
        ({"pressure_tau_s": -1}, "pressure_tau_s"),
        ({"aimd_high": 1.5}, "aimd_high must be in [0, 1]"),
        ({"aimd_low": 0.9, "aimd_high": 0.8}, "must not exceed aimd_high"),
        ({"aimd_decrease": 0}, "aimd_decrease must be > 0"),
        ({"adaptive_channels": ["algedonic"]}, "cannot be adaptive"),
        ({"adaptive_channels": ["bogus"]}, "unknown channel"),
    ],
)
def test_bad_config_raises_config_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        VarietyManager(**kwargs)


# --- token buckets ---------------------------------------------------------------


def test_quota_two_per_second_refills_continuously() -> None:
    vm = VarietyManager({"s1_operational": 2})
    assert admits(vm, 0.0) == 2  # burst: one second of quota
    assert admits(vm, 0.25) == 0  # half a token
    assert admits(vm, 0.5) == 1
    assert admits(vm, 0.5) == 0
    assert admits(vm, 0.75) == 0
    assert admits(vm, 1.0) == 1
    assert admits(vm, 11.0) == 2  # idle: capped at capacity, not 20


def test_fractional_quota() -> None:
    vm = VarietyManager({"s1_operational": 0.5})
    assert channel_stats(vm)["capacity"] == 1  # at least one token
    assert admits(vm, 0.0) == 1
    assert admits(vm, 1.0) == 0
    assert admits(vm, 2.0) == 1
    assert admits(vm, 3.9) == 0
    assert admits(vm, 4.0) == 1


def test_small_quota_has_no_float_drift() -> None:
    # 0.1/s polled every 100 ms: the token must be whole exactly at t = 10.
    vm = VarietyManager({"s1_operational": 0.1})
    got = [i for i in range(0, 201) if vm.admit(unique(i), i / 10) is A]
    assert got == [0, 100, 200]


def test_refill_is_continuous_not_ticked() -> None:
    vm = VarietyManager({"s1_operational": 10}, capacities={"s1_operational": 1})
    assert admits(vm, 0.0) == 1
    assert admits(vm, 0.05) == 0
    assert admits(vm, 0.1) == 1
    assert admits(vm, 0.13) == 0
    assert admits(vm, 0.2) == 1
    assert admits(vm, 0.35) == 1  # 1.5 tokens earned, but capacity is 1
    assert admits(vm, 0.4) == 0
    assert admits(vm, 0.45) == 1


def test_burst_capacity() -> None:
    vm = VarietyManager({"s1_operational": 10}, capacities={"s1_operational": 5})
    assert admits(vm, 0.0) == 5
    assert admits(vm, 100.0) == 5  # never more than capacity after idling
    assert channel_stats(vm)["capacity"] == 5
    big = VarietyManager({"s5_policy": 50})
    assert admits(big, 0.0, 200, make=lambda i: ev("policy_update", {f"k{i}": 1})) == 50


def test_time_going_backwards_earns_nothing() -> None:
    vm = VarietyManager({"s1_operational": 1})
    assert admits(vm, 10.0) == 1
    assert admits(vm, 5.0) == 0
    assert admits(vm, 10.5) == 0
    assert admits(vm, 11.0) == 1


def test_quota_zero_passes_nothing_and_compresses_nothing() -> None:
    vm = VarietyManager({"s1_operational": 0})
    same = [ev(data={"task": "x", "ms": i}) for i in range(20)]
    assert {vm.admit(e, 0.0) for e in same} == {T}
    assert admits(vm, 1_000.0) == 0
    assert vm.flush(1_001.0) == []
    s = channel_stats(vm)
    assert (s["offered"], s["admitted"], s["compressed"], s["throttled"]) == (70, 0, 0, 70)
    assert vm.pressure(1_001.0)[S1] == 1.0
    vm.set_system_pressure(1.0, 0.0)  # nothing for AIMD to cut
    assert vm.effective_quotas()[S1] == 0


def test_unlimited_channel() -> None:
    vm = VarietyManager({"s1_operational": None})
    assert admits(vm, 0.0, 5_000) == 5_000
    assert vm.pressure(0.0)[S1] == 0.0
    assert channel_stats(vm)["effective_quota"] is None


def test_algedonic_bypasses_everything() -> None:
    closed = dict.fromkeys((c for c in Channel if c is not Channel.ALGEDONIC), 0)
    vm = VarietyManager(closed)
    vm.set_system_pressure(1.0, 0.0)
    pains = [ev("algedonic_pain", {"level": 9}) for _ in range(10_000)]
    assert {vm.admit(e, 0.0) for e in pains} == {A}
    assert vm.admit(ev("task_execution"), 0.0) is T
    s = vm.stats()["algedonic"]
    assert (s["offered"], s["admitted"], s["quota"], s["effective_quota"]) == (
        10_000,
        10_000,
        None,
        None,
    )
    assert vm.pressure(0.0)[Channel.ALGEDONIC] == 0.0
    assert vm.flush(1.0) == []


def test_unknown_channel_falls_into_general() -> None:
    vm = VarietyManager({"general": 1})
    assert vm.admit(ev("weird", channel="no_such_channel"), 0.0) is A
    assert vm.admit(ev("weird", channel=None), 0.0) is not A  # general's bucket is empty
    assert vm.admit(ev("weird", channel=42), 0.0) is not A
    assert channel_stats(vm, GEN)["offered"] == 3
    # A channel given by name is that channel.
    assert vm.admit(ev("policy_update", channel="s5_policy"), 0.0) is A
    assert vm.stats()["s5_policy"]["admitted"] == 1


# --- adaptive quotas (AIMD) -------------------------------------------------------


def test_aimd_cut_at_most_once_per_second_down_to_floor() -> None:
    vm = VarietyManager()
    vm.set_system_pressure(0.9, 0.0)
    q = vm.effective_quotas()
    assert (q[S1], q[GEN]) == (500, 50)
    # S2-S5 are not cut, algedonic is never limited.
    assert [q[c] for c in Channel][:5] == [None, 50, 100, 200, 500]
    vm.set_system_pressure(0.95, 0.5)
    assert vm.effective_quotas()[S1] == 500  # not twice within a second
    trail = []
    for t in (1.0, 2.0, 3.0, 4.0):
        vm.set_system_pressure(1.0, t)
        trail.append(vm.effective_quotas()[S1])
    assert trail == [250, 125, 100, 100]  # floor: 10% of base
    assert vm.effective_quotas()[GEN] == 10
    assert channel_stats(vm)["effective_quota"] == 100
    assert channel_stats(vm)["quota"] == 1000


def test_aimd_threshold_is_strictly_above_high() -> None:
    vm = VarietyManager()
    vm.set_system_pressure(0.8, 0.0)
    assert vm.effective_quotas()[S1] == 1000


def test_aimd_recovers_ten_percent_of_base_per_second() -> None:
    vm = VarietyManager()
    for t in range(4):
        vm.set_system_pressure(0.9, float(t))
    assert vm.effective_quotas()[S1] == 100
    vm.set_system_pressure(0.3, 4.0)
    assert vm.effective_quotas()[S1] == pytest.approx(200)
    vm.set_system_pressure(0.3, 4.5)
    assert vm.effective_quotas()[S1] == pytest.approx(250)
    vm.set_system_pressure(0.6, 5.5)  # between thresholds: hold
    assert vm.effective_quotas()[S1] == pytest.approx(250)
    vm.set_system_pressure(0.3, 6.5)
    assert vm.effective_quotas()[S1] == pytest.approx(350)
    assert vm.effective_quotas()[GEN] == pytest.approx(35)
    vm.set_system_pressure(0.0, 100.0)
    assert vm.effective_quotas()[S1] == 1000  # never above base


def test_aimd_changes_the_bucket_and_keeps_tokens_earned_before() -> None:
    vm = VarietyManager({"general": 10}, capacities={"general": 20})
    make = lambda i: ev("custom", {f"k{i}": 1})  # noqa: E731
    assert admits(vm, 0.0, 50, make=make) == 20
    vm.set_system_pressure(0.9, 0.5)  # 5 tokens earned at 10/s before the cut
    assert channel_stats(vm, GEN)["capacity"] == 10  # burst scales with the quota
    assert admits(vm, 1.0, 50, make=make) == 7  # 5 + 0.5 s at 5/s
    assert admits(vm, 100.0, 50, make=make) == 10


def test_system_pressure_is_clipped_and_nan_rejected() -> None:
    vm = VarietyManager()
    vm.set_system_pressure(7.0, 0.0)
    assert vm.system_pressure == 1.0
    assert vm.effective_quotas()[S1] == 500
    vm.set_system_pressure(-3.0, 1.0)
    assert vm.system_pressure == 0.0
    with pytest.raises(ConfigError, match="nan"):
        vm.set_system_pressure(math.nan, 2.0)


def test_adaptive_channels_configurable() -> None:
    vm = VarietyManager(adaptive_channels=["s4_intelligence"])
    vm.set_system_pressure(1.0, 0.0)
    q = vm.effective_quotas()
    assert (q[Channel.S4_INTELLIGENCE], q[S1], q[GEN]) == (50, 1000, 100)


# --- pressure ---------------------------------------------------------------------


def test_pressure_is_smoothed_demand_over_effective_quota() -> None:
    vm = VarietyManager({"s1_operational": 100}, pressure_tau_s=2.0)
    for i in range(40):
        vm.admit(unique(i), 0.0)
    # 40 events at once: demand 40 / tau = 20 events/s.
    assert vm.pressure(0.0)[S1] == pytest.approx(0.2)
    assert vm.pressure(2.0)[S1] == pytest.approx(0.2 / math.e)
    assert vm.pressure(2.0)[GEN] == 0.0
    vm.set_system_pressure(0.9, 2.0)  # same demand, half the quota
    assert vm.pressure(2.0)[S1] == pytest.approx(0.4 / math.e)


@pytest.mark.parametrize(("rate", "level"), [(30, "healthy"), (65, "moderate"), (95, "high")])
def test_steady_demand_converges_to_rate_over_quota(rate: int, level: str) -> None:
    vm = VarietyManager({"general": 100}, pressure_tau_s=1.0)
    now = 0.0
    for i in range(rate * 20):
        now = i / rate
        vm.admit(ev("custom", {f"k{i % 7}": 1}), now)
    p = vm.pressure(now)[GEN]
    assert p == pytest.approx(rate / 100, abs=0.01)
    assert pressure_level(p) == level
    assert vm.overall_pressure(now) == p


def test_pressure_counts_throttled_demand_and_clips_at_one() -> None:
    vm = VarietyManager({"general": 1}, pressure_tau_s=1.0)
    for i in range(500):
        vm.admit(ev("custom", {f"k{i}": 1}), i / 100)  # 100/s against a quota of 1
    assert vm.pressure(5.0)[GEN] == 1.0
    assert vm.overall_pressure(5.0) == 1.0
    assert channel_stats(vm, GEN)["throttled"] > 400


def test_overall_pressure_is_the_most_pressed_channel() -> None:
    vm = VarietyManager({"general": 10, "s5_policy": 10}, pressure_tau_s=1.0)
    assert vm.overall_pressure(0.0) == 0.0
    for _ in range(6):
        vm.admit(ev("custom"), 0.0)
    vm.admit(ev("policy_update"), 0.0)
    p = vm.pressure(0.0)
    assert p[GEN] == pytest.approx(0.6)
    assert p[Channel.S5_POLICY] == pytest.approx(0.1)
    assert vm.overall_pressure(0.0) == pytest.approx(0.6)


def test_pressure_levels() -> None:
    assert (PRESSURE_MODERATE, PRESSURE_HIGH) == (0.5, 0.8)
    assert pressure_level(0.0) == "healthy"
    assert pressure_level(0.499) == "healthy"
    assert pressure_level(0.5) == "moderate"
    assert pressure_level(0.8) == "moderate"
    assert pressure_level(0.801) == "high"
    assert pressure_level(1.0) == "high"


# --- stats ------------------------------------------------------------------------


def test_stats_are_plain_json() -> None:
    vm = VarietyManager({"s1_operational": 1})
    for i in range(5):
        vm.admit(ev(data={"v": i}), 0.0)
    vm.admit(unique(1), 0.0)
    s = channel_stats(vm)
    assert s == {
        "quota": 1.0,
        "effective_quota": 1.0,
        "capacity": 1.0,
        "offered": 6,
        "admitted": 1,
        "compressed": 4,
        "throttled": 1,
        "throttled_overflow": 0,
        "aggregates": 0,
        "pending": 4,
        "signatures": 2,
        "compression_ratio": 0.0,
    }
    vm.flush(1.0)
    assert channel_stats(vm)["compression_ratio"] == 4.0
    assert json.loads(json.dumps(vm.stats())) == vm.stats()


# --- properties -------------------------------------------------------------------

_TYPES = ["task_execution", "policy_update", "custom", "algedonic_pain", "synchronization"]
_SHAPES: list[dict[str, Any]] = [
    {"a": 1},
    {"a": "x", "b": 2.5},
    {"n": {"x": 1}},
    {"n": {"y": True}},
    {},
]
_step = st.one_of(
    st.tuples(
        st.just("admit"),
        st.sampled_from(_TYPES),
        st.sampled_from(["a", "b"]),
        st.integers(0, len(_SHAPES) - 1),
        st.floats(0, 0.5),
    ),
    st.tuples(st.just("flush"), st.floats(0, 2)),
    st.tuples(st.just("pressure"), st.floats(0, 1), st.floats(0, 2)),
)
_quota = st.one_of(st.none(), st.just(0), st.floats(0.1, 5), st.integers(1, 20))


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([c for c in Channel if c is not Channel.ALGEDONIC]), _quota, max_size=6
    ),
    st.integers(1, 4),
    st.lists(_step, max_size=120),
)
def test_every_offered_event_is_counted_once(
    quotas: dict[Channel, float | None], max_signatures: int, steps: list[tuple[Any, ...]]
) -> None:
    vm = VarietyManager(quotas, max_signatures=max_signatures)
    now = 0.0
    verdicts = {c: dict.fromkeys(Verdict, 0) for c in Channel}
    folded = dict.fromkeys(Channel, 0)
    for step in steps:
        if step[0] == "admit":
            _, etype, source, shape, dt = step
            now += dt
            event = ev(etype, _SHAPES[shape], source=source)
            verdicts[event.channel][vm.admit(event, now)] += 1
        elif step[0] == "flush":
            now += step[1]
            for agg in vm.flush(now):
                folded[agg.channel] += agg.data["count"]
        else:
            now += step[2]
            vm.set_system_pressure(step[1], now)
        for p in vm.pressure(now).values():
            assert 0.0 <= p <= 1.0
    for agg in vm.flush(now + 1):
        folded[agg.channel] += agg.data["count"]
    for channel, s in vm.stats().items():
        c = Channel(channel)
        assert s["offered"] == s["admitted"] + s["compressed"] + s["throttled"]
        assert (s["admitted"], s["compressed"], s["throttled"]) == tuple(verdicts[c].values())
        assert s["compressed"] == folded[c]  # every folded event comes out in an aggregate
        assert s["pending"] == 0
        assert s["throttled_overflow"] <= s["throttled"]
    assert vm.stats()["algedonic"]["admitted"] == vm.stats()["algedonic"]["offered"]


@settings(max_examples=100, deadline=None)
@given(
    st.floats(0.1, 50),
    st.integers(1, 10),
    st.lists(st.tuples(st.floats(0, 1), st.integers(1, 20)), min_size=1, max_size=60),
)
def test_admitted_never_exceeds_capacity_plus_quota_times_time(
    quota: float, capacity: int, bursts: list[tuple[float, int]]
) -> None:
    vm = VarietyManager({"general": quota}, capacities={"general": capacity})
    now = 0.0
    admitted = 0
    for dt, n in bursts:
        now += dt
        admitted += admits(vm, now, n, make=lambda i: ev("custom", {f"k{i}": 1}))
        assert admitted <= capacity + quota * now + 1e-6


def test_admit_by_reads_the_clock_only_for_a_limited_lane() -> None:
    vm = VarietyManager(quotas={"s1_operational": None, "s3_control": 2})
    reads: list[int] = []

    def clock() -> float:
        reads.append(1)
        return 10.0

    for i in range(5):
        assert vm.admit_by(unique(i), clock) is Verdict.ADMIT  # S1: unlimited
    assert reads == []
    assert channel_stats(vm)["offered"] == 5 and channel_stats(vm)["admitted"] == 5
    limited = [ev(type="resource_allocation", data={f"k{i}": i}) for i in range(4)]
    verdicts = [vm.admit_by(e, clock) for e in limited]
    assert len(reads) == 4  # once per event of the limited lane
    assert verdicts[:2] == [Verdict.ADMIT, Verdict.ADMIT]  # a bucket of 2
    assert Verdict.ADMIT not in verdicts[2:]


def test_admit_many_gives_the_verdicts_admit_gives_one_by_one() -> None:
    burst = [unique(i) for i in range(40)] + [ev("status_update", channel=GEN)]
    one, many = VarietyManager({"s1_operational": 10}), VarietyManager({"s1_operational": 10})
    verdicts = [one.admit(e, 5.0) for e in burst]
    admitted, compressed, throttled = many.admit_many(burst, None, 5.0)
    assert admitted == [e for e, v in zip(burst, verdicts, strict=True) if v is Verdict.ADMIT]
    assert compressed == verdicts.count(Verdict.COMPRESS)
    assert throttled == verdicts.count(Verdict.THROTTLE)
    assert 0 < len(admitted) < len(burst)
    assert one.stats() == many.stats()
    # one channel without a limit: all admitted at once, counted the same
    free = VarietyManager({"s1_operational": None})
    flood = [unique(i) for i in range(1000)]
    assert free.admit_many(flood, S1, 5.0) == (flood, 0, 0)
    assert free.stats()["s1_operational"]["admitted"] == 1000
    assert free.stats()["s1_operational"]["offered"] == 1000
