"""Telemetry: ``attach`` / ``detach`` / ``emit``, in the shape of Erlang's ``:telemetry``.

An event is a name (a tuple of strings such as ``("vsm", "cluster", "node",
"connected")``), a mapping of measurements (numbers) and a mapping of metadata.
Handlers are attached under an id to one or more event names and called
synchronously, in attach order, on the emitting task. As in ``:telemetry``, a
handler that raises is detached at once and the failure is logged once: a
broken metrics exporter must never break the node, nor flood the log.

Each :class:`~node.node.Node` owns one :class:`Telemetry` registry
(``node.telemetry``); there is no module-level registry, so two nodes in one
process (tests, ``--demo``) never see each other's events.

This module also holds :class:`RepeatLimiter`, the logging filter that turns a
flood of one warning (a stranger failing the handshake a thousand times a
second) into a few lines and a count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from node.errors import TelemetryError

log = logging.getLogger("vsm.telemetry")

EventName = tuple[str, ...]
#: ``fn(event_name, measurements, metadata, config)``
Handler = Callable[[EventName, Mapping[str, float], Mapping[str, Any], Any], None]

_PREFIX: Final = ("vsm", "cluster")
#: Every event the node emits (the seed's names).
VARIETY_FLOW: Final = (*_PREFIX, "variety", "flow")
VARIETY_THROTTLED: Final = (*_PREFIX, "variety", "throttled")
VARIETY_COMPRESSED: Final = (*_PREFIX, "variety", "compressed")
ALGEDONIC_BROADCAST_LATENCY: Final = (*_PREFIX, "algedonic", "broadcast_latency")
ALGEDONIC_CONFIRMATION: Final = (*_PREFIX, "algedonic", "confirmation")
PARTITION_DETECTED: Final = (*_PREFIX, "partition", "detected")
PARTITION_HEALED: Final = (*_PREFIX, "partition", "healed")
PARTITION_RESOLVED: Final = (*_PREFIX, "partition", "resolved")
NODE_CONNECTED: Final = (*_PREFIX, "node", "connected")
NODE_DISCONNECTED: Final = (*_PREFIX, "node", "disconnected")
BREAKER_OPENED: Final = (*_PREFIX, "circuit_breaker", "opened")
BREAKER_HALF_OPEN: Final = (*_PREFIX, "circuit_breaker", "half_open")
BREAKER_CLOSED: Final = (*_PREFIX, "circuit_breaker", "closed")
EVENTS: Final = (
    VARIETY_FLOW,
    VARIETY_THROTTLED,
    VARIETY_COMPRESSED,
    ALGEDONIC_BROADCAST_LATENCY,
    ALGEDONIC_CONFIRMATION,
    PARTITION_DETECTED,
    PARTITION_HEALED,
    PARTITION_RESOLVED,
    NODE_CONNECTED,
    NODE_DISCONNECTED,
    BREAKER_OPENED,
    BREAKER_HALF_OPEN,
    BREAKER_CLOSED,
)
#: Breaker state (``BreakerState`` value) -> the event its transition emits.
BREAKER_EVENTS: Final[Mapping[str, EventName]] = {
    "open": BREAKER_OPENED,
    "half_open": BREAKER_HALF_OPEN,
    "closed": BREAKER_CLOSED,
}


@attrs.frozen
class _Attached:
    handler_id: str
    event_names: tuple[EventName, ...]
    fn: Handler
    config: Any


def _check_name(name: object) -> EventName:
    if (
        not isinstance(name, tuple)
        or not name
        or not all(isinstance(part, str) and part for part in name)
    ):
        raise TelemetryError(f"an event name is a non-empty tuple of strings, got {name!r:.80}")
    return name


class Telemetry:
    """One node's handler registry. Not thread-safe: use it from the node's trio thread."""

    def __init__(self) -> None:
        self._handlers: dict[str, _Attached] = {}
        self._by_event: dict[EventName, list[_Attached]] = {}
        #: Handlers detached because they raised, by id (for ``ctl`` and tests).
        self.failed: dict[str, str] = {}

    def attach(
        self,
        handler_id: str,
        event_names: Iterable[EventName],
        fn: Handler,
        config: Any = None,
    ) -> None:
        """Call ``fn(name, measurements, metadata, config)`` on each of ``event_names``.

        TelemetryError if ``handler_id`` is already attached (``:telemetry``'s
        ``{error, already_exists}``) or a name is not a tuple of strings.
        """
        if handler_id in self._handlers:
            raise TelemetryError(f"telemetry handler {handler_id!r} is already attached")
        names = tuple(dict.fromkeys(_check_name(n) for n in event_names))
        if not names:
            raise TelemetryError(f"telemetry handler {handler_id!r}: no event names given")
        attached = _Attached(handler_id, names, fn, config)
        self._handlers[handler_id] = attached
        for name in names:
            self._by_event.setdefault(name, []).append(attached)

    def detach(self, handler_id: str) -> bool:
        """Remove a handler; False if no handler had that id."""
        attached = self._handlers.pop(handler_id, None)
        if attached is None:
            return False
        for name in attached.event_names:
            remaining = [a for a in self._by_event.get(name, ()) if a is not attached]
            if remaining:
                self._by_event[name] = remaining
            else:
                self._by_event.pop(name, None)
        return True

    def emit(
        self,
        event_name: EventName,
        measurements: Mapping[str, float],
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Call every handler attached to ``event_name``; a handler that raises is detached."""
        handlers = self._by_event.get(event_name)
        if not handlers:
            return
        meta: Mapping[str, Any] = {} if metadata is None else metadata
        for attached in tuple(handlers):
            try:
                attached.fn(event_name, measurements, meta, attached.config)
            except Exception as exc:
                self.detach(attached.handler_id)
                self.failed[attached.handler_id] = f"{type(exc).__name__}: {exc}"
                log.error(
                    "telemetry handler %s failed on %s and was detached",
                    attached.handler_id,
                    ".".join(event_name),
                    exc_info=True,
                )

    def handlers(self, prefix: EventName = ()) -> list[dict[str, Any]]:
        """Attached handlers whose events start with ``prefix`` (``:telemetry.list_handlers``)."""
        return [
            {"id": a.handler_id, "events": [list(n) for n in a.event_names]}
            for a in self._handlers.values()
            if any(n[: len(prefix)] == prefix for n in a.event_names)
        ]


