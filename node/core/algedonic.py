"""Algedonic signals, sans-IO: the signal model, directives, and the bookkeeping of
a confirmed broadcast (targets, attempts, deadlines, latency) and of receiving.

Beer's algedonic channel carries pain and pleasure straight to S5, past every
filter. Here a signal is validated (``check_signal``), given a directive, and
sent to every member over redundant paths by the trio driver
(``node.runtime.algedonic``). This module decides *what* happens and *when*;
the driver only does the I/O:

* ``Broadcast`` is the confirmation ledger of one signal: each target is
  pending (with an attempt count and a deadline), confirmed (when, by which
  path) or failed (after ``max_retries`` retries went unanswered). ``due(now)``
  says which targets to retry now and which have just failed.
* ``AlgedonicLedger`` holds the open broadcasts, the ids already handled on
  the receiving side (each signal is delivered once, however many copies
  arrive), and the figures ``stats()`` reports.
* ``seal`` / ``unseal`` and ``DatagramGuard`` make and check the UDP datagrams
  of the datagram path: HMAC-SHA256 with the cluster cookie over the whole
  body, a fresh nonce per datagram (a repeated one is a replay) and the
  sender's HLC (too old is stale).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import msgpack

from node.core.events import Channel, Event, check_data
from node.core.hlc import MAX_NODE_NAME, Timestamp
from node.core.wire import (
    HEADER_SIZE,
    MAC_SIZE,
    NONCE_SIZE,
    Algedonic,
    AlgedonicAck,
    decode_payload,
    encode,
)
from node.errors import InvalidMessageError, ProtocolError

#: Signal kind -> the event type it travels as (all on the algedonic channel).
SIGNAL_TYPES: Mapping[str, str] = {
    "pain": "algedonic_pain",
    "pleasure": "algedonic_pleasure",
    "emergency": "emergency_algedonic",
}
KIND_OF_TYPE: Mapping[str, str] = {v: k for k, v in SIGNAL_TYPES.items()}
MIN_SEVERITY, MAX_SEVERITY = 1, 10
MAX_SOURCE = 256

IMMEDIATE = "immediate_intervention_required"
POLICY_REVIEW = "policy_review_required"
MAINTAIN = "maintain_current_state"
MONITOR = "monitor_closely"

#: Paths a copy of a signal (or its ack) can take.
CONNECTION = "connection"  # the existing session, ahead of everything queued
DATAGRAM = "datagram"  # an HMAC-signed UDP datagram to the algedonic port
FRESH = "fresh_connection"  # a one-shot authenticated TCP connection
LOCAL = "local"  # this node's own S5
PATHS = (CONNECTION, DATAGRAM, FRESH, LOCAL)

#: The HELLO role of a one-shot connection that carries signals only: the
#: receiver handles ALGEDONIC frames on it, acks each, and never makes it a
#: session (so it is admitted beside an existing connection).
SIGNAL_ROLE = "algedonic_signal"

# Defaults (seconds unless named otherwise). With every target up the call ends
# at the last ack, far inside the design card's 100 ms; a dead target is
# retried after 25, 50 and 100 ms and given up 200 ms after the third retry,
# so a call never takes longer than 375 ms plus scheduling.
DEFAULT_ACK_TIMEOUT_S = 0.025
DEFAULT_BACKOFF = 2.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_FRESH_FROM_ATTEMPT = 2  # the first retry also opens a fresh connection
DEFAULT_STALE_AFTER_S = 30.0
DEFAULT_LATENCY_WINDOW = 1_000
DEFAULT_HISTORY = 50
DEFAULT_REMEMBER = 4_096


@attrs.frozen
class AlgedonicSettings:
    """Timing and memory bounds of the algedonic broadcast."""

    ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S
    backoff: float = DEFAULT_BACKOFF
    max_retries: int = DEFAULT_MAX_RETRIES
    fresh_from_attempt: int = DEFAULT_FRESH_FROM_ATTEMPT
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    latency_window: int = DEFAULT_LATENCY_WINDOW
    history: int = DEFAULT_HISTORY
    remember: int = DEFAULT_REMEMBER

    def __attrs_post_init__(self) -> None:
        if not self.ack_timeout_s > 0:
            raise ValueError(f"ack_timeout_s must be > 0, got {self.ack_timeout_s}")
        if not self.backoff >= 1:
            raise ValueError(f"backoff must be >= 1, got {self.backoff}")
        if not 0 <= self.max_retries <= 10:
            raise ValueError(f"max_retries must be in [0, 10], got {self.max_retries}")
        for field in ("latency_window", "history", "remember"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1")

    def timeout(self, attempt: int) -> float:
        """How long attempt ``attempt`` (1 = the first send) waits for an ack."""
        return self.ack_timeout_s * self.backoff ** (attempt - 1)

    @property
    def ceiling_s(self) -> float:
        """The longest a broadcast can stay open: every attempt's timeout."""
        return sum(self.timeout(a) for a in range(1, self.max_retries + 2))


