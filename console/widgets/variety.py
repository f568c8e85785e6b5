"""Variety: pressure per channel over the last minutes, and the per-channel table."""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color, ColorParseError
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from console.widgets.common import colour, fmt, sync_table

HISTORY_S = 180.0  # what the plot shows: the last three minutes
PLOT_EVERY_S = 1.0  # plotext redraws are the costly part; once a second is enough
THRESHOLDS = (0.5, 0.8)
# Plot colours by channel, as theme variables (plotext wants RGB tuples).
COLOURS = {
    "s5_policy": "secondary",
    "s4_intelligence": "accent",
    "s3_control": "primary",
    "s2_coordination": "success",
    "s1_operational": "warning",
    "general": "foreground",
}
SHORT = {
    "algedonic": "alg",
    "s5_policy": "S5",
    "s4_intelligence": "S4",
    "s3_control": "S3",
    "s2_coordination": "S2",
    "s1_operational": "S1",
    "general": "gen",
}


def level_of(pressure: float) -> str:
    if pressure < THRESHOLDS[0]:
        return "pressure-healthy"
    if pressure <= THRESHOLDS[1]:
        return "pressure-moderate"
    return "pressure-high"


class VarietyPanel(Vertical):
    """Pressure plot (thresholds drawn) and quota / rate / throttled table."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.samples: deque[tuple[float, dict[str, float]]] = deque()
        self._last_offered: dict[str, int] = {}
        self._last_wall: float | None = None
        self._last_plot = 0.0
        self.rates: dict[str, float | None] = {}

    def compose(self) -> ComposeResult:
        yield Static("Variety", classes="title")
        yield PlotextPlot(id="pressure-plot")
        yield DataTable(id="variety-table", cursor_type="none", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("chan", "press", "quota", "eff", "rate/s", "thrott", "compr", "level")

    def show(self, snap: dict[str, Any]) -> None:
        if not snap.get("running"):
            return
        wall = snap["wall"]
        per = snap["pressure"]["channels"]
        self.samples.append((wall, dict(per)))
        while self.samples and self.samples[0][0] < wall - HISTORY_S:
            self.samples.popleft()
        stats = snap["stats"]["channels"]
        dt = None if self._last_wall is None else wall - self._last_wall
        for name, row in stats.items():
            last = self._last_offered.get(name)
            offered = row["offered"]
            self.rates[name] = (
                None if last is None or not dt or offered < last else (offered - last) / dt
            )
            self._last_offered[name] = offered
        self._last_wall = wall
        self._table(per, stats)
        if wall - self._last_plot >= PLOT_EVERY_S:
            self._last_plot = wall
            self._plot(wall)

    def _table(self, per: dict[str, float], stats: dict[str, dict[str, Any]]) -> None:
        out: dict[str, list[Any]] = {}
        for name, row in stats.items():
            p = per.get(name, 0.0)
            level = level_of(p)
            style = colour(self.app, level)
            out[name] = [
                SHORT.get(name, name),
                Text(f"{p:.2f}", style=style),
                fmt(row["quota"], "g", none="∞"),
                fmt(row["effective_quota"], ".0f", none="-"),
                fmt(self.rates.get(name), ".0f"),
                str(row["throttled"]),
                fmt(row["compression_ratio"], ".1f") if row["aggregates"] else "-",
                Text(level.removeprefix("pressure-"), style=style),
            ]
        sync_table(self.query_one(DataTable), out)

    def _rgb(self, name: str) -> tuple[int, int, int]:
        try:
            return Color.parse(colour(self.app, name)).rgb
        except ColorParseError:
            return (128, 128, 128)

    def _plot(self, wall: float) -> None:
        widget = self.query_one(PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("pressure per channel, last 3 min (0.5 and 0.8 marked)")
        plt.ylim(0, 1)
        if len(self.samples) >= 1:
            xs = [t - wall for t, _ in self.samples]
            for name in SHORT:
                if name == "algedonic":
                    continue  # unlimited: always 0
                ys = [s.get(name, 0.0) for _, s in self.samples]
                plt.plot(
                    xs, ys, label=SHORT[name], marker="braille", color=self._rgb(COLOURS[name])
                )
            plt.hline(THRESHOLDS[0], self._rgb("pressure-moderate"))
            plt.hline(THRESHOLDS[1], self._rgb("pressure-high"))
            plt.yticks([0.0, *THRESHOLDS, 1.0])
            plt.xlim(-HISTORY_S, 0)
        widget.refresh()
