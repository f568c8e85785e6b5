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

LATENCY_KEYS = (("p50", ("latency_p50_ms", "p50_ms")), ("p99", ("latency_p99_ms", "p99_ms")))


def _latency(report: dict[str, Any], which: str) -> float | None:
    for label, names in LATENCY_KEYS:
        if label != which:
            continue
        for key in names:
            if isinstance(report.get(key), (int, float)):
                return float(report[key])
    return None


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
            "time", "type", "severity", "source", "directive", "confirmed", "latency"
        )

    def show(self, snap: dict[str, Any], signals: list[Any]) -> None:
        latency = self.query_one("#algedonic-latency", Static)
        spark = self.query_one(Sparkline)
        report = snap.get("health", {}).get("algedonic") if snap.get("running") else None
        if isinstance(report, dict):
            p50, p99 = _latency(report, "p50"), _latency(report, "p99")
            if p99 is not None:
                self.p99.append(p99)
            latency.update(f"confirmed latency p50 {fmt(p50, '.1f')} ms, p99 {fmt(p99, '.1f')} ms")
            spark.display = bool(self.p99)
            spark.data = list(self.p99)
        else:
            spark.display = False
            latency.update(
                Text(
                    "confirmed latency: not built yet (the algedonic broadcast with "
                    "confirmations is not in this node); signals below are unconfirmed",
                    style=colour(self.app, "warning"),
                )
            )
        out: dict[str, list[Any]] = {}
        for line in list(signals)[-8:][::-1]:
            data = line.data
            out[f"{line.at}-{line.source}-{line.event_type}"] = [
                time.strftime("%H:%M:%S", time.localtime(line.at)),
                line.event_type,
                str(data.get("severity", "-")),
                line.source,
                str(data.get("directive", "-")),
                str(data.get("confirmed", "unconfirmed")),
                fmt(data.get("latency_ms"), ".1f"),
            ]
        sync_table(self.query_one(DataTable), out)
