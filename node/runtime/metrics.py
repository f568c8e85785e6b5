"""Prometheus exposition of one node: ``/metrics`` and ``/healthz``, served by trio.

:class:`NodeCollector` is a custom prometheus_client collector: it reads the
node's own figures (the facade's dictionaries) at scrape time, so there is no
second copy of any counter to drift. The one thing the node keeps nowhere else
is the distribution of algedonic broadcast latencies, which the collector
builds from the ``[vsm, cluster, algedonic, broadcast_latency]`` telemetry
event, and the count of algedonic signals by direction and type, which it
counts from the algedonic channel's local deliveries.

The HTTP side is a deliberately small HTTP/1.0 responder on the node's trio
thread (not prometheus_client's threaded server): a scrape then reads the
node's dictionaries between two of its tasks' steps, never while one is
half-way through changing them. Requests are bounded in size, time and number.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any, Final

import trio
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString

from node.config import format_address, parse_address
from node.core.events import Channel, Event
from node.runtime.transport import listen_error
from node.telemetry import ALGEDONIC_BROADCAST_LATENCY, EventName

log = logging.getLogger("vsm.metrics")

#: Upper bounds (ms) of the latency histogram's buckets; the design's target is 100 ms.
LATENCY_BUCKETS_MS: Final = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)
#: Every partition status the detector reports (one series each, 1 for the current one).
PARTITION_STATES: Final = (
    "starting",
    "healthy",
    "unstable",
    "partitioned",
    "degraded",
    "awaiting_operator",
)
#: ``/healthz`` answers 503 in these states.
UNHEALTHY_STATES: Final = frozenset({"degraded", "awaiting_operator"})
#: Breaker state as a number, so a graph can show it (0 closed, 1 half open, 2 open).
BREAKER_VALUES: Final[Mapping[str, int]] = {"closed": 0, "half_open": 1, "open": 2}
#: Outcomes of an event offered to a peer that are counters (the rest are gauges).
REPLICATION_OUTCOMES: Final = ("sent", "compressed", "throttled", "dropped")
VARIETY_OUTCOMES: Final = ("admitted", "compressed", "throttled")

MAX_REQUEST = 8192
REQUEST_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 32


class NodeCollector:
    """prometheus_client collector reading one node's state at scrape time."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)  # the last is +Inf
        self._latency_sum = 0.0
        self.signals: dict[tuple[str, str], int] = {}
        self._handler_id = f"metrics-{id(self)}"
        node.telemetry.attach(self._handler_id, [ALGEDONIC_BROADCAST_LATENCY], self._on_latency)
        self._subscription = node.subscribe(Channel.ALGEDONIC, self._on_algedonic)

    def close(self) -> None:
        self.node.telemetry.detach(self._handler_id)
        self._subscription.cancel()

    def _on_latency(
        self, name: EventName, measurements: Mapping[str, float], meta: Mapping[str, Any], _: Any
    ) -> None:
        value = float(measurements["latency_ms"])
        self._latency_sum += value
        for i, bound in enumerate(LATENCY_BUCKETS_MS):
            if value <= bound:
                self._buckets[i] += 1
                return
        self._buckets[-1] += 1

    def _on_algedonic(self, event: Event) -> None:
        direction = "out" if event.source == self.node.name else "in"
        key = (direction, event.type)
        self.signals[key] = self.signals.get(key, 0) + 1

    def describe(self) -> list[Metric]:
        return []  # names are not fixed ahead (labels come from the node); skip the check

    def collect(self) -> Iterator[Metric]:
        node = self.node
        pressure = node.variety_pressure()
        stats = node.variety_stats()
        peers = node.bridge.peer_states()
        status = node.partition_status()["status"]
        health = node.health_report()

        info = GaugeMetricFamily(
            "vsm_cluster_node_info",
            "This node: name, cluster, role and advertised address (value 1).",
            labels=["node", "cluster", "role", "address"],
        )
        info.add_metric([node.name, node.config.cluster, node.config.role, node.address], 1)
        yield info

        gauge = GaugeMetricFamily(
            "vsm_cluster_variety_pressure",
            "Demand over quota per channel, 0..1 (< 0.5 healthy, > 0.8 high).",
            labels=["channel"],
        )
        for channel, value in sorted(pressure["channels"].items()):
            gauge.add_metric([channel], value)
        yield gauge

        counter = CounterMetricFamily(
            "vsm_cluster_variety_events",
            "Events offered to variety control per channel, by outcome.",
            labels=["channel", "outcome"],
        )
        for channel, figures in sorted(stats["channels"].items()):
            for outcome in VARIETY_OUTCOMES:
                counter.add_metric([channel, outcome], figures[outcome])
        yield counter

        buckets = []
        cumulative = 0
        for bound, n in zip((*LATENCY_BUCKETS_MS, float("inf")), self._buckets, strict=True):
            cumulative += n
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        yield HistogramMetricFamily(
            "vsm_cluster_algedonic_latency_ms",
            "Algedonic broadcast latency until the last confirmation (ms).",
            buckets=buckets,
            sum_value=self._latency_sum,
        )

        signals = CounterMetricFamily(
            "vsm_cluster_algedonic_signals",
            "Algedonic signals delivered on this node, by direction (in/out) and type.",
            labels=["direction", "type"],
        )
        for (direction, kind), n in sorted(self.signals.items()):
            signals.add_metric([direction, kind], n)
        yield signals

        part = GaugeMetricFamily(
            "vsm_cluster_partition_status",
            "Partition status: 1 for the current state, 0 for the others.",
            labels=["status"],
        )
        for state in PARTITION_STATES:
            part.add_metric([state], 1 if state == status else 0)
        yield part

        counts = {"connected": 0, "disconnected": 0, "departed": 0}
        for st in peers.values():
            state = (
                "connected" if st["connected"] else "departed" if st["departed"] else "disconnected"
            )
            counts[state] += 1
        peer_gauge = GaugeMetricFamily(
            "vsm_cluster_peers", "Known peers by state.", labels=["state"]
        )
        for state, n in counts.items():
            peer_gauge.add_metric([state], n)
        yield peer_gauge

        breaker = GaugeMetricFamily(
            "vsm_cluster_circuit_breaker_state",
            "Circuit breaker per peer: 0 closed, 1 half open, 2 open.",
            labels=["peer"],
        )
        for name, st in peers.items():
            breaker.add_metric([name], BREAKER_VALUES.get(st["breaker"], -1))
        yield breaker

        replication = CounterMetricFamily(
            "vsm_cluster_replication_events",
            "Events offered for replication to each peer, by final outcome.",
            labels=["peer", "outcome"],
        )
        pending = GaugeMetricFamily(
            "vsm_cluster_replication_pending",
            "Events waiting for each peer: queued (in lanes or unacknowledged) or backlogged.",
            labels=["peer", "where"],
        )
        for name, out in stats["peers"].items():
            for outcome in REPLICATION_OUTCOMES:
                replication.add_metric([name, outcome], out[outcome])
            pending.add_metric([name, "queued"], out["queued"])
            pending.add_metric([name, "backlogged"], out["backlogged"])
        yield replication
        yield pending

        received = CounterMetricFamily(
            "vsm_cluster_events_received",
            "Events received from each peer and delivered here.",
            labels=["peer"],
        )
        for name, st in peers.items():
            received.add_metric([name], st["events_in"])
        yield received

        conn = CounterMetricFamily(
            "vsm_cluster_bridge",
            "The bridge's counters (connections, handshake failures by kind, bad frames, ...).",
            labels=["kind"],
        )
        for kind, n in stats["counters"].items():
            conn.add_metric([kind], n)
        yield conn

        busy = stats.get("busy_poll")
        if busy is not None:
            yield CounterMetricFamily(
                "vsm_busy_poll_turns",
                "Turns of the busy-poll loop after connection I/O (busy_poll_us): each a "
                "sched_yield and a pass of the scheduler.",
                value=busy["turns"],
            )
            yield CounterMetricFamily(
                "vsm_busy_poll_open_seconds",
                "Seconds the busy-poll window was open (the loop kept from blocking; other "
                "tasks run meanwhile, so an upper bound on its CPU cost).",
                value=busy["open_s"],
            )

        vsm = GaugeMetricFamily(
            "vsm_cluster_health", "VSM health per system, 0..1.", labels=["system"]
        )
        for system, value in health.items():
            if isinstance(value, (int, float)):
                vsm.add_metric([system], value)
        yield vsm


