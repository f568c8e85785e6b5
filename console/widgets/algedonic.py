"""Algedonic: confirmed latency over time, recent signals.

Confirmations (redundant paths, acks, retries) come with the algedonic
broadcast; until the node reports them under ``health_report()["algedonic"]``
this panel says so, and lists the algedonic events it has seen, unconfirmed.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Sparkline, Static

from console.widgets.common import colour, fmt, sync_table


def latency(report: dict[str, Any], which: str) -> float | None:
    """``which`` ("p50" or "p99") of the confirmed latency, in ms: from the node's
    ``latency_ms`` table, or a top-level key naming it (``latency_p99_ms``...)."""
    table = report.get("latency_ms")
    if isinstance(table, dict) and isinstance(table.get(which), int | float):
        return float(table[which])
    for key, value in sorted(report.items()):
        if which in key and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def recent(report: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Signals the node reports (sent and received), oldest first; None if it reports none."""
    rows: list[dict[str, Any]] = []
    found = False
    for key in ("last", "last_received", "recent", "signals"):
        value = report.get(key)
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            found = True
            rows.extend(value)
    if not found:
        return None
    return sorted(
        rows, key=lambda r: r.get("time", 0) if isinstance(r.get("time"), int | float) else 0
    )


def outcome(sig: dict[str, Any]) -> str:
    """Confirmed / failed for a signal this node sent; the path for one it received."""
    confirmed, failed = sig.get("confirmed"), sig.get("failed")
    if isinstance(confirmed, list) and isinstance(failed, list):
        text = f"{len(confirmed)} confirmed"
        return text + (f", {len(failed)} FAILED ({', '.join(map(str, failed))})" if failed else "")
    if "path" in sig:
        return f"received ({sig['path']})"
    return str(sig.get("status", confirmed if confirmed is not None else "-"))


# Directives in a word, so the table fits half a screen (the help and README spell them out).
DIRECTIVES = {
    "immediate_intervention_required": "INTERVENE",
    "policy_review_required": "review",
    "maintain_current_state": "maintain",
}


def clock(value: Any) -> str:
    if isinstance(value, int | float):
        return time.strftime("%H:%M:%S", time.localtime(value))
    return "-" if value is None else str(value)


class AlgedonicPanel(Vertical):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.p99: deque[float] = deque(maxlen=120)

    def compose(self) -> ComposeResult:
        yield Static("Algedonic", classes="title")
        yield Static("", id="algedonic-latency")
        yield Sparkline([], id="algedonic-spark")
        yield DataTable(id="algedonic-table", cursor_type="none")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(
            "time", "type", "sev", "from", "directive", "confirmed", "ms"
        )

    def show(self, snap: dict[str, Any], signals: list[Any]) -> None:
        line = self.query_one("#algedonic-latency", Static)
        spark = self.query_one(Sparkline)
        report = snap.get("health", {}).get("algedonic") if snap.get("running") else None
        if isinstance(report, dict):
            p50, p99 = latency(report, "p50"), latency(report, "p99")
            if p99 is not None:
                self.p99.append(p99)
            samples = (report.get("latency_ms") or {}).get("samples")
            text = f"confirmed latency p50 {fmt(p50, '.1f')} ms, p99 {fmt(p99, '.1f')} ms"
            if samples is not None:
                text += f" ({samples} broadcasts)"
            counts = [
                f"{key} {report[key]}"
                for key in ("sent", "received", "failures", "in_flight")
                if isinstance(report.get(key), int)
            ]
            if counts:
                text += "\n" + ", ".join(counts)
            style = colour(self.app, "error") if report.get("failures") else ""
            line.update(Text(text, style=style))
            spark.display = bool(self.p99)
            spark.data = list(self.p99)
        else:
            spark.display = False
            line.update(
                Text(
                    "confirmed latency: not built yet (the algedonic broadcast with "
                    "confirmations is not in this node); signals below are unconfirmed",
                    style=colour(self.app, "warning"),
                )
            )
        out: dict[str, list[Any]] = {}
        reported = recent(report) if isinstance(report, dict) else None
        if reported is not None:
            for i, sig in enumerate(reported[-8:][::-1]):
                origin = sig.get("origin")
                source = str(sig.get("source", "-"))
                out[f"{i}-{sig.get('id', '')}"] = [
                    clock(sig.get("time", sig.get("at"))),
                    str(sig.get("type", "-")),
                    str(sig.get("severity", "-")),
                    source + (f"@{origin}" if origin and str(origin) not in source else ""),
                    DIRECTIVES.get(str(sig.get("directive")), str(sig.get("directive", "-"))),
                    outcome(sig),
                    fmt(sig.get("latency_ms"), ".1f"),
                ]
            sync_table(self.query_one(DataTable), out)
            return
        for seen in list(signals)[-8:][::-1]:
            data = seen.data
            out[f"{seen.at}-{seen.source}-{seen.event_type}"] = [
                time.strftime("%H:%M:%S", time.localtime(seen.at)),
                seen.event_type,
                str(data.get("severity", "-")),
                seen.source,
                str(data.get("directive", "-")),
                str(data.get("confirmed", "unconfirmed")),
                fmt(data.get("latency_ms"), ".1f"),
            ]
        sync_table(self.query_one(DataTable), out)
