"""``vsm-console ctl``: script a running node through its control socket.

A plain synchronous client (``socket``): one JSON line per request, one per
reply (see ``node/runtime/control.py``). Tables for people by default (rich),
the node's own dictionaries with ``--json``.

Exit status: 0 done; 1 the node refused (its reason is printed), the part is
not built yet, or ``health`` found the node degraded or awaiting an operator;
2 bad arguments (with usage) or no node at that socket.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from console.paths import default_control_path

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NO_DAEMON = 2
DEFAULT_TIMEOUT_S = 10.0
MAX_REPLY = 64 * 1024 * 1024
#: Columns when stdout is not a terminal (tables are not cut to 80 in pipes and logs).
WIDE = 160


class CtlError(Exception):
    """A failure the client reports in one line and exits with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage and exit 2, as argparse does, but testable
        self.print_usage(sys.stderr)
        raise CtlError(f"{self.prog}: error: {message}", EXIT_USAGE)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vsm-console ctl",
        description="Talk to a running node through its control socket.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--control", metavar="PATH", help="the node's control socket")
    where.add_argument(
        "--name", metavar="NODE", help="find the socket of node NODE at its default path"
    )
    parser.add_argument("--json", action="store_true", help="print the node's reply as JSON")
    parser.add_argument("--timeout", type=_positive(float), default=DEFAULT_TIMEOUT_S, metavar="S")
    # --json is accepted after the command too (`ctl topology --json`); SUPPRESS keeps
    # the subcommand from resetting a --json given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the reply as JSON"
    )
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True, parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = sub.add_parser(name, help=help, parents=[common])
        return made

    command("topology", help="this node, its peers and members")
    command("health", help="VSM health; exit 1 if degraded or awaiting an operator")
    command("partitions", help="the last partition analysis and decision")
    command("variety", help="pressure and counters per channel and per peer")
    command("check-partitions", help="analyse reachability now")
    scream = command("scream", help="an algedonic signal to every node, confirmed")
    scream.add_argument("--type", required=True, dest="signal_type", metavar="T")
    scream.add_argument("--severity", required=True, type=int, metavar="N")
    scream.add_argument("--source", metavar="S", help="default: user@host")
    scream.add_argument("--data", type=_json_object, metavar="JSON")
    resolve = command("resolve", help="end a partition: the side holding these continues")
    resolve.add_argument("--keep", required=True, metavar="NODE[,NODE...]")
    publish = command("publish", help="publish events from this node")
    publish.add_argument("type", metavar="TYPE")
    publish.add_argument("--data", type=_json_object, metavar="JSON")
    publish.add_argument("--count", type=_positive(int), default=1, metavar="N")
    history = command("history", help="partition history (journal)")
    history.add_argument("--limit", type=_positive(int), metavar="N")
    history.add_argument("--kind", metavar="K")
    watch = command("watch", help="re-print a compact status every S seconds")
    watch.add_argument("--interval", type=_positive(float), default=2.0, metavar="S")
    watch.add_argument("--count", type=_positive(int), metavar="N", help="stop after N prints")
    return parser


def socket_path(args: argparse.Namespace, env: dict[str, str] | None = None) -> str:
    """``--control``, else the default path of ``--name`` (or VSM_NAME, or this host's name)."""
    env = dict(os.environ) if env is None else env
    if args.control:
        return str(args.control)
    if not args.name and env.get("VSM_CONTROL_SOCKET"):
        return env["VSM_CONTROL_SOCKET"]
    name = args.name or env.get("VSM_NAME") or _host_name()
    return default_control_path(name, env.get("VSM_DATA_DIR"), env)


def _host_name() -> str:
    from node.config import NodeConfig

    return NodeConfig(cookie="unused").name  # the node's own default name rule


# --- talking to the node ---------------------------------------------------------------


