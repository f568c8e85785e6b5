"""One read of a node's facade for every panel: the console's only way into the node.

``collect`` calls the facade's views (``topology``, ``variety_pressure``,
``variety_stats``, ``partition_status``, ``health_report``, and
``peer_report`` where the node has it) once, and returns plain dicts. Panels
render from this and never touch the node. Parts the node does not have yet
are recorded as ``{"not_built": reason}`` rather than left out or invented:
they light up by themselves once the node grows the method or the key.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from node.errors import NotBuiltError

if TYPE_CHECKING:
    from console.demo import DemoCluster
    from node.node import Node


def _call(node: Any, method: str) -> Any:
    """``node.method()``, or a ``not_built`` record if the node lacks it or says so."""
    fn = getattr(node, method, None)
    if fn is None:
        return {"not_built": f"the node has no {method}() yet"}
    try:
        return fn()
    except NotBuiltError as exc:
        return {"not_built": str(exc)}


def collect(node: Node | None, demo: DemoCluster | None = None) -> dict[str, Any]:
    """Everything the panels show, read once."""
    snap: dict[str, Any] = {"wall": time.time(), "running": node is not None}
    if demo is not None:
        snap["demo"] = {
            "names": list(demo.names),
            "alive": sorted(demo.nodes),
            "strategy": demo.strategy,
            "faults": demo.faults(),
            "restarting": demo.restarting,
        }
    if node is None:
        return snap
    snap["topology"] = node.topology()
    snap["pressure"] = snap["topology"].get("variety_pressure") or node.variety_pressure()
    snap["partition"] = snap["topology"].get("partition_status") or node.partition_status()
    snap["stats"] = node.variety_stats()
    snap["health"] = node.health_report()
    snap["peers"] = _call(node, "peer_report")
    config = getattr(node, "config", None)
    snap["stable_after_s"] = getattr(config, "stable_after_s", None)
    return snap
