"""The control socket: a Unix socket serving JSON lines to ``vsm-console ctl``.

One request per line, one reply per line::

    -> {"cmd": "publish", "args": {"type": "task_execution", "count": 10}}
    <- {"ok": true, "result": {"published": 10, ...}}
    <- {"ok": false, "kind": "refused", "error": "nothing to resolve: ..."}

``kind`` says what went wrong and whose fault it is: ``bad_request`` (not
JSON, not an object, a line over the limit, bad arguments), ``unknown_command``,
``refused`` (the node said no: a resolution that does not fit, an event type
the node will not publish), ``not_built`` (that subsystem is not built yet)
and ``internal`` (a bug here; logged with its traceback). After any error the
connection stays usable. Results are the facade's own dictionaries.

The socket file is created mode 0600 (inside a 0700 directory when we create
the directory), so only the node's user can steer it; the file is removed when
the server stops. Binding is separate from serving (:func:`bind_control`), so
the daemon can refuse to start with one line when the path is taken.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import trio

from node.errors import ListenError, NotBuiltError, ResolutionError, VsmError

log = logging.getLogger("vsm.control")

#: A request line longer than this is refused (the connection stays usable).
DEFAULT_MAX_LINE: Final = 64 * 1024
#: Connections served at once; more are told so and closed.
DEFAULT_MAX_CLIENTS: Final = 16
#: ``publish --count`` ceiling: one request must not occupy the node for minutes.
MAX_PUBLISH_COUNT: Final = 1_000_000
#: Publishes between checkpoints, so a big ``--count`` does not starve the node's other tasks.
PUBLISH_SLICE: Final = 1000
#: Kinds of errors in replies.
ERROR_KINDS: Final = ("bad_request", "unknown_command", "refused", "not_built", "internal")


class ControlRequestError(VsmError):
    """A request the control server answers with an error reply of ``kind``."""

    def __init__(self, message: str, *, kind: str = "bad_request") -> None:
        super().__init__(message)
        self.kind = kind


# --- binding ------------------------------------------------------------------------


def _clear_stale(path: Path) -> None:
    """Remove a socket file left by a node that died; refuse if one is serving there."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"cannot open the control socket {path}: it exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # stale: nobody listens
        return
    except OSError as exc:
        raise ListenError(f"cannot open the control socket {path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise ListenError(f"cannot open the control socket {path}: a node is already serving there")


def _check_parent(path: Path) -> None:
    """Refuse a directory where others could replace our socket with theirs."""
    mode = path.parent.stat().st_mode
    if mode & 0o002 and not mode & stat.S_ISVTX:
        raise ListenError(
            f"cannot open the control socket {path}: its directory is writable by others "
            f"(mode {stat.S_IMODE(mode):04o}) and not sticky"
        )


async def bind_control(path: str) -> trio.SocketListener:
    """Bind and listen on the Unix socket ``path`` (mode 0600). ListenError if not possible."""
    where = Path(path)
    try:
        if not where.parent.exists():
            where.parent.mkdir(mode=0o700, parents=True)
        _check_parent(where)
        _clear_stale(where)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # umask, not chmod after bind: no moment when the socket is open to others.
        old = os.umask(0o177)
        try:
            await sock.bind(path)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        sock.listen(DEFAULT_MAX_CLIENTS)
    except OSError as exc:
        raise ListenError(f"cannot open the control socket {path}: {exc.strerror or exc}") from None
    return trio.SocketListener(sock)


# --- serving ------------------------------------------------------------------------------


class ControlServer:
    """Serves the control protocol for one node. See the module docstring."""

    def __init__(
        self,
        node: Any,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        self.node = node
        self.max_line = max_line
        self.max_clients = max_clients
        self.clients = 0
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.commands: dict[str, Callable[[Mapping[str, Any]], Awaitable[Any]]] = {
            "ping": self._ping,
            "status": self._status,
            "topology": self._topology,
            "health": self._health,
            "partitions": self._partitions,
            "variety": self._variety,
            "check-partitions": self._check_partitions,
            "resolve": self._resolve,
            "scream": self._scream,
            "publish": self._publish,
            "history": self._history,
        }

    async def serve(
        self, listener: trio.SocketListener, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept connections until cancelled; then close and remove the socket file."""
        path = listener.socket.getsockname()
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(path)
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:  # EMFILE and the like: keep serving
                        log.warning("control socket accept failed: %s", exc)
                        await trio.sleep(0.1)
                        continue
                    nursery.start_soon(self._connection, stream)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()
            if isinstance(path, str) and path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    async def _connection(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self.clients >= self.max_clients:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.send_all(
                        _error("refused", f"too many control clients ({self.max_clients})")
                    )
                return
            self.clients += 1
            try:
                await self._lines(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away mid-reply
            finally:
                self.clients -= 1

    async def _lines(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        discarding = False  # inside a line already refused for its length
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            buffer += data
            while True:
                end = buffer.find(b"\n")
                if end < 0:
                    if len(buffer) > self.max_line:
                        if not discarding:
                            self._count("bad_request")
                            await stream.send_all(
                                _error("bad_request", f"request line exceeds {self.max_line} bytes")
                            )
                        discarding = True
                        buffer.clear()
                    break
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                if discarding:
                    discarding = False
                    continue
                if line.strip():
                    await stream.send_all(await self.handle_line(line))

    async def handle_line(self, line: bytes) -> bytes:
        """One request line in, one reply line out (never raises for bad input)."""
        self.requests += 1
        try:
            cmd, args = _parse(line, self.max_line)
            handler = self.commands.get(cmd)
            if handler is None:
                raise ControlRequestError(
                    f"unknown command {cmd!r:.60} (known: {', '.join(sorted(self.commands))})",
                    kind="unknown_command",
                )
            result = await handler(args)
        except ControlRequestError as exc:
            return self._fail(exc.kind, str(exc))
        except NotBuiltError as exc:
            return self._fail("not_built", str(exc))
        except (ResolutionError, VsmError, ValueError, TypeError) as exc:
            return self._fail("refused", str(exc))
        except Exception as exc:
            log.exception("control command failed")
            return self._fail("internal", f"{type(exc).__name__}: {exc}")
        return (json.dumps({"ok": True, "result": result}, default=str) + "\n").encode()

    def _fail(self, kind: str, message: str) -> bytes:
        self._count(kind)
        return _error(kind, message)

    def _count(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    # --- commands ---------------------------------------------------------------------

    async def _ping(self, args: Mapping[str, Any]) -> Any:
        _no_args("ping", args)
        return {"node": self.node.name, "pid": os.getpid()}

    async def _status(self, args: Mapping[str, Any]) -> Any:
        """A compact status (what ``ctl watch`` re-prints)."""
        _no_args("status", args)
        node = self.node
        peers = node.bridge.peer_states()
        part = node.partition_status()
        return {
            "node": node.name,
            "address": node.address,
            "partition": part["status"],
            "pressure": node.variety_pressure(),
            "health": node.health_report().get("overall"),
            "peers": {
                name: {
                    "connected": st["connected"],
                    "breaker": st["breaker"],
                    "events_in": st["events_in"],
                    "backlog": st["backlog"],
                }
                for name, st in peers.items()
            },
            "events_out": {
                name: out.get("sent", 0) for name, out in node.variety_stats()["peers"].items()
            },
        }

    async def _topology(self, args: Mapping[str, Any]) -> Any:
        _no_args("topology", args)
        return self.node.topology()

    async def _health(self, args: Mapping[str, Any]) -> Any:
        _no_args("health", args)
        status = self.node.partition_status()["status"]
        return {
            "node": self.node.name,
            "status": status,
            "healthy": status not in ("degraded", "awaiting_operator"),
            "health": self.node.health_report(),
        }

    async def _partitions(self, args: Mapping[str, Any]) -> Any:
        _no_args("partitions", args)
        return self.node.partition_status()

    async def _variety(self, args: Mapping[str, Any]) -> Any:
        _no_args("variety", args)
        return {"pressure": self.node.variety_pressure(), "stats": self.node.variety_stats()}

    async def _check_partitions(self, args: Mapping[str, Any]) -> Any:
        _no_args("check-partitions", args)
        return await self.node.check_partitions()

    async def _resolve(self, args: Mapping[str, Any]) -> Any:
        _allowed("resolve", args, {"keep", "operator"})
        keep = args.get("keep")
        if (
            not isinstance(keep, list)
            or not keep
            or not all(isinstance(k, str) and k for k in keep)
        ):
            raise ControlRequestError("resolve needs 'keep': a non-empty list of node names")
        operator = args.get("operator", "ctl")
        if not isinstance(operator, str):
            raise ControlRequestError("resolve: 'operator' must be a string")
        log.info("control: resolve keeping %s (operator %s)", ",".join(keep), operator)
        return await self.node.resolve_partition(keep, operator=operator)

    async def _scream(self, args: Mapping[str, Any]) -> Any:
        _allowed("scream", args, {"type", "severity", "source", "data"})
        log.info("control: algedonic scream %s", json.dumps(dict(args), default=str)[:200])
        return await self.node.algedonic_scream(dict(args))

    async def _publish(self, args: Mapping[str, Any]) -> Any:
        _allowed("publish", args, {"type", "data", "count"})
        event_type = args.get("type")
        if not isinstance(event_type, str):
            raise ControlRequestError("publish needs 'type': an event type string")
        data = args.get("data") or {}
        if not isinstance(data, dict):
            raise ControlRequestError("publish: 'data' must be a JSON object")
        count = args.get("count", 1)
        if type(count) is not int or not 1 <= count <= MAX_PUBLISH_COUNT:
            raise ControlRequestError(f"publish: 'count' must be an int in 1..{MAX_PUBLISH_COUNT}")
        last = None
        for i in range(count):
            last = self.node.publish(event_type, data)
            if (i + 1) % PUBLISH_SLICE == 0:
                await trio.lowlevel.checkpoint()
        assert last is not None
        log.info("control: published %d %s", count, event_type)
        return {
            "published": count,
            "type": event_type,
            "channel": last.channel.value,
            "last_hlc": str(last.hlc),
        }

    async def _history(self, args: Mapping[str, Any]) -> Any:
        _allowed("history", args, {"limit", "kind"})
        history = getattr(self.node, "history", None)
        if history is None:
            raise NotBuiltError("the partition history (journal) is not built yet")
        kwargs = {k: v for k, v in args.items() if v is not None}
        result = history(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


def _parse(line: bytes, max_line: int) -> tuple[str, Mapping[str, Any]]:
    if len(line) > max_line:
        raise ControlRequestError(f"request line exceeds {max_line} bytes")
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlRequestError(f"malformed JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ControlRequestError("a request is a JSON object with 'cmd' and optional 'args'")
    extra = set(request) - {"cmd", "args"}
    if extra:
        raise ControlRequestError(f"unknown request fields: {', '.join(sorted(extra))}")
    cmd = request.get("cmd")
    if not isinstance(cmd, str):
        raise ControlRequestError("a request needs 'cmd': a command name string")
    args = request.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ControlRequestError("'args' must be a JSON object")
    return cmd, args


def _no_args(cmd: str, args: Mapping[str, Any]) -> None:
    _allowed(cmd, args, set())


def _allowed(cmd: str, args: Mapping[str, Any], names: set[str]) -> None:
    extra = set(args) - names
    if extra:
        raise ControlRequestError(
            f"{cmd}: unknown argument(s) {', '.join(sorted(extra))}"
            + (f" (takes {', '.join(sorted(names))})" if names else " (takes none)")
        )


def _error(kind: str, message: str) -> bytes:
    return (json.dumps({"ok": False, "kind": kind, "error": message}) + "\n").encode()
