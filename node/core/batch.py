"""Events on the wire in runs: what an EVENTS frame carries (sans-IO).

A run is a stretch of consecutive events that share source, hops and the
compressed marker, sent once per run, with the rest in columns:

    [type, channel, source, hops, compressed, [data...], [physical...], [logical...], nodes]

``type`` and ``channel`` are one value when every event of the run has it (a
flood of one type), else a column each; ``nodes`` is nil when every event's
timestamp names its source (always, for events a node stamps itself), else
the column of timestamp nodes. What one node publishes is therefore one run
per frame, whatever its types. An EVENTS frame holds items in order: runs (of
at least ``MIN_RUN`` events) and single events as ``Event.to_wire`` describes
them (a lone event, a few, or a short stretch of relayed events).

The sender packs a map and two integers per event instead of a seven-item
array with a nested timestamp and a channel through msgpack's ``default``
hook, and the receiver unpacks fewer objects and checks the shared fields
once per run. Measured with ``timeit`` (best of 9, protocol 4 against this),
256-event frames of one type: encode 0.49 -> 0.32 µs per event, decode and
check 1.49 -> 0.93 µs; two types alternating: 0.49 -> 0.31 and 1.51 -> 1.16; a
lone event's frame (a single event, as before) 1.94 -> 2.07 and 3.67 -> 3.74.

Validation is unchanged in substance: :meth:`Run.events` accepts a run only
if every event would pass ``Event.from_wire``; anything unusual (nested data,
a stamp naming another node, a value out of range) returns None, and the
receiver then checks the run's events one by one with ``Event.from_wire``
(:meth:`Run.rows`), so one bad event is refused on its own, with its reason.
Single events are always checked one by one.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from itertools import chain, groupby, repeat
from typing import Any, NamedTuple

from node.core.events import (
    _CHANNEL_BY_VALUE,
    _SCALAR_TYPES,
    MAX_TYPE_LEN,
    Channel,
    Event,
)
from node.core.hlc import MAX_LOGICAL, MAX_NODE_NAME, MAX_PHYSICAL, Timestamp
from node.errors import InvalidMessageError

RUN_FIELDS = 9
#: Stretches of fewer events go as single events: a run's own lists cost more.
MIN_RUN = 4

_RUN_KEY = operator.itemgetter(3, 5, 6)  # source, hops, compressed
_TYPE = operator.itemgetter(0)
_CHANNEL = operator.itemgetter(1)
_DATA = operator.itemgetter(2)
_STAMP = operator.itemgetter(4)
_new = tuple.__new__
_chain = chain.from_iterable
_values = dict.values
_union = set().union  # a new set of the keys of all the given dicts
_DICT = frozenset((dict,))
_INT = frozenset((int,))
_STR = frozenset((str,))
_SCALARS = frozenset(_SCALAR_TYPES)


class Run(NamedTuple):
    """Consecutive events with the same source, hops and marker; type and channel
    are one value for all, or (where they vary) a column each."""

    type: Any  # str, or a column of them
    channel: Any  # a Channel (built here) or its value (decoded, unchecked); or a column
    source: Any
    hops: Any
    compressed: Any
    data: list[Any]
    physical: list[Any]
    logical: list[Any]
    nodes: list[Any] | None

    @property
    def size(self) -> int:
        """How many events the run holds."""
        return len(self.data)

    @classmethod
    def from_wire(cls, raw: object, room: int) -> Run:
        """The run's shape only (the columns line up, at most ``room`` events);
        its content is checked by :meth:`events` or, event by event, from :meth:`rows`.
        InvalidMessageError for a bad shape: the frame's numbering is then unknown."""
        if type(raw) is not list or len(raw) != RUN_FIELDS:
            raise InvalidMessageError(f"EVENTS run must be a {RUN_FIELDS}-item array")
        data, physical, logical, nodes = raw[5:]
        if type(data) is not list or not 0 < len(data) <= room:
            raise InvalidMessageError(f"EVENTS run must hold 1..{room} events")
        n = len(data)
        if (
            type(physical) is not list
            or type(logical) is not list
            or len(physical) != n
            or len(logical) != n
            or not (nodes is None or (type(nodes) is list and len(nodes) == n))
            or (type(raw[0]) is list and len(raw[0]) != n)
            or (type(raw[1]) is list and len(raw[1]) != n)
        ):
            raise InvalidMessageError("EVENTS run columns must all hold one item per event")
        run: Run = _new(cls, raw)
        return run

    def events(self, max_hops: int) -> list[Event] | None:
        """Every event of the run, if all are valid and plain (flat data, stamps
        naming the source); else None: check them one by one (:meth:`rows`)."""
        etype, channel, source, hops, compressed, data, physical, logical, nodes = self
        if (
            nodes is not None
            or type(source) is not str
            or not 0 < len(source) <= MAX_NODE_NAME
            or type(hops) is not int
            or not 0 <= hops <= max_hops
            or type(compressed) is not bool
        ):
            return None
        n = len(data)
        if type(etype) is list:  # a column: every entry checked
            if not all(type(t) is str and 0 < len(t) <= MAX_TYPE_LEN for t in etype):
                return None
            types: Iterable[Any] = etype
        elif type(etype) is str and 0 < len(etype) <= MAX_TYPE_LEN:
            types = repeat(etype, n)
        else:
            return None
        if type(channel) is list:
            chans: Iterable[Any] = [_channel(value) for value in channel]
            if None in chans:
                return None
        else:
            chan = _channel(channel)
            if chan is None:
                return None
            chans = repeat(chan, n)
        # The columns are checked whole, in C (a map of type() into a set
        # lookup per item, min and max), rather than event by event: the
        # receiver runs this for every event, and it is most of its work.
        if not (
            n
            and _DICT.issuperset(map(type, data))
            and _INT.issuperset(map(type, physical))
            and _INT.issuperset(map(type, logical))
            and min(physical) >= 0
            and max(physical) <= MAX_PHYSICAL
            and min(logical) >= 0
            and max(logical) <= MAX_LOGICAL
            # check_data's fast path: flat maps of scalars under string keys.
            # The keys are checked once per distinct key: the decoder interns
            # them, and a set takes a dict's keys with their stored hashes.
            and _STR.issuperset(map(type, _union(*data)))
            and _SCALARS.issuperset(map(type, _chain(map(_values, data))))
        ):
            return None
        stamps = map(_new, repeat(Timestamp), zip(physical, logical, repeat(source)))
        fields = zip(types, chans, data, repeat(source), stamps, repeat(hops), repeat(compressed))
        return list(map(_new, repeat(Event), fields))

    def rows(self) -> list[list[Any]]:
        """Each event as the array ``Event.from_wire`` checks (the slow path)."""
        etype, channel, source, hops, compressed, data, physical, logical, nodes = self
        types = etype if type(etype) is list else repeat(etype)
        channels = channel if type(channel) is list else repeat(channel)
        names = repeat(source) if nodes is None else nodes
        return [
            [kind, _value(chan), item, source, [phys, count, name], hops, compressed]
            for kind, chan, item, phys, count, name in zip(
                types, channels, data, physical, logical, names, strict=False
            )
        ]

    def tail(self, skip: int) -> Run:
        """The run without its first ``skip`` events (already delivered)."""
        nodes, etype, channel = self.nodes, self.type, self.channel
        return self._replace(
            type=etype[skip:] if type(etype) is list else etype,
            channel=channel[skip:] if type(channel) is list else channel,
            data=self.data[skip:],
            physical=self.physical[skip:],
            logical=self.logical[skip:],
            nodes=None if nodes is None else nodes[skip:],
        )


