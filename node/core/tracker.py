"""Partition policy over time, sans-IO: when a picture is decided, and what it means.

:mod:`node.core.partition` answers "who survives this picture?". This module
answers the questions that need a clock, with the time passed in as ``now``:

- **Stable timer.** A picture is acted on once it has stayed the same for
  ``stable_after_s`` (Akka's stable-after). Until then nothing changes: a
  primary stays primary, a degraded node stays degraded.
- **Roles.** ``primary`` (this node is among the survivors and may originate
  governance: s3_control, s5_policy) or ``degraded`` (it is not: it keeps
  serving local subscribers and S1/S2 traffic but refuses to originate
  governance, so that governance never splits). A degraded node returns to
  primary only when a decision keeps it; for a healed cluster that is once the
  healthy picture has been stable for ``stable_after_s``. Observers are never
  primary.
- **Start.** A *founder* (a node that expects no one else: no seeds, no
  discovery, no remembered members) whose first picture is healthy starts
  primary. Every other node starts degraded and becomes primary at its first
  decision: a restarted node that knows members it cannot reach must not call
  itself a cluster of one, and a node joining through seeds must not govern a
  cluster of one while it is still finding the others.
- **Down-all when unstable** (Akka's fail-safe): if the picture keeps changing
  for longer than ``stable_after_s + down_all_after_s`` from the first change,
  every node goes degraded until a picture is stable again.
- **Operator decisions** (:class:`Resolution`) carry an epoch: a higher epoch
  wins, equal epochs are ordered by their HLC time. The newest one known is
  kept; it is in force while it fits the current picture (the node names of
  ``keep`` lie in one component) and the cluster is not healthy, applied at
  once when made or received (no stable timer: the operator already waited),
  and retired when the cluster is healthy and stable again. A retired decision
  never comes back; a newer one replaces it.
- **Alarm once.** Under ``manual`` an unresolved partition raises one alarm per
  picture, not one per check.

:meth:`PartitionTracker.observe` returns the :class:`Change` list of what
happened, for the driver to log, journal and act on.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Any

import attrs

from node.core.hlc import Timestamp
from node.core.partition import Decision, Strategy, Topology, decide, resolve
from node.errors import InvalidMessageError, ResolutionError

#: Down-all after unstable for stable_after plus this share of it...
DOWN_ALL_SHARE = 0.75
#: ...but never sooner than this many seconds on top of stable_after.
DOWN_ALL_MIN_S = 4.0
# Received decision ids remembered to tell a repeat from news.
_MAX_SEEN_IDS = 256


def default_down_all_after(stable_after_s: float) -> float:
    """The default ``down_all_when_unstable_s``: 3/4 of stable_after, at least 4 s."""
    return max(DOWN_ALL_SHARE * stable_after_s, DOWN_ALL_MIN_S)


class Role(enum.Enum):
    PRIMARY = "primary"
    DEGRADED = "degraded"


class ChangeKind(enum.Enum):
    """What :meth:`PartitionTracker.observe` and friends report."""

    PICTURE_CHANGED = "picture_changed"
    DECIDED = "partition_decided"
    ROLE_CHANGED = "role_changed"
    HEALED = "partition_healed"
    DOWN_ALL = "down_all"
    ALARM = "awaiting_operator"
    RESOLUTION_APPLIED = "resolution_applied"
    RESOLUTION_RECORDED = "resolution_recorded"
    RESOLUTION_STALE = "resolution_stale"
    RESOLUTION_SUSPENDED = "resolution_suspended"
    RESOLUTION_RETIRED = "resolution_retired"


@attrs.frozen
class Change:
    kind: ChangeKind
    reason: str
    data: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Resolution:
    """An operator's decision: the side holding ``keep`` continues."""

    decision_id: str
    epoch: int
    hlc: Timestamp
    operator: str
    keep: tuple[str, ...]
    origin: str
    reason: str = ""

    def key(self) -> tuple[int, Timestamp]:
        """Order of precedence: higher epoch wins, then the later HLC time."""
        return (self.epoch, self.hlc)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "epoch": self.epoch,
            "hlc": self.hlc.to_wire(),
            "operator": self.operator,
            "keep": list(self.keep),
            "origin": self.origin,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Resolution:
        """From :meth:`to_dict` output (the journal); ValueError if malformed."""
        try:
            epoch = raw["epoch"]
            if type(epoch) is not int or epoch < 1:
                raise ValueError(f"epoch must be an int >= 1, got {epoch!r:.30}")
            keep = tuple(str(k) for k in raw["keep"])
            return cls(
                str(raw["decision_id"]),
                epoch,
                Timestamp.from_wire(raw["hlc"]),
                str(raw["operator"]),
                keep,
                str(raw["origin"]),
                str(raw.get("reason", "")),
            )
        except (KeyError, TypeError, InvalidMessageError) as exc:
            raise ValueError(f"malformed resolution record: {exc}") from exc


