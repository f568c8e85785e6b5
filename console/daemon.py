"""``vsm-console --daemon``: the node, headless, under ``trio.run``.

Logs to stderr, stops cleanly on SIGINT/SIGTERM (BYE to peers, so they count
a departure, not a failure), and logs a one-line status when it changes.
Parts the daemon will have but does not yet (control socket, metrics
endpoint) are refused at start with a plain message, not ignored.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Any

import trio

from node.config import NodeConfig
from node.errors import EscalationError, VsmError
from node.node import Node, open_node

log = logging.getLogger("vsm.daemon")

STATUS_EVERY_S = 10.0
EXIT_SIGNALLED = 0
EXIT_FAILED = 1


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def unbuilt_parts(config: NodeConfig) -> list[str]:
    """Configured parts that are not built yet (the daemon refuses to pretend)."""
    missing = []
    if config.control_socket:
        missing.append("control_socket (the ctl control socket is not built yet)")
    if config.metrics_listen:
        missing.append("metrics_listen (the Prometheus endpoint is not built yet)")
    return missing


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
        "role": part.get("role"),  # issue 10: primary | degraded
        "pressure": node.variety_pressure()["overall"],
    }


async def run_daemon(config: NodeConfig) -> int:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(config) as node:
            log.info(
                "node %s of cluster %s listening on %s (strategy %s, seeds %s)",
                node.name,
                config.cluster,
                node.address,
                config.strategy,
                ", ".join(config.seeds) or "none",
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_report, node)
                async for signum in signals:
                    log.info("%s received: leaving the cluster", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
    log.info("stopped")
    return EXIT_SIGNALLED


async def _report(node: Node) -> None:
    last = None
    while True:
        await trio.sleep(STATUS_EVERY_S)
        now = summary(node)
        if now != last:
            log.info("status %s", json.dumps(now, sort_keys=True))
            last = now


def main(config: NodeConfig) -> int:
    setup_logging(config.log_level)
    missing = unbuilt_parts(config)
    if missing:
        for part in missing:
            log.error("not built yet: %s; remove it from the configuration", part)
        return 2
    try:
        return trio.run(run_daemon, config)
    except EscalationError as exc:
        log.error("node stopped: %s (cause: %r)", exc, exc.__cause__)
        return EXIT_FAILED
    except VsmError as exc:
        log.error("node stopped: %s", exc)
        return EXIT_FAILED
    except OSError as exc:
        log.error("node could not start: %s", exc)
        return EXIT_FAILED
