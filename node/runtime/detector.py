"""PartitionDetector: heartbeats, phi per peer, views; the trio driver of the tracker.

Every heartbeat carries the sender's reachability view (whom it hears) and
its health. A node builds the directed who-hears-whom graph from its own view
and the views of the peers it currently hears (a peer it cannot hear has no
trustworthy view, so it "hears nobody" here), analyses it (Tarjan SCCs,
one-way links, indirect connections; node.core.partition) and feeds it to the
sans-IO :class:`~node.core.tracker.PartitionTracker`, which holds the policy
over time (stable timer, roles, down-all, operator decisions, alarm once).
This module only acts on what the tracker reports: logs, journals, alarms,
``partition_healed``, and sends operator decisions (RESOLVE) to peers, also
to each peer as it becomes reachable, so a side that was cut off when the
decision was made learns it on heal.

Membership (names, addresses, roles, departures) and the newest operator
decision are persisted in data_dir (node.runtime.journal.StateFile) and
reloaded at start: a node restarted while cut off counts the members it
knows but cannot reach, and starts degraded instead of "a cluster of one".
"""

from __future__ import annotations

import datetime
import logging
import secrets
import time
from collections.abc import Callable, Collection
from typing import Any

import trio

from node.config import NodeConfig
from node.core.events import Channel
from node.core.partition import Decision, Strategy, Topology, analyze
from node.core.phi import PhiAccrualDetector
from node.core.tracker import (
    ChangeKind,
    PartitionTracker,
    Resolution,
    Role,
    default_down_all_after,
    describe,
)
from node.core.wire import Heartbeat, Resolve
from node.errors import DegradedError
from node.runtime.bridge import ClusterBridge

log = logging.getLogger("vsm.detector")

#: Channels a degraded node may not originate: governance must never split.
GOVERNANCE = frozenset({Channel.S3_CONTROL, Channel.S5_POLICY})
#: Intensity of the "awaiting operator" pain signal (0-10).
AWAITING_PAIN = 8
_LOG_LEVELS = {
    ChangeKind.PICTURE_CHANGED: logging.INFO,
    ChangeKind.HEALED: logging.INFO,
    ChangeKind.RESOLUTION_RECORDED: logging.INFO,
    ChangeKind.RESOLUTION_RETIRED: logging.INFO,
}


