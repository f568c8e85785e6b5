"""Reachability graph, partitions and split-brain decisions.

Modelled on Akka's split brain resolver: the picture of who hears whom goes
in, a :class:`Decision` (who survives, who is downed) comes out. Pure: no
clock, no I/O; the runtime decides *when* the picture is stable enough.

The picture
-----------
``reach[a]`` is the set of members whose heartbeats ``a`` currently hears.
Only members count: a member with no entry hears nobody, names that are not
members (as keys or as targets) are ignored, and hearing oneself means
nothing. Read "a hears b" as a directed edge a -> b.

:func:`analyze` turns it into a :class:`Topology`:

- ``asymmetric``: pairs ``(a, b)`` where a hears b but b does not hear a.
- ``sccs``: strongly connected components of the graph (Tarjan). Nodes in
  different SCCs cannot have a conversation, not even through third parties.
- ``indirect``: within one SCC, every node that is part of a *non-mutual
  pair* (two nodes of the SCC that do not both hear each other: a cut link, or
  a one-way link) is *indirectly connected*. This is Akka's rule: there a node
  is indirectly connected when it observes someone as unreachable and is
  itself observed unreachable, or is observed unreachable while still seeing
  the gossip through a third party; both ends of a broken link inside a
  connected group are marked, whichever end is at fault. Example: A-C-B with
  the A-B link cut (both ways, or just one way) marks A and B; C is kept.
- ``components``: what remains of each SCC once its indirect nodes are
  removed. Every two remaining nodes of an SCC are a mutual pair, so each
  remainder is a group in which all hear each other, and an SCC yields at most
  one component (none when all its nodes are indirect). Two nodes joined only
  by a one-way link are never in one component: if they share an SCC both are
  indirect, otherwise they are in different SCCs.
- ``sides``: aligned with ``components``, the SCC each component came from,
  i.e. the component plus the indirectly connected nodes that still reach it.
- ``healthy``: a single component holding every member.

Members are partitioned exactly once: each is in one component or in
``indirect``. Removing every node that touches a broken pair may down more
than a minimum cut would (in a star it keeps only the hub), but it is
deterministic, cheap (linear in the edges), needs no tie-breaking, and agrees
with Akka.

The decision
------------
:func:`decide` follows Akka: indirectly connected nodes are downed first, then
the strategy picks at most one component to survive; every other member is
downed. A healthy topology keeps everyone, whatever the strategy.

- ``static_quorum``: the component whose side has at least ``quorum_size``
  members survives. Sides are counted whole, as Akka counts indirectly
  connected nodes on the reachable side while downing them; they are disjoint,
  so with ``quorum_size`` above half the members at most one side qualifies
  (a smaller one is a PartitionConfigError; a quorum above the membership is
  allowed, and then no partition can be survived). With A-C-B and A-B cut in
  a cluster of 3, C survives alone; split {A, (B, C)} | {D, E} with B-C cut
  as well, and A alone survives (Akka's own example).
- ``dynamic_weights``: the component whose side weighs more than half of the
  total weight of all members survives; weights default to 1.0.
- ``vsm_health``: among components whose own mean health is at least 0.5, the
  healthiest survives (ties: more nodes, then the lowest node name). Health is
  about the nodes that would carry on, so only the component counts, and a
  member without a reported health counts as 0.0: a side cannot win on health
  it has not shown.
- ``manual``: nobody survives by itself; ``awaiting_operator`` is set (the
  indirect nodes are already listed as downed: no resolution can keep them)
  and :func:`resolve` applies the operator's choice.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Iterable, Mapping
from fractions import Fraction

import attrs

from node.errors import ConfigError, PartitionConfigError, ResolutionError

#: A vsm_health component needs at least this mean health to be viable.
MIN_VIABLE_HEALTH = 0.5
_MIN_VIABLE = Fraction(MIN_VIABLE_HEALTH)
DEFAULT_WEIGHT = 1.0
#: Health assumed for a member that reported none.
DEFAULT_HEALTH = 0.0
# Reasons are read by people and written to logs; long node lists are cut.
_MAX_NAMES_IN_REASON = 8


class Strategy(enum.Enum):
    """How a partition is resolved."""

    STATIC_QUORUM = "static_quorum"
    DYNAMIC_WEIGHTS = "dynamic_weights"
    VSM_HEALTH = "vsm_health"
    MANUAL = "manual"

    @classmethod
    def parse(cls, value: Strategy | str) -> Strategy:
        """A Strategy from itself or its name; ConfigError for anything else."""
        if isinstance(value, Strategy):
            return value
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ConfigError(f"unknown partition strategy {value!r} (known: {names})") from None


@attrs.frozen
class Topology:
    """The reachability picture, analysed. Build it with :func:`analyze`.

    Tuples of groups are ordered by their lowest node name.
    """

    members: frozenset[str]
    components: tuple[frozenset[str], ...]
    sides: tuple[frozenset[str], ...]
    sccs: tuple[frozenset[str], ...]
    asymmetric: frozenset[tuple[str, str]]
    indirect: frozenset[str]
    healthy: bool

    def component_of(self, node: str) -> frozenset[str] | None:
        """The component holding ``node``; None if it is indirect or not a member."""
        for component in self.components:
            if node in component:
                return component
        return None


@attrs.frozen
class Decision:
    """What to do about the current topology.

    Unless ``awaiting_operator``, ``survivors`` and ``downed`` split the
    members between them, and ``survivors`` is empty or exactly one component.
    While awaiting the operator nobody survives and only indirectly connected
    nodes are downed; the rest wait.
    """

    survivors: frozenset[str]
    downed: frozenset[str]
    awaiting_operator: bool
    reason: str
    strategy: Strategy


# --- graphs -------------------------------------------------------------------------


def strongly_connected_components(graph: Mapping[str, Iterable[str]]) -> list[frozenset[str]]:
    """Tarjan's strongly connected components, without recursion.

    Every node appears in exactly one component, singletons included, and so
    do nodes that only appear as targets. Components come out in Tarjan's
    order: a component is emitted after every component it reaches.
    """
    adjacency: dict[str, list[str]] = {node: list(targets) for node, targets in graph.items()}
    for targets in list(adjacency.values()):
        for target in targets:
            adjacency.setdefault(target, [])

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[frozenset[str]] = []

    for root in adjacency:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        # Each frame is a node and the iterator over its remaining successors:
        # the explicit form of the recursive algorithm's call stack.
        work = [(root, iter(adjacency[root]))]
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(adjacency[succ])))
                    break
                if succ in on_stack and index[succ] < low[node]:
                    low[node] = index[succ]
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    if low[node] < low[parent]:
                        low[parent] = low[node]
                if low[node] == index[node]:
                    members: list[str] = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        members.append(top)
                        if top == node:
                            break
                    result.append(frozenset(members))
    return result


def analyze(reach: Mapping[str, Collection[str]], members: Collection[str]) -> Topology:
    """Analyse who hears whom; see the module docstring for the definitions."""
    nodes = frozenset(members)
    hears: dict[str, frozenset[str]] = {
        a: frozenset(b for b in reach.get(a, ()) if b in nodes and b != a) for a in sorted(nodes)
    }
    asymmetric = frozenset((a, b) for a, heard in hears.items() for b in heard if a not in hears[b])
    sccs = sorted(strongly_connected_components(hears), key=min)
    components: list[frozenset[str]] = []
    sides: list[frozenset[str]] = []
    indirect: set[str] = set()
    for scc in sccs:
        # A node is in no broken pair iff it is mutual with all others in its SCC.
        wanted = len(scc) - 1
        core = frozenset(
            a for a in scc if sum(1 for b in hears[a] if b in scc and a in hears[b]) == wanted
        )
        indirect.update(scc - core)
        if core:
            components.append(core)
            sides.append(scc)
    healthy = len(components) == 1 and components[0] == nodes and not asymmetric
    return Topology(
        members=nodes,
        components=tuple(components),
        sides=tuple(sides),
        sccs=tuple(sccs),
        asymmetric=asymmetric,
        indirect=frozenset(indirect),
        healthy=healthy,
    )


# --- decisions ----------------------------------------------------------------------


def decide(
    strategy: Strategy | str,
    topology: Topology,
    *,
    quorum_size: int | None = None,
    weights: Mapping[str, float] | None = None,
    health: Mapping[str, float] | None = None,
) -> Decision:
    """Who survives ``topology`` under ``strategy``.

    Settings are checked first, healthy or not, so a bad configuration fails
    on the first decision rather than at the first partition: PartitionConfigError
    for a quorum or weights that could pick two winners, ConfigError otherwise.
    Settings for other strategies are ignored.
    """
    strategy = Strategy.parse(strategy)
    members = topology.members
    quorum = 0
    weight_of: dict[str, float] = {}
    health_of: dict[str, float] = {}
    if strategy is Strategy.STATIC_QUORUM:
        quorum = _check_quorum(quorum_size, len(members))
    elif strategy is Strategy.DYNAMIC_WEIGHTS:
        weight_of = _check_weights(weights, members)
    elif strategy is Strategy.VSM_HEALTH:
        health_of = _check_health(health, members)

    if topology.healthy:
        return Decision(
            survivors=members,
            downed=frozenset(),
            awaiting_operator=False,
            reason=(
                f"healthy: all {len(members)} members hear each other"
                if len(members) > 1
                else "healthy: a cluster of one"
            ),
            strategy=strategy,
        )

    note = f"indirectly connected {_names(topology.indirect)} downed; " if topology.indirect else ""
    if strategy is Strategy.MANUAL:
        return Decision(
            survivors=frozenset(),
            downed=topology.indirect,
            awaiting_operator=True,
            reason=f"manual: {note}partitioned into {_groups(topology.components)}, "
            "awaiting the operator's resolve",
            strategy=strategy,
        )
    if strategy is Strategy.STATIC_QUORUM:
        winner, why = _by_quorum(topology, quorum)
    elif strategy is Strategy.DYNAMIC_WEIGHTS:
        winner, why = _by_weight(topology, weight_of)
    else:
        winner, why = _by_health(topology, health_of)
    survivors = winner if winner is not None else frozenset()
    return Decision(
        survivors=survivors,
        downed=members - survivors,
        awaiting_operator=False,
        reason=f"{strategy.value}: {note}{why}",
        strategy=strategy,
    )


def resolve(topology: Topology, keep: Collection[str]) -> Decision:
    """Apply an operator's choice: the component holding ``keep`` survives.

    ResolutionError if ``keep`` is empty, names non-members or indirectly
    connected nodes (they can survive in no component), or spans components.
    """
    named = frozenset((keep,) if isinstance(keep, str) else keep)
    if not named:
        raise ResolutionError("name at least one node of the side to keep")
    unknown = named - topology.members
    if unknown:
        raise ResolutionError(f"not members: {_names(unknown)}")
    indirect = named & topology.indirect
    if indirect:
        raise ResolutionError(
            f"{_names(indirect)} indirectly connected: they cannot continue on any side"
        )
    chosen = {c for c in topology.components if c & named}
    if len(chosen) > 1:
        raise ResolutionError(
            f"{_names(named)} span {len(chosen)} components: "
            f"{_groups(sorted(chosen, key=min))}; name nodes of one"
        )
    (survivors,) = chosen
    return Decision(
        survivors=survivors,
        downed=topology.members - survivors,
        awaiting_operator=False,
        reason=f"manual: operator kept {_names(survivors)}",
        strategy=Strategy.MANUAL,
    )


# --- strategies -----------------------------------------------------------------------


def _by_quorum(topology: Topology, quorum: int) -> tuple[frozenset[str] | None, str]:
    total = len(topology.members)
    for component, side in zip(topology.components, topology.sides, strict=True):
        if len(side) >= quorum:
            if side == component:
                return (
                    component,
                    f"{_names(component)} kept: {_count(side, total)}, quorum {quorum}",
                )
            return component, (
                f"{_names(component)} kept: with the {len(side) - len(component)} indirectly "
                f"connected nodes it reaches, its side has {_count(side, total)}, quorum {quorum}"
            )
    largest = max((len(scc) for scc in topology.sccs), default=0)
    if largest >= quorum:
        return None, f"the side reaching quorum {quorum} is all indirectly connected; all downed"
    return None, f"no side reaches quorum {quorum} of {total} (largest: {largest}); all downed"


def _count(side: frozenset[str], total: int) -> str:
    return f"{len(side)} of {total} members"


def _by_weight(
    topology: Topology, weight_of: Mapping[str, float]
) -> tuple[frozenset[str] | None, str]:
    # Exact sums: "more than half" must not hinge on float rounding.
    total = sum(map(Fraction, weight_of.values()), Fraction(0))
    for component, side in zip(topology.components, topology.sides, strict=True):
        weight = sum((Fraction(weight_of[n]) for n in side), Fraction(0))
        if weight * 2 > total:
            return component, (
                f"{_names(component)} kept: its side weighs {float(weight):g} of {float(total):g}"
            )
    return None, f"no side weighs more than half of {float(total):g}; all downed"


def _by_health(
    topology: Topology, health_of: Mapping[str, float]
) -> tuple[frozenset[str] | None, str]:
    # Exact means, so that equal health is a tie and not a rounding accident.
    viable: list[tuple[Fraction, int, str, frozenset[str]]] = []
    for component in topology.components:
        mean = sum((Fraction(health_of[n]) for n in component), Fraction(0)) / len(component)
        if mean >= _MIN_VIABLE:
            viable.append((-mean, -len(component), min(component), component))
    if not viable:
        return None, f"no component has mean health >= {MIN_VIABLE_HEALTH:g}; all downed"
    neg_mean, _, _, component = min(viable)
    return component, (
        f"{_names(component)} kept: mean health {float(-neg_mean):.3g}, "
        f"healthiest of {len(viable)} viable component(s)"
    )


# --- settings -------------------------------------------------------------------------


def _check_quorum(quorum_size: int | None, members: int) -> int:
    if quorum_size is None:
        return members // 2 + 1
    if type(quorum_size) is not int:
        raise PartitionConfigError(f"quorum_size must be an int, got {quorum_size!r}")
    if quorum_size * 2 <= members:
        raise PartitionConfigError(
            f"quorum_size {quorum_size} of {members} members lets two sides win; "
            f"it must be more than {members / 2:g}"
        )
    return quorum_size


def _check_weights(
    weights: Mapping[str, float] | None, members: frozenset[str]
) -> dict[str, float]:
    given = weights or {}
    for node, value in given.items():
        if not _is_number(value) or not 0.0 <= value < math.inf:
            # A negative or infinite weight breaks "more than half": two winners.
            raise PartitionConfigError(f"weight of {node!r} must be finite and >= 0, got {value!r}")
    return {n: float(given.get(n, DEFAULT_WEIGHT)) for n in members}


def _check_health(health: Mapping[str, float] | None, members: frozenset[str]) -> dict[str, float]:
    given = health or {}
    for node, value in given.items():
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"health of {node!r} must be in [0, 1], got {value!r}")
    return {n: float(given.get(n, DEFAULT_HEALTH)) for n in members}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- reasons --------------------------------------------------------------------------


def _names(nodes: Iterable[str]) -> str:
    ordered = sorted(nodes)
    if len(ordered) > _MAX_NAMES_IN_REASON:
        shown = ", ".join(ordered[:_MAX_NAMES_IN_REASON])
        return f"{{{shown}, ... +{len(ordered) - _MAX_NAMES_IN_REASON} more}}"
    return "{" + ", ".join(ordered) + "}"


def _groups(groups: Iterable[frozenset[str]]) -> str:
    listed = [_names(g) for g in groups]
    return " | ".join(listed) if listed else "nothing"
