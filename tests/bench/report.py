"""The pure parts of the harness: percentiles, measurements, the table, the JSON.

No processes, no sockets, no clocks: the smoke test in the normal suite
(``tests/bench/test_bench_report.py``) covers this module, and only this one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

HIGHER = "higher"
LOWER = "lower"


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0 < q <= 100) by the nearest-rank method.

    Nearest rank returns a value that was actually observed (no interpolation),
    so a p99 of 200 samples is the 198th smallest: honest for latencies.
    ValueError for no values or q outside (0, 100].
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile q must be in (0, 100], got {q!r}")
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def rate(count: int, start_ns: int, end_ns: int) -> float:
    """Events per second over ``[start_ns, end_ns]``; 0.0 if nothing or no time passed."""
    if count <= 0 or end_ns <= start_ns:
        return 0.0
    return count / ((end_ns - start_ns) / 1e9)


@attrs.define
class Measurement:
    """One system's figure in one row.

    ``value`` None means there is no figure: ``note`` says why (skipped, not
    available in this build, failed). ``lost``/``sent``: for delivery rows.
    """

    system: str
    value: float | None
    unit: str
    ours: bool = False
    note: str = ""
    lost: int | None = None
    sent: int | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class Row:
    """One row of the table: a title, which way is better, and its measurements."""

    key: str
    title: str
    better: str = HIGHER
    items: list[Measurement] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)

    def add(self, item: Measurement) -> Measurement:
        self.items.append(item)
        return item


def combine_rounds(rounds: Sequence[Measurement]) -> Measurement:
    """One system's figures from interleaved rounds: the median figure, the loss
    summed over the rounds, and every round's figure in ``extra["rounds"]``.

    A round without a figure (failed, skipped) is left out of the median; with
    none left, the result has no figure and the rounds' notes say why.
    """
    if not rounds:
        raise ValueError("no rounds to combine")
    first = next((m for m in rounds if m.value is not None), rounds[0])
    figures = [m.value for m in rounds if m.value is not None]
    value = statistics.median(figures) if figures else None
    lost = None if any(m.lost is None for m in rounds) else sum(m.lost or 0 for m in rounds)
    sent = None if any(m.sent is None for m in rounds) else sum(m.sent or 0 for m in rounds)
    notes = list(dict.fromkeys(m.note for m in rounds if m.note))
    combined = Measurement(
        first.system, value, first.unit, first.ours, "; ".join(notes), lost, sent
    )
    combined.extra.update(first.extra)
    combined.extra["rounds"] = [m.value for m in rounds]
    return combined


def paired_ratios(ours: Measurement, peer: Measurement) -> list[float]:
    """ours/peer round by round (both combined by :func:`combine_rounds`), for
    the rounds where both have a figure: a drift of the machine's speed then
    moves both sides of each ratio."""
    pairs = zip(ours.extra.get("rounds", []), peer.extra.get("rounds", []), strict=False)
    return [a / b for a, b in pairs if a is not None and b]


def ratio_text(row: Row, peer: Measurement) -> str:
    """``ours/peer`` for every figure of ours in the row, e.g. ``publish 0.81x``.

    Empty for our own lines and for peers without a figure. With one figure of
    ours the label is left out. Whether above or below 1 is good is said in
    the row's title (``higher/lower is better``).
    """
    if peer.ours or peer.value is None or peer.value == 0:
        return ""
    ours = [m for m in row.items if m.ours and m.value is not None]
    parts = []
    for m in ours:
        r = m.value / peer.value  # type: ignore[operator]
        label = m.extra.get("label", m.system)
        parts.append(f"{r:.2f}x" if len(ours) == 1 else f"{label} {r:.2f}x")
    return ", ".join(parts)


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def format_lost(m: Measurement) -> str:
    if m.sent is None or m.lost is None:
        return ""
    if m.lost < 0:
        return f"{-m.lost:,} extra of {m.sent:,}"
    return f"{m.lost:,} of {m.sent:,}"


HEADERS = ("system", "figure", "lost", "ours/peer", "note")


def format_table(header: Sequence[str], rows: Sequence[Row]) -> str:
    """The one table: ``header`` lines, then per row a title line and one line per system."""
    lines: list[list[str]] = []
    titles: dict[int, str] = {}
    for row in rows:
        direction = f"{row.better} is better"
        titles[len(lines)] = f"{row.title} ({direction})"
        lines.append([])
        for m in row.items:
            lines.append(
                [
                    "  " + m.system,
                    format_value(m.value, m.unit),
                    format_lost(m),
                    ratio_text(row, m),
                    m.note,
                ]
            )
        for note in row.notes:
            titles[len(lines)] = "  note: " + note
            lines.append([])
    widths = [len(h) for h in HEADERS]
    for cells in lines:
        for i, cell in enumerate(cells[:-1]):
            widths[i] = max(widths[i], len(cell))

    def render(cells: Sequence[str]) -> str:
        body = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells[:-1])
        ]
        return "  ".join([*body, cells[-1]]).rstrip()

    out = list(header)
    out.append(render(HEADERS))
    out.append("-" * (sum(widths[:-1]) + 2 * (len(widths) - 1) + len(HEADERS[-1])))
    for index, cells in enumerate(lines):
        out.append(titles[index] if index in titles else render(cells))
    return "\n".join(out)


def to_json(meta: dict[str, Any], rows: Sequence[Row]) -> dict[str, Any]:
    """Everything of one run as JSON-able data (``--json FILE``)."""
    out_rows = []
    for row in rows:
        items = []
        for m in row.items:
            item = attrs.asdict(m)
            item["ratio"] = ratio_text(row, m) or None
            items.append(item)
        out_rows.append(
            {
                "key": row.key,
                "title": row.title,
                "better": row.better,
                "items": items,
                "notes": row.notes,
            }
        )
    return {"meta": meta, "rows": out_rows}