def items_of(events: Sequence[Event]) -> tuple[Run | Event, ...]:
    """What an EVENTS frame carries for ``events``, in order: runs of at least
    ``MIN_RUN`` events, and the events of shorter stretches on their own."""
    n = len(events)
    if n < MIN_RUN:  # a lone event (the latency path) or a few: no grouping
        return tuple(events)
    # What a node publishes is one run: transpose the batch in C and check that
    # the shared fields are shared (tuple.count compares by identity first).
    types, channels, data, sources, stamps, hops_, marks = zip(*events, strict=True)
    source, hops, compressed = sources[0], hops_[0], marks[0]
    if sources.count(source) == n and hops_.count(hops) == n and marks.count(compressed) == n:
        return (_run(types, channels, source, hops, compressed, data, stamps),)
    items: list[Run | Event] = []  # relayed events among our own: group by source
    for (source, hops, compressed), group in groupby(events, _RUN_KEY):
        members = list(group)
        if len(members) < MIN_RUN:
            items += members
            continue
        kinds = tuple(map(_TYPE, members))
        values = tuple(map(_CHANNEL, members))
        stamped = tuple(map(_STAMP, members))
        items.append(_run(kinds, values, source, hops, compressed, map(_DATA, members), stamped))
    return tuple(items)


def _run(
    types: tuple[str, ...],
    channels: tuple[Channel, ...],
    source: str,
    hops: int,
    compressed: bool,
    data: Iterable[Any],
    stamps: tuple[Timestamp, ...],
) -> Run:
    n = len(types)
    physical, logical, names = zip(*stamps, strict=True)
    etype = types[0] if types.count(types[0]) == n else list(types)
    channel = channels[0] if channels.count(channels[0]) == n else list(channels)
    nodes = None if names.count(source) == n else list(names)
    shared = (etype, channel, source, hops, compressed)
    run: Run = _new(Run, (*shared, list(data), list(physical), list(logical), nodes))
    return run


def _channel(value: object) -> Channel | None:
    """A channel built here, or from its value off the wire (None: unknown)."""
    if type(value) is Channel:
        return value
    return _CHANNEL_BY_VALUE.get(value) if type(value) is str else None


def _value(channel: object) -> object:
    return channel.value if type(channel) is Channel else channel


def item_size(item: Run | Event | list[Any]) -> int:
    """How many events (and link sequence numbers) an EVENTS item stands for."""
    return len(item.data) if isinstance(item, Run) else 1