# --- the signal ------------------------------------------------------------------


def directive_for(kind: str, severity: int) -> str:
    """What S5 is asked to do about a signal of ``kind`` and ``severity``."""
    if kind == "emergency" or (kind == "pain" and severity >= 8):
        return IMMEDIATE
    if kind == "pain" and severity >= 5:
        return POLICY_REVIEW
    if kind == "pleasure" and severity >= 8:
        return MAINTAIN
    return MONITOR


@attrs.frozen
class SignalSpec:
    """A validated request for a signal (before it has an id and a timestamp)."""

    kind: str
    severity: int
    source: str
    data: Mapping[str, Any]


def check_signal(raw: object) -> SignalSpec:
    """Validate what the caller asked to scream; ValueError naming the field and why."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"signal must be a mapping, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in ("type", "severity", "source", "data"))
    if unknown:
        raise ValueError(f"signal has unknown fields: {', '.join(unknown)}")
    kind = raw.get("type")
    if kind not in SIGNAL_TYPES:
        raise ValueError(f"type must be one of pain, pleasure, emergency; got {kind!r:.40}")
    severity = raw.get("severity")
    if type(severity) is not int or not MIN_SEVERITY <= severity <= MAX_SEVERITY:
        raise ValueError(
            f"severity must be an integer {MIN_SEVERITY}-{MAX_SEVERITY}, got {severity!r:.40}"
        )
    source = raw.get("source")
    if type(source) is not str or not 0 < len(source) <= MAX_SOURCE:
        raise ValueError(f"source must be a string of 1..{MAX_SOURCE} chars, got {source!r:.40}")
    data = raw.get("data", {})
    if not isinstance(data, Mapping):
        raise ValueError(f"data must be a mapping, got {type(data).__name__}")
    try:
        check_data(data)
    except ProtocolError as exc:
        raise ValueError(f"data is not sendable: {exc}") from None
    return SignalSpec(str(kind), severity, source, dict(data))


@attrs.frozen
class Signal:
    """One algedonic signal: who raised it, when (HLC), what, and what S5 should do."""

    id: str
    kind: str
    severity: int
    source: str
    data: Mapping[str, Any]
    directive: str
    origin: str  # the node that raised it
    hlc: Timestamp

    @classmethod
    def make(cls, signal_id: str, spec: SignalSpec, origin: str, hlc: Timestamp) -> Signal:
        directive = directive_for(spec.kind, spec.severity)
        return cls(
            signal_id, spec.kind, spec.severity, spec.source, spec.data, directive, origin, hlc
        )

    @property
    def event_type(self) -> str:
        return SIGNAL_TYPES[self.kind]

    def to_event(self) -> Event:
        """The event subscribers see (type ``algedonic_*``, channel algedonic)."""
        data = {
            "signal_id": self.id,
            "severity": self.severity,
            "source": self.source,
            "directive": self.directive,
            "data": dict(self.data),
        }
        return Event(self.event_type, Channel.ALGEDONIC, data, self.origin, self.hlc)

    def to_message(self) -> Algedonic:
        return Algedonic(self.id, self.to_event(), (self.origin,))

    @classmethod
    def from_message(cls, msg: Algedonic) -> Signal:
        """The signal a peer sent; InvalidMessageError (their fault) if it is not one."""
        event = msg.event
        kind = KIND_OF_TYPE.get(event.type)
        if kind is None or event.channel is not Channel.ALGEDONIC:
            raise InvalidMessageError(f"ALGEDONIC event type {event.type!r:.40} is not a signal")
        d = event.data
        if d.get("signal_id") != msg.signal_id:
            raise InvalidMessageError("ALGEDONIC signal_id differs from its event's")
        try:
            spec = check_signal(
                {
                    "type": kind,
                    "severity": d.get("severity"),
                    "source": d.get("source"),
                    "data": d.get("data", {}),
                }
            )
        except ValueError as exc:
            raise InvalidMessageError(f"ALGEDONIC {exc}") from None
        directive = d.get("directive")
        if directive != directive_for(spec.kind, spec.severity):
            raise InvalidMessageError(f"ALGEDONIC directive {directive!r:.40} does not match")
        return cls.make(msg.signal_id, spec, event.source, event.hlc)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.kind,
            "severity": self.severity,
            "source": self.source,
            "directive": self.directive,
            "origin": self.origin,
            "hlc": str(self.hlc),
        }


# --- the confirmation ledger of one broadcast ------------------------------------------


@attrs.define
class Broadcast:
    """Where each target of one signal stands: pending, confirmed or failed.

    Every target is in exactly one of the three. A pending target has made
    ``attempts[t]`` attempts and waits until ``deadlines[t]``. An ack moves it
    to confirmed, even after it was given up on (the peer did process the
    signal; the caller is told the truth while the broadcast is open).
    """

    signal: Signal
    started: float
    settings: AlgedonicSettings
    targets: tuple[str, ...]
    attempts: dict[str, int]
    deadlines: dict[str, float]
    confirmed: dict[str, tuple[float, str]] = attrs.Factory(dict)  # time, path
    failed: dict[str, float] = attrs.Factory(dict)  # time given up
    acks: int = 0  # every ack received, duplicates included

    @classmethod
    def open(
        cls, signal: Signal, targets: Iterable[str], now: float, settings: AlgedonicSettings
    ) -> Broadcast:
        names = tuple(dict.fromkeys(t for t in targets if t != signal.origin))
        deadline = now + settings.timeout(1)
        return cls(
            signal, now, settings, names, {t: 1 for t in names}, {t: deadline for t in names}
        )

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(self.deadlines)

    @property
    def done(self) -> bool:
        return not self.deadlines

    @property
    def next_deadline(self) -> float:
        """When ``due`` has something to do next (inf when nothing is pending)."""
        return min(self.deadlines.values(), default=math.inf)

    def confirm(self, target: str, path: str, now: float) -> bool:
        """An ack from ``target``; True when it is the target's first."""
        if target not in self.attempts:
            return False
        self.acks += 1
        if target in self.confirmed:
            return False
        self.deadlines.pop(target, None)
        self.failed.pop(target, None)
        self.confirmed[target] = (now, path)
        return True

    def due(self, now: float) -> tuple[list[tuple[str, int]], list[str]]:
        """Targets to send to again now ``(name, attempt)``, and targets that just failed."""
        retry: list[tuple[str, int]] = []
        failed: list[str] = []
        last = self.settings.max_retries + 1
        for target, deadline in list(self.deadlines.items()):
            if deadline > now:
                continue
            if self.attempts[target] >= last:
                del self.deadlines[target]
                self.failed[target] = now
                failed.append(target)
            else:
                attempt = self.attempts[target] + 1
                self.attempts[target] = attempt
                self.deadlines[target] = now + self.settings.timeout(attempt)
                retry.append((target, attempt))
        return retry, failed

    @property
    def latency_s(self) -> float | None:
        """Until the last confirmation (None if nobody confirmed)."""
        if not self.confirmed:
            return None
        return max(t for t, _ in self.confirmed.values()) - self.started

    def result(self) -> dict[str, Any]:
        latency = self.latency_s
        return {
            "id": self.signal.id,
            "directive": self.signal.directive,
            "confirmed": sorted(self.confirmed),
            "failed": sorted(self.failed),
            "latency_ms": None if latency is None else round(latency * 1000, 3),
            "attempts": dict(sorted(self.attempts.items())),
        }


