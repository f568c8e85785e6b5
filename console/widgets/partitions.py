"""Partitions: status, components with members and health, links, decision, banner."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from console.widgets.common import colour, health_level, not_built


def member_health(snap: dict[str, Any]) -> dict[str, float]:
    """Overall health per member: ours from health_report, peers' from their heartbeats."""
    out: dict[str, float] = {}
    node = snap["topology"].get("node")
    if node is not None:
        out[node] = float(snap["health"].get("overall", 0.0))
    report = snap.get("peers")
    if not_built(report) is None and isinstance(report, dict):
        for name, st in report.get("peers", {}).items():
            if st.get("health") is not None:
                out[name] = float(st["health"])
    return out


def describe_entry(entry: Any) -> str:
    """One journal entry in a line, whatever its shape (a dict of fields, or text)."""
    if not isinstance(entry, dict):
        return str(entry)[:120]
    when = entry.get("time", entry.get("at"))
    head = time.strftime("%H:%M:%S ", time.localtime(when)) if isinstance(when, int | float) else ""
    kind = entry.get("kind", entry.get("type", ""))
    rest = ", ".join(
        f"{k}={v}" for k, v in entry.items() if k not in ("time", "at", "kind", "type")
    )
    return f"{head}{kind} {rest}"[:160]


class PartitionPanel(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("Partitions", classes="title")
        yield Static("", id="partition-banner")
        yield Static("", id="partition-body")

    def show(self, snap: dict[str, Any]) -> None:
        banner = self.query_one("#partition-banner", Static)
        body = self.query_one("#partition-body", Static)
        if not snap.get("running"):
            banner.display = False
            body.update("node not running")
            return
        part = snap["partition"]
        status = part["status"]
        awaiting = status == "awaiting_operator"
        banner.display = awaiting
        self.set_class(awaiting, "awaiting")
        if awaiting:
            banner.update(
                Text(
                    " PARTITION AWAITING OPERATOR: press r to choose the side that continues ",
                    style="bold reverse " + colour(self.app, "error"),
                )
            )
        healths = member_health(snap)
        text = Text()
        text.append("status ")
        text.append(status, style="bold")
        text.append(f"   strategy {part.get('strategy')}\n")
        for i, comp in enumerate(part.get("components", []), 1):
            text.append(f" side {i}: ")
            for name in comp:
                h = healths.get(name)
                style = colour(self.app, health_level(h)) if h is not None else ""
                text.append(name, style=style)
                text.append(f"({h:.2f}) " if h is not None else "(?) ")
            text.append("\n")
        if part.get("asymmetric"):
            links = ", ".join(f"{a}->{b}" for a, b in part["asymmetric"])
            text.append(f" one-way: {links}\n", style=colour(self.app, "warning"))
        if part.get("indirect"):
            text.append(f" indirect: {', '.join(map(str, part['indirect']))}\n")
        dec = part.get("decision")
        if dec:
            text.append(" last decision: " if status == "unstable" else " decision: ")
            text.append(dec["reason"], style="italic")
            if dec.get("downed"):
                text.append(f"\n degraded: {', '.join(dec['downed'])}")
            text.append("\n")
        stable_for = part.get("stable_for_s")
        after = snap.get("stable_after_s")
        if status != "healthy" and stable_for is not None and after is not None:
            left = after - stable_for
            if left > 0:
                text.append(f" picture stable in {left:.1f}s (needs {after:g}s unchanged)\n")
            else:
                text.append(f" picture stable for {stable_for:.0f}s\n")
        history = snap.get("history") or {}
        if "entries" in history:
            entries = history["entries"]
            text.append(f" history ({len(entries)} latest):\n" if entries else " history: empty\n")
            for entry in entries[::-1]:
                text.append(f"  {describe_entry(entry)}\n")
        elif "error" in history:
            text.append(f" history: {history['error']}\n", style=colour(self.app, "error"))
        elif "not_built" in history:
            text.append(f" history: {history['not_built']}\n", style="dim")
        body.update(text)
