"""Circuit breakers: one row per peer."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from console.widgets.common import colour, fmt, not_built, sync_table


class BreakerPanel(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("Circuit breakers", classes="title")
        yield Static("", id="breaker-note", classes="note")
        yield DataTable(id="breaker-table", cursor_type="none")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(
            "peer",
            "link",
            "breaker",
            "fail%",
            "seq",
            "since",
            "retry",
            "phi",
            "rtt",
            "queue",
            "backlog",
        )

    def show(self, snap: dict[str, Any]) -> None:
        if not snap.get("running"):
            return
        table = self.query_one(DataTable)
        note = self.query_one("#breaker-note", Static)
        out: dict[str, list[Any]] = {}
        report = snap["peers"]
        reason = not_built(report)
        if reason is not None:
            # Fall back to what topology() has: connection and breaker state only.
            note.update(f"breaker details: {reason}")
            for name, st in snap["topology"].get("peer_states", {}).items():
                state = st.get("breaker", "?")
                out[name] = [
                    name,
                    "up" if st.get("connected") else "down",
                    Text(state, style=colour(self.app, f"breaker-{state}")),
                    *["-"] * 7,
                    str(st.get("backlog", "-")),
                ]
            sync_table(table, out)
            return
        note.update("rtt: a frame written to its ack, smoothed (- until events flowed)")
        if not report["peers"]:
            note.update("no peers known yet")
        for name, st in report["peers"].items():
            state = st["breaker"]
            rate = st["failure_rate"]
            out[name] = [
                name,
                "departed" if st["departed"] else ("up" if st["connected"] else "down"),
                Text(state, style=colour(self.app, f"breaker-{state}")),
                fmt(None if rate is None else rate * 100, ".0f"),
                str(st["consecutive_failures"]),
                fmt(st["in_state_s"], ".0f", none="-")
                + ("s" if st["in_state_s"] is not None else ""),
                fmt(st["retry_in_s"], ".1f") + ("s" if st["retry_in_s"] is not None else ""),
                fmt(st["phi"], ".1f"),
                fmt(st["round_trip_ms"], ".1f"),
                str(st["queued"]),
                str(st["backlog"]),
            ]
        sync_table(table, out)