# --- the node's ledger: open broadcasts, received ids, figures ------------------------


class LatencyWindow:
    """The last ``size`` latencies, with percentiles (nearest rank)."""

    def __init__(self, size: int) -> None:
        self._values: collections.deque[float] = collections.deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._values)

    def add(self, value: float) -> None:
        self._values.append(value)

    def percentile(self, p: float) -> float | None:
        if not self._values:
            return None
        ordered = sorted(self._values)
        rank = max(math.ceil(p / 100 * len(ordered)), 1)
        return ordered[rank - 1]


class AlgedonicLedger:
    """Open broadcasts, ids already handled, and the figures for ``stats()``."""

    def __init__(self, node: str, settings: AlgedonicSettings | None = None) -> None:
        self.node = node
        self.settings = settings or AlgedonicSettings()
        self.open: dict[str, Broadcast] = {}
        self.counters: collections.Counter[str] = collections.Counter()
        self.copies_in: collections.Counter[str] = collections.Counter()  # by path
        self.acks_in: collections.Counter[str] = collections.Counter()  # by path
        self.failures: collections.Counter[str] = collections.Counter()  # by node
        self.latency = LatencyWindow(self.settings.latency_window)
        self.history: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=self.settings.history
        )
        self.received_history: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=self.settings.history
        )
        self._handled: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()

    # sending

    def start(self, signal: Signal, targets: Iterable[str], now: float) -> Broadcast:
        if signal.id in self.open:
            raise ValueError(f"signal {signal.id!r} is already being broadcast")
        broadcast = Broadcast.open(signal, targets, now, self.settings)
        self.open[signal.id] = broadcast
        self.counters["sent"] += 1
        self._remember(signal.origin, signal.id)  # a copy coming back is a duplicate
        return broadcast

    def ack(self, signal_id: str, origin: str, node: str, path: str, now: float) -> bool:
        """An ack arrived; True when it newly confirms a target of an open broadcast."""
        self.acks_in[path] += 1
        broadcast = self.open.get(signal_id)
        if origin != self.node or broadcast is None:
            self.counters["acks_unmatched"] += 1
            return False
        if broadcast.confirm(node, path, now):
            self.counters["confirmations"] += 1
            return True
        return False

    def finish(self, broadcast: Broadcast, now: float) -> dict[str, Any]:
        """Close ``broadcast`` (whatever is still pending has failed) and record it."""
        for target in broadcast.pending:
            del broadcast.deadlines[target]
            broadcast.failed[target] = now
        self.open.pop(broadcast.signal.id, None)
        for target in broadcast.failed:
            self.failures[target] += 1
        self.counters["failures"] += len(broadcast.failed)
        latency = broadcast.latency_s
        if latency is not None and not broadcast.failed:
            self.latency.add(latency)
        result = broadcast.result()
        self.history.append(
            {
                "time": broadcast.signal.hlc.physical / 1000,  # wall clock, Unix seconds
                **{k: v for k, v in broadcast.signal.summary().items() if k != "hlc"},
                "confirmed": result["confirmed"],
                "failed": result["failed"],
                "latency_ms": result["latency_ms"],
            }
        )
        return result

    # receiving

    def receive(self, origin: str, signal_id: str, path: str) -> bool:
        """A copy of a signal arrived on ``path``; True the first time (deliver it)."""
        self.copies_in[path] += 1
        key = (origin, signal_id)
        if key in self._handled:
            self._handled.move_to_end(key)
            self.counters["duplicates"] += 1
            return False
        self._remember(origin, signal_id)
        self.counters["received"] += 1
        return True

    def delivered(self, signal: Signal, path: str) -> None:
        """Record a received signal that was just delivered (by the first copy's path)."""
        self.received_history.append(
            {"time": signal.hlc.physical / 1000, **signal.summary(), "path": path}
        )

    def _remember(self, origin: str, signal_id: str) -> None:
        self._handled[(origin, signal_id)] = None
        while len(self._handled) > self.settings.remember:
            self._handled.popitem(last=False)

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] += n

    def stats(self) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        c = self.counters
        return {
            "sent": c["sent"],
            "received": c["received"],
            "duplicates": c["duplicates"],
            "confirmations": c["confirmations"],
            "failures": c["failures"],
            "failures_by_node": dict(sorted(self.failures.items())),
            "copies_in": {p: self.copies_in[p] for p in PATHS if p != LOCAL},
            "acks_in": {p: self.acks_in[p] for p in PATHS if p != LOCAL},
            "in_flight": len(self.open),
            "latency_ms": {
                "samples": len(self.latency),
                "p50": ms(self.latency.percentile(50)),
                "p95": ms(self.latency.percentile(95)),
                "p99": ms(self.latency.percentile(99)),
            },
            "counters": dict(sorted(c.items())),
            "last": list(self.history)[-10:],
            "last_received": list(self.received_history)[-10:],
        }


