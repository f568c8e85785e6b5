"""Hybrid logical clock: the paper's rules, edge cases and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.hlc import HLC, MAX_LOGICAL, Timestamp
from node.errors import ClockOffsetError, ClockOverflowError, InvalidMessageError


class FakeWall:
    def __init__(self, ms: int = 1_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_timestamp_order_physical_then_logical_then_node() -> None:
    assert Timestamp(1, 9, "z") < Timestamp(2, 0, "a")
    assert Timestamp(2, 0, "z") < Timestamp(2, 1, "a")
    assert Timestamp(2, 1, "a") < Timestamp(2, 1, "b")
    assert sorted([Timestamp(2, 1, "b"), Timestamp(1, 5, "c"), Timestamp(2, 1, "a")]) == [
        Timestamp(1, 5, "c"),
        Timestamp(2, 1, "a"),
        Timestamp(2, 1, "b"),
    ]


def test_now_follows_wall_and_counts_within_one_ms() -> None:
    wall = FakeWall(100)
    clock = HLC("a", wall=wall)
    assert clock.now() == Timestamp(100, 0, "a")
    assert clock.now() == Timestamp(100, 1, "a")
    wall.ms = 105
    assert clock.now() == Timestamp(105, 0, "a")


def test_wall_going_backwards_never_moves_now_backwards() -> None:
    wall = FakeWall(1_000)
    clock = HLC("a", wall=wall)
    first = clock.now()
    wall.ms = 400  # NTP step back
    second = clock.now()
    assert second > first
    assert second == Timestamp(1_000, 1, "a")


@pytest.mark.parametrize(
    ("local", "remote", "wall_ms", "expected"),
    [
        # l' == l_m > pt: c = max(c', c_m) + 1
        ((200, 3), (200, 7), 150, (200, 8)),
        # l' > l_m, l' > pt: c = c' + 1
        ((300, 2), (250, 9), 150, (300, 3)),
        # l_m > l', l_m > pt: c = c_m + 1
        ((100, 5), (400, 4), 390, (400, 5)),
        # pt beats both: c = 0
        ((100, 5), (120, 4), 500, (500, 0)),
    ],
)
def test_receive_rule_four_cases(
    local: tuple[int, int], remote: tuple[int, int], wall_ms: int, expected: tuple[int, int]
) -> None:
    wall = FakeWall(local[0])
    clock = HLC("a", wall=wall)
    clock.now()
    clock._l, clock._c = local  # set up the case directly
    wall.ms = wall_ms
    got = clock.update(Timestamp(remote[0], remote[1], "b"))
    assert (got.physical, got.logical) == expected
    assert got.node == "a"


def test_update_rejects_remote_too_far_ahead_and_leaves_clock_unchanged() -> None:
    wall = FakeWall(1_000)
    clock = HLC("a", wall=wall, max_offset_ms=500)
    clock.now()
    before = clock.last
    with pytest.raises(ClockOffsetError, match="501 ms ahead"):
        clock.update(Timestamp(1_501, 0, "b"))
    assert clock.last == before
    # exactly at the bound is accepted
    assert clock.update(Timestamp(1_500, 0, "b")) == Timestamp(1_500, 1, "a")


def test_logical_overflow_is_an_error_not_a_wrap() -> None:
    clock = HLC("a", wall=FakeWall(10))
    clock.now()
    clock._c = MAX_LOGICAL
    with pytest.raises(ClockOverflowError):
        clock.now()
    assert clock.last == Timestamp(10, MAX_LOGICAL, "a")
    with pytest.raises(ClockOverflowError):
        clock.update(Timestamp(10, 0, "b"))
    assert MAX_LOGICAL >= 2**16


def test_timestamp_wire_roundtrip_and_validation() -> None:
    ts = Timestamp(1_700_000_000_000, 42, "node-1")
    assert Timestamp.from_wire(ts.to_wire()) == ts
    for bad in (
        [1, 2],
        [1, -1, "a"],
        ["1", 0, "a"],
        [1, 0, ""],
        [1, 0, "x" * 300],
        "x",
        [True, 0, "a"],
    ):
        with pytest.raises(InvalidMessageError):
            Timestamp.from_wire(bad)


# --- properties ---------------------------------------------------------------

# One step of a simulated cluster: advance a node's wall clock (possibly
# backwards), have it do a local event, or send to another node.
steps = st.lists(
    st.tuples(
        st.sampled_from(["tick", "local", "send"]),
        st.integers(0, 3),
        st.integers(0, 3),
        st.integers(-50, 200),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_properties_monotonic_causal_bounded_drift(ops: list[tuple[str, int, int, int]]) -> None:
    max_offset = 500
    walls = [FakeWall(10_000 + 7 * i) for i in range(4)]
    clocks = [HLC(f"n{i}", wall=walls[i], max_offset_ms=max_offset) for i in range(4)]
    last = [Timestamp(0, 0, f"n{i}") for i in range(4)]
    max_ever = max(w.ms for w in walls)
    for op, i, j, amount in ops:
        if op == "tick":
            # Wall clocks may jump around, but stay within max_offset of each
            # other (the assumption HLC relies on), so receives are accepted.
            walls[i].ms = max(min(walls[i].ms + amount, min(w.ms for w in walls) + 400), 1)
            max_ever = max(max_ever, walls[i].ms)
            continue
        sent = clocks[i].now()
        assert sent > last[i], "now() must be strictly monotonic"
        last[i] = sent
        if op == "send" and i != j:
            try:
                received = clocks[j].update(sent)
            except ClockOffsetError:
                assert sent.physical - walls[j].ms > max_offset
                continue
            # causality: the receive event is after the send and after j's past
            assert received > sent
            assert received > last[j]
            last[j] = received
        # bounded drift (the paper's theorem): l is never below the stamping
        # node's wall clock, and never above the largest wall reading ever made.
        assert sent.physical >= walls[i].ms
        max_ever = max(max_ever, *(w.ms for w in walls))
        for k in range(4):
            assert clocks[k].last.physical <= max_ever


def test_system_clock_path_agrees_with_the_rule_at_millisecond_edges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # now() on the system clock skips the division while the wall clock is
    # still within the last stamp's millisecond: same stamps as the rule.
    ns = [100_200_000]
    monkeypatch.setattr("time.time_ns", lambda: ns[0])
    clock = HLC("a")
    assert clock.now() == Timestamp(100, 0, "a")
    ns[0] = 100_999_999
    assert clock.now() == Timestamp(100, 1, "a")
    ns[0] = 101_000_000
    assert clock.now() == Timestamp(101, 0, "a")
    ns[0] = 99_500_000  # stepped back
    assert clock.now() == Timestamp(101, 1, "a")
    ns[0] = 101_500_000
    assert clock.update(Timestamp(105, 3, "b")) == Timestamp(105, 4, "a")
    ns[0] = 102_000_000  # behind what update learnt: keep 105, count on
    assert clock.now() == Timestamp(105, 5, "a")
    ns[0] = 105_999_999
    assert clock.now() == Timestamp(105, 6, "a")
    ns[0] = 106_000_000
    assert clock.now() == Timestamp(106, 0, "a")