def make_registry(node: Any) -> tuple[CollectorRegistry, NodeCollector]:
    """A registry with the node's collector and the process and platform metrics."""
    registry = CollectorRegistry(auto_describe=False)
    collector = NodeCollector(node)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry, collector


# --- listening --------------------------------------------------------------------------


async def open_metrics_listeners(address: str) -> list[trio.SocketListener]:
    """Listen on ``host:port`` for scrapes; ListenError (one line) if that fails."""
    host, port = parse_address(address)
    try:
        return await trio.open_tcp_listeners(port, host=None if host == "*" else host)
    except OSError as exc:
        raise listen_error("metrics", address, exc) from None


def bound_address(listeners: list[trio.SocketListener]) -> str:
    host, port = listeners[0].socket.getsockname()[:2]
    return format_address(host, port)


class MetricsServer:
    """``GET /metrics`` (Prometheus text format) and ``GET /healthz`` for one node."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.registry, self.collector = make_registry(node)
        self.scrapes = 0
        self.bad_requests = 0
        self._slots = trio.Semaphore(MAX_CONNECTIONS)

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._handle, listeners)
                task_status.started(bound_address(listeners))
        finally:
            self.collector.close()

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self._slots.value == 0:
                return  # too many at once: hang up rather than queue
            async with self._slots:
                with trio.move_on_after(REQUEST_TIMEOUT_S):
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await self._respond(stream)

    async def _respond(self, stream: trio.SocketStream) -> None:
        request = bytearray()
        while b"\r\n\r\n" not in request and b"\n\n" not in request:
            if len(request) > MAX_REQUEST:
                self.bad_requests += 1
                await stream.send_all(_response(431, b"request too large\n"))
                return
            data = await stream.receive_some(4096)
            if not data:
                return
            request += data
        parts = bytes(request.split(b"\n", 1)[0]).decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self.bad_requests += 1
            await stream.send_all(_response(400, b"bad request\n"))
            return
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            await stream.send_all(_response(405, b"only GET\n", extra="Allow: GET, HEAD\r\n"))
            return
        if target == "/metrics":
            self.scrapes += 1
            body = generate_latest(self.registry)
            reply = _response(200, body, content_type=CONTENT_TYPE_LATEST, head=method == "HEAD")
        elif target == "/healthz":
            status = self.node.partition_status()["status"]
            code = 503 if status in UNHEALTHY_STATES else 200
            body = (json.dumps({"node": self.node.name, "status": status}) + "\n").encode()
            reply = _response(code, body, content_type="application/json", head=method == "HEAD")
        else:
            reply = _response(404, b"not found: try /metrics or /healthz\n")
        await stream.send_all(reply)


_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def _response(
    code: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    head: bool = False,
    extra: str = "",
) -> bytes:
    header = (
        f"HTTP/1.1 {code} {_REASONS[code]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return header.encode("latin-1") + (b"" if head else body)
