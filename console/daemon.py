"""``vsm-console --daemon``: the node, headless, under ``trio.run``.

Logs to stderr (text or JSON lines, every line naming the node; repeated
warnings of one kind are rate-limited with a count), serves the control socket
(``vsm-console ctl``) and, when asked, ``/metrics`` and ``/healthz``. On
SIGTERM or SIGINT it leaves cleanly: control socket closed and removed, what
``flush()`` can send in a bounded time, BYE to peers (they count a departure,
not a failure), exit 0. A second signal exits at once.

A place it cannot listen on (peer port in use, address not local, host not
resolvable, control socket taken) is one line naming the address and the
cause, exit status 2: no traceback and no supervisor restarts.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import sys
from typing import Any

import trio

from console.paths import default_control_path
from node.config import NodeConfig, default_data_dir
from node.errors import (
    BackpressureTimeout,
    ConfigError,
    EscalationError,
    ListenError,
    VsmError,
)
from node.node import Node, open_node
from node.runtime.control import ControlServer, bind_control
from node.runtime.gctune import tune_gc
from node.runtime.metrics import MetricsServer, open_metrics_listeners
from node.telemetry import RepeatLimiter

log = logging.getLogger("vsm.daemon")

STATUS_EVERY_S = 10.0
#: Bound on what a clean exit may spend flushing queued events before BYE.
FLUSH_TIMEOUT_S = 2.0
EXIT_SIGNALLED = 0
EXIT_FAILED = 1
EXIT_LISTEN = 2
#: Exit status after a second signal (shutdown cut short).
EXIT_FORCED = 1


# --- logging --------------------------------------------------------------------------


class _NodeName(logging.Filter):
    """Stamp every record with the node's name (the formatters print it)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.node = name

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, node, logger, msg (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "node": getattr(record, "node", None),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str, *, node: str, fmt: str = "text") -> RepeatLimiter:
    """Log to stderr, each line naming ``node``; returns the rate limiter in use."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_vsm_daemon", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler._vsm_daemon = True  # type: ignore[attr-defined]
    handler.addFilter(_NodeName(node))
    limiter = RepeatLimiter()
    handler.addFilter(limiter)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(node)s %(name)s: %(message)s")
        )
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return limiter


# --- listening ------------------------------------------------------------------------


def control_path(config: NodeConfig) -> str | None:
    return config.control_socket or default_control_path(config.name, config.data_dir)


# --- running --------------------------------------------------------------------------


def summary(node: Node) -> dict[str, Any]:
    part = node.partition_status()
    return {
        "node": node.name,
        "address": node.address,
        "peers": {
            name: ("up" if st["connected"] else f"down/{st['breaker']}")
            for name, st in node.bridge.peer_states().items()
        },
        "partition": part["status"],
        "role": part.get("role"),  # primary | degraded
        "pressure": node.variety_pressure()["overall"],
    }


async def run_daemon(config: NodeConfig, control: str | None = None) -> int:
    """Run until a signal; ``control`` is the control socket path (None: no socket)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        control_listener = await bind_control(control) if control else None
        try:
            metrics = (
                await open_metrics_listeners(config.metrics_listen)
                if config.metrics_listen
                else None
            )
            stop = trio.Event()
            async with trio.open_nursery() as outer:
                outer.start_soon(_watch_signals, signals, stop, control)
                async with open_node(config) as node:
                    await _serve(node, config, stop, control_listener, metrics)
                    try:
                        await node.flush(timeout=FLUSH_TIMEOUT_S)
                    except BackpressureTimeout as exc:
                        log.warning("leaving with events not acknowledged: %s", exc)
                outer.cancel_scope.cancel()
        finally:
            if control_listener is not None:
                with trio.CancelScope(shield=True):
                    await control_listener.aclose()
                if control:
                    _unlink(control)
    log.info("stopped")
    return EXIT_SIGNALLED


async def _serve(
    node: Node,
    config: NodeConfig,
    stop: trio.Event,
    control: trio.SocketListener | None,
    metrics: list[trio.SocketListener] | None,
) -> None:
    async with trio.open_nursery() as nursery:
        where = []
        if control is not None:
            path = await nursery.start(ControlServer(node).serve, control)
            where.append(f"control socket {path}")
        if metrics is not None:
            address = await nursery.start(MetricsServer(node).serve, metrics)
            where.append(f"metrics http://{address}/metrics")
        nursery.start_soon(_report, node)
        log.info(
            "node %s of cluster %s listening on %s (%s, strategy %s, seeds %s)%s",
            node.name,
            config.cluster,
            node.address,
            node.partition_status().get("role", "?"),
            config.strategy,
            ", ".join(config.seeds) or "none",
            "; " + "; ".join(where) if where else "",
        )
        await stop.wait()
        nursery.cancel_scope.cancel()


async def _watch_signals(signals: Any, stop: trio.Event, control: str | None) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if not stop.is_set():
            log.info("%s received: leaving the cluster (again to exit at once)", name)
            stop.set()
            continue
        log.warning("%s received again: exiting now, without waiting for peers", name)
        if control:
            _unlink(control)
        logging.shutdown()
        os._exit(EXIT_FORCED)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove control socket %s: %s", path, exc.strerror)


async def _report(node: Node) -> None:
    last = None
    while True:
        await trio.sleep(STATUS_EVERY_S)
        now = summary(node)
        if now != last:
            log.info("status %s", json.dumps(now, sort_keys=True))
            last = now


def main(config: NodeConfig, *, control: str | bool | None = True) -> int:
    """Run the daemon; ``control`` True: the configured or default socket; False: none."""
    setup_logging(config.log_level, node=config.name, fmt=config.log_format)
    if config.data_dir is None:  # a daemon remembers its cluster across restarts
        config = config.evolve(data_dir=default_data_dir(config.cluster, config.name))
    path = control_path(config) if control is True else (control or None)
    tune_gc()  # this process is the node's: see node.runtime.gctune
    try:
        return trio.run(run_daemon, config, path)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) != 1 or not isinstance(leaves[0], Exception):
            raise
        return _failed(leaves[0])
    except Exception as exc:
        return _failed(exc)


def _failed(exc: Exception) -> int:
    if isinstance(exc, EscalationError) and isinstance(exc.__cause__, ListenError):
        exc = exc.__cause__  # the node could not listen: that is the whole story
    if isinstance(exc, ListenError):
        log.error("%s", exc)
        return EXIT_LISTEN
    if isinstance(exc, ConfigError):
        log.error("bad configuration: %s", exc)
        return EXIT_LISTEN
    if isinstance(exc, EscalationError):
        log.error("node stopped: %s", exc)
        return EXIT_FAILED
    if isinstance(exc, (VsmError, OSError)):
        log.error("node stopped: %s", exc)
        return EXIT_FAILED
    raise exc


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
