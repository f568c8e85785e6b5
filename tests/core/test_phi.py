"""Phi accrual detector, after Akka's AccrualFailureDetectorSpec."""

from __future__ import annotations

import math
from itertools import accumulate, pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.core.phi import MAX_PHI, PhiAccrualDetector, phi
from node.errors import ConfigError


def cdf(value: float) -> float:
    return 1.0 - math.pow(10.0, -value)


def akka_detector(**overrides: float) -> PhiAccrualDetector:
    """The defaults of Akka's spec: no acceptable pause, 100 ms minimum std."""
    settings: dict[str, float] = {
        "threshold": 8.0,
        "min_std_deviation_ms": 100.0,
        "acceptable_heartbeat_pause_ms": 0.0,
        "first_heartbeat_estimate_ms": 1000.0,
    }
    settings.update(overrides)
    return PhiAccrualDetector(**settings)  # type: ignore[arg-type]


def beats(*intervals: float) -> list[float]:
    """Absolute times from intervals, starting at the first one."""
    return list(accumulate(intervals))


# --- the function ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "mean", "std", "expected_cdf"),
    [
        (0, 0, 10, 0.5),
        (6, 0, 10, 0.7257),
        (15, 0, 10, 0.9332),
        (20, 0, 10, 0.97725),
        (25, 0, 10, 0.99379),
        (35, 0, 10, 0.99977),
        (40, 0, 10, 0.99997),
        (22, 20.0, 3, 0.7475),
    ],
)
def test_cdf_is_good_enough(elapsed: float, mean: float, std: float, expected_cdf: float) -> None:
    assert cdf(phi(elapsed, mean, std)) == pytest.approx(expected_cdf, abs=0.001)


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(0, 0.0), (500, 0.1), (1000, 0.3), (1200, 1.6), (1400, 4.7), (1600, 10.8), (1700, 15.3)],
)
def test_realistic_values(elapsed: float, expected: float) -> None:
    assert phi(elapsed, 1000.0, 100.0) == pytest.approx(expected, abs=0.1)


def test_exact_value_at_the_mean_is_log10_2() -> None:
    assert phi(1000.0, 1000.0, 250.0) == pytest.approx(math.log10(2.0), abs=1e-12)


def test_monotonic_in_elapsed() -> None:
    values = [phi(x, 0, 10) for x in range(41)]
    assert all(a < b for a, b in pairwise(values))


def test_larger_std_means_lower_phi() -> None:
    assert phi(1100, 1000.0, 500.0) < phi(1100, 1000.0, 100.0)


def test_outliers_are_finite_and_raise_nothing() -> None:
    assert phi(10, 0, 1) == pytest.approx(38.0, abs=1.0)
    assert phi(-25, 0, 1) == 0.0
    # Where math.exp would overflow (z < -709) or underflow to 0 (z > 745).
    assert phi(-1e6, 0, 1) == 0.0
    assert phi(1e6, 0, 1) == MAX_PHI
    assert phi(math.inf, 0, 1) == MAX_PHI
    assert phi(0, math.inf, 1) == 0.0
    assert phi(1e308, -1e308, 1e-300) == MAX_PHI


def test_far_tail_grows_until_the_cap() -> None:
    # About 9 std past the mean, phi is ~26; ~32 std past it, the cap.
    values = [phi(float(y), 0.0, 1.0) for y in range(0, 45)]
    assert all(a <= b for a, b in pairwise(values))
    assert all(math.isfinite(v) for v in values)
    assert values[-1] == MAX_PHI
    assert values[20] < MAX_PHI


@given(
    st.floats(allow_nan=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-6, max_value=1e9),
)
def test_any_input_gives_a_value_in_range(elapsed: float, mean: float, std: float) -> None:
    value = phi(elapsed, mean, std)
    assert 0.0 <= value <= MAX_PHI