def _signature(topo: Topology) -> tuple[Any, ...]:
    return (topo.members, topo.components, topo.asymmetric, topo.indirect)


@attrs.define
class PartitionTracker:
    """Policy over time for one node. See the module docstring."""

    me: str
    strategy: Strategy
    stable_after_s: float
    down_all_after_s: float
    observer: bool = False
    quorum_size: int | None = None
    founder: bool = True

    topology: Topology | None = None
    decision: Decision | None = None
    role: Role | None = None
    since: float = 0.0
    reason: str = "starting"
    survivors: frozenset[str] = frozenset()
    changed_at: float = 0.0
    unstable_since: float | None = None
    down_all: bool = False
    #: A partition was decided (or down-all) and has not healed yet.
    partitioned: bool = False
    latest: Resolution | None = None
    latest_retired: bool = True
    in_force: Resolution | None = None
    #: The current picture has been acted on (decided, or an operator decision applied).
    settled: bool = False
    _signature: Any = None
    _decided_for: Any = None
    _alarmed_for: Any = None
    _seen: dict[str, None] = attrs.Factory(dict)

    # --- observing ------------------------------------------------------------------

    def observe(
        self,
        topology: Topology,
        now: float,
        *,
        weights: Mapping[str, float] | None = None,
        health: Mapping[str, float] | None = None,
    ) -> list[Change]:
        """Take the current picture into account; return what changed."""
        changes: list[Change] = []
        signature = _signature(topology)
        self.topology = topology
        if self.role is None:
            self._start(topology, now)
        if signature != self._signature:
            self._signature = signature
            self.changed_at = now
            self.settled = False
            if self.unstable_since is None:
                self.unstable_since = now
            changes.append(Change(ChangeKind.PICTURE_CHANGED, describe(topology)))
            if self.in_force is not None and _fits(self.in_force, topology) is None:
                changes.append(
                    Change(
                        ChangeKind.RESOLUTION_SUSPENDED,
                        f"resolution epoch {self.in_force.epoch} does not fit the new picture",
                        self.in_force.to_dict(),
                    )
                )
                self.in_force = None
        if self.in_force is None and not topology.healthy and self._pending() is not None:
            pending = self._pending()
            assert pending is not None
            if _fits(pending, topology) is not None:
                self.in_force = pending
                changes.append(
                    Change(
                        ChangeKind.RESOLUTION_APPLIED,
                        f"resolution epoch {pending.epoch} by {pending.operator} fits",
                        pending.to_dict(),
                    )
                )
        if self.in_force is not None:
            decision = _fits(self.in_force, topology)
            assert decision is not None
            if self._decided_for != (signature, self.in_force.decision_id):
                self._settle(decision, now, changes, (signature, self.in_force.decision_id))
        elif now - self.changed_at >= self.stable_after_s:
            decision = decide(
                self.strategy,
                topology,
                quorum_size=self.quorum_size,
                weights=weights,
                health=health,
            )
            self._settle(decision, now, changes, signature)
        elif (
            not self.down_all
            and self.unstable_since is not None
            and now - self.unstable_since >= self.stable_after_s + self.down_all_after_s
        ):
            self._down_all(now, changes)
        return changes

    def _start(self, topology: Topology, now: float) -> None:
        self.since = now
        if topology.healthy and not self.observer and self.founder:
            self.role = Role.PRIMARY
            self.survivors = topology.members
            self.reason = "starting: " + (
                "a cluster of one" if len(topology.members) == 1 else "all members hear each other"
            )
        else:
            self.role = Role.DEGRADED
            if self.observer:
                self.reason = "observer: never primary"
            elif topology.healthy:
                self.reason = "starting: joining the cluster, awaiting a stable picture"
            else:
                self.reason = "starting: known members unreachable, awaiting a decision"

    def _pending(self) -> Resolution | None:
        return self.latest if self.latest is not None and not self.latest_retired else None

    def _settle(self, decision: Decision, now: float, changes: list[Change], key: Any) -> None:
        topology = self.topology
        assert topology is not None
        first = self._decided_for != key
        self._decided_for = key
        self.settled = True
        self.unstable_since = None
        self.down_all = False
        self.decision = decision
        if first and not (topology.healthy and not self.partitioned):
            changes.append(
                Change(
                    ChangeKind.DECIDED,
                    decision.reason,
                    {"survivors": sorted(decision.survivors), "downed": sorted(decision.downed)},
                )
            )
        if topology.healthy:
            if self.latest is not None and not self.latest_retired:
                self.latest_retired = True
                changes.append(
                    Change(
                        ChangeKind.RESOLUTION_RETIRED,
                        f"resolution epoch {self.latest.epoch} retired: the cluster is healthy",
                        self.latest.to_dict(),
                    )
                )
            self.in_force = None
            self._alarmed_for = None  # the next partition alarms again, whatever its shape
        primary = not self.observer and self.me in decision.survivors
        self._set_role(
            Role.PRIMARY if primary else Role.DEGRADED,
            decision.survivors if primary else frozenset(),
            decision.reason if not self.observer else f"observer: never primary; {decision.reason}",
            now,
            changes,
        )
        if topology.healthy:
            if self.partitioned:
                self.partitioned = False
                changes.append(Change(ChangeKind.HEALED, decision.reason))
        else:
            self.partitioned = True
        if decision.awaiting_operator and self._alarmed_for != self._signature:
            self._alarmed_for = self._signature
            changes.append(Change(ChangeKind.ALARM, decision.reason))

    def _down_all(self, now: float, changes: list[Change]) -> None:
        assert self.topology is not None and self.unstable_since is not None
        self.down_all = True
        self.partitioned = True
        span = now - self.unstable_since
        reason = (
            f"down-all: the picture kept changing for {span:.3g} s "
            f"(limit {self.stable_after_s + self.down_all_after_s:.3g} s); "
            "every node degraded until it is stable"
        )
        self.decision = Decision(
            survivors=frozenset(),
            downed=self.topology.members,
            awaiting_operator=False,
            reason=reason,
            strategy=self.strategy,
        )
        self._decided_for = None
        changes.append(Change(ChangeKind.DOWN_ALL, reason))
        self._set_role(Role.DEGRADED, frozenset(), reason, now, changes)

    def _set_role(
        self,
        role: Role,
        survivors: frozenset[str],
        reason: str,
        now: float,
        changes: list[Change],
    ) -> None:
        self.survivors = survivors
        if role is not self.role:
            old = self.role
            self.role = role
            self.since = now
            changes.append(
                Change(
                    ChangeKind.ROLE_CHANGED,
                    reason,
                    {"from": old.value if old else None, "to": role.value},
                )
            )
        self.reason = reason

    # --- operator decisions ------------------------------------------------------------

    def next_epoch(self) -> int:
        return (self.latest.epoch if self.latest is not None else 0) + 1

    def resolve(
        self,
        topology: Topology,
        keep: Collection[str],
        *,
        operator: str,
        hlc: Timestamp,
        decision_id: str,
        now: float,
    ) -> tuple[Resolution, list[Change]]:
        """An operator's decision made here; applied at once. ResolutionError if it cannot be."""
        named = sorted({keep} if isinstance(keep, str) else set(keep))
        if topology.healthy:
            raise ResolutionError("nothing to resolve: the cluster is healthy")
        decision = resolve(topology, named)  # raises ResolutionError with the reason
        res = Resolution(
            decision_id, self.next_epoch(), hlc, operator, tuple(named), self.me, decision.reason
        )
        if self.topology is None or _signature(self.topology) != _signature(topology):
            changes = self.observe(topology, now)
        else:
            changes = []
        changes += self._accept(res, now)
        return res, changes

    def receive(
        self, res: Resolution, now: float, *, retired: bool = False
    ) -> tuple[str, list[Change]]:
        """A decision from a peer.

        Returns the outcome: ``duplicate`` (known already), ``stale`` (an
        older epoch than the newest known: it loses and is only recorded),
        ``applied`` (it fits the current picture and is now in force) or
        ``recorded`` (newest known, but it does not fit here now, the cluster
        is healthy, or it is ``retired``: its partition is over, so it only
        carries its epoch and is never applied, not even to a later partition).
        """
        if res.decision_id in self._seen:
            return "duplicate", []
        self._remember(res.decision_id)
        if self.latest is not None and res.key() < self.latest.key():
            return "stale", [
                Change(
                    ChangeKind.RESOLUTION_STALE,
                    f"resolution epoch {res.epoch} by {res.operator} loses to epoch "
                    f"{self.latest.epoch} by {self.latest.operator}",
                    res.to_dict(),
                )
            ]
        if retired:
            self.latest, self.latest_retired = res, True
            return "recorded", [
                Change(
                    ChangeKind.RESOLUTION_RECORDED,
                    f"resolution epoch {res.epoch} by {res.operator} recorded (retired)",
                    res.to_dict(),
                )
            ]
        changes = self._accept(res, now)
        applied = any(c.kind is ChangeKind.RESOLUTION_APPLIED for c in changes)
        return ("applied" if applied else "recorded"), changes

    def load(self, res: Resolution, *, retired: bool) -> None:
        """The newest decision from the state file, before the first observation."""
        self._remember(res.decision_id)
        if self.latest is None or res.key() >= self.latest.key():
            self.latest = res
            self.latest_retired = retired

    def _remember(self, decision_id: str) -> None:
        self._seen[decision_id] = None
        while len(self._seen) > _MAX_SEEN_IDS:
            del self._seen[next(iter(self._seen))]

    def _accept(self, res: Resolution, now: float) -> list[Change]:
        self._remember(res.decision_id)
        self.latest = res
        self.latest_retired = False
        self.in_force = None
        topology = self.topology
        if topology is None or topology.healthy:
            self.latest_retired = topology is not None
            return [
                Change(
                    ChangeKind.RESOLUTION_RECORDED,
                    f"resolution epoch {res.epoch} by {res.operator} recorded "
                    + ("(the cluster is healthy)" if topology is not None else "(no picture yet)"),
                    res.to_dict(),
                )
            ]
        if _fits(res, topology) is None:
            return [
                Change(
                    ChangeKind.RESOLUTION_RECORDED,
                    f"resolution epoch {res.epoch} by {res.operator} recorded: "
                    "it does not fit this node's picture",
                    res.to_dict(),
                )
            ]
        return self.observe(topology, now)

    # --- questions ----------------------------------------------------------------------

    def refusal(self) -> str | None:
        """Why this node may not originate governance now; None if it may."""
        if self.role is Role.PRIMARY:
            return None
        return self.reason

    def state(self) -> str:
        """healthy | unstable | awaiting_operator | degraded | partitioned | starting."""
        topo, dec = self.topology, self.decision
        if topo is None:
            return "starting"
        if topo.healthy:
            return "healthy"
        if self.down_all or dec is None or not self.settled:
            return "unstable"
        if dec.awaiting_operator:
            return "awaiting_operator"
        if self.role is Role.DEGRADED:
            return "degraded"
        return "partitioned"


def _fits(res: Resolution, topology: Topology) -> Decision | None:
    """The decision ``res`` means for ``topology``; None if it does not fit it."""
    if topology.healthy:
        return None
    try:
        decision = resolve(topology, res.keep)
    except ResolutionError:
        return None
    return attrs.evolve(
        decision,
        reason=f"manual: {res.operator} kept the side of {_list(res.keep)} (epoch {res.epoch})",
    )


def _list(names: Collection[str]) -> str:
    return "{" + ", ".join(sorted(names)) + "}"


def describe(topo: Topology) -> str:
    """One line for logs: healthy, or the components, indirect and one-way links."""
    if topo.healthy:
        n = len(topo.members)
        return f"healthy, {n} member{'s' if n != 1 else ''}"
    parts = [f"components {[sorted(c) for c in topo.components]}"]
    if topo.indirect:
        parts.append(f"indirect {sorted(topo.indirect)}")
    if topo.asymmetric:
        parts.append(f"one-way {sorted(topo.asymmetric)}")
    return ", ".join(parts)
