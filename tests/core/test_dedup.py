"""Deduplication: exact within capacity, forgetting (never refusing) beyond it, bounded memory."""

from __future__ import annotations

import tracemalloc
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.dedup import Deduplicator
from node.core.hlc import Timestamp


def ts(p: int, c: int = 0, n: str = "a") -> Timestamp:
    return Timestamp(p, c, n)


def test_first_time_new_second_time_duplicate() -> None:
    d = Deduplicator(10)
    assert not d.seen("a", ts(1))
    assert d.seen("a", ts(1))
    assert not d.seen("b", ts(1, 0, "b"))
    assert not d.seen("a", ts(1, 1))
    assert d.duplicates == 1 and d.forgotten == 0


def test_evicted_ids_are_forgotten_never_refused() -> None:
    # A receiver must never refuse an event it has not delivered: an id that
    # left the memory is admitted again (a duplicate at worst), not refused.
    d = Deduplicator(3)
    for p in (1, 2, 3, 4):
        assert not d.seen("a", ts(p))
    assert len(d) == 3 and d.forgotten == 1
    assert not d.seen("a", ts(1))  # forgotten: admitted again
    assert d.seen("a", ts(4))  # still remembered
    assert not d.seen("a", ts(0))  # older than everything, never seen: admitted


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 40),
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 60), st.integers(0, 2)), max_size=400
    ),
)
def test_matches_a_fifo_model_exactly(capacity: int, stream: list[tuple[str, int, int]]) -> None:
    """seen() is True exactly when the id is among the last ``capacity`` admitted."""
    d = Deduplicator(capacity)
    model: deque[tuple[str, int, int]] = deque()
    for source, p, c in stream:
        key = (source, p, c)
        expected = key in model
        assert d.seen(source, ts(p, c, source)) is expected
        if not expected:
            model.append(key)
            if len(model) > capacity:
                model.popleft()
        assert len(d) == len(model)


def test_in_order_stream_within_capacity_is_exact() -> None:
    d = Deduplicator(100)
    assert all(not d.seen("a", ts(p)) for p in range(1_000))
    assert all(d.seen("a", ts(p)) for p in range(900, 1_000))
    assert d.duplicates == 100


def test_memory_for_10000_ids_is_under_1_mb() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        d = Deduplicator(10_000)
        base = 1_700_000_000_000
        for i in range(30_000):  # full, and churned well past capacity
            d.seen(f"node-{i % 5}", Timestamp(base + i // 3, i % 3, f"node-{i % 5}"))
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    used = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert len(d) == 10_000
    assert used < 1_000_000, f"{used} bytes for 10,000 ids"


def test_wide_keys_for_far_timestamps_and_many_sources() -> None:
    d = Deduplicator(4)
    assert not d.seen("a", ts(10))
    assert not d.seen("a", ts(10 + 2**33))  # beyond the compact window
    assert not d.seen("a", ts(11, 70_000))  # logical beyond 16 bits
    assert d.seen("a", ts(10 + 2**33))
    assert d.seen("a", ts(11, 70_000))
    for i in range(5_000):
        d.seen(f"s{i}", ts(1, 0, f"s{i}"))
    assert d.seen("s4999", ts(1, 0, "s4999"))
    assert not d.seen("a", ts(10 + 2**33))  # evicted long ago: forgotten, admitted again