class Client:
    """One connection to a control socket; ``call`` sends a request and reads its reply."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            self.sock.close()
            raise CtlError(f"no node is running at {path}", EXIT_NO_DAEMON) from None
        except OSError as exc:
            self.sock.close()
            raise CtlError(
                f"cannot reach the node at {path}: {exc.strerror or exc}", EXIT_NO_DAEMON
            ) from None
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        line = json.dumps({"cmd": cmd, "args": args or {}}) + "\n"
        try:
            self.sock.sendall(line.encode())
            while b"\n" not in self._buffer:
                data = self.sock.recv(65536)
                if not data:
                    raise CtlError(f"the node at {self.path} closed the connection", 2)
                self._buffer += data
                if len(self._buffer) > MAX_REPLY:
                    raise CtlError("reply too large", EXIT_NO_DAEMON)
        except TimeoutError:
            raise CtlError(f"the node at {self.path} did not answer in time", 2) from None
        except OSError as exc:
            raise CtlError(f"lost the node at {self.path}: {exc.strerror or exc}", 2) from None
        reply, self._buffer = self._buffer.split(b"\n", 1)
        decoded: dict[str, Any] = json.loads(reply)
        return decoded


def _operator() -> str:
    """Who is screaming when --source is not given: user@host, as an audit log says."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    cmd = args.cmd
    if cmd == "scream":
        body: dict[str, Any] = {"type": args.signal_type, "severity": args.severity}
        body["source"] = args.source if args.source is not None else _operator()
        if args.data is not None:
            body["data"] = args.data
        return cmd, body
    if cmd == "resolve":
        keep = [k.strip() for k in args.keep.split(",") if k.strip()]
        return cmd, {"keep": keep}
    if cmd == "publish":
        return cmd, {"type": args.type, "data": args.data or {}, "count": args.count}
    if cmd == "history":
        return cmd, {k: v for k, v in (("limit", args.limit), ("kind", args.kind)) if v}
    return cmd, {}


# --- output -------------------------------------------------------------------------------


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(*columns, title=title, box=box.SIMPLE_HEAD, title_justify="left")
    return table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (list, tuple)) for v in value):  # e.g. components: sides apart
            return " | ".join(_fmt(v) for v in value) or "-"
        return ", ".join(_fmt(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)


def _show_topology(out: Console, r: dict[str, Any]) -> None:
    part = r["partition_status"]
    out.print(
        f"{r['node']} at {r['address']} ({r['role']}), partition "
        f"{part['status']}, pressure {r['variety_pressure']['overall']:g} "
        f"({r['variety_pressure']['level']})"
    )
    table = _table("peer", "connected", "address", "role", "breaker", "events in", "backlog")
    for name, st in r["peer_states"].items():
        table.add_row(
            name,
            "yes" if st["connected"] else ("departed" if st["departed"] else "no"),
            st["address"],
            st["role"],
            st["breaker"],
            str(st["events_in"]),
            str(st["backlog"]),
        )
    out.print(table)


def _show_health(out: Console, r: dict[str, Any]) -> None:
    out.print(f"{r['node']}: {r['status']} ({'healthy' if r['healthy'] else 'NOT healthy'})")
    table = _table("system", "health")
    alarms = None
    for system, value in r["health"].items():
        if system == "algedonic" and isinstance(value, dict):
            alarms = value
            continue
        table.add_row(system, _fmt(value))
    out.print(table)
    if alarms is not None:
        lat = alarms.get("latency_ms") or {}
        out.print(
            f"algedonic: sent {alarms.get('sent', 0)}, received {alarms.get('received', 0)}, "
            f"failures {alarms.get('failures', 0)}, in flight {alarms.get('in_flight', 0)}; "
            f"confirmed latency p50 {_fmt(lat.get('p50'))} ms, p99 {_fmt(lat.get('p99'))} ms "
            f"over {lat.get('samples', 0)} signals (--json for everything)"
        )


def _show_partitions(out: Console, r: dict[str, Any]) -> None:
    table = _table("field", "value", title=f"partition status: {r['status']}")
    for key, value in r.items():
        if key == "decision" and value:
            for sub, item in value.items():
                table.add_row(f"decision.{sub}", _fmt(item))
        else:
            table.add_row(key, _fmt(value))
    out.print(table)


def _show_variety(out: Console, r: dict[str, Any]) -> None:
    pressure = r["pressure"]
    table = _table(
        "channel", "pressure", "quota", "offered", "admitted", "compressed", "throttled",
        title=f"variety: overall pressure {pressure['overall']:g} ({pressure['level']})",
    )  # fmt: skip
    for channel, st in r["stats"]["channels"].items():
        table.add_row(
            channel,
            _fmt(pressure["channels"].get(channel)),
            "unlimited" if st["quota"] is None else _fmt(st["quota"]),
            *(str(st[k]) for k in ("offered", "admitted", "compressed", "throttled")),
        )
    out.print(table)
    peers = _table(
        "peer", "offered", "sent", "compressed", "throttled", "queued", "backlogged", "dropped",
        title="replication per peer",
    )  # fmt: skip
    for name, st in r["stats"]["peers"].items():
        peers.add_row(
            name,
            *(
                str(st[k])
                for k in (
                    "offered",
                    "sent",
                    "compressed",
                    "throttled",
                    "queued",
                    "backlogged",
                    "dropped",
                )
            ),
        )
    out.print(peers)


def _show_status(out: Console, r: dict[str, Any]) -> None:
    peers = " ".join(
        f"{name}:{'up' if p['connected'] else 'down/' + p['breaker']}"
        for name, p in r["peers"].items()
    )
    out.print(
        f"{time.strftime('%H:%M:%S')} {r['node']} {r['partition']} "
        f"pressure={r['pressure']['overall']:g} health={_fmt(r['health'])} peers[{peers or '-'}]"
    )


def _show_peers(out: Console, r: dict[str, Any]) -> None:
    table = _table("peer", "connected", "breaker", "events in", "events out", "backlog")
    for name, p in r["peers"].items():
        table.add_row(
            name,
            "yes" if p["connected"] else "no",
            p["breaker"],
            str(p["events_in"]),
            str(r["events_out"].get(name, 0)),
            str(p["backlog"]),
        )
    out.print(table)


def _show_generic(out: Console, r: Any) -> None:
    if isinstance(r, dict):
        table = _table("field", "value")
        for key, value in r.items():
            table.add_row(str(key), _fmt(value))
        out.print(table)
    elif isinstance(r, list):
        table = _table("entry")
        for item in r:
            table.add_row(_fmt(item))
        out.print(table)
    else:
        out.print(_fmt(r))


def _show_history(out: Console, r: dict[str, Any]) -> None:
    rows = r.get("rows", [])
    table = _table("time (UTC)", "kind", "node", "what", title=f"journal: {len(rows)} rows")
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.get("wall", 0)))
        data = row.get("data") or {}
        what = data.get("reason") or ", ".join(
            f"{k}={_fmt(v)}" for k, v in data.items() if not isinstance(v, dict)
        )
        table.add_row(when, str(row.get("kind", "")), str(row.get("node", "")), what or "-")
    out.print(table)