@given(
    st.floats(min_value=-1e7, max_value=1e7),
    st.floats(min_value=-1e7, max_value=1e7),
    st.floats(min_value=1.0, max_value=1e4),
)
def test_monotonic_everywhere(a: float, b: float, std: float) -> None:
    lo, hi = sorted((a, b))
    assert phi(lo, 0.0, std) <= phi(hi, 0.0, std)


@pytest.mark.parametrize("std", [0.0, -1.0, math.inf, math.nan])
def test_bad_std_is_rejected(std: float) -> None:
    with pytest.raises(ConfigError, match="std_ms"):
        phi(1.0, 0.0, std)


def test_undefined_inputs_are_rejected() -> None:
    with pytest.raises(ConfigError, match="undefined"):
        phi(math.inf, math.inf, 1.0)
    with pytest.raises(ConfigError, match="undefined"):
        phi(math.nan, 0.0, 1.0)


# --- the detector ------------------------------------------------------------------


def test_phi_is_zero_before_any_heartbeat() -> None:
    fd = akka_detector()
    assert fd.phi(0.0) == 0.0
    assert fd.phi(1e9) == 0.0
    assert fd.is_available(1e9)
    assert not fd.is_monitoring
    assert fd.last_heartbeat_ms is None


def test_history_is_seeded_from_the_first_heartbeat_estimate() -> None:
    fd = akka_detector(first_heartbeat_estimate_ms=1000.0, min_std_deviation_ms=1.0)
    assert fd.intervals() == [750.0, 1250.0]
    assert fd.mean_ms == 1000.0
    assert fd.std_ms == 250.0


def test_phi_based_on_guess_after_one_heartbeat() -> None:
    fd = akka_detector()
    fd.heartbeat(0.0)
    assert fd.is_monitoring
    assert fd.last_heartbeat_ms == 0.0
    assert fd.phi(1000.0) == pytest.approx(0.3, abs=0.2)
    assert fd.phi(2000.0) == pytest.approx(4.5, abs=0.3)
    assert fd.phi(3000.0) > 15.0


def test_phi_positive_using_first_interval_after_second_heartbeat() -> None:
    fd = akka_detector()
    fd.heartbeat(0.0)
    assert fd.phi(100.0) > 0.0
    fd.heartbeat(200.0)
    assert fd.phi(300.0) > 0.0


def test_phi_increases_with_elapsed_time() -> None:
    fd = akka_detector()
    for t in range(0, 10_000, 1000):
        fd.heartbeat(float(t))
    values = [fd.phi(9000.0 + dt) for dt in range(0, 3000, 100)]  # below the cap
    assert all(a < b for a, b in pairwise(values))


def test_available_after_a_series_of_heartbeats() -> None:
    fd = akka_detector()
    for t in beats(0, 1000, 100, 100):
        fd.heartbeat(t)
    assert fd.is_available(1300.0)


def test_dead_when_heartbeats_are_missed() -> None:
    fd = akka_detector(threshold=3.0)
    for t in beats(0, 1000, 100):
        fd.heartbeat(t)
    assert fd.is_available(1200.0)
    assert not fd.is_available(8200.0)


def test_is_available_flips_exactly_where_phi_crosses_the_threshold() -> None:
    fd = akka_detector(threshold=8.0, min_std_deviation_ms=100.0)
    for t in range(0, 100_001, 1000):
        fd.heartbeat(float(t))
    last = 100_000.0
    # Bisect for the crossing; is_available must agree with phi on both sides.
    lo, hi = last, last + 10_000.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if fd.phi(mid) < 8.0:
            lo = mid
        else:
            hi = mid
    assert fd.is_available(lo)
    assert not fd.is_available(hi)
    assert fd.phi(lo) < 8.0 <= fd.phi(hi)
    # Regular 1 s beats: mean ~1000, std floored at 100 -> crossing ~1.5 s late.
    assert 1400.0 < lo - last < 1700.0


