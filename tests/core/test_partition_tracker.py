"""Partition policy over time (node.core.tracker), synchronously, exact times.

A global situation is a list of groups (who hears whom, all links mutual
inside a group); each node sees its own group fully and the other members as
silent, as the runtime does (a peer it cannot hear has no trustworthy view).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node.core.hlc import Timestamp
from node.core.partition import Strategy, Topology, analyze
from node.core.tracker import (
    Change,
    ChangeKind,
    PartitionTracker,
    Resolution,
    Role,
    default_down_all_after,
)
from node.errors import ResolutionError

STABLE = 3.0
DOWN_ALL = 4.0


def seen_by(me: str, groups: Iterable[str], members: str) -> Topology:
    """The picture ``me`` has when the cluster is split into ``groups``."""
    mine = next(g for g in groups if me in g)
    reach = {a: set(mine) - {a} for a in mine}
    return analyze(reach, set(members))


def tracker(me: str, strategy: str = "static_quorum", **kw: object) -> PartitionTracker:
    return PartitionTracker(
        me, Strategy.parse(strategy), stable_after_s=STABLE, down_all_after_s=DOWN_ALL, **kw
    )


def kinds(changes: list[Change]) -> list[ChangeKind]:
    return [c.kind for c in changes]


def ts(ms: int, node: str = "a") -> Timestamp:
    return Timestamp(ms, 0, node)


def test_default_down_all_is_three_quarters_of_stable_after_at_least_4s() -> None:
    assert default_down_all_after(5.0) == 4.0
    assert default_down_all_after(20.0) == 15.0


def test_cluster_of_one_starts_primary() -> None:
    t = tracker("a")
    t.observe(seen_by("a", ["a"], "a"), 0.0)
    assert t.role is Role.PRIMARY
    assert t.reason == "starting: a cluster of one"
    assert t.refusal() is None


def test_restart_with_unreachable_members_starts_degraded_and_stays_so_under_quorum() -> None:
    t = tracker("c")
    topo = seen_by("c", ["ab", "c"], "abc")
    t.observe(topo, 2.0)
    assert t.role is Role.DEGRADED and t.since == 2.0
    assert "known members unreachable" in (t.refusal() or "")
    assert t.state() == "unstable"
    t.observe(topo, 2.0 + STABLE)
    assert t.state() == "degraded"
    assert t.role is Role.DEGRADED and t.since == 2.0
    assert "no side reaches quorum" in t.reason


def test_a_joiner_starts_degraded_even_when_alone_and_healthy() -> None:
    t = tracker("b", founder=False)
    t.observe(seen_by("b", ["b"], "b"), 1.0)
    assert t.role is Role.DEGRADED and t.since == 1.0
    assert t.reason == "starting: joining the cluster, awaiting a stable picture"
    t.observe(seen_by("b", ["ab"], "ab"), 2.0)
    changes = t.observe(seen_by("b", ["ab"], "ab"), 2.0 + STABLE)
    assert t.role is Role.PRIMARY
    assert ChangeKind.ROLE_CHANGED in kinds(changes)


def test_a_picture_changing_from_the_start_downs_all() -> None:
    t = tracker("a", founder=False)
    pictures = [seen_by("a", g, "abc") for g in (["a", "b", "c"], ["ab", "c"], ["abc"])]
    now = 0.0
    while now < STABLE + DOWN_ALL:
        t.observe(pictures[int(now) % 3], now)
        assert not t.down_all
        now += 1.0
    assert ChangeKind.DOWN_ALL in kinds(t.observe(pictures[int(now) % 3], now))
    assert t.decision is not None and not t.decision.awaiting_operator


def test_decision_ids_are_remembered_boundedly_and_loaded_ones_are_known() -> None:
    t = tracker("a", "manual")
    res = Resolution("a-1", 1, ts(5), "op", ("a",), "a")
    t.load(res, retired=True)
    assert t.receive(res, 0.0)[0] == "duplicate"
    for i in range(300):
        t.receive(Resolution(f"x-{i}", 2 + i, ts(6 + i), "op", ("a",), "x"), 0.0)
    assert len(t._seen) == 256
    assert "x-299" in t._seen and "a-1" not in t._seen


def test_a_decision_received_before_any_picture_waits_for_one_that_fits() -> None:
    t = tracker("a", "manual")
    res = Resolution("b-1", 1, ts(5, "b"), "op", ("a",), "b")
    outcome, changes = t.receive(res, 0.0)
    assert outcome == "recorded" and "(no picture yet)" in changes[0].reason
    assert not t.latest_retired
    changes = t.observe(seen_by("a", ["ab", "c"], "abc"), 1.0)
    assert ChangeKind.RESOLUTION_APPLIED in kinds(changes)
    assert t.role is Role.PRIMARY


def test_split_3_2_decides_after_stable_after_exactly() -> None:
    members = "abcde"
    nodes = {n: tracker(n) for n in members}
    for n, t in nodes.items():
        t.observe(seen_by(n, [members], members), 0.0)
        # a healthy cluster settling is not news: no decision, no heal reported
        assert t.observe(seen_by(n, [members], members), STABLE) == []
        assert t.role is Role.PRIMARY and t.settled
    split = ["abc", "de"]
    for n, t in nodes.items():
        assert ChangeKind.PICTURE_CHANGED in kinds(t.observe(seen_by(n, split, members), 10.0))
        # nothing happens before the picture is stable
        assert ChangeKind.ROLE_CHANGED not in kinds(
            t.observe(seen_by(n, split, members), 10.0 + STABLE - 0.001)
        )
        assert t.role is Role.PRIMARY and t.state() == "unstable"
    for n, t in nodes.items():
        changes = t.observe(seen_by(n, split, members), 10.0 + STABLE)
        assert ChangeKind.DECIDED in kinds(changes)
        if n in "abc":
            assert t.role is Role.PRIMARY and t.state() == "partitioned"
            assert t.survivors == frozenset("abc")
        else:
            assert t.role is Role.DEGRADED and t.state() == "degraded"
            assert t.since == 10.0 + STABLE
            assert ChangeKind.ROLE_CHANGED in kinds(changes)
        # decided once: the same picture later changes nothing
        assert t.observe(seen_by(n, split, members), 11.0 + STABLE) == []
    # heal: back to primary only once healthy for stable_after
    for n, t in nodes.items():
        t.observe(seen_by(n, [members], members), 20.0)
        assert t.state() == "healthy"
    assert nodes["d"].role is Role.DEGRADED
    for n, t in nodes.items():
        changes = t.observe(seen_by(n, [members], members), 20.0 + STABLE)
        assert t.role is Role.PRIMARY
        assert kinds(changes).count(ChangeKind.HEALED) == 1
        assert t.observe(seen_by(n, [members], members), 30.0) == []


def test_2_2_all_degraded() -> None:
    for n in "abcd":
        t = tracker(n)
        t.observe(seen_by(n, ["abcd"], "abcd"), 0.0)
        t.observe(seen_by(n, ["ab", "cd"], "abcd"), 1.0)
        t.observe(seen_by(n, ["ab", "cd"], "abcd"), 1.0 + STABLE)
        assert t.role is Role.DEGRADED, n


def test_one_way_link_is_decided_by_the_core_rules() -> None:
    # b stops hearing a; a and c hear everyone: a and b are indirectly connected
    reach = {"a": {"b", "c"}, "b": {"c"}, "c": {"a", "b"}}
    topo = analyze(reach, "abc")
    assert topo.asymmetric == {("a", "b")}
    results = {}
    for n in "abc":
        t = tracker(n)
        t.observe(analyze({x: set("abc") - {x} for x in "abc"}, "abc"), 0.0)
        t.observe(topo, 1.0)
        t.observe(topo, 1.0 + STABLE)
        results[n] = t.role
    assert results == {"a": Role.DEGRADED, "b": Role.DEGRADED, "c": Role.PRIMARY}


def test_flapping_makes_no_decision_then_downs_all_then_recovers() -> None:
    t = tracker("a")
    whole, split = seen_by("a", ["abc"], "abc"), seen_by("a", ["ab", "c"], "abc")
    t.observe(whole, 0.0)
    t.observe(whole, STABLE)
    assert t.role is Role.PRIMARY
    now, picture = 10.0, split
    flips = 0
    while now < 10.0 + STABLE + DOWN_ALL:
        changes = t.observe(picture, now)
        assert ChangeKind.DECIDED not in kinds(changes)
        assert t.role is Role.PRIMARY
        picture = whole if picture is split else split
        now += 1.0
        flips += 1
    assert flips == 7
    changes = t.observe(picture, 10.0 + STABLE + DOWN_ALL)
    assert kinds(changes) == [
        ChangeKind.PICTURE_CHANGED,
        ChangeKind.DOWN_ALL,
        ChangeKind.ROLE_CHANGED,
    ]
    assert t.role is Role.DEGRADED and t.down_all
    assert "down-all: the picture kept changing for 7 s" in (t.refusal() or "")
    # still flapping: no second down-all, no decision
    assert ChangeKind.DOWN_ALL not in kinds(t.observe(split, 17.5))
    assert t.state() == "unstable"
    assert ChangeKind.DOWN_ALL not in kinds(t.observe(whole, 18.0))
    assert t.state() == "healthy" and t.role is Role.DEGRADED
    # stable again (healthy) for stable_after: primary, healed
    changes = t.observe(whole, 18.0 + STABLE)
    assert t.role is Role.PRIMARY and not t.down_all
    assert ChangeKind.HEALED in kinds(changes) and ChangeKind.DECIDED in kinds(changes)


def test_manual_waits_alarms_once_per_picture_and_resolves_with_epochs() -> None:
    t = tracker("a", "manual")
    whole, split = seen_by("a", ["abcd"], "abcd"), seen_by("a", ["ab", "cd"], "abcd")
    t.observe(whole, 0.0)
    t.observe(whole, STABLE)
    t.observe(split, 10.0)
    changes = t.observe(split, 10.0 + STABLE)
    assert ChangeKind.ALARM in kinds(changes)
    assert t.state() == "awaiting_operator" and t.role is Role.DEGRADED
    assert ChangeKind.ALARM not in kinds(t.observe(split, 20.0))
    with pytest.raises(ResolutionError, match="span 2 components"):
        t.resolve(split, ["a", "c"], operator="o", hlc=ts(1), decision_id="x", now=20.0)
    with pytest.raises(ResolutionError, match="not members"):
        t.resolve(split, ["z"], operator="o", hlc=ts(1), decision_id="x", now=20.0)
    res, changes = t.resolve(
        split, ["b"], operator="alice@h", hlc=ts(5), decision_id="a-1", now=21.0
    )
    assert res.epoch == 1 and res.keep == ("b",) and res.origin == "a"
    assert t.role is Role.PRIMARY and t.survivors == frozenset("ab")
    assert t.since == 21.0 and t.state() == "partitioned"
    assert "(epoch 1)" in t.reason
    # an older decision loses; the same one again is a duplicate
    stale = Resolution("c-1", 0, ts(9, "c"), "bob", ("c",), "c")
    assert t.receive(stale, 22.0)[0] == "stale"
    assert t.receive(res, 22.0)[0] == "duplicate"
    assert t.role is Role.PRIMARY
    # same epoch, later HLC wins
    newer = Resolution("c-2", 1, ts(6, "c"), "bob", ("c",), "c")
    outcome, changes = t.receive(newer, 23.0)
    assert outcome == "applied"
    assert t.role is Role.DEGRADED and t.latest == newer
    assert t.next_epoch() == 2
    # healthy and stable: the decision is retired and never comes back
    t.observe(whole, 30.0)
    changes = t.observe(whole, 30.0 + STABLE)
    assert ChangeKind.RESOLUTION_RETIRED in kinds(changes)
    assert t.role is Role.PRIMARY
    t.observe(split, 40.0)
    assert t.observe(split, 40.0 + STABLE)[-1].kind is ChangeKind.ALARM
    assert t.role is Role.DEGRADED


def test_resolution_on_a_healthy_cluster_is_refused() -> None:
    t = tracker("a", "manual")
    whole = seen_by("a", ["ab"], "ab")
    t.observe(whole, 0.0)
    with pytest.raises(ResolutionError, match="healthy"):
        t.resolve(whole, ["a"], operator="o", hlc=ts(1), decision_id="x", now=1.0)


def test_a_loaded_decision_applies_when_it_fits_the_restarted_nodes_picture() -> None:
    res = Resolution("a-1", 3, ts(5), "alice", ("a",), "a")
    t = tracker("c", "manual")
    t.load(res, retired=False)
    # c restarted: it hears d but not a or b; keep={a} is another component
    topo = seen_by("c", ["ab", "cd"], "abcd")
    changes = t.observe(topo, 0.0)
    assert ChangeKind.RESOLUTION_APPLIED in kinds(changes)
    assert t.role is Role.DEGRADED and t.state() == "degraded"
    assert ChangeKind.ALARM not in kinds(t.observe(topo, 10.0))
    assert t.next_epoch() == 4
    # a retired one is remembered for its epoch only
    t2 = tracker("c", "manual")
    t2.load(res, retired=True)
    t2.observe(topo, 0.0)
    assert ChangeKind.ALARM in kinds(t2.observe(topo, STABLE))
    assert t2.next_epoch() == 4


def test_received_decision_that_does_not_fit_waits_until_it_does() -> None:
    t = tracker("a", "manual")
    res = Resolution("b-1", 1, ts(5, "b"), "op", ("a", "b"), "b")
    t.observe(seen_by("a", ["a", "b", "cd"], "abcd"), 0.0)
    assert t.receive(res, 1.0)[0] == "recorded"
    assert t.in_force is None
    changes = t.observe(seen_by("a", ["ab", "cd"], "abcd"), 2.0)
    assert ChangeKind.RESOLUTION_APPLIED in kinds(changes)
    assert t.role is Role.PRIMARY


def test_observer_is_never_primary() -> None:
    t = tracker("o", observer=True)
    topo = analyze({"a": {"b"}, "b": {"a"}}, "ab")  # o is not a member
    t.observe(topo, 0.0)
    assert t.reason == "observer: never primary"
    t.observe(topo, STABLE)
    assert t.role is Role.DEGRADED
    assert t.refusal() is not None and "observer" in t.refusal()  # type: ignore[operator]


def test_resolution_round_trips_through_a_dict() -> None:
    res = Resolution("a-" + "x" * 300, 7, ts(5), "alice@host", ("a", "b"), "a", "why")
    assert Resolution.from_dict(res.to_dict()) == res
    with pytest.raises(ValueError, match="malformed"):
        Resolution.from_dict({"epoch": 1})
    for bad in (0, -1, "1", True):
        with pytest.raises(ValueError, match="epoch must be an int >= 1"):
            Resolution.from_dict({**res.to_dict(), "epoch": bad})
    assert Resolution.from_dict({**res.to_dict(), "epoch": 1}).epoch == 1
    with pytest.raises(ValueError, match="malformed"):
        Resolution.from_dict({**res.to_dict(), "hlc": [1, 2]})


# --- properties ----------------------------------------------------------------------

MEMBERS = "abcde"


@st.composite
def splits(draw: st.DrawFn) -> list[str]:
    """A random split of MEMBERS into groups."""
    labels = draw(st.lists(st.integers(0, 3), min_size=len(MEMBERS), max_size=len(MEMBERS)))
    groups: dict[int, str] = {}
    for node, label in zip(MEMBERS, labels, strict=True):
        groups[label] = groups.get(label, "") + node
    return list(groups.values())


def assert_no_split_brain(nodes: dict[str, PartitionTracker]) -> None:
    primaries = [t for t in nodes.values() if t.role is Role.PRIMARY]
    for p in primaries:
        assert p.me in p.survivors
        for q in primaries:
            assert p.survivors & q.survivors, (p.me, p.survivors, q.me, q.survivors)


@settings(max_examples=150, deadline=None)
@given(
    strategy=st.sampled_from(["static_quorum", "dynamic_weights", "manual"]),
    steps=st.lists(
        st.tuples(splits(), st.floats(0.1, 12.0, allow_nan=False)), min_size=1, max_size=25
    ),
)
def test_never_two_primaries_with_disjoint_survivors(
    strategy: str, steps: list[tuple[list[str], float]]
) -> None:
    nodes = {n: tracker(n, strategy) for n in MEMBERS}
    now = 0.0
    for n, t in nodes.items():
        t.observe(seen_by(n, [MEMBERS], MEMBERS), now)
    for groups, dt in steps:
        # the picture holds for dt; every node checks once a second
        end = now + dt
        while now < end:
            for n, t in nodes.items():
                t.observe(seen_by(n, groups, MEMBERS), now)
            assert_no_split_brain(nodes)
            now = min(now + 1.0, end) if now + 1.0 < end else end + 1e-9
    for n, t in nodes.items():
        t.observe(seen_by(n, [MEMBERS], MEMBERS), now)
        t.observe(seen_by(n, [MEMBERS], MEMBERS), now + STABLE + 0.001)
        assert t.role is Role.PRIMARY
    assert_no_split_brain(nodes)


class TrackerMachine(RuleBasedStateMachine):
    """One tracker against a model of the rules: when roles may change, and to what."""

    def __init__(self) -> None:
        super().__init__()
        self.t = tracker("a", "manual")
        self.now = 0.0
        self.picture = seen_by("a", [MEMBERS], MEMBERS)
        self.t.observe(self.picture, self.now)
        self.last_change = 0.0
        self.unstable_since: float | None = 0.0
        self.hlc = 0
        self.epochs: list[int] = []

    @rule(groups=splits())
    def change_picture(self, groups: list[str]) -> None:
        new = seen_by("a", groups, MEMBERS)
        role_before = self.t.role
        changes = self.t.observe(new, self.now)
        if (new.members, new.components) != (self.picture.members, self.picture.components):
            self.last_change = self.now
            if self.unstable_since is None:
                self.unstable_since = self.now
            assert ChangeKind.PICTURE_CHANGED in kinds(changes)
            # a new picture changes the role only through an operator decision in force
            if self.t.in_force is None:
                assert self.t.role is role_before
            else:
                mine = new.component_of("a") or frozenset()
                keeps = bool(mine & set(self.t.in_force.keep))
                assert self.t.role is (Role.PRIMARY if keeps else Role.DEGRADED)
        self.picture = new

    @rule(dt=st.floats(0.0, 6.0, allow_nan=False))
    def wait(self, dt: float) -> None:
        self.now += dt
        changes = self.t.observe(self.picture, self.now)
        stable = self.now - self.last_change >= STABLE
        if ChangeKind.DECIDED in kinds(changes) and self.t.in_force is None:
            assert stable
        if stable:
            # settled, with or without a decision in force: instability starts
            # again only with the next change of picture
            self.unstable_since = None
        if stable and self.t.in_force is None:
            assert self.t.settled and not self.t.down_all
            if self.picture.healthy:
                assert self.t.role is Role.PRIMARY
            else:
                # manual: nobody survives without the operator
                assert self.t.role is Role.DEGRADED
        if (
            self.unstable_since is not None
            and self.now - self.unstable_since >= STABLE + DOWN_ALL
            and not stable
            and self.t.in_force is None
        ):
            assert self.t.down_all and self.t.role is Role.DEGRADED

    @precondition(lambda self: not self.picture.healthy)
    @rule(data=st.data())
    def operator_resolves(self, data: st.DataObject) -> None:
        component = data.draw(st.sampled_from(self.picture.components))
        self.hlc += 1
        res, _ = self.t.resolve(
            self.picture,
            [min(component)],
            operator="op",
            hlc=ts(self.hlc),
            decision_id=f"a-{self.hlc}",
            now=self.now,
        )
        self.epochs.append(res.epoch)
        assert self.t.role is (Role.PRIMARY if "a" in component else Role.DEGRADED)
        self.unstable_since = None

    @invariant()
    def epochs_only_grow(self) -> None:
        assert self.epochs == sorted(set(self.epochs))

    @invariant()
    def primary_means_survivor(self) -> None:
        if self.t.role is Role.PRIMARY:
            assert "a" in self.t.survivors
            assert self.t.refusal() is None
        else:
            assert self.t.refusal()


TrackerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_tracker_machine = TrackerMachine.TestCase


def test_a_retired_decision_carries_its_epoch_but_is_never_applied() -> None:
    t = tracker("a", "manual")
    split = seen_by("a", ["ab", "c"], "abc")
    t.observe(split, 0.0)
    t.observe(split, STABLE)
    old = Resolution("b-1", 4, ts(5, "b"), "op", ("a",), "b")
    outcome, _ = t.receive(old, 10.0, retired=True)
    assert outcome == "recorded" and t.latest == old and t.latest_retired
    assert t.in_force is None and t.state() == "awaiting_operator"
    assert t.next_epoch() == 5
