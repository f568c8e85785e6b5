"""Partitions: SCCs, topology analysis and every strategy as decision tables.

Node names are single letters; a situation is a ``reach`` map (who hears
whom) and the member list.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.partition import (
    Decision,
    Strategy,
    Topology,
    analyze,
    decide,
    resolve,
    strongly_connected_components,
)
from node.errors import ConfigError, PartitionConfigError, ResolutionError

Reach = dict[str, set[str]]


def mesh(*groups: str) -> Reach:
    """Every node of a group hears every other node of that group."""
    return {a: set(group) - {a} for group in groups for a in group}


def cut(reach: Reach, *pairs: str) -> Reach:
    """Break links both ways: "ab" means a and b no longer hear each other."""
    for pair in pairs:
        a, b = pair[0], pair[1]
        reach[a].discard(b)
        reach[b].discard(a)
    return reach


def deaf(reach: Reach, *pairs: str) -> Reach:
    """Break links one way: "ab" means a no longer hears b (b still hears a)."""
    for pair in pairs:
        a, b = pair[0], pair[1]
        reach[a].discard(b)
    return reach


def without_view(reach: Reach, *nodes: str) -> Reach:
    for node in nodes:
        del reach[node]
    return reach


def hears_also(reach: Reach, *pairs: str) -> Reach:
    for pair in pairs:
        a, b = pair[0], pair[1]
        reach[a].add(b)
    return reach


SITUATIONS: dict[str, tuple[Reach, str]] = {
    "healthy5": (mesh("abcde"), "abcde"),
    "split_3_2": (mesh("abc", "de"), "abcde"),
    "split_2_2_1": (mesh("ab", "cd", "e"), "abcde"),
    "split_2_2": (mesh("ab", "cd"), "abcd"),
    "split_bc_ad": (mesh("bc", "ad"), "abcd"),
    # A-C-B: C hears both, A and B are cut from each other.
    "acb": (cut(mesh("abc"), "ab"), "abc"),
    # Akka's {A, (B, C)} | {D, E}: clean split and an indirect pair at once.
    "acb_split": (cut(mesh("abc", "de"), "bc"), "abcde"),
    "cut_ab_in_5": (cut(mesh("abcde"), "ab"), "abcde"),
    # b stops hearing a; a still hears b; c hears both.
    "oneway_in_mesh": (deaf(mesh("abc"), "ba"), "abc"),
    # Two nodes, one-way: a hears b, b does not hear a.
    "oneway_pair": ({"a": {"b"}}, "ab"),
    # d hears a across a clean 3|2 split.
    "oneway_across_split": (hears_also(mesh("abc", "de"), "da"), "abcde"),
    # e sent no view at all (hears nobody) while everyone hears e.
    "no_view": (without_view(mesh("abcde"), "e"), "abcde"),
    # e crashed: nobody hears it and it reports nothing.
    "crashed": (mesh("abcd"), "abcde"),
    "single": ({}, "a"),
}


def topology(name: str) -> Topology:
    reach, members = SITUATIONS[name]
    return analyze(reach, list(members))


def groups(*names: str) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(n) for n in names)


# --- analyze ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "components", "indirect", "asymmetric"),
    [
        ("healthy5", ["abcde"], "", set()),
        ("split_3_2", ["abc", "de"], "", set()),
        ("split_2_2_1", ["ab", "cd", "e"], "", set()),
        ("split_2_2", ["ab", "cd"], "", set()),
        ("acb", ["c"], "ab", set()),
        ("acb_split", ["a", "de"], "bc", set()),
        ("cut_ab_in_5", ["cde"], "ab", set()),
        ("oneway_in_mesh", ["c"], "ab", {("a", "b")}),
        ("oneway_pair", ["a", "b"], "", {("a", "b")}),
        ("oneway_across_split", ["abc", "de"], "", {("d", "a")}),
        ("no_view", ["abcd", "e"], "", {(x, "e") for x in "abcd"}),
        ("crashed", ["abcd", "e"], "", set()),
        ("single", ["a"], "", set()),
    ],
)
def test_analyze_table(
    name: str, components: list[str], indirect: str, asymmetric: set[tuple[str, str]]
) -> None:
    topo = topology(name)
    assert topo.components == groups(*components)
    assert topo.indirect == frozenset(indirect)
    assert topo.asymmetric == frozenset(asymmetric)
    assert topo.healthy == (name in ("healthy5", "single"))


def test_sides_hold_the_indirect_nodes_of_their_scc() -> None:
    topo = topology("acb_split")
    assert topo.sides == groups("abc", "de")
    assert topo.sccs == groups("abc", "de")
    assert topo.component_of("a") == frozenset("a")
    assert topo.component_of("b") is None
    assert topo.component_of("zz") is None


def test_scc_whose_nodes_are_all_indirect_has_no_component() -> None:
    # A one-way ring: everyone in one SCC, nobody mutual.
    topo = analyze({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "abc")
    assert topo.sccs == groups("abc")
    assert topo.components == ()
    assert topo.indirect == frozenset("abc")
    assert not topo.healthy


def test_non_members_and_self_links_are_ignored() -> None:
    reach = {"a": {"a", "b", "x"}, "b": {"a", "y"}, "x": {"a", "b"}}
    topo = analyze(reach, ["a", "b"])
    assert topo.members == frozenset("ab")
    assert topo.components == groups("ab")
    assert topo.asymmetric == frozenset()
    assert topo.healthy


def test_no_members() -> None:
    topo = analyze({"a": {"b"}}, [])
    assert topo.components == ()
    assert not topo.healthy
    for strategy in Strategy:
        decision = decide(strategy, topo)
        assert decision.survivors == frozenset()


# --- static_quorum ------------------------------------------------------------------------

ALL_DOWN = None


def check(decision: Decision, topo: Topology, survivors: str | None) -> None:
    expected = frozenset(survivors or "")
    assert decision.survivors == expected, decision.reason
    assert decision.downed == topo.members - expected
    assert not decision.awaiting_operator
    assert decision.reason


@pytest.mark.parametrize(
    ("name", "quorum_size", "survivors"),
    [
        ("healthy5", None, "abcde"),
        ("healthy5", 5, "abcde"),
        ("healthy5", 6, "abcde"),  # a quorum above the membership still keeps a healthy mesh
        ("split_3_2", None, "abc"),
        ("split_3_2", 4, ALL_DOWN),
        ("split_2_2_1", None, ALL_DOWN),
        ("split_2_2", None, ALL_DOWN),
        ("split_2_2", 3, ALL_DOWN),
        ("acb", None, "c"),
        ("acb", 3, "c"),
        ("acb_split", None, "a"),
        ("cut_ab_in_5", None, "cde"),
        ("oneway_in_mesh", None, "c"),
        ("oneway_pair", None, ALL_DOWN),
        ("oneway_across_split", None, "abc"),
        ("no_view", None, "abcd"),
        ("no_view", 5, ALL_DOWN),
        ("crashed", None, "abcd"),
        ("crashed", 5, ALL_DOWN),
        ("single", None, "a"),
    ],
)
def test_static_quorum_table(name: str, quorum_size: int | None, survivors: str | None) -> None:
    topo = topology(name)
    decision = decide(Strategy.STATIC_QUORUM, topo, quorum_size=quorum_size)
    check(decision, topo, survivors)
    assert decision.strategy is Strategy.STATIC_QUORUM


def test_static_quorum_reasons() -> None:
    assert decide("static_quorum", topology("split_3_2")).reason == (
        "static_quorum: {a, b, c} kept: 3 of 5 members, quorum 3"
    )
    assert decide("static_quorum", topology("acb_split")).reason == (
        "static_quorum: indirectly connected {b, c} downed; {a} kept: with the 2 indirectly "
        "connected nodes it reaches, its side has 3 of 5 members, quorum 3"
    )
    assert decide("static_quorum", topology("split_2_2_1")).reason == (
        "static_quorum: no side reaches quorum 3 of 5 (largest: 2); all downed"
    )
    ring = analyze({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "abc")
    assert "all indirectly connected" in decide("static_quorum", ring).reason


@pytest.mark.parametrize(
    ("members", "quorum_size"),
    [(4, 2), (5, 2), (6, 3), (2, 1), (1, 0), (5, -1)],
)
def test_quorum_allowing_two_winners_is_a_config_error(members: int, quorum_size: int) -> None:
    nodes = "abcdef"[:members]
    topo = analyze(mesh(nodes), nodes)  # healthy: checked anyway
    with pytest.raises(PartitionConfigError, match="two sides"):
        decide(Strategy.STATIC_QUORUM, topo, quorum_size=quorum_size)


@pytest.mark.parametrize("quorum_size", [2.5, "3", True])
def test_quorum_must_be_an_int(quorum_size: object) -> None:
    with pytest.raises(PartitionConfigError, match="int"):
        decide(Strategy.STATIC_QUORUM, topology("split_3_2"), quorum_size=quorum_size)  # type: ignore[arg-type]


# --- dynamic_weights ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "weights", "survivors"),
    [
        ("healthy5", None, "abcde"),
        ("healthy5", {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0, "e": 0.0}, "abcde"),
        ("split_3_2", None, "abc"),
        ("split_3_2", {"d": 3.0, "e": 3.0}, "de"),
        ("split_3_2", {"d": 2.0}, ALL_DOWN),  # 3 vs 3 of 6: neither above half
        ("split_3_2", {"d": 1.5}, "abc"),  # 3 of 5.5
        ("split_2_2_1", None, ALL_DOWN),
        ("split_2_2_1", {"e": 10.0}, "e"),
        ("split_2_2", None, ALL_DOWN),
        ("split_2_2", {"a": 1.5}, "ab"),
        ("acb", None, "c"),
        ("acb", {"a": 0.0, "b": 0.0}, "c"),
        ("acb_split", None, "a"),
        ("acb_split", {"d": 2.0}, ALL_DOWN),  # 3 vs 3 of 6
        ("cut_ab_in_5", None, "cde"),
        ("oneway_in_mesh", None, "c"),
        ("oneway_pair", None, ALL_DOWN),
        ("oneway_pair", {"b": 2.0}, "b"),
        ("oneway_across_split", None, "abc"),
        ("no_view", None, "abcd"),
        ("no_view", {"e": 5.0}, "e"),
        ("crashed", None, "abcd"),
        ("crashed", {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0, "e": 0.0}, ALL_DOWN),
        ("split_3_2", {"zz": 100.0}, "abc"),  # weights of non-members are ignored
    ],
)
def test_dynamic_weights_table(
    name: str, weights: dict[str, float] | None, survivors: str | None
) -> None:
    topo = topology(name)
    decision = decide(Strategy.DYNAMIC_WEIGHTS, topo, weights=weights)
    check(decision, topo, survivors)


def test_more_than_half_is_exact() -> None:
    # As doubles, 0.1 * 3 is a hair above 0.3, so {a, b, c} does weigh more than
    # half; summed in floats the two sides would look equal and nobody would win.
    topo = analyze(mesh("abc", "d"), "abcd")
    weights = {"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.3}
    naive_side = 0.1 + 0.1 + 0.1
    assert naive_side * 2 == naive_side + 0.3  # the float trap
    decision = decide(Strategy.DYNAMIC_WEIGHTS, topo, weights=weights)
    assert decision.survivors == frozenset("abc")


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan"), True, "1"])
def test_bad_weights_are_config_errors(bad: object) -> None:
    with pytest.raises(PartitionConfigError, match="weight of 'a'"):
        decide(Strategy.DYNAMIC_WEIGHTS, topology("healthy5"), weights={"a": bad})  # type: ignore[dict-item]


# --- vsm_health ---------------------------------------------------------------------------


def even(nodes: str, value: float) -> dict[str, float]:
    return dict.fromkeys(nodes, value)


@pytest.mark.parametrize(
    ("name", "health", "survivors"),
    [
        ("healthy5", None, "abcde"),
        ("split_3_2", {**even("abc", 0.6), **even("de", 0.9)}, "de"),  # healthier beats larger
        ("split_3_2", even("abcde", 0.9), "abc"),  # tie: larger
        ("split_2_2", even("abcd", 0.8), "ab"),  # tie, same size: lowest name
        ("split_bc_ad", even("abcd", 0.8), "ad"),  # lowest name is a, in {a, d}
        ("split_3_2", even("abcde", 0.4), ALL_DOWN),
        ("split_3_2", even("de", 0.5), "de"),  # exactly 0.5 is viable; unreported counts as 0
        ("split_3_2", {"a": 1.0, "b": 0.0, "c": 0.5, "d": 0.4, "e": 0.4}, "abc"),
        ("split_3_2", None, ALL_DOWN),
        ("split_2_2_1", {**even("ab", 0.7), "c": 0.9, "d": 0.2, "e": 1.0}, "e"),
        ("acb", {"c": 0.9}, "c"),
        ("acb", {"a": 1.0, "b": 1.0, "c": 0.4}, ALL_DOWN),  # indirect nodes don't lift C
        ("acb_split", {**even("abc", 0.6), **even("de", 0.7)}, "de"),
        ("cut_ab_in_5", even("abcde", 0.9), "cde"),
        ("oneway_in_mesh", even("abc", 0.9), "c"),
        ("oneway_pair", even("ab", 0.9), "a"),
        ("oneway_across_split", even("abcde", 0.9), "abc"),
        ("no_view", {**even("abcd", 0.7), "e": 0.8}, "e"),
        ("no_view", even("abcde", 0.7), "abcd"),
        ("crashed", even("abcd", 0.6), "abcd"),
    ],
)
def test_vsm_health_table(
    name: str, health: dict[str, float] | None, survivors: str | None
) -> None:
    topo = topology(name)
    decision = decide(Strategy.VSM_HEALTH, topo, health=health)
    check(decision, topo, survivors)


def test_health_ties_are_exact() -> None:
    # Three 0.9s and two 0.9s have the same mean exactly; larger wins.
    topo = analyze(mesh("abc", "de"), "abcde")
    decision = decide(Strategy.VSM_HEALTH, topo, health=even("abcde", 0.9))
    assert decision.survivors == frozenset("abc")
    assert "mean health 0.9" in decision.reason


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan"), "high", None])
def test_bad_health_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="health of 'a'"):
        decide(Strategy.VSM_HEALTH, topology("healthy5"), health={"a": bad})  # type: ignore[dict-item]


# --- manual -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SITUATIONS))
def test_manual_waits_for_the_operator(name: str) -> None:
    topo = topology(name)
    decision = decide(Strategy.MANUAL, topo)
    if topo.healthy:
        check(decision, topo, "".join(sorted(topo.members)))
    else:
        assert decision.awaiting_operator
        assert decision.survivors == frozenset()
        assert decision.downed == topo.indirect
        assert "awaiting" in decision.reason


@pytest.mark.parametrize(
    ("name", "keep", "survivors"),
    [
        ("split_3_2", ["d"], "de"),
        ("split_3_2", ["a", "b"], "abc"),
        ("split_3_2", "d", "de"),  # a single name as a string
        ("split_2_2_1", {"e"}, "e"),
        ("acb", ["c"], "c"),
        ("acb_split", ("d", "e"), "de"),
        ("oneway_pair", ["b"], "b"),
        ("healthy5", ["a"], "abcde"),
    ],
)
def test_resolve_table(name: str, keep: Collection[str], survivors: str) -> None:
    topo = topology(name)
    decision = resolve(topo, keep)
    check(decision, topo, survivors)
    assert decision.strategy is Strategy.MANUAL
    assert "operator kept" in decision.reason


@pytest.mark.parametrize(
    ("name", "keep", "match"),
    [
        ("split_3_2", ["a", "d"], "span 2 components"),
        ("split_2_2_1", ["a", "c", "e"], "span 3 components"),
        ("split_3_2", [], "at least one"),
        ("split_3_2", ["zz"], "not members"),
        ("acb", ["a"], "indirectly connected"),
        ("acb", ["a", "c"], "indirectly connected"),
    ],
)
def test_resolve_errors(name: str, keep: Collection[str], match: str) -> None:
    with pytest.raises(ResolutionError, match=match):
        resolve(topology(name), keep)


# --- strategies in general ----------------------------------------------------------------


def test_strategy_values_and_parse() -> None:
    assert [s.value for s in Strategy] == [
        "static_quorum",
        "dynamic_weights",
        "vsm_health",
        "manual",
    ]
    assert Strategy.parse("vsm_health") is Strategy.VSM_HEALTH
    assert Strategy.parse(Strategy.MANUAL) is Strategy.MANUAL
    with pytest.raises(ConfigError, match="unknown partition strategy"):
        Strategy.parse("keep_oldest")
    with pytest.raises(ConfigError):
        decide("keep_oldest", topology("healthy5"))


@pytest.mark.parametrize("strategy", list(Strategy))
def test_healthy_keeps_everyone_whatever_the_strategy(strategy: Strategy) -> None:
    topo = topology("healthy5")
    decision = decide(strategy, topo)  # even vsm_health with no health reported
    check(decision, topo, "abcde")
    assert decision.reason == "healthy: all 5 members hear each other"


def test_settings_of_other_strategies_are_ignored() -> None:
    topo = topology("split_3_2")
    decision = decide(Strategy.DYNAMIC_WEIGHTS, topo, quorum_size=1, health={"a": 5.0})
    assert decision.survivors == frozenset("abc")


# --- SCCs ---------------------------------------------------------------------------------


def test_scc_small_cases() -> None:
    assert strongly_connected_components({}) == []
    assert strongly_connected_components({"a": []}) == [frozenset("a")]
    assert strongly_connected_components({"a": ["a"]}) == [frozenset("a")]
    result = strongly_connected_components({"a": ["b"], "b": ["a", "c"]})
    assert sorted(result, key=min) == [frozenset("ab"), frozenset("c")]
    # Nodes that only appear as targets are included; emitted before their sources.
    assert strongly_connected_components({"a": ("x",)}) == [frozenset("x"), frozenset("a")]
    # Generators are fine as adjacency.
    assert strongly_connected_components({"a": (n for n in "b"), "b": iter("a")}) == [
        frozenset("ab")
    ]


def test_tarjan_on_a_10000_node_chain_and_cycle() -> None:
    n = 10_000
    chain = {f"n{i}": [f"n{i + 1}"] for i in range(n - 1)}
    components = strongly_connected_components(chain)
    assert len(components) == n
    assert components[0] == frozenset({f"n{n - 1}"})
    cycle = {f"n{i}": [f"n{(i + 1) % n}"] for i in range(n)}
    assert strongly_connected_components(cycle) == [frozenset(cycle)]
    # And analysis of a 10,000-node ring where neighbours hear each other.
    ring = {f"n{i}": {f"n{(i + 1) % n}", f"n{(i - 1) % n}"} for i in range(n)}
    topo = analyze(ring, list(ring))
    assert topo.sccs == (frozenset(ring),)
    assert topo.components == ()
    assert len(topo.indirect) == n


def closure(graph: Mapping[str, Collection[str]], start: str) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for succ in graph.get(todo.pop(), ()):
            if succ not in seen:
                seen.add(succ)
                todo.append(succ)
    return seen


NAMES = [f"n{i}" for i in range(9)]
graphs = st.dictionaries(
    st.sampled_from(NAMES), st.lists(st.sampled_from(NAMES), max_size=9), max_size=9
)


@given(graphs)
def test_scc_matches_brute_force_closure(graph: dict[str, list[str]]) -> None:
    components = strongly_connected_components(graph)
    nodes = set(graph) | {t for targets in graph.values() for t in targets}
    # Every node exactly once.
    assert sorted(n for c in components for n in c) == sorted(nodes)
    reach = {n: closure(graph, n) for n in nodes}
    expected = {frozenset(m for m in reach[n] if n in reach[m]) for n in nodes}
    assert set(components) == expected
    # Reverse topological order: nothing reaches a component emitted earlier... later.
    position = {n: i for i, c in enumerate(components) for n in c}
    for a, targets in graph.items():
        for b in targets:
            assert position[b] <= position[a]


Situation = tuple[list[str], dict[str, set[str]]]

# Arbitrary views, possibly naming non-members (which analyze ignores).
random_situations = st.integers(0, 8).flatmap(
    lambda n: st.tuples(
        st.just(NAMES[:n]),
        st.dictionaries(st.sampled_from(NAMES), st.sets(st.sampled_from(NAMES)), max_size=9),
    )
)


def _perturbed_split(
    n: int, group_of: list[int], broken: list[tuple[int, int]], extra: list[tuple[int, int]]
) -> Situation:
    members = NAMES[:n]
    reach = {
        a: {b for j, b in enumerate(members) if group_of[j] == group_of[i] and b != a}
        for i, a in enumerate(members)
    }
    for i, j in broken:
        reach[members[i % n]].discard(members[j % n])
    for i, j in extra:
        reach[members[i % n]].add(members[j % n])
    return members, reach


# Clean splits into up to 4 groups, then a few links broken or added one way:
# the situations the strategies are for, rather than random noise.
split_situations = st.integers(1, 8).flatmap(
    lambda n: st.builds(
        _perturbed_split,
        st.just(n),
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=3),
        st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=2),
    )
)
situations = st.one_of(random_situations, split_situations)


@given(situations)
def test_analysis_partitions_members_into_cliques_and_indirect(
    situation: Situation,
) -> None:
    members, reach = situation
    topo = analyze(reach, members)
    nodes = set(members)

    def hears(a: str, b: str) -> bool:
        return a in nodes and b in nodes and a != b and b in reach.get(a, set())

    placed = [n for c in topo.components for n in c] + list(topo.indirect)
    assert sorted(placed) == sorted(nodes)
    for component, side in zip(topo.components, topo.sides, strict=True):
        assert side in topo.sccs
        assert component <= side
        assert side - component <= topo.indirect
        for a in component:
            for b in component - {a}:
                assert hears(a, b) and hears(b, a)
    for scc in topo.sccs:
        for a in scc & topo.indirect:
            assert any(not (hears(a, b) and hears(b, a)) for b in scc - {a})
    assert topo.asymmetric == {
        (a, b) for a in nodes for b in nodes if hears(a, b) and not hears(b, a)
    }
    assert topo.healthy == (bool(nodes) and topo.components == (frozenset(nodes),))


@given(situations, st.randoms(use_true_random=False))
def test_analysis_does_not_depend_on_input_order(situation: Situation, rnd: random.Random) -> None:
    members, reach = situation
    keys = list(reach)
    rnd.shuffle(keys)
    shuffled = {k: sorted(reach[k], key=lambda _: rnd.random()) for k in keys}
    assert analyze(shuffled, list(reversed(members))) == analyze(reach, members)


@settings(max_examples=200)
@given(
    situations,
    st.sampled_from(list(Strategy)),
    st.data(),
)
def test_at_most_one_component_ever_survives(
    situation: Situation,
    strategy: Strategy,
    data: st.DataObject,
) -> None:
    members, reach = situation
    topo = analyze(reach, members)
    n = len(members)
    quorum = data.draw(st.integers(n // 2 + 1, n + 1), label="quorum")
    unit = st.floats(0.0, 1.0)
    weights = data.draw(st.dictionaries(st.sampled_from(NAMES), st.floats(0.0, 10.0)))
    health = data.draw(st.dictionaries(st.sampled_from(NAMES), unit))
    decision = decide(strategy, topo, quorum_size=quorum, weights=weights, health=health)
    assert decision.strategy is strategy
    if decision.awaiting_operator:
        assert strategy is Strategy.MANUAL and not topo.healthy
        assert decision.survivors == frozenset()
        assert decision.downed == topo.indirect
        return
    assert decision.survivors | decision.downed == topo.members
    assert not decision.survivors & decision.downed
    assert not decision.survivors or decision.survivors in topo.components
    assert not decision.survivors & topo.indirect
    if topo.healthy:
        assert decision.survivors == topo.members
    if strategy is Strategy.STATIC_QUORUM and decision.survivors and not topo.healthy:
        side = topo.sides[topo.components.index(decision.survivors)]
        assert len(side) >= quorum
    # And whatever the operator picks, the same holds.
    for component in topo.components:
        resolved = resolve(topo, sorted(component)[:1])
        assert resolved.survivors == component
        assert resolved.downed == topo.members - component


@given(situations)
def test_two_sides_never_both_win_static_quorum(
    situation: Situation,
) -> None:
    # Each side decides on the same topology; the winners must agree.
    members, reach = situation
    topo = analyze(reach, members)
    winners = {
        decide(Strategy.STATIC_QUORUM, topo, quorum_size=q).survivors
        for q in range(len(members) // 2 + 1, len(members) + 2)
    } - {frozenset()}
    assert len(winners) <= 1