class PartitionDetector:
    """See the module docstring."""

    def __init__(
        self,
        config: NodeConfig,
        links: Callable[[], ClusterBridge],
        *,
        health: Callable[[], dict[str, float]],
        alarm: Callable[[str, dict[str, Any]], object],
        stamp: Callable[[], Any],
        announce: Callable[[str, dict[str, Any]], object] | None = None,
    ) -> None:
        self.config = config
        self._links = links
        self.health = health
        self.alarm = alarm
        self.announce = announce
        self.stamp = stamp
        # Set by the node at start when it has a data_dir (node.runtime.journal).
        self.journal: Any = None
        self.state_file: Any = None
        self.strategy = Strategy.parse(config.strategy)
        down_all = getattr(config, "down_all_when_unstable_s", None)
        self.tracker = PartitionTracker(
            config.name,
            self.strategy,
            stable_after_s=config.stable_after_s,
            down_all_after_s=(
                default_down_all_after(config.stable_after_s) if down_all is None else down_all
            ),
            observer=config.role != "member",
            quorum_size=config.quorum_size,
            founder=not config.seeds and config.discovery == "static",
        )
        self.phi: dict[str, PhiAccrualDetector] = {}
        self.views: dict[str, Heartbeat] = {}
        self.persisted: dict[str, dict[str, str]] = {}
        self._seq = 0
        self.resolutions: list[dict[str, Any]] = []

    @property
    def bridge(self) -> ClusterBridge:
        """The connections this detector reads (membership, reach) and sends on.

        Given as a callable so the node can build the bridge after the detector
        and pass it the detector's handlers at construction: data flows one way.
        """
        return self._links()

    def handlers(self) -> dict[type, Callable[[str, Any], None]]:
        """What the bridge's reader hands to this detector."""
        return {Heartbeat: self.on_heartbeat, Resolve: self.on_resolve}

    # --- heartbeats ----------------------------------------------------------------

    def _now_ms(self) -> float:
        return trio.current_time() * 1000.0

    def _detector(self, name: str) -> PhiAccrualDetector:
        det = self.phi.get(name)
        if det is None:
            cfg = self.config
            det = self.phi[name] = PhiAccrualDetector(
                threshold=cfg.phi_threshold,
                acceptable_heartbeat_pause_ms=cfg.acceptable_heartbeat_pause_s * 1000.0,
                first_heartbeat_estimate_ms=cfg.heartbeat_interval_s * 1000.0,
            )
        return det

    def on_heartbeat(self, name: str, hb: Any) -> None:
        self._detector(name).heartbeat(self._now_ms())
        self.views[name] = hb

    def reach(self) -> frozenset[str]:
        """Peers this node hears now: connected, heartbeating, phi below threshold."""
        now = self._now_ms()
        out = set()
        for name, peer in self.bridge.peers.items():
            det = self.phi.get(name)
            if peer.connected and det is not None and det.is_monitoring and det.is_available(now):
                out.add(name)
        return frozenset(out)

    def make_heartbeat(self) -> Heartbeat:
        self._seq += 1
        health = {k: min(max(float(v), 0.0), 1.0) for k, v in self.health().items()}
        return Heartbeat(
            self.config.name,
            self._seq,
            tuple(sorted(self.reach())),
            {n: a for n, a in self.bridge.members.items() if n not in self.bridge.departed},
            health,
            self.config.role,
        )

    # --- the picture ---------------------------------------------------------------------

    def role_of(self, name: str) -> str:
        view = self.views.get(name)
        if view is not None:
            return str(view.role)
        peer = self.bridge.peers.get(name)
        if peer is not None and peer.connected:
            return peer.role
        saved = self.persisted.get(name)
        if saved is not None:
            return saved.get("role", "member")
        return peer.role if peer is not None else "member"

    def members(self) -> frozenset[str]:
        """Voting members: known, not departed, not observers (this node included)."""
        out = {self.config.name} if self.config.role == "member" else set()
        for name in self.bridge.members:
            if name in self.bridge.departed or name == self.config.name:
                continue
            if self.role_of(name) == "member":
                out.add(name)
        return frozenset(out)

    def snapshot(self) -> Topology:
        members = self.members()
        mine = self.reach()
        graph: dict[str, Collection[str]] = {self.config.name: mine}
        for name in mine:
            view = self.views.get(name)
            if view is not None:
                graph[name] = view.reach
        # A member we do not hear but someone we hear does hears, we assume,
        # those who hear it (links are usually two-way). Without this, a link cut
        # between us and it looks like a clean split from our side, while the
        # node in the middle sees both ends indirectly connected: the two ends
        # would each keep themselves with the middle node, and disagree with it.
        heard_by: dict[str, set[str]] = {}
        for name, reach in list(graph.items()):
            for target in reach:
                if target not in graph:
                    heard_by.setdefault(target, set()).add(name)
        graph.update(heard_by)
        return analyze(graph, members)

    def check(self, *, quiet: bool = False) -> dict[str, Any]:
        """Re-analyse now and act on what changed. Returns the status.

        ``quiet`` logs the changes at DEBUG (the first picture, before the node
        listens: a node that cannot listen must say that in one line).
        """
        self._dial_persisted()
        topo = self.snapshot()
        changes = self.tracker.observe(
            topo, trio.current_time(), weights=self._weights(), health=self._healths()
        )
        self._act(changes, quiet=quiet)
        return self.status()

    def _act(self, changes: list[Any], *, quiet: bool = False) -> None:
        for change in changes:
            kind = change.kind
            level = _LOG_LEVELS.get(kind, logging.WARNING)
            if kind is ChangeKind.DECIDED and self.tracker.topology is not None:
                level = logging.INFO if self.tracker.topology.healthy else logging.WARNING
            if quiet:
                level = logging.DEBUG
            log.log(level, "%s: %s", kind.value.replace("_", " "), change.reason)
            self.record(kind.value, {"reason": change.reason, **change.data})
            if kind is ChangeKind.ALARM:
                self.alarm(
                    "algedonic_pain",
                    {
                        "reason": "partition awaiting operator",
                        "detail": change.reason,
                        "intensity": AWAITING_PAIN,
                    },
                )
            elif kind is ChangeKind.HEALED and self.announce is not None:
                self.announce(
                    "partition_healed", {"node": self.config.name, "reason": change.reason}
                )

    def record(self, kind: str, data: dict[str, Any]) -> None:
        """A journal row (if there is a journal), stamped with HLC and wall time."""
        if self.journal is not None:
            self.journal.record(kind, data, hlc=self.stamp())

    def _healths(self) -> dict[str, float]:
        out = {self.config.name: float(self.health().get("overall", 0.0))}
        for name, view in self.views.items():
            out[name] = float(view.health.get("overall", 0.0))
        return out

    def _weights(self) -> dict[str, float]:
        # Dynamic weights follow VSM health, with a floor so a struggling but
        # reachable node still counts for something.
        return {name: 0.1 + 0.9 * h for name, h in self._healths().items()}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        # Decide the starting role before anyone can publish: primary only for
        # a healthy first picture (a cluster of one that knows no other members).
        self.check(quiet=True)
        tr = self.tracker
        role = tr.role.value if tr.role is not None else "degraded"
        # DEBUG: the daemon's first status line says the role, once it listens
        log.debug("starting as %s: %s", role, tr.reason)
        self.record("role_at_start", {"to": role, "reason": tr.reason})
        task_status.started()
        try:
            while True:
                await trio.sleep(self.config.check_interval_s)
                self.check()
                if self.state_file is not None:
                    await self.state_file.save(self.saved_state())
        finally:
            if self.state_file is not None:
                # A clean stop saves the latest (a crash loses at most one interval).
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self.state_file.save(self.saved_state())

    # --- degraded mode ------------------------------------------------------------------

    def check_may_originate(self, channel: Channel) -> None:
        """DegradedError if this node may not originate events on ``channel`` now."""
        if channel not in GOVERNANCE:
            return
        reason = self.tracker.refusal()
        if reason is None:
            return
        since = self.wall(self.tracker.since)
        ago = trio.current_time() - self.tracker.since
        raise DegradedError(
            f"{self.config.name} is degraded since {_iso(since)} ({ago:.1f} s ago): {reason}; "
            f"it may not originate {channel.value} events",
            channel=channel.value,
            since=since,
            reason=reason,
        )

    @staticmethod
    def wall(at: float) -> float:
        """Wall time (epoch seconds) of trio time ``at``."""
        return time.time() - (trio.current_time() - at)

    # --- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        tr = self.tracker
        topo, dec = tr.topology, tr.decision
        state = tr.state()
        role = tr.role.value if tr.role is not None else Role.DEGRADED.value
        healths = self._healths()
        out: dict[str, Any] = {
            "status": state,
            "strategy": self.strategy.value,
            "members": sorted(topo.members) if topo else [],
            "components": [sorted(c) for c in topo.components] if topo else [],
            "asymmetric": sorted(topo.asymmetric) if topo else [],
            "indirect": sorted(topo.indirect) if topo else [],
            "stable_for_s": round(trio.current_time() - tr.changed_at, 3),
            "degraded": role == Role.DEGRADED.value,
            "decision": None,
            # who continues, by this node's decision (for a primary: its membership)
            "survivors": sorted(dec.survivors if dec is not None else tr.survivors),
            "role": role,
            "since": _iso(self.wall(tr.since)),
            "reason": tr.reason,
            "epoch": tr.latest.epoch if tr.latest is not None else 0,
            "down_all": tr.down_all,
            "groups": [
                {
                    "members": [
                        {"name": n, "health": healths.get(n), "role": self.role_of(n)}
                        for n in sorted(component)
                    ],
                    "side": sorted(side),
                }
                for component, side in zip(topo.components, topo.sides, strict=True)
            ]
            if topo
            else [],
            "resolution": None,
        }
        if dec is not None:
            out["decision"] = _decision(dec)
        if tr.latest is not None:
            out["resolution"] = {
                **tr.latest.to_dict(),
                "in_force": tr.in_force is not None,
                "retired": tr.latest_retired,
            }
        return out

    def decision_is_stale(self) -> bool:
        return not self.tracker.settled

    # --- operator decisions ------------------------------------------------------------

    def resolve(self, keep: Collection[str], operator: str) -> Decision:
        """Apply an operator's choice now and tell every reachable peer.

        ResolutionError if the cluster is healthy or ``keep`` names unknown
        nodes or nodes of more than one component.
        """
        self.check()
        topo = self.snapshot()
        now = trio.current_time()
        res, changes = self.tracker.resolve(
            topo,
            keep,
            operator=operator,
            hlc=self.stamp(),
            decision_id=f"{self.config.name}-{secrets.token_hex(6)}",
            now=now,
        )
        self.record("operator_resolution", {"operator": operator, **res.to_dict()})
        self._note(res, operator, "applied")
        self._act(changes)
        log.warning("partition resolved by %s: %s", operator, self.tracker.reason)
        self.bridge.broadcast_control(_to_wire(res))
        decision = self.tracker.decision
        assert decision is not None
        return decision

    def on_resolve(self, name: str, msg: Any) -> None:
        """A decision from a peer: applied if it fits our picture, recorded either way."""
        res = Resolution(
            msg.decision_id, msg.epoch, msg.hlc, msg.operator, tuple(msg.keep), msg.hlc.node
        )
        self.check()
        outcome, changes = self.tracker.receive(res, trio.current_time(), retired=msg.retired)
        if outcome == "duplicate":
            return
        self.record("resolution_received", {"from": name, "outcome": outcome, **res.to_dict()})
        self._note(res, f"{msg.operator} via {name}", outcome)
        self._act(changes)
        latest = self.tracker.latest
        if outcome == "stale" and latest is not None:
            # It holds an older decision: send it ours, so both agree on the newest.
            self.bridge.send_control(name, _to_wire(latest, self.tracker.latest_retired))
        elif outcome in ("applied", "recorded"):
            # Pass news on: a node that hears us but not the decider learns it too.
            for peer in list(self.bridge.peers):
                if peer != name:
                    self.bridge.send_control(peer, msg)

    def on_peer_change(self, name: str, up: bool) -> None:
        """A peer connected or disconnected: journal it; tell a new one our decision."""
        peer = self.bridge.peers.get(name)
        departed = bool(peer is not None and peer.departed)
        kind = "peer_joined" if up else ("peer_departed" if departed else "peer_lost")
        self.record(kind, {"peer": name, "address": peer.address if peer else ""})
        latest = self.tracker.latest
        if up and latest is not None:
            self.bridge.send_control(name, _to_wire(latest, self.tracker.latest_retired))

    def _note(self, res: Resolution, operator: str, outcome: str) -> None:
        self.resolutions.append(
            {
                "at": trio.current_time(),
                "operator": operator,
                "keep": list(res.keep),
                "epoch": res.epoch,
                "outcome": outcome,
                "survivors": sorted(self.tracker.survivors),
                "reason": self.tracker.reason,
            }
        )
        del self.resolutions[:-100]

    # --- persistence ---------------------------------------------------------------------

    def load_state(self, state: dict[str, Any]) -> None:
        """Seed membership and the newest decision from ``state.json`` (before the bridge runs).

        Members are learned by the bridge (so they count, and get backlogs)
        and dialed once the bridge runs; departed members are not counted.
        """
        me = self.config.name
        departed = {str(n) for n in state.get("departed", []) if isinstance(n, str)}
        members = state.get("members", {})
        if isinstance(members, dict):
            for name, info in members.items():
                if not isinstance(info, dict) or name == me or name in departed:
                    continue
                address, role = str(info.get("address", "")), str(info.get("role", "member"))
                if not address:
                    continue
                self.persisted[name] = {"address": address, "role": role}
                self.bridge.learn_member(name, address)
                peer = self.bridge.peers.get(name)
                if peer is not None:
                    peer.role = role
        self.bridge.departed.update(departed - {me})
        if self.persisted:
            self.tracker.founder = False  # it has been in a cluster: never "a cluster of one"
        raw = state.get("resolution")
        if isinstance(raw, dict):
            try:
                res = Resolution.from_dict(raw)
            except ValueError as exc:
                log.warning("saved resolution ignored: %s", exc)
            else:
                self.tracker.load(res, retired=bool(state.get("resolution_retired", True)))
        if self.persisted:
            log.info(
                "reloaded %d known member(s) from the state file: %s",
                len(self.persisted),
                ", ".join(sorted(self.persisted)),
            )

    def saved_state(self) -> dict[str, Any]:
        me = self.config.name
        members = {
            name: {"address": address, "role": self.role_of(name)}
            for name, address in sorted(self.bridge.members.items())
            if name != me and name not in self.bridge.departed
        }
        latest = self.tracker.latest
        return {
            "node": me,
            "members": members,
            "departed": sorted(self.bridge.departed - {me}),
            "resolution": latest.to_dict() if latest is not None else None,
            "resolution_retired": self.tracker.latest_retired,
        }

    def _dial_persisted(self) -> None:
        # Persisted members are learned before the bridge runs, when it cannot
        # dial yet; dialing is idempotent, so ask again until it can.
        for name, info in self.persisted.items():
            peer = self.bridge.peers.get(name)
            if peer is None or not peer.connected:
                self.bridge.discovered(info["address"])


def _to_wire(res: Resolution, retired: bool = False) -> Resolve:
    reason = res.reason or f"keep the side of {', '.join(res.keep)}"
    return Resolve(
        res.decision_id, res.keep, res.operator[:255], reason[:1000], res.hlc, res.epoch, retired
    )


def _decision(dec: Decision) -> dict[str, Any]:
    return {
        "survivors": sorted(dec.survivors),
        "downed": sorted(dec.downed),
        "awaiting_operator": dec.awaiting_operator,
        "reason": dec.reason,
        "strategy": dec.strategy.value,
    }


def _iso(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, tz=datetime.UTC).isoformat(timespec="seconds")


__all__ = ["GOVERNANCE", "PartitionDetector", "describe"]
