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
    """The figure for ``which`` ("p50" or "p99") under whatever key the node uses for it
    (``latency_p99_ms``, ``p99_ms``, ...): the first numeric key that names it."""
    for key, value in sorted(report.items()):
        if which in key and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def recent(report: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The node's own list of recent signals, if it reports one."""
    for key in ("recent", "signals", "recent_signals"):
        value = report.get(key)
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return value
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
            line.update(f"confirmed latency p50 {fmt(p50, '.1f')} ms, p99 {fmt(p99, '.1f')} ms")
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
                out[f"{i}-{sig.get('id', '')}"] = [
                    str(sig.get("at", sig.get("time", "-"))),
                    str(sig.get("type", "-")),
                    str(sig.get("severity", "-")),
                    str(sig.get("source", "-")),
                    str(sig.get("directive", "-")),
                    str(sig.get("status", sig.get("confirmed", "-"))),
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
