"""Circuit breaker: every transition, with the exact time it happens."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.core.breaker import BreakerState, CircuitBreaker, Transition
from node.errors import ConfigError

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def make(**kwargs: object) -> tuple[CircuitBreaker, list[Transition]]:
    seen: list[Transition] = []
    breaker = CircuitBreaker(on_transition=seen.append, **kwargs)  # type: ignore[arg-type]
    return breaker, seen


def fail(breaker: CircuitBreaker, times: int, now: float) -> None:
    for _ in range(times):
        assert breaker.allow(now)
        breaker.record_failure(now)


def succeed(breaker: CircuitBreaker, times: int, now: float) -> None:
    for _ in range(times):
        assert breaker.allow(now)
        breaker.record_success(now)


def edges(seen: list[Transition]) -> list[tuple[float, str, str]]:
    return [(t.at, t.from_state, t.to_state) for t in seen]


# --- closed -> open ----------------------------------------------------------------


def test_starts_closed_and_allows() -> None:
    breaker, seen = make()
    assert breaker.state(0.0) == "closed"
    assert breaker.allow(0.0)
    assert breaker.failure_rate is None
    assert seen == []


def test_opens_after_consecutive_failures() -> None:
    breaker, seen = make(consecutive_failures=3, minimum_calls=10, window=10)
    fail(breaker, 2, now=1.0)
    assert breaker.state(1.0) is CLOSED
    fail(breaker, 1, now=2.5)
    assert breaker.state(2.5) is OPEN
    assert seen == [Transition(2.5, CLOSED, OPEN, "3 consecutive failures; open for 5s")]
    assert breaker.open_until == 7.5
    assert not breaker.allow(2.5)


def test_success_resets_the_consecutive_count() -> None:
    breaker, seen = make(consecutive_failures=3, failure_rate_threshold=1.0)
    for i in range(10):
        fail(breaker, 2, now=float(i))
        succeed(breaker, 1, now=float(i))
    assert breaker.state(10.0) is CLOSED
    assert seen == []


@pytest.mark.parametrize(
    ("outcomes", "opens_at"),
    [
        # minimum_calls 5, threshold 0.5, consecutive 5 (off the table here)
        ("FSFSF", 4),  # 3/5 at the 5th call
        ("SSFSF", None),  # 2/5
        ("SSSSSFSFSF", None),  # window 10: 3/10
        ("SSSFSFSFFF", 9),  # 5/10 only at the 10th call, never 5 in a row
        ("FFFFS", 4),  # 4 failures, then a success reaches minimum_calls at 80 %
        ("FFFF", None),  # not enough calls yet and only 4 in a row
    ],
)
def test_failure_rate_table(outcomes: str, opens_at: int | None) -> None:
    breaker, seen = make(window=10, minimum_calls=5, failure_rate_threshold=0.5)
    for i, outcome in enumerate(outcomes):
        assert breaker.allow(float(i))
        if outcome == "F":
            breaker.record_failure(float(i))
        else:
            breaker.record_success(float(i))
        if breaker.state(float(i)) is OPEN:
            break
    if opens_at is None:
        assert seen == []
    else:
        assert edges(seen) == [(float(opens_at), CLOSED, OPEN)]
        assert seen[0].reason.startswith("failure rate ")


def test_rate_reason_names_the_numbers() -> None:
    breaker, seen = make(window=4, minimum_calls=4, failure_rate_threshold=0.5)
    for outcome in "SFSF":
        (breaker.record_failure if outcome == "F" else breaker.record_success)(3.0)
    assert seen == [
        Transition(3.0, CLOSED, OPEN, "failure rate 2/4 reached threshold 0.5; open for 5s")
    ]


def test_threshold_is_compared_without_rounding_trouble() -> None:
    # 3/10 >= 0.3 must hold although 0.3 * 10 == 3.0000000000000004.
    breaker, _ = make(window=10, minimum_calls=10, failure_rate_threshold=0.3)
    for outcome in "FSSSFSSSSF":
        (breaker.record_failure if outcome == "F" else breaker.record_success)(0.0)
    assert breaker.state(0.0) is OPEN


def test_window_slides_over_the_last_calls() -> None:
    breaker, seen = make(window=4, minimum_calls=4, consecutive_failures=99)
    for outcome in "FSSSSSS":
        (breaker.record_failure if outcome == "F" else breaker.record_success)(0.0)
    assert breaker.calls_in_window == 4
    assert breaker.failure_rate == 0.0
    # Old failures fell out: two fresh ones are 2/4.
    breaker.record_failure(1.0)
    assert breaker.failure_rate == 0.25
    breaker.record_failure(2.0)
    assert edges(seen) == [(2.0, CLOSED, OPEN)]


# --- open -> half_open -> closed / open -------------------------------------------


def test_full_cycle_with_exact_times() -> None:
    breaker, seen = make(
        consecutive_failures=2, open_wait_s=5.0, max_open_wait_s=60.0, half_open_calls=2
    )
    fail(breaker, 2, now=10.0)  # open until 15
    assert not breaker.allow(14.999)
    assert breaker.state(14.999) is OPEN
    assert breaker.allow(15.0)  # wait over: half-open, first trial
    assert breaker.allow(15.0)  # second trial
    assert not breaker.allow(15.0)  # no third
    breaker.record_success(15.5)
    assert breaker.state(15.5) is HALF_OPEN
    assert not breaker.allow(15.6)  # one trial still out
    breaker.record_success(16.0)
    assert breaker.state(16.0) is CLOSED
    assert breaker.allow(16.0)
    assert seen == [
        Transition(10.0, CLOSED, OPEN, "2 consecutive failures; open for 5s"),
        Transition(15.0, OPEN, HALF_OPEN, "open wait of 5s elapsed"),
        Transition(16.0, HALF_OPEN, CLOSED, "2 trial calls succeeded"),
    ]
    assert breaker.transitions == tuple(seen)


def test_state_alone_moves_open_to_half_open() -> None:
    breaker, seen = make(consecutive_failures=1, open_wait_s=2.0)
    breaker.record_failure(1.0)
    assert breaker.state(2.9) is OPEN
    assert breaker.state(3.0) is HALF_OPEN
    assert edges(seen) == [(1.0, CLOSED, OPEN), (3.0, OPEN, HALF_OPEN)]
    assert breaker.open_until is None


def test_failed_trial_reopens_with_doubled_wait_up_to_max() -> None:
    breaker, seen = make(consecutive_failures=1, open_wait_s=5.0, max_open_wait_s=30.0)
    breaker.record_failure(0.0)  # open 5 s: until 5
    now = 0.0
    expected_waits = [10.0, 20.0, 30.0, 30.0]
    until = 5.0
    for wait in expected_waits:
        now = until
        assert breaker.allow(now)
        breaker.record_failure(now)
        until = now + wait
        assert breaker.open_until == until
        assert breaker.current_open_wait_s == wait
        assert not breaker.allow(until - 0.001)
    assert edges(seen) == [
        (0.0, CLOSED, OPEN),
        (5.0, OPEN, HALF_OPEN),
        (5.0, HALF_OPEN, OPEN),
        (15.0, OPEN, HALF_OPEN),
        (15.0, HALF_OPEN, OPEN),
        (35.0, OPEN, HALF_OPEN),
        (35.0, HALF_OPEN, OPEN),
        (65.0, OPEN, HALF_OPEN),
        (65.0, HALF_OPEN, OPEN),
    ]
    assert [t.reason for t in seen if t.to_state is OPEN][1:] == [
        "trial call failed; open for 10s",
        "trial call failed; open for 20s",
        "trial call failed; open for 30s",
        "trial call failed; open for 30s",
    ]
    assert seen[-2].reason == "open wait of 30s elapsed"


def test_wait_resets_on_close() -> None:
    breaker, seen = make(consecutive_failures=1, open_wait_s=1.0, half_open_calls=1)
    breaker.record_failure(0.0)  # until 1
    assert breaker.allow(1.0)
    breaker.record_failure(1.0)  # doubled: until 3
    assert breaker.allow(3.0)
    breaker.record_success(3.0)  # closed, wait back to 1
    assert breaker.state(3.0) is CLOSED
    assert breaker.current_open_wait_s == 1.0
    breaker.record_failure(4.0)
    assert breaker.open_until == 5.0
    assert edges(seen)[-3:] == [
        (3.0, OPEN, HALF_OPEN),
        (3.0, HALF_OPEN, CLOSED),
        (4.0, CLOSED, OPEN),
    ]


def test_any_failed_trial_reopens_even_after_successes() -> None:
    breaker, seen = make(consecutive_failures=1, half_open_calls=3)
    breaker.record_failure(0.0)
    for _ in range(3):
        assert breaker.allow(5.0)
    breaker.record_success(5.1)
    breaker.record_success(5.2)
    breaker.record_failure(5.3)
    assert breaker.state(5.3) is OPEN
    assert edges(seen)[-1] == (5.3, HALF_OPEN, OPEN)
    # The late outcome of the last trial is not counted by the open breaker.
    breaker.record_success(5.4)
    assert breaker.state(5.4) is OPEN


def test_outcomes_while_open_are_ignored() -> None:
    breaker, seen = make(consecutive_failures=1)
    breaker.record_failure(0.0)
    breaker.record_failure(1.0)
    breaker.record_success(1.0)
    assert edges(seen) == [(0.0, CLOSED, OPEN)]
    assert breaker.open_until == 5.0


def test_half_open_ignores_outcomes_of_calls_it_did_not_grant() -> None:
    breaker, seen = make(consecutive_failures=1, half_open_calls=1)
    breaker.record_failure(0.0)
    assert breaker.state(5.0) is HALF_OPEN
    # A call started before the breaker opened ends now: not a trial.
    breaker.record_failure(5.0)
    breaker.record_success(5.0)
    assert breaker.state(5.0) is HALF_OPEN
    assert breaker.allow(5.0)
    breaker.record_success(6.0)
    assert breaker.state(6.0) is CLOSED
    assert edges(seen) == [(0.0, CLOSED, OPEN), (5.0, OPEN, HALF_OPEN), (6.0, HALF_OPEN, CLOSED)]


def test_window_is_clean_after_close() -> None:
    breaker, _ = make(window=5, minimum_calls=5, consecutive_failures=3, half_open_calls=1)
    fail(breaker, 3, now=0.0)
    assert breaker.allow(5.0)
    breaker.record_success(5.0)
    assert breaker.calls_in_window == 0
    fail(breaker, 2, now=6.0)
    succeed(breaker, 3, now=6.0)
    assert breaker.state(6.0) is CLOSED  # 2/5 < 0.5, and no old failures counted


def test_transition_history_is_bounded() -> None:
    breaker = CircuitBreaker(consecutive_failures=1, half_open_calls=1, history=3)
    breaker.record_failure(0.0)
    for i in range(1, 5):
        assert breaker.allow(100.0 * i)
        breaker.record_success(100.0 * i)
        breaker.record_failure(100.0 * i + 1)
    assert len(breaker.transitions) == 3
    assert breaker.transitions[-1] == Transition(
        401.0, CLOSED, OPEN, "1 consecutive failures; open for 5s"
    )


def test_works_without_a_callback() -> None:
    breaker = CircuitBreaker(consecutive_failures=1)
    breaker.record_failure(0.0)
    assert breaker.state(0.0) == "open"
    assert [t.to_state for t in breaker.transitions] == ["open"]


def test_transition_is_frozen() -> None:
    t = Transition(1.0, CLOSED, OPEN, "x")
    with pytest.raises(AttributeError):
        t.at = 2.0  # type: ignore[misc]


# --- properties --------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(st.sampled_from(["allow", "ok", "fail", "state"]), st.floats(0.0, 3.0)),
        max_size=200,
    ),
    st.integers(1, 4),
)
def test_transitions_chain_and_half_open_never_over_grants(
    steps: list[tuple[str, float]], half_open_calls: int
) -> None:
    breaker, seen = make(
        window=6, minimum_calls=3, consecutive_failures=3, half_open_calls=half_open_calls
    )
    now = 0.0
    granted = 0
    for action, dt in steps:
        now += dt
        before = breaker.state(now)
        if action == "allow":
            allowed = breaker.allow(now)
            if before is OPEN:
                assert not allowed
            if before is HALF_OPEN and allowed:
                granted += 1
        elif action == "ok":
            breaker.record_success(now)
        elif action == "fail":
            breaker.record_failure(now)
        if breaker.state(now) is not HALF_OPEN:
            granted = 0
        assert granted <= half_open_calls
    legal = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}
    state = CLOSED
    last_at = -math.inf
    for t in seen:
        assert (t.from_state, t.to_state) in legal
        assert t.from_state is state
        assert t.at >= last_at
        state, last_at = t.to_state, t.at
    assert state is breaker.state(now)


# --- configuration -------------------------------------------------------------------


def test_defaults() -> None:
    breaker = CircuitBreaker()
    assert (
        breaker.window,
        breaker.minimum_calls,
        breaker.failure_rate_threshold,
        breaker.consecutive_failures,
        breaker.open_wait_s,
        breaker.max_open_wait_s,
        breaker.half_open_calls,
    ) == (20, 5, 0.5, 5, 5.0, 60.0, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0}, "window"),
        ({"window": 2.0}, "window"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"window": 4, "minimum_calls": 5}, "exceeds window"),
        ({"failure_rate_threshold": 0.0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
        ({"failure_rate_threshold": math.nan}, "failure_rate_threshold"),
        ({"consecutive_failures": 0}, "consecutive_failures"),
        ({"consecutive_failures": True}, "consecutive_failures"),
        ({"open_wait_s": 0.0}, "open_wait_s"),
        ({"open_wait_s": math.inf}, "open_wait_s"),
        ({"open_wait_s": 10.0, "max_open_wait_s": 5.0}, "max_open_wait_s"),
        ({"max_open_wait_s": math.inf}, "max_open_wait_s"),
        ({"half_open_calls": 0}, "half_open_calls"),
        ({"history": -1}, "history"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]