# --- datagrams ------------------------------------------------------------------------

DATAGRAM_VERSION = 1
_DATAGRAM_CONTEXT = b"vsm-console/algedonic/v1\x00"
# Signals and acks are small; a datagram larger than this is not ours.
MAX_SIGNAL_DATAGRAM = 60_000

# Why a datagram was ignored (counter names, "datagrams_<reason>").
UNSIGNED = "unsigned"  # too short to carry a MAC, or not our format at all
FORGED = "forged"  # MAC does not verify with our cookie
MALFORMED = "malformed"  # signed, but the body is not a valid message
WRONG_CLUSTER = "wrong_cluster"
REPLAYED = "replayed"  # a nonce seen before from that sender
STALE = "stale"  # the sender's HLC is older than stale_after_s


class DatagramError(ProtocolError):
    """A datagram that is ignored; ``reason`` is one of the names above."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@attrs.frozen
class Sealed:
    """What an authentic datagram said."""

    sender: str
    nonce: bytes
    hlc: Timestamp
    message: Algedonic | AlgedonicAck


def _mac(cookie: str, body: bytes) -> bytes:
    return hmac.new(cookie.encode(), _DATAGRAM_CONTEXT + body, hashlib.sha256).digest()


def seal(
    message: Algedonic | AlgedonicAck,
    *,
    cookie: str,
    cluster: str,
    sender: str,
    hlc: Timestamp,
    nonce: bytes,
) -> bytes:
    """A signed datagram: 32-byte HMAC-SHA256 over the body, then the body."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
    payload = encode(message)[HEADER_SIZE:]
    body: bytes = msgpack.packb(
        [DATAGRAM_VERSION, cluster, sender, nonce, hlc.to_wire(), payload], use_bin_type=True
    )
    return _mac(cookie, body) + body


