"""Handshake slots: strangers cost little and never block a member."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.core.admission import PendingHandshakes


def test_per_host_limit_evicts_that_hosts_oldest() -> None:
    slots = PendingHandshakes(total=64, per_host=4, reserved=16)
    for i in range(4):
        assert slots.admit(i, "10.0.0.9", member=False) == []
    assert slots.admit(4, "10.0.0.9", member=False) == [0]
    assert slots.on_host("10.0.0.9") == 4
    assert slots.admit("other", "10.0.0.8", member=False) == []


def test_strangers_never_take_the_members_reserve() -> None:
    slots = PendingHandshakes(total=8, per_host=8, reserved=3)
    for i in range(5):
        assert slots.admit(i, f"h{i}", member=False) == []
    # the stranger share (5) is full: a sixth stranger displaces the oldest stranger
    assert slots.admit(5, "h5", member=False) == [0]
    assert slots.strangers == 5
    # members still find their three reserved slots, displacing nobody
    assert [slots.admit(f"m{i}", "member-host", member=True) for i in range(3)] == [[], [], []]
    # a fourth member displaces the oldest stranger, never another member
    assert slots.admit("m3", "member-host2", member=True) == [1]
    assert len(slots) == 8


def test_release_is_idempotent_and_frees_the_slot() -> None:
    slots = PendingHandshakes(total=2, per_host=2, reserved=0)
    slots.admit("a", "h", member=False)
    slots.release("a")
    slots.release("a")
    assert len(slots) == 0 and "a" not in slots


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="per_host"):
        PendingHandshakes(total=4, per_host=5, reserved=0)


@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.booleans()), min_size=1, max_size=300)
)
def test_bounds_hold_and_the_newcomer_always_gets_a_slot(ops: list[tuple[int, bool, bool]]) -> None:
    slots = PendingHandshakes(total=12, per_host=3, reserved=4)
    live: set[int] = set()
    for key, (host, member, release) in enumerate(ops):
        if release and live:
            gone = min(live)
            slots.release(gone)
            live.discard(gone)
            continue
        # hosts 0 and 1 hold members (host 1 only sometimes)
        evicted = slots.admit(key, f"h{host}", member=(host < 2 and member) or host == 0)
        assert key in slots
        assert set(evicted) <= live
        live -= set(evicted)
        live.add(key)
        assert len(slots) == len(live) <= 12
        assert slots.strangers <= 12 - 4
        assert all(slots.on_host(f"h{h}") <= 3 for h in range(6))


def test_log_budget_holds_back_a_flood_and_reports_it() -> None:
    from node.core.admission import LogBudget

    budget = LogBudget(per_window=2, window_s=10.0)
    assert [budget.allow("bad", 0.0) for _ in range(5)] == [
        (True, 0),
        (True, 0),
        (False, 0),
        (False, 0),
        (False, 0),
    ]
    assert budget.allow("other", 1.0) == (True, 0)  # keys are separate
    assert budget.allow("bad", 9.9) == (False, 0)
    assert budget.allow("bad", 10.0) == (True, 4)  # a new window: four were held back
    assert budget.allow("bad", 10.1) == (True, 0)


def test_source_host_of_real_and_simulated_streams() -> None:
    from node.runtime.bridge import source_host

    class Fake:
        remote_address = "10.1.2.3:5555"

    assert source_host(Fake()) == "10.1.2.3"

    class Sock:
        def getpeername(self) -> tuple[str, int, int, int]:
            return ("::ffff:127.0.0.1", 4000, 0, 0)

    class Tcp:
        socket = Sock()

    class Tls:
        transport_stream = Tcp()

    assert source_host(Tls()) == "127.0.0.1"
    assert source_host(object()) == ""
