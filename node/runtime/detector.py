"""PartitionDetector: heartbeats, phi per peer, views, and periodic decisions.

Every heartbeat carries the sender's reachability view (whom it hears) and
its health. A node builds the directed who-hears-whom graph from its own view
and the views of the peers it currently hears (a peer it cannot hear has no
trustworthy view, so it "hears nobody" here), analyses it (Tarjan SCCs,
one-way links, indirect connections; node.core.partition) and, once the
picture has been the same for ``stable_after_s``, applies the strategy.

Under ``manual`` an unhealthy picture waits for the operator: S5 is told by
an ``algedonic_pain`` event and ``resolve(keep)`` (TUI, ctl or API) names the
side that continues; the decision is sent to every reachable peer (RESOLVE).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Collection
from typing import Any

import trio

from node.core.partition import Decision, Strategy, Topology, analyze, decide, resolve
from node.core.phi import PhiAccrualDetector
from node.core.wire import Heartbeat, Resolve
from node.errors import ResolutionError
from node.runtime.bridge import ClusterBridge

log = logging.getLogger("vsm.detector")


class PartitionDetector:
    """See the module docstring."""

    def __init__(
        self,
        config: Any,
        bridge: ClusterBridge,
        *,
        health: Callable[[], dict[str, float]],
        alarm: Callable[[str, dict[str, Any]], object],
        stamp: Callable[[], Any],
    ) -> None:
        self.config = config
        self.bridge = bridge
        self.health = health
        self.alarm = alarm
        self.stamp = stamp
        self.strategy = Strategy.parse(config.strategy)
        self.phi: dict[str, PhiAccrualDetector] = {}
        self.views: dict[str, Heartbeat] = {}
        self.topology: Topology | None = None
        self.decision: Decision | None = None
        self.operator_decision: Decision | None = None
        self.changed_at = 0.0
        self._signature: object = None
        self._alarmed_for: object = None
        self._seq = 0
        self.resolutions: list[dict[str, Any]] = []
        bridge.heartbeat_factory = self.make_heartbeat
        bridge.handlers[Heartbeat] = self.on_heartbeat
        bridge.handlers[Resolve] = self.on_resolve

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

    def members(self) -> frozenset[str]:
        """Voting members: known, not departed, not observers (this node included)."""
        out = {self.config.name} if self.config.role == "member" else set()
        for name in self.bridge.members:
            if name in self.bridge.departed or name == self.config.name:
                continue
            peer = self.bridge.peers.get(name)
            view = self.views.get(name)
            role = view.role if view is not None else (peer.role if peer else "member")
            if role == "member":
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
        return analyze(graph, members)

    def check(self) -> dict[str, Any]:
        """Re-analyse now; decide once the picture is stable. Returns the status."""
        now = trio.current_time()
        topo = self.snapshot()
        signature = (topo.members, topo.components, topo.asymmetric, topo.indirect)
        if signature != self._signature:
            self._signature = signature
            self.changed_at = now
            self.operator_decision = None  # a new picture needs a new decision
            log.info("reachability changed: %s", _describe(topo))
        self.topology = topo
        if now - self.changed_at >= self.config.stable_after_s or topo.healthy:
            previous = self.decision
            self.decision = self.operator_decision or decide(
                self.strategy,
                topo,
                quorum_size=self.config.quorum_size,
                weights=self._weights(),
                health=self._healths(),
            )
            if previous is None or previous.reason != self.decision.reason:
                level = logging.INFO if topo.healthy else logging.WARNING
                log.log(level, "partition decision: %s", self.decision.reason)
            if self.decision.awaiting_operator and self._alarmed_for != signature:
                self._alarmed_for = signature
                self.alarm(
                    "algedonic_pain",
                    {"reason": "partition awaiting operator", "detail": self.decision.reason},
                )
        return self.status()

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
        task_status.started()
        while True:
            await trio.sleep(self.config.check_interval_s)
            self.check()

    # --- status and resolution --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        topo, dec = self.topology, self.decision
        me = self.config.name
        if topo is None:
            state = "starting"
        elif topo.healthy:
            state = "healthy"
        elif dec is None or self.decision_is_stale():
            state = "unstable"
        elif dec.awaiting_operator:
            state = "awaiting_operator"
        elif me in dec.downed:
            state = "degraded"
        else:
            state = "partitioned"
        out: dict[str, Any] = {
            "status": state,
            "strategy": self.strategy.value,
            "members": sorted(topo.members) if topo else [],
            "components": [sorted(c) for c in topo.components] if topo else [],
            "asymmetric": sorted(topo.asymmetric) if topo else [],
            "indirect": sorted(topo.indirect) if topo else [],
            "stable_for_s": round(trio.current_time() - self.changed_at, 3),
            "degraded": state == "degraded",
            "decision": None,
        }
        if dec is not None:
            out["decision"] = {
                "survivors": sorted(dec.survivors),
                "downed": sorted(dec.downed),
                "awaiting_operator": dec.awaiting_operator,
                "reason": dec.reason,
                "strategy": dec.strategy.value,
            }
        return out

    def decision_is_stale(self) -> bool:
        return bool(trio.current_time() - self.changed_at < self.config.stable_after_s)

    def resolve(self, keep: Collection[str], operator: str = "operator") -> Decision:
        """Apply an operator's choice now and tell every reachable peer."""
        topo = self.snapshot()
        if topo.healthy:
            raise ResolutionError("nothing to resolve: the cluster is healthy")
        decision = resolve(topo, keep)
        self._apply(topo, decision, operator, keep)
        msg = Resolve(
            f"{self.config.name}-{secrets.token_hex(6)}",
            tuple(sorted(keep)),
            operator or "operator",
            decision.reason[:1000],
            self.stamp(),
        )
        self.bridge.broadcast_control(msg)
        return decision

    def on_resolve(self, name: str, msg: Any) -> None:
        """A peer's operator resolved: apply it if it fits our picture too."""
        topo = self.snapshot()
        if topo.healthy:
            return
        try:
            decision = resolve(topo, msg.keep)
        except ResolutionError as exc:
            log.warning("resolution %s from %s does not fit here: %s", msg.decision_id, name, exc)
            return
        self._apply(topo, decision, f"{msg.operator} via {name}", msg.keep)

    def _apply(self, topo: Topology, decision: Decision, operator: str, keep: Any) -> None:
        self._signature = (topo.members, topo.components, topo.asymmetric, topo.indirect)
        self.topology = topo
        self.operator_decision = self.decision = decision
        self.changed_at = min(self.changed_at, trio.current_time() - self.config.stable_after_s)
        record = {
            "at": trio.current_time(),
            "operator": operator,
            "keep": sorted(keep),
            "survivors": sorted(decision.survivors),
            "reason": decision.reason,
        }
        self.resolutions.append(record)
        log.warning("partition resolved by %s: %s", operator, decision.reason)


def _describe(topo: Topology) -> str:
    if topo.healthy:
        n = len(topo.members)
        return f"healthy, {n} member{'s' if n != 1 else ''}"
    parts = [f"components {[sorted(c) for c in topo.components]}"]
    if topo.indirect:
        parts.append(f"indirect {sorted(topo.indirect)}")
    if topo.asymmetric:
        parts.append(f"one-way {sorted(topo.asymmetric)}")
    return ", ".join(parts)
