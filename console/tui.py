"""``vsm-console`` and ``vsm-console --demo [N]``: build the session, run the app.

No flags: the TUI with an embedded node, configured exactly as ``--daemon``
would be (defaults < ``--config`` < ``VSM_*`` < flags), serving the same control
socket (``ctl``) and, if configured, ``/metrics``; ``--seeds HOST:PORT
--role observer`` joins running daemons as an observer. ``--demo N``: N nodes
on the simulated network (of the node flags only ``--strategy`` applies there, and
``--role observer``, which adds an observer "op" and views the cluster from it).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from console.demo import DemoOptions
from console.themes import load_themes

EXIT_USAGE = 2


def known_themes() -> set[str]:
    from textual.theme import BUILTIN_THEMES

    specs, _ = load_themes()
    return {s.name for s in specs} | set(BUILTIN_THEMES)


def main(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from console.app import make_app
    from console.configcheck import refuse_bad_cookie_source, refuse_bad_file
    from console.daemon import control_path
    from console.session import Session
    from node.config import load_config
    from node.errors import ConfigError

    if args.theme is not None and args.theme not in known_themes():
        names = ", ".join(sorted(known_themes()))
        print(f"vsm-console: unknown theme {args.theme!r}; known: {names}", file=sys.stderr)
        return EXIT_USAGE
    if args.demo is not None:
        try:
            options = DemoOptions(
                nodes=args.demo,
                strategy=args.strategy or "static_quorum",
                observer=args.role == "observer",
            )
            session = Session(demo=options)
        except ValueError as exc:
            print(f"vsm-console: {exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        if args.config and refuse_bad_file(args.config):
            return EXIT_USAGE
        if refuse_bad_cookie_source(args):
            return EXIT_USAGE
        try:
            config = load_config(args.config, overrides=overrides)
        except ConfigError as exc:
            print(f"vsm-console: bad configuration: {exc}", file=sys.stderr)
            return EXIT_USAGE
        control = None if args.no_control else control_path(config)
        session = Session(config, control=control)
    app = make_app(session, theme=args.theme)
    from node.runtime.gctune import tune_gc

    tune_gc()  # the process hosts node(s): see node.runtime.gctune
    code = app.run()
    return int(app.return_code if app.return_code is not None else (code or 0))