# --- rate-limited logging ---------------------------------------------------------

DEFAULT_BURST = 5
DEFAULT_PER_S = 0.2
#: Kinds remembered at once: a message built with an f-string is a new kind each
#: time, and must not grow the limiter without bound (oldest forgotten first).
MAX_KINDS = 1024


class RepeatLimiter(logging.Filter):
    """Let through a burst of each kind of warning, then a trickle, with a count.

    A "kind" is the logger name and the unformatted message template, so
    ``"handshake with %s failed (%s): %s"`` is one kind however many strangers
    try. Each kind has a token bucket (``burst`` tokens, refilled at ``per_s``
    per second); records below WARNING always pass. When a record of a kind
    passes after others were suppressed, it says how many: ``(37 similar
    suppressed)``. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        *,
        burst: int = DEFAULT_BURST,
        per_s: float = DEFAULT_PER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.per_s = per_s
        self.clock = clock
        self._tokens: dict[tuple[str, str], tuple[float, float]] = {}
        #: Suppressed records not yet reported, by kind.
        self.pending: dict[tuple[str, str], int] = {}
        #: All records suppressed so far.
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, str(record.msg))
        now = self.clock()
        if kind not in self._tokens and len(self._tokens) >= MAX_KINDS:
            oldest = next(iter(self._tokens))
            del self._tokens[oldest]
            self.pending.pop(oldest, None)
        tokens, last = self._tokens.get(kind, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.per_s)
        if tokens < 1.0:
            self._tokens[kind] = (tokens, now)
            self.pending[kind] = self.pending.get(kind, 0) + 1
            self.suppressed += 1
            return False
        self._tokens[kind] = (tokens - 1.0, now)
        skipped = self.pending.pop(kind, 0)
        if skipped:
            record.msg = f"{record.msg} ({skipped} similar suppressed)"
        return True


# --- events from state (polled, so the hot path carries no emit calls) -------------------

_UNHEALTHY: Final = frozenset({"unstable", "partitioned", "degraded", "awaiting_operator"})


class StateWatcher:
    """Turns periodic snapshots of a node's state into telemetry events.

    Variety events are per window, not per event: every ``observe`` emits the
    change in each channel's counters since the last one (``flow`` with
    offered and admitted, ``throttled`` and ``compressed`` with a count), so a
    flood of publishes costs the publish path nothing. Partition events mark
    the transitions of the detector's status: ``detected`` when a cluster that
    has been whole stops being so (formation is not a partition), ``healed`` when
    it is whole again, ``resolved`` when, during a partition, a decision naming
    the survivors is taken (by a strategy or an operator).
    Sans-IO: snapshots in, ``emit`` calls out.
    """

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self._variety: dict[str, dict[str, int]] = {}
        self._whole = False  # has been healthy at least once
        self._split = False  # a partition was detected and has not healed
        self._decision: Any = None

    def observe(
        self, variety: Mapping[str, Mapping[str, Any]], partition: Mapping[str, Any]
    ) -> None:
        self._observe_variety(variety)
        self._observe_partition(partition)

    def _observe_variety(self, variety: Mapping[str, Mapping[str, Any]]) -> None:
        emit = self.telemetry.emit
        for channel, stats in variety.items():
            now = {
                k: int(stats.get(k, 0)) for k in ("offered", "admitted", "compressed", "throttled")
            }
            before = self._variety.get(channel, dict.fromkeys(now, 0))
            self._variety[channel] = now
            delta = {k: now[k] - before[k] for k in now}
            meta = {"channel": channel}
            if delta["offered"] > 0:
                emit(
                    VARIETY_FLOW, {"offered": delta["offered"], "admitted": delta["admitted"]}, meta
                )
            if delta["throttled"] > 0:
                emit(VARIETY_THROTTLED, {"count": delta["throttled"]}, meta)
            if delta["compressed"] > 0:
                emit(VARIETY_COMPRESSED, {"count": delta["compressed"]}, meta)

    def _observe_partition(self, partition: Mapping[str, Any]) -> None:
        status = str(partition.get("status", "starting"))
        decision = partition.get("decision")
        meta = {
            "status": status,
            "components": partition.get("components", []),
            "decision": decision,
        }
        components = {"components": len(partition.get("components", []))}
        emit = self.telemetry.emit
        # A cluster that is forming passes through "unstable" on its way to healthy:
        # that is not a partition. Detection starts once it has been whole.
        if status == "healthy":
            if self._split:
                emit(PARTITION_HEALED, components, meta)
            self._split = False
            self._whole = True
        elif status in _UNHEALTHY and self._whole and not self._split:
            self._split = True
            emit(PARTITION_DETECTED, components, meta)
        if decision != self._decision:
            self._decision = decision
            if (
                self._split
                and decision
                and decision.get("survivors")
                and not decision.get("awaiting_operator")
            ):
                emit(PARTITION_RESOLVED, components, meta)
