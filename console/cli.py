"""Command line: ``vsm-console`` (TUI), ``--demo``, ``--daemon``, ``ctl``.

Modes whose parts are not built yet say so plainly and exit with status 2;
nothing here draws a fake screen.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from console import __version__

EXIT_NOT_BUILT = 2

NOT_BUILT = {
    "tui": "the operator console (Textual TUI) is not built yet",
    "demo": "the demo (TUI over a simulated cluster) is not built yet",
    "daemon": "the headless daemon mode is not built yet",
    "ctl": "the control-socket client (ctl) is not built yet",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsm-console",
        description=(
            "A clustered event bus built as Stafford Beer's Viable System Model, "
            "with a terminal operator console."
        ),
        epilog="Run without options for the TUI with an embedded node.",
    )
    parser.add_argument("--version", action="version", version=f"vsm-console {__version__}")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--demo",
        nargs="?",
        type=int,
        const=3,
        metavar="N",
        help="run the TUI over N in-process nodes on a simulated network (default 3)",
    )
    mode.add_argument("--daemon", action="store_true", help="run the node headless")
    parser.add_argument("--config", metavar="PATH", help="TOML configuration file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    ctl = sub.add_parser("ctl", help="talk to a running node's control socket")
    ctl.add_argument("ctl_args", nargs=argparse.REMAINDER, help="control command and arguments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "ctl":
        part = "ctl"
    elif args.daemon:
        part = "daemon"
    elif args.demo is not None:
        part = "demo"
    else:
        part = "tui"
    print(f"vsm-console: {NOT_BUILT[part]}.", file=sys.stderr)
    print(
        "Built so far: the node core (events, hybrid logical clock, wire codec); "
        "see README.md for the roadmap.",
        file=sys.stderr,
    )
    return EXIT_NOT_BUILT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
