"""The event model: VSM channels, classification, and the replicated Event."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, NamedTuple

from node.core.hlc import MAX_LOGICAL, MAX_NODE_NAME, MAX_PHYSICAL, Timestamp
from node.errors import ConfigError, InvalidMessageError, LimitExceededError

DEFAULT_MAX_HOPS = 8
MAX_TYPE_LEN = 128
# Nesting allowed inside an event's data. msgpack's own stack stops at 1024;
# we stop far earlier so a hostile payload cannot make later walks expensive.
MAX_DATA_DEPTH = 32


class Channel(enum.Enum):
    """The VSM channels, in priority order (algedonic first)."""

    ALGEDONIC = "algedonic"
    S5_POLICY = "s5_policy"
    S4_INTELLIGENCE = "s4_intelligence"
    S3_CONTROL = "s3_control"
    S2_COORDINATION = "s2_coordination"
    S1_OPERATIONAL = "s1_operational"
    GENERAL = "general"

    @property
    def priority(self) -> int:
        """0 for algedonic (first out) .. 6 for general (last)."""
        return self.rank

    # Set on each member below: a plain attribute, read for every queued event
    # (a property plus Enum.__hash__ cost about 0.2 µs there).
    rank: int

    @classmethod
    def parse(cls, value: Channel | str) -> Channel:
        """A Channel from itself or its name; ConfigError for anything else."""
        if isinstance(value, Channel):
            return value
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(c.value for c in cls)
            raise ConfigError(f"unknown channel {value!r} (known: {names})") from None


for _rank, _channel in enumerate(Channel):
    _channel.rank = _rank

#: Event types per channel, from DESIGN.md. Anything else is ``general``.
CHANNEL_TYPES: Mapping[Channel, tuple[str, ...]] = {
    Channel.ALGEDONIC: (
        "emergency_algedonic",
        "algedonic_pain",
        "algedonic_pleasure",
        "algedonic_intervention",
        "system_panic",
        "viability_threat",
    ),
    Channel.S5_POLICY: (
        "policy_update",
        "governance_decision",
        "strategic_directive",
        "system_reconfiguration",
    ),
    Channel.S4_INTELLIGENCE: (
        "pattern_detected",
        "environment_scan",
        "threat_assessment",
        "opportunity_identified",
    ),
    Channel.S3_CONTROL: (
        "resource_allocation",
        "optimization_directive",
        "performance_adjustment",
        "control_override",
    ),
    Channel.S2_COORDINATION: (
        "anti_oscillation",
        "synchronization",
        "conflict_resolution",
        "coordination_request",
    ),
    Channel.S1_OPERATIONAL: (
        "task_execution",
        "operational_metric",
        "status_update",
        "routine_activity",
    ),
}

_DEFAULT_TYPE_MAP: dict[str, Channel] = {
    t: channel for channel, types in CHANNEL_TYPES.items() for t in types
}


def classify(event_type: str, extra: Mapping[str, Channel | str] | None = None) -> Channel:
    """The channel an event type travels on.

    ``extra`` (from config) maps further types to channels and wins over the
    built-in lists.
    """
    if extra:
        mapped = extra.get(event_type)
        if mapped is not None:
            return Channel.parse(mapped)
    return _DEFAULT_TYPE_MAP.get(event_type, Channel.GENERAL)


class Classifier:
    """classify() with config mappings validated once, for the hot path."""

    __slots__ = ("_map",)

    def __init__(self, extra: Mapping[str, Channel | str] | None = None) -> None:
        self._map = dict(_DEFAULT_TYPE_MAP)
        for event_type, channel in (extra or {}).items():
            check_event_type(event_type)
            self._map[event_type] = Channel.parse(channel)

    def __call__(self, event_type: str) -> Channel:
        return self._map.get(event_type, Channel.GENERAL)


def check_event_type(event_type: object) -> str:
    if type(event_type) is not str or not 0 < len(event_type) <= MAX_TYPE_LEN:
        raise InvalidMessageError(
            f"event type must be a string of 1..{MAX_TYPE_LEN} chars, got {event_type!r:.60}"
        )
    return event_type


def check_data(data: object, *, max_depth: int = MAX_DATA_DEPTH) -> Mapping[str, Any]:
    """Validate an event payload: a str-keyed map of msgpack-able values, not too deep."""
    if type(data) is dict:
        # Fast path, the common case: a flat dict of scalars.
        for key, value in data.items():
            if type(key) is not str or type(value) not in _SCALAR_TYPES:
                break
        else:
            return data
    if not isinstance(data, Mapping):
        raise InvalidMessageError(f"event data must be a map, got {type(data).__name__}")
    # Iterative walk: recursion depth must not depend on untrusted input.
    # Exact type checks first: this runs for every received event.
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            raise LimitExceededError(f"event data nested deeper than {max_depth} levels")
        if type(value) is dict or isinstance(value, Mapping):
            for key in value:
                if type(key) is not str:
                    raise InvalidMessageError(f"event data keys must be strings, got {key!r:.40}")
            children = value.values()
        else:
            children = value
        for item in children:
            t = type(item)
            if t in _SCALAR_TYPES:
                continue
            if t is dict or t is list or isinstance(item, (Mapping, list, tuple)):
                stack.append((item, depth + 1))
            else:
                raise InvalidMessageError(
                    f"event data value of type {t.__name__} is not msgpack-able"
                )
    return data


_SCALAR_TYPES = frozenset({str, bytes, int, float, bool, type(None)})
_CHANNEL_BY_VALUE = {c.value: c for c in Channel}


class Event(NamedTuple):
    """One event on the bus. Identity is ``(source, hlc)``.

    ``compressed`` marks an aggregate produced by semantic compression
    (its ``data`` carries count, first/last HLC, a sample and numeric stats).

    A named tuple rather than an attrs class: immutable all the same, and built
    in C. Every event is constructed once where it is published and once per
    receiver, and attrs' frozen ``__init__`` (one ``object.__setattr__`` per
    field) cost about 0.5 µs of each.
    """

    type: str
    channel: Channel
    data: Mapping[str, Any]
    source: str
    hlc: Timestamp
    hops: int = 0
    compressed: bool = False

    @property
    def id(self) -> tuple[str, Timestamp]:
        return (self.source, self.hlc)

    def relayed(self) -> Event:
        """This event one hop further along."""
        return self._replace(hops=self.hops + 1)

    def to_wire(self) -> list[Any]:
        """``[type, channel, data, source, [physical, logical, node], hops, compressed]``.

        The same shape msgpack gives the named tuple itself (with
        ``node.core.wire.pack_default`` for the channel), which is how batches
        are encoded: without building a list per event.
        """
        return [
            self.type,
            self.channel._value_,  # .value is a descriptor call; this is a plain attribute
            self.data,
            self.source,
            [*self.hlc],
            self.hops,
            self.compressed,
        ]

    @classmethod
    def from_wire(cls, raw: object, *, max_hops: int = DEFAULT_MAX_HOPS) -> Event:
        """Validate and build; InvalidMessageError/LimitExceededError if bad.

        The receive path runs this for every event, so the checks are written
        inline with exact type tests; anything unusual goes to the full checks
        for their precise messages.
        """
        if not isinstance(raw, (list, tuple)) or len(raw) != 7:
            raise InvalidMessageError(f"event must be a 7-item array, got {_shape(raw)}")
        etype, channel, data, source, stamp, hops, compressed = raw
        if type(etype) is not str or not 0 < len(etype) <= MAX_TYPE_LEN:
            check_event_type(etype)
        chan = _CHANNEL_BY_VALUE.get(channel) if type(channel) is str else None
        if chan is None:
            raise InvalidMessageError(f"unknown channel {channel!r:.40}")
        if type(data) is dict:  # check_data's fast path, inlined: a flat map of scalars
            for key, value in data.items():
                if type(key) is not str or type(value) not in _SCALAR_TYPES:
                    check_data(data)
                    break
        else:
            check_data(data)
        if type(source) is not str or not 0 < len(source) <= MAX_NODE_NAME:
            raise InvalidMessageError(f"event source must be a name of 1..{MAX_NODE_NAME} chars")
        if type(stamp) is list and len(stamp) == 3:
            phys, logical, hlc_node = stamp
            if (
                type(phys) is int
                and type(logical) is int
                and 0 <= phys <= MAX_PHYSICAL
                and 0 <= logical <= MAX_LOGICAL
                and hlc_node == source
            ):
                hlc = _new(Timestamp, (phys, logical, source))  # the common case, inline
            else:
                hlc = Timestamp.from_wire(stamp)
        else:
            hlc = Timestamp.from_wire(stamp)
        if type(hops) is not int or not 0 <= hops <= max_hops:
            raise InvalidMessageError(
                f"event hops must be int in [0, {max_hops}], got {hops!r:.20}"
            )
        if type(compressed) is not bool:
            raise InvalidMessageError("event compressed marker must be a bool")
        return _new(cls, (etype, chan, data, source, hlc, hops, compressed))


# Builds a named tuple without its generated __new__ (a Python frame, 0.1-0.2 µs).
_new = tuple.__new__


def _shape(raw: object) -> str:
    if isinstance(raw, (list, tuple)):
        return f"array of {len(raw)}"
    return type(raw).__name__