def unseal(data: bytes, *, cookie: str, cluster: str) -> Sealed:
    """Check and open a datagram; DatagramError saying why it is ignored."""
    if not MAC_SIZE < len(data) <= MAX_SIGNAL_DATAGRAM:
        raise DatagramError(f"datagram of {len(data)} bytes is not a signal", reason=UNSIGNED)
    mac, body = data[:MAC_SIZE], data[MAC_SIZE:]
    if not hmac.compare_digest(mac, _mac(cookie, body)):
        raise DatagramError("datagram MAC does not verify", reason=FORGED)
    try:
        raw = msgpack.unpackb(body, raw=False, max_array_len=16, max_map_len=0, max_ext_len=0)
        version, their_cluster, sender, nonce, hlc, payload = raw
        if version != DATAGRAM_VERSION:
            raise InvalidMessageError(f"datagram version {version!r:.20}")
        if type(sender) is not str or not 0 < len(sender) <= MAX_NODE_NAME:
            raise InvalidMessageError("datagram sender must be a name")
        if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
            raise InvalidMessageError(f"datagram nonce must be {NONCE_SIZE} bytes")
        if type(payload) is not bytes:
            raise InvalidMessageError("datagram payload must be bytes")
        stamp = Timestamp.from_wire(hlc)
        message = decode_payload(payload)
    except (ValueError, TypeError, msgpack.UnpackException, ProtocolError) as exc:
        raise DatagramError(f"signed datagram is malformed: {exc}", reason=MALFORMED) from None
    if their_cluster != cluster:
        raise DatagramError(f"datagram for cluster {their_cluster!r:.40}", reason=WRONG_CLUSTER)
    if not isinstance(message, (Algedonic, AlgedonicAck)):
        raise DatagramError(f"datagram carries {type(message).__name__}", reason=MALFORMED)
    who = message.event.source if isinstance(message, Algedonic) else message.node
    if who != sender or stamp.node != sender:
        raise DatagramError(f"datagram from {sender!r} speaks for {who!r}", reason=MALFORMED)
    return Sealed(sender, nonce, stamp, message)


class DatagramGuard:
    """Refuses replayed and stale datagrams (authentic ones that must not count twice).

    A datagram is stale when its HLC is more than ``stale_after_s`` behind our
    wall clock. Nonces are remembered per datagram accepted; only datagrams
    younger than the stale bound can be replayed, so ``remember`` of them
    (evicting the oldest) covers the window unless more than that many arrive
    within it, and a replay that slipped through would only be a duplicate,
    handled once by signal id.
    """

    def __init__(self, *, stale_after_s: float, remember: int) -> None:
        self.stale_after_ms = int(stale_after_s * 1000)
        self.remember = remember
        self._nonces: collections.OrderedDict[tuple[str, bytes], None] = collections.OrderedDict()

    def check(self, sealed: Sealed, wall_ms: int) -> None:
        """DatagramError(REPLAYED or STALE), or accept and remember the nonce."""
        key = (sealed.sender, sealed.nonce)
        if key in self._nonces:
            raise DatagramError(f"datagram from {sealed.sender!r} replayed", reason=REPLAYED)
        age = wall_ms - sealed.hlc.physical
        if age > self.stale_after_ms:
            raise DatagramError(f"datagram from {sealed.sender!r} is {age} ms old", reason=STALE)
        self._nonces[key] = None
        while len(self._nonces) > self.remember:
            self._nonces.popitem(last=False)
