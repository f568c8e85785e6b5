"""The header line: node, cluster size, role, strategy, partition status, HLC, faults."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from console.widgets.common import colour

STATUS_LEVEL = {
    "healthy": "pressure-healthy",
    "starting": "pressure-moderate",
    "unstable": "pressure-moderate",
    "partitioned": "pressure-moderate",
    "awaiting_operator": "pressure-high",
    "degraded": "pressure-high",
}


class HeaderBar(Static):
    """One or two lines of who and where this node is."""

    def show(self, snap: dict[str, Any], *, paused: bool = False) -> None:
        text = Text()
        demo = snap.get("demo")
        if not snap.get("running"):
            text.append(f" {snap.get('viewed', '?')} ", style="bold reverse")
            text.append("  not running (killed or restarting)", style=colour(self.app, "error"))
            if demo:
                text.append(f"   demo: {', '.join(demo['faults']) or 'no faults'}")
            self.update(text)
            return
        topo = snap["topology"]
        part = snap["partition"]
        voting = part.get("members", [])
        peers = topo.get("peer_states", {})
        up = sum(1 for st in peers.values() if st.get("connected"))
        role = topo.get("role", "?")
        if role == "member":
            # the partition status names the role once degraded mode reports it
            role = part.get("role") or ("degraded" if part.get("degraded") else "primary")
        status = part.get("status", "?")
        hlc = snap["peers"].get("hlc") if isinstance(snap.get("peers"), dict) else None
        text.append(f" {topo.get('node')} ", style="bold reverse")
        text.append(f"  {topo.get('address')}  cluster of {len(voting)} voting, {up} peers up")
        text.append("  role ")
        text.append(role, style="bold " + (colour(self.app, "error") if role == "degraded" else ""))
        text.append(f"  strategy {part.get('strategy', '?')}  partition ")
        text.append(status, style="bold " + colour(self.app, STATUS_LEVEL.get(status, "")))
        if part.get("epoch") is not None:
            text.append(f"  epoch {part['epoch']}")
        if paused:
            text.append("  PAUSED", style="bold reverse")
        text.append(f"\n HLC {hlc or '-'}")
        if demo is not None:
            text.append("   demo ", style="bold")
            text.append(f"{len(demo['alive'])}/{len(demo['names'])} nodes running; faults: ")
            text.append(", ".join(demo["faults"]) or "none")
            if demo.get("restarting"):
                text.append("  (rolling restart in progress)", style="bold")
        self.update(text)
