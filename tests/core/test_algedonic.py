"""node.core.algedonic: signals, directives, the confirmation ledger, datagrams."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node.core.algedonic import (
    CONNECTION,
    DATAGRAM,
    FORGED,
    FRESH,
    IMMEDIATE,
    MAINTAIN,
    MALFORMED,
    MONITOR,
    POLICY_REVIEW,
    REPLAYED,
    STALE,
    UNSIGNED,
    WRONG_CLUSTER,
    AlgedonicLedger,
    AlgedonicSettings,
    Broadcast,
    DatagramError,
    DatagramGuard,
    LatencyWindow,
    Signal,
    check_signal,
    directive_for,
    seal,
    unseal,
)
from node.core.events import Channel
from node.core.hlc import Timestamp
from node.core.wire import Algedonic, AlgedonicAck, Bye
from node.errors import InvalidMessageError

GOOD = {"type": "pain", "severity": 8, "source": "deployment_test", "data": {"x": 1}}
HLC = Timestamp(1_700_000_000_000, 0, "a")


def signal(sid: str = "a-1", origin: str = "a", **over: Any) -> Signal:
    spec = check_signal({**GOOD, **over})
    return Signal.make(sid, spec, origin, HLC._replace(node=origin))


# --- validation and directives ----------------------------------------------------


def test_a_good_signal_passes_and_data_defaults_to_empty() -> None:
    spec = check_signal(GOOD)
    assert (spec.kind, spec.severity, spec.source, spec.data) == (
        "pain",
        8,
        "deployment_test",
        {"x": 1},
    )
    assert check_signal({"type": "pleasure", "severity": 1, "source": "s"}).data == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "joy"}, "type"),
        ({"type": None}, "type"),
        ({"severity": 0}, "severity"),
        ({"severity": 11}, "severity"),
        ({"severity": 5.0}, "severity"),
        ({"severity": True}, "severity"),
        ({"severity": "8"}, "severity"),
        ({"source": ""}, "source"),
        ({"source": 3}, "source"),
        ({"source": "x" * 257}, "source"),
        ({"data": [1, 2]}, "data"),
        ({"data": {"k": object()}}, "data"),
        ({"data": {1: "int key"}}, "data"),
        ({"colour": "red"}, "unknown fields: colour"),
    ],
)
def test_a_bad_signal_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        check_signal({**GOOD, **change})


def test_missing_fields_and_non_mappings_are_refused() -> None:
    for missing in ("type", "severity", "source"):
        raw = {k: v for k, v in GOOD.items() if k != missing}
        with pytest.raises(ValueError, match=missing):
            check_signal(raw)
    with pytest.raises(ValueError, match="mapping"):
        check_signal(["pain"])


@pytest.mark.parametrize(
    ("kind", "severity", "want"),
    [
        ("emergency", 1, IMMEDIATE),
        ("pain", 8, IMMEDIATE),
        ("pain", 10, IMMEDIATE),
        ("pain", 7, POLICY_REVIEW),
        ("pain", 5, POLICY_REVIEW),
        ("pain", 4, MONITOR),
        ("pleasure", 8, MAINTAIN),
        ("pleasure", 7, MONITOR),
        ("pleasure", 10, MAINTAIN),
    ],
)
def test_directive_table(kind: str, severity: int, want: str) -> None:
    assert directive_for(kind, severity) == want


def test_a_signal_travels_as_an_algedonic_event_and_comes_back_the_same() -> None:
    sig = signal()
    event = sig.to_event()
    assert event.type == "algedonic_pain" and event.channel is Channel.ALGEDONIC
    assert event.source == "a" and event.hlc == sig.hlc
    assert event.data["directive"] == IMMEDIATE and event.data["source"] == "deployment_test"
    assert Signal.from_message(sig.to_message()) == sig
    emergency = signal(type="emergency", severity=2)
    assert emergency.to_event().type == "emergency_algedonic"


def test_a_peer_cannot_send_a_signal_that_does_not_add_up() -> None:
    msg = signal().to_message()
    ev = msg.event
    bad = [
        attrs.evolve(msg, signal_id="other"),
        attrs.evolve(msg, event=ev._replace(type="task_execution")),
        attrs.evolve(msg, event=ev._replace(channel=Channel.S1_OPERATIONAL)),
        attrs.evolve(msg, event=ev._replace(data={**ev.data, "severity": 11})),
        attrs.evolve(msg, event=ev._replace(data={**ev.data, "directive": MONITOR})),
    ]
    for m in bad:
        with pytest.raises(InvalidMessageError):
            Signal.from_message(m)


# --- one broadcast ----------------------------------------------------------------


def test_settings_schedule_and_ceiling() -> None:
    s = AlgedonicSettings()
    assert [s.timeout(a) for a in (1, 2, 3, 4)] == [0.025, 0.05, 0.1, 0.2]
    assert s.ceiling_s == pytest.approx(0.375)
    for bad in (
        {"ack_timeout_s": 0},
        {"backoff": 0.5},
        {"max_retries": -1},
        {"history": 0},
    ):
        with pytest.raises(ValueError):
            AlgedonicSettings(**bad)


def test_a_silent_target_is_retried_three_times_then_fails_at_exact_times() -> None:
    b = Broadcast.open(signal(), ["b", "c", "a", "b"], 10.0, AlgedonicSettings())
    assert b.targets == ("b", "c")  # the origin and repeats dropped
    assert b.next_deadline == pytest.approx(10.025)
    assert b.confirm("c", CONNECTION, 10.004)
    assert not b.confirm("c", DATAGRAM, 10.005)  # a second copy confirms nothing new
    assert b.acks == 2
    times = []
    now = 10.0
    while not b.done:
        now = b.next_deadline
        retry, failed = b.due(now)
        times.append((round(now - 10.0, 6), retry, failed))
    assert times == [
        (0.025, [("b", 2)], []),
        (0.075, [("b", 3)], []),
        (0.175, [("b", 4)], []),
        (0.375, [], ["b"]),
    ]
    assert b.due(11.0) == ([], [])
    assert b.result() == {
        "id": "a-1",
        "directive": IMMEDIATE,
        "confirmed": ["c"],
        "failed": ["b"],
        "latency_ms": 4.0,
        "attempts": {"b": 4, "c": 1},
    }


def test_due_before_the_deadline_does_nothing_and_a_late_ack_still_confirms() -> None:
    b = Broadcast.open(signal(), ["b", "c"], 0.0, AlgedonicSettings(max_retries=0))
    assert b.due(0.0249) == ([], [])
    assert b.due(0.025) == ([], ["b", "c"])
    assert b.done and b.latency_s is None
    assert b.confirm("b", FRESH, 0.03)  # it did process it: the truth wins
    assert b.result()["confirmed"] == ["b"] and b.result()["failed"] == ["c"]
    assert not b.confirm("z", CONNECTION, 0.03)  # not a target
    assert b.next_deadline == math.inf


class BroadcastMachine(RuleBasedStateMachine):
    """Every target is in exactly one of pending / confirmed / failed, as a model says."""

    def __init__(self) -> None:
        super().__init__()
        self.settings = AlgedonicSettings(ack_timeout_s=0.01, max_retries=3)
        self.names = [f"n{i}" for i in range(6)]
        self.now = 0.0
        self.b = Broadcast.open(signal(), self.names, self.now, self.settings)
        self.m_attempts = {n: 1 for n in self.names}
        self.m_deadline = {n: 0.01 for n in self.names}
        self.m_confirmed: dict[str, float] = {}
        self.m_failed: set[str] = set()
        self.retries_seen: dict[str, list[int]] = {n: [] for n in self.names}

    @rule(dt=st.floats(min_value=0.0, max_value=0.05))
    def advance(self, dt: float) -> None:
        self.now += dt
        retry, failed = self.b.due(self.now)
        want_retry, want_failed = [], []
        for n in self.names:
            if n in self.m_deadline and self.m_deadline[n] <= self.now:
                if self.m_attempts[n] >= 4:
                    del self.m_deadline[n]
                    self.m_failed.add(n)
                    want_failed.append(n)
                else:
                    self.m_attempts[n] += 1
                    self.m_deadline[n] = self.now + 0.01 * 2 ** (self.m_attempts[n] - 1)
                    want_retry.append((n, self.m_attempts[n]))
        assert sorted(retry) == sorted(want_retry)
        assert sorted(failed) == sorted(want_failed)
        for n, a in retry:
            self.retries_seen[n].append(a)

    @rule(i=st.integers(0, 6), path=st.sampled_from([CONNECTION, DATAGRAM, FRESH]))
    def ack(self, i: int, path: str) -> None:
        name = f"n{i}"  # n6 is not a target
        first = self.b.confirm(name, path, self.now)
        known = name in self.m_attempts
        assert first == (known and name not in self.m_confirmed)
        if first:
            self.m_confirmed[name] = self.now
            self.m_deadline.pop(name, None)
            self.m_failed.discard(name)

    @precondition(lambda self: not self.b.done)
    @rule()
    def jump_to_deadline(self) -> None:
        assert self.b.next_deadline == min(self.m_deadline.values())
        self.advance(self.b.next_deadline - self.now)

    @invariant()
    def every_target_in_exactly_one_place(self) -> None:
        b = self.b
        pending, confirmed, failed = set(b.pending), set(b.confirmed), set(b.failed)
        assert pending | confirmed | failed == set(self.names)
        assert not (pending & confirmed or pending & failed or confirmed & failed)
        assert pending == set(self.m_deadline)
        assert confirmed == set(self.m_confirmed)
        assert failed == self.m_failed
        assert b.attempts == self.m_attempts
        assert b.done == (not self.m_deadline)
        for n in failed:
            assert b.attempts[n] == 4  # failed only after exactly 3 retries
        for seen in self.retries_seen.values():
            assert seen == list(range(2, 2 + len(seen)))
        latency = b.latency_s
        assert latency == (max(self.m_confirmed.values()) if self.m_confirmed else None)


TestBroadcastMachine = BroadcastMachine.TestCase
TestBroadcastMachine.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)


# --- the node's ledger --------------------------------------------------------------


def test_ledger_counts_sends_confirmations_failures_and_latency() -> None:
    led = AlgedonicLedger("a", AlgedonicSettings())
    sig = signal("a-1")
    b = led.start(sig, ["b", "c"], 5.0)
    with pytest.raises(ValueError, match="already"):
        led.start(sig, ["b"], 5.0)
    assert led.ack("a-1", "a", "b", CONNECTION, 5.002)
    assert not led.ack("a-1", "a", "b", DATAGRAM, 5.003)  # second copy
    assert not led.ack("a-1", "z", "c", DATAGRAM, 5.003)  # someone else's signal
    assert not led.ack("nope", "a", "c", DATAGRAM, 5.003)
    result = led.finish(b, 5.4)
    assert result["confirmed"] == ["b"] and result["failed"] == ["c"]
    s = led.stats()
    assert (s["sent"], s["confirmations"], s["failures"]) == (1, 1, 1)
    assert s["failures_by_node"] == {"c": 1}
    assert s["acks_in"] == {CONNECTION: 1, DATAGRAM: 3, FRESH: 0}
    assert s["counters"]["acks_unmatched"] == 2
    assert s["in_flight"] == 0
    assert s["latency_ms"]["samples"] == 0  # a broadcast with failures is no latency sample
    assert s["last"][-1]["failed"] == ["c"] and s["last"][-1]["latency_ms"] == 2.0
    assert s["last"][-1]["time"] == HLC.physical / 1000 and s["last"][-1]["type"] == "pain"
    b2 = led.start(signal("a-2"), ["b"], 6.0)
    led.ack("a-2", "a", "b", CONNECTION, 6.003)
    led.finish(b2, 6.003)
    assert led.stats()["latency_ms"]["p50"] == 3.0


def test_ledger_delivers_each_signal_once_and_remembers_a_bounded_number() -> None:
    led = AlgedonicLedger("z", AlgedonicSettings(remember=3))
    assert led.receive("a", "s1", CONNECTION)
    assert not led.receive("a", "s1", DATAGRAM)
    assert not led.receive("a", "s1", FRESH)
    assert led.receive("b", "s1", DATAGRAM)  # ids are per origin
    s = led.stats()
    assert (s["received"], s["duplicates"]) == (2, 2)
    assert s["copies_in"] == {CONNECTION: 1, DATAGRAM: 2, FRESH: 1}
    for i in range(3):
        led.receive("c", f"x{i}", CONNECTION)
    assert led.receive("a", "s1", CONNECTION)  # forgotten after 3 newer ones
    own = led.start(signal("z-9", origin="z"), ["a"], 0.0)
    assert not led.receive("z", "z-9", CONNECTION)  # our own coming back
    assert own.targets == ("a",)


def test_latency_window_percentiles_by_nearest_rank() -> None:
    w = LatencyWindow(100)
    assert w.percentile(50) is None
    for v in range(1, 201):
        w.add(v / 1000)
    assert len(w) == 100  # sliding: only the last 100
    assert w.percentile(50) == 0.15
    assert w.percentile(99) == 0.199
    assert w.percentile(100) == 0.2


# --- datagrams -------------------------------------------------------------------

COOKIE = "cookie-1234567890"


def sealed(message: Any = None, *, sender: str = "a", nonce: bytes = b"n" * 16, **kw: Any) -> bytes:
    args: dict[str, Any] = {
        "cookie": COOKIE,
        "cluster": "vsm",
        "sender": sender,
        "hlc": Timestamp(HLC.physical, 3, sender),
        "nonce": nonce,
    }
    args.update(kw)
    return seal(message or signal().to_message(), **args)


def test_a_sealed_datagram_opens_to_what_was_sent() -> None:
    msg = signal().to_message()
    out = unseal(sealed(msg), cookie=COOKIE, cluster="vsm")
    assert out.sender == "a" and out.nonce == b"n" * 16 and out.hlc.logical == 3
    assert out.message == msg
    ack = AlgedonicAck("a-1", "a", "b")
    assert unseal(sealed(ack, sender="b"), cookie=COOKIE, cluster="vsm").message == ack


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", UNSIGNED),
        (b"x" * 32, UNSIGNED),
        (b"x" * 70_000, UNSIGNED),
        (b"\x00" * 32 + b"hello", FORGED),
        (sealed(cookie="another-cookie"), FORGED),
        (sealed(cluster="other"), WRONG_CLUSTER),
        (sealed(Bye("a", "x")), MALFORMED),  # type: ignore[arg-type]
        (sealed(sender="b"), MALFORMED),  # b speaking for a's signal
    ],
)
def test_bad_datagrams_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(DatagramError) as info:
        unseal(data, cookie=COOKIE, cluster="vsm")
    assert info.value.reason == reason


def test_a_flipped_bit_anywhere_is_forged() -> None:
    good = sealed()
    for i in (0, 31, 32, len(good) // 2, len(good) - 1):
        bad = bytearray(good)
        bad[i] ^= 1
        with pytest.raises(DatagramError) as info:
            unseal(bytes(bad), cookie=COOKIE, cluster="vsm")
        assert info.value.reason == FORGED


def test_signed_garbage_is_malformed_not_a_crash() -> None:
    import hashlib
    import hmac

    import msgpack

    for body in (
        b"\xc1",
        msgpack.packb([1, 2, 3]),
        msgpack.packb([1, "vsm", "a", b"n" * 16, [1, 2, "a"], b"\x00"]),
    ):
        mac = hmac.new(
            COOKIE.encode(), b"vsm-console/algedonic/v1\x00" + body, hashlib.sha256
        ).digest()
        with pytest.raises(DatagramError) as info:
            unseal(mac + body, cookie=COOKIE, cluster="vsm")
        assert info.value.reason == MALFORMED


def test_guard_refuses_replays_and_stale_datagrams() -> None:
    guard = DatagramGuard(stale_after_s=30, remember=2)
    now_ms = HLC.physical + 1_000
    first = unseal(sealed(nonce=b"1" * 16), cookie=COOKIE, cluster="vsm")
    guard.check(first, now_ms)
    with pytest.raises(DatagramError) as info:
        guard.check(first, now_ms)
    assert info.value.reason == REPLAYED
    old = unseal(sealed(nonce=b"2" * 16), cookie=COOKIE, cluster="vsm")
    with pytest.raises(DatagramError) as info:
        guard.check(old, HLC.physical + 30_001)
    assert info.value.reason == STALE
    guard.check(old, HLC.physical + 30_000)  # exactly at the bound: still fresh
    guard.check(unseal(sealed(nonce=b"3" * 16), cookie=COOKIE, cluster="vsm"), now_ms)
    guard.check(first, now_ms)  # evicted after 2 newer ones (bounded memory)


def test_algedonic_message_shape_is_the_wire_one() -> None:
    msg = signal().to_message()
    assert isinstance(msg, Algedonic) and msg.path == ("a",)


def test_bounds_are_inclusive_where_documented() -> None:
    AlgedonicSettings(backoff=1.0, history=1, remember=1, latency_window=1)
    assert check_signal({**GOOD, "source": "s" * 256}).source == "s" * 256
    led = AlgedonicLedger("z", AlgedonicSettings(remember=2))
    led.receive("a", "s1", CONNECTION)
    led.receive("a", "s2", CONNECTION)
    assert not led.receive("a", "s1", CONNECTION)  # two remembered means two
    guard = DatagramGuard(stale_after_s=30, remember=2)
    one = unseal(sealed(nonce=b"1" * 16), cookie=COOKIE, cluster="vsm")
    guard.check(one, HLC.physical)
    guard.check(unseal(sealed(nonce=b"2" * 16), cookie=COOKIE, cluster="vsm"), HLC.physical)
    with pytest.raises(DatagramError):
        guard.check(one, HLC.physical)


def test_datagram_size_bound_and_longest_sender_name() -> None:
    with pytest.raises(DatagramError) as info:
        unseal(b"x" * 60_000, cookie=COOKIE, cluster="vsm")
    assert info.value.reason == FORGED  # within the bound: checked, and not ours
    with pytest.raises(DatagramError) as info:
        unseal(b"x" * 60_001, cookie=COOKIE, cluster="vsm")
    assert info.value.reason == UNSIGNED
    name = "n" * 255
    ack = AlgedonicAck("a-1", "a", name)
    assert unseal(sealed(ack, sender=name), cookie=COOKIE, cluster="vsm").sender == name