def test_available_again_after_heartbeats_resume() -> None:
    fd = akka_detector(acceptable_heartbeat_pause_ms=3000.0)
    times = beats(0, *([1000] * 999), 5 * 60 * 1000, 100, 900, 100, 7000, 100, 900, 100, 900)
    ticks = iter(times)
    for _ in range(1000):
        fd.heartbeat(next(ticks))
    assert not fd.is_available(next(ticks))  # after the long pause
    fd.heartbeat(next(ticks))
    assert fd.is_available(next(ticks))
    fd.heartbeat(next(ticks))
    assert not fd.is_available(next(ticks))  # after the 7 s pause
    fd.heartbeat(next(ticks))
    assert fd.is_available(next(ticks))
    fd.heartbeat(next(ticks))
    assert fd.is_available(next(ticks))


def test_interval_ending_an_unavailable_period_is_not_recorded() -> None:
    fd = akka_detector(threshold=3.0)
    fd.heartbeat(0.0)
    fd.heartbeat(1000.0)
    before = fd.intervals()
    fd.heartbeat(60_000.0)
    assert fd.intervals() == before
    assert fd.last_heartbeat_ms == 60_000.0


def test_accepts_configured_missing_heartbeats() -> None:
    fd = akka_detector(acceptable_heartbeat_pause_ms=3000.0)
    ticks = iter(beats(0, 1000, 1000, 1000, 4000, 1000, 1000))
    for _ in range(4):
        fd.heartbeat(next(ticks))
    assert fd.is_available(next(ticks))
    fd.heartbeat(next(ticks))
    assert fd.is_available(next(ticks))


def test_fails_after_configured_acceptable_missing_heartbeats() -> None:
    fd = akka_detector(acceptable_heartbeat_pause_ms=3000.0)
    ticks = iter(beats(0, 1000, 1000, 1000, 1000, 1000, 500, 500, 5000))
    for _ in range(6):
        fd.heartbeat(next(ticks))
    assert fd.is_available(next(ticks))
    fd.heartbeat(next(ticks))
    assert not fd.is_available(next(ticks))


def test_acceptable_pause_is_added_to_the_mean() -> None:
    plain = akka_detector()
    paused = akka_detector(acceptable_heartbeat_pause_ms=3000.0)
    for fd in (plain, paused):
        fd.heartbeat(0.0)
    assert paused.phi(4000.0) == pytest.approx(plain.phi(1000.0))


def test_uses_max_sample_size_heartbeats() -> None:
    fd = akka_detector(max_sample_size=3)
    ticks = iter(beats(0, 100, 100, 100, 100, 600, 500, 500, 500, 500, 500))
    for _ in range(4):
        fd.heartbeat(next(ticks))
    phi1 = fd.phi(next(ticks))
    for _ in range(4):
        fd.heartbeat(next(ticks))
    phi2 = fd.phi(next(ticks))
    assert phi2 == pytest.approx(phi1, abs=0.001)
    assert fd.intervals() == [500.0, 500.0, 500.0]


def test_ring_keeps_only_the_last_max_sample_size_intervals() -> None:
    fd = akka_detector(max_sample_size=5, threshold=999.0)
    t = 0.0
    fd.heartbeat(t)
    for i in range(1, 13):
        t += 100.0 + i
        fd.heartbeat(t)
    assert fd.samples == 5
    assert fd.intervals() == [108.0, 109.0, 110.0, 111.0, 112.0]
    assert fd.mean_ms == pytest.approx(110.0)


@pytest.mark.parametrize(
    ("samples", "mean", "variance"),
    [
        ([100, 200, 125, 340, 130], 179.0, 7584.0),
        ([1000], 1000.0, 0.0),
    ],
)
def test_mean_and_variance(samples: list[float], mean: float, variance: float) -> None:
    fd = akka_detector(max_sample_size=len(samples), min_std_deviation_ms=1e-9, threshold=999.0)
    fd.heartbeat(0.0)
    t = 0.0
    for s in samples:
        t += s
        fd.heartbeat(t)
    assert fd.intervals() == [float(s) for s in samples]
    assert fd.mean_ms == pytest.approx(mean)
    assert fd.std_ms == pytest.approx(max(math.sqrt(variance), 1e-9))


