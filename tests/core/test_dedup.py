"""Deduplication: exact within capacity, floor beyond it, bounded memory."""

from __future__ import annotations

import tracemalloc

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
    assert d.duplicates == 1 and d.stale == 0


def test_evicted_ids_become_a_floor_per_source() -> None:
    d = Deduplicator(3)
    for p in (1, 2, 3, 4):
        assert not d.seen("a", ts(p))
    assert len(d) == 3
    assert d.seen("a", ts(1))  # evicted, but at the floor: still refused
    assert d.stale == 1
    assert not d.seen("b", ts(1, 0, "b"))  # other sources unaffected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 40)), max_size=300))
def test_never_admits_a_replay(stream: list[tuple[str, int]]) -> None:
    d = Deduplicator(16)
    admitted: set[tuple[str, int]] = set()
    for source, p in stream:
        new = not d.seen(source, ts(p, 0, source))
        if new:
            assert (source, p) not in admitted
            admitted.add((source, p))


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
    assert d.seen("a", ts(10 + 2**33))  # evicted: floor of "a" is now the wide stamp
