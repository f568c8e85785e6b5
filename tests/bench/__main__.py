"""``python -m tests.bench``: run the rows, print one table, optionally write JSON."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import attrs

from .report import Row, format_table, to_json
from .rows import ROWS, Settings, say


def parse_only(text: str | None) -> list[str]:
    if not text:
        return list(ROWS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROWS]
    if unknown or not names:
        raise SystemExit(
            f"bench: unknown row(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(ROWS)}"
        )
    return [name for name in ROWS if name in names]


def machine() -> dict[str, object]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument("--only", metavar="ROW[,ROW]", help=f"rows to run: {','.join(ROWS)}")
    args = parser.parse_args(argv)
    names = parse_only(args.only)
    settings = Settings.quick() if args.quick else Settings()
    started = datetime.datetime.now(datetime.UTC)
    info = machine()
    logdir = Path(tempfile.mkdtemp(prefix="vsm-bench-"))
    rows: list[Row] = []
    try:
        for name in names:
            say(f"--- {name}")
            rows.extend(ROWS[name](settings, logdir))
    finally:
        failed = any("failed" in m.note for row in rows for m in row.items)
        if failed:
            say(f"some measurements failed; worker logs kept in {logdir}")
        else:
            shutil.rmtree(logdir, ignore_errors=True)
    info["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    header = [
        f"vsm-console benchmark, {started:%Y-%m-%d %H:%M} UTC, "
        f"{'--quick' if args.quick else 'full'} run, N={settings.n:,} events",
        f"machine: {info['cpu_count']} cores ({info['cpus_usable']} usable), "
        f"load average {info['load_avg'][0]:.2f} at start and {info['load_avg_end'][0]:.2f} "
        f"at the end, Python {info['python']}",
        "every system in its own OS processes on 127.0.0.1",
        "",
    ]
    print(format_table(header, rows))
    if args.json:
        meta = {
            **info,
            "started": started.isoformat(),
            "quick": args.quick,
            "rows_run": names,
            "settings": attrs.asdict(settings),
        }
        Path(args.json).write_text(json.dumps(to_json(meta, rows), indent=2, default=str) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