SHOW: dict[str, Callable[[Console, Any], None]] = {
    "history": _show_history,
    "topology": _show_topology,
    "health": _show_health,
    "partitions": _show_partitions,
    "check-partitions": _show_partitions,
    "resolve": _show_partitions,
    "variety": _show_variety,
    "status": _show_status,
}

_EXIT_FOR_KIND = {
    "bad_request": EXIT_USAGE,
    "unknown_command": EXIT_USAGE,
    "refused": EXIT_REFUSED,
    "not_built": EXIT_REFUSED,
    "internal": EXIT_REFUSED,
}


def _print(out: Console, cmd: str, result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        SHOW.get(cmd, _show_generic)(out, result)


def _checked(reply: dict[str, Any]) -> Any:
    if reply.get("ok"):
        return reply.get("result")
    kind = str(reply.get("kind", "internal"))
    raise CtlError(str(reply.get("error", "the node refused")), _EXIT_FOR_KIND.get(kind, 1))


def run(args: argparse.Namespace, out: Console) -> int:
    client = Client(socket_path(args), timeout=args.timeout)
    try:
        if args.cmd == "watch":
            return _watch(client, args, out)
        cmd, body = _request(args)
        result = _checked(client.call(cmd, body))
        _print(out, cmd, result, args.json)
        if cmd == "health" and not result.get("healthy", True):
            return EXIT_REFUSED
        return EXIT_OK
    finally:
        client.close()


def _watch(client: Client, args: argparse.Namespace, out: Console) -> int:
    """Re-print the status every interval: redrawn on a terminal (like watch), else appended."""
    printed = 0
    try:
        while args.count is None or printed < args.count:
            if printed:
                time.sleep(args.interval)
            result = _checked(client.call("status"))
            if out.is_terminal and not args.json:
                out.clear()
                out.print(f"every {args.interval:g} s: vsm-console ctl status (ctrl+c to stop)")
                _show_status(out, result)
                _show_peers(out, result)
            else:
                _print(out, "status", result, args.json)
            printed += 1
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        # markup off: addresses such as "[::1]:7401" are data, not style tags.
        width = None if sys.stdout.isatty() else WIDE
        return run(args, Console(highlight=False, markup=False, width=width))
    except CtlError as exc:
        prefix = "" if str(exc).startswith(parser.prog) else "vsm-console ctl: "
        print(f"{prefix}{exc}", file=sys.stderr)
        return exc.code
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