def test_capped_by_max_sample_size_like_akka() -> None:
    fd = akka_detector(max_sample_size=3, min_std_deviation_ms=1e-9, threshold=999.0)
    t = 0.0
    fd.heartbeat(t)
    for interval, mean, variance in [
        (100, None, None),
        (110, None, None),
        (90, 100.0, 66.6666667),
        (140, 113.333333, 422.222222),
        (80, 103.333333, 688.88888889),
    ]:
        t += interval
        fd.heartbeat(t)
        if mean is not None:
            assert fd.mean_ms == pytest.approx(mean, abs=1e-5)
            assert fd.std_ms**2 == pytest.approx(variance, abs=1e-5)


def test_std_is_floored() -> None:
    fd = akka_detector(min_std_deviation_ms=100.0)
    for t in range(0, 20_000, 1000):
        fd.heartbeat(float(t))
    assert fd.std_ms == 100.0


def test_running_sums_do_not_drift() -> None:
    fd = akka_detector(max_sample_size=7, threshold=999.0, min_std_deviation_ms=1e-9)
    t = 0.0
    fd.heartbeat(t)
    for i in range(10_000):
        t += 1000.0 + (i % 13) * 0.1 + 1e-7 * i
        fd.heartbeat(t)
    window = fd.intervals()
    mean = math.fsum(window) / len(window)
    assert fd.mean_ms == pytest.approx(mean, rel=1e-12)
    var = math.fsum((x - mean) ** 2 for x in window) / len(window)
    assert fd.std_ms == pytest.approx(math.sqrt(var), rel=1e-6)


def test_earlier_timestamp_is_ignored() -> None:
    fd = akka_detector()
    fd.heartbeat(1000.0)
    fd.heartbeat(500.0)
    assert fd.last_heartbeat_ms == 1000.0
    assert fd.intervals() == [750.0, 1250.0]


def test_far_future_phi_is_finite() -> None:
    fd = PhiAccrualDetector()
    fd.heartbeat(0.0)
    assert fd.phi(1e15) == MAX_PHI
    assert not fd.is_available(1e15)


def test_defaults() -> None:
    fd = PhiAccrualDetector()
    assert fd.threshold == 8.0
    assert fd.max_sample_size == 1000
    assert fd.min_std_deviation_ms == 100.0
    assert fd.acceptable_heartbeat_pause_ms == 3000.0
    assert fd.first_heartbeat_estimate_ms == 1000.0
    fd.heartbeat(0.0)
    # mean 1000 + pause 3000, std 250: one interval late is nothing to worry about.
    assert fd.phi(1000.0) < 0.01
    assert fd.is_available(4000.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": math.nan}, "threshold"),
        ({"threshold": MAX_PHI}, "threshold"),
        ({"max_sample_size": 0}, "max_sample_size"),
        ({"max_sample_size": 2.5}, "max_sample_size"),
        ({"max_sample_size": True}, "max_sample_size"),
        ({"min_std_deviation_ms": 0.0}, "min_std_deviation_ms"),
        ({"acceptable_heartbeat_pause_ms": -1.0}, "acceptable_heartbeat_pause_ms"),
        ({"acceptable_heartbeat_pause_ms": math.inf}, "acceptable_heartbeat_pause_ms"),
        ({"first_heartbeat_estimate_ms": 0.0}, "first_heartbeat_estimate_ms"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PhiAccrualDetector(**kwargs)  # type: ignore[arg-type]


def test_no_trio_import() -> None:
    import node.core.phi as module

    assert "trio" not in vars(module)
