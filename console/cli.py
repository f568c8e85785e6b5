"""Command line: ``vsm-console`` (TUI), ``--demo``, ``--daemon``, ``ctl``.

Modes whose parts are not built yet say so plainly and exit with status 2;
nothing here draws a fake screen.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from console import __version__

EXIT_NOT_BUILT = 2
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsm-console",
        description=(
            "A clustered event bus built as Stafford Beer's Viable System Model, "
            "with a terminal operator console."
        ),
        epilog="Run without options for the TUI with an embedded node. Settings come from "
        "defaults < --config file < VSM_* environment < flags.",
    )
    parser.add_argument("--version", action="version", version=f"vsm-console {__version__}")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--demo",
        nargs="?",
        type=int,
        const=5,
        metavar="N",
        help="run the TUI over N in-process nodes on a simulated network (default 5)",
    )
    mode.add_argument("--daemon", action="store_true", help="run the node headless")
    tui = parser.add_argument_group("console")
    tui.add_argument("--theme", metavar="NAME", help="colour theme (default vsm-dark)")
    node = parser.add_argument_group("node")
    node.add_argument("--config", metavar="PATH", help="TOML configuration file ([node] table)")
    node.add_argument("--name", help="node name (default: host name)")
    node.add_argument("--cluster", help="cluster name (default: vsm)")
    node.add_argument(
        "--listen", metavar="HOST:PORT", help="listen address (default 127.0.0.1:7401)"
    )
    node.add_argument("--advertise", metavar="HOST:PORT", help="address peers should dial")
    node.add_argument(
        "--seeds", metavar="HOST:PORT[,...]", help="comma-separated addresses of known members"
    )
    node.add_argument("--cookie", help="shared cluster secret (prefer VSM_COOKIE or a file)")
    node.add_argument("--cookie-file", metavar="PATH", help="file holding the cluster cookie")
    node.add_argument(
        "--insecure-cookie",
        action="store_true",
        help="accept a cookie shorter than 16 bytes (tests and demos only)",
    )
    node.add_argument(
        "--strategy",
        choices=["static_quorum", "dynamic_weights", "vsm_health", "manual"],
        help="partition resolution strategy",
    )
    node.add_argument("--role", choices=["member", "observer"])
    node.add_argument("--discovery", choices=["static", "gossip", "dns"])
    node.add_argument(
        "--data-dir",
        metavar="PATH",
        help="membership, decisions and the journal (default for --daemon: "
        "$XDG_STATE_HOME/vsm-console/<cluster>/<name>)",
    )
    node.add_argument(
        "--no-journal",
        action="store_true",
        help="run without the audit journal (e.g. when it is corrupt or unwritable)",
    )
    node.add_argument("--log-level", choices=["debug", "info", "warning", "error", "critical"])
    ops = parser.add_argument_group("daemon")
    ops.add_argument(
        "--control",
        metavar="PATH",
        help="control socket for ctl (default: $XDG_RUNTIME_DIR/vsm-console/<node>.sock, "
        "else in the data dir, else /tmp/vsm-console-<uid>/<node>.sock)",
    )
    ops.add_argument("--no-control", action="store_true", help="serve no control socket")
    ops.add_argument("--metrics", metavar="HOST:PORT", help="serve /metrics and /healthz here")
    ops.add_argument(
        "--quorum-size", type=int, metavar="N", help="static_quorum: members a side needs"
    )
    ops.add_argument("--log-format", choices=["text", "json"], help="log lines (default text)")
    ops.add_argument(
        "--algedonic-port",
        type=int,
        metavar="PORT",
        help="UDP port for algedonic datagrams, advertised to peers (default: the TCP "
        "port's number; 0: a free one)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    ctl = sub.add_parser("ctl", help="talk to a running node's control socket")
    ctl.add_argument("ctl_args", nargs=argparse.REMAINDER, help="control command and arguments")
    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser(
        "check", help="validate a TOML file without starting anything; every problem, exit 1 if any"
    )
    check.add_argument("file", metavar="FILE")
    return parser


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags that were given, as config field overrides."""
    out: dict[str, Any] = {
        "name": args.name,
        "cluster": args.cluster,
        "listen": args.listen,
        "advertise": args.advertise,
        "cookie": args.cookie,
        "cookie_file": args.cookie_file,
        "strategy": args.strategy,
        "role": args.role,
        "discovery": args.discovery,
        "data_dir": args.data_dir,
        "log_level": args.log_level,
        "control_socket": args.control,
        "metrics_listen": args.metrics,
        "quorum_size": args.quorum_size,
        "log_format": args.log_format,
        "algedonic_port": args.algedonic_port,
    }
    if getattr(args, "no_journal", False):
        out["journal"] = False
    if getattr(args, "insecure_cookie", False):
        out["insecure_cookie"] = True
    if args.seeds:
        out["seeds"] = [s.strip() for s in args.seeds.split(",") if s.strip()]
    return {k: v for k, v in out.items() if v is not None}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ctl"]:  # ctl has its own parser (see console/ctl.py)
        from console import ctl as ctl_client

        return ctl_client.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "config":
        from console import configcheck

        return configcheck.main(args.file)
    if args.command == "ctl":  # after other options: `vsm-console --name a ctl topology`
        from console import ctl as ctl_client

        where = ["--control", args.control] if args.control else []
        if not where and args.name:
            where = ["--name", args.name]
        return ctl_client.main([*where, *args.ctl_args])
    if args.daemon:
        from console import daemon
        from console.configcheck import refuse_bad_cookie_source, refuse_bad_file
        from node.config import load_config
        from node.errors import ConfigError

        if args.config and refuse_bad_file(args.config):
            return EXIT_CONFIG
        if refuse_bad_cookie_source(args):
            return EXIT_CONFIG
        try:
            config = load_config(args.config, overrides=overrides(args))
        except ConfigError as exc:
            print(f"vsm-console: bad configuration: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        return daemon.main(config, control=not args.no_control)
    from console import tui

    return tui.main(args, overrides(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
