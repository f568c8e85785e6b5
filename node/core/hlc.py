"""Hybrid logical clock (Kulkarni, Demirbas et al., 2014), as CockroachDB uses it.

A timestamp is ``(physical ms, logical counter, node)``. ``physical`` tracks the
largest wall-clock reading seen anywhere in the causal past, so it stays within
``max_offset_ms`` of real time; ``logical`` orders events that share the same
``physical``; ``node`` breaks the remaining ties so the order is total.

Sans-IO: the wall clock is injected, so tests drive it by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from node.errors import ClockOffsetError, ClockOverflowError, InvalidMessageError

DEFAULT_MAX_OFFSET_MS = 500
# CockroachDB keeps the logical part in an int32. The bound only matters when
# the wall clock is stuck far behind the cluster: past it we fail loudly
# instead of wrapping round and breaking the order.
MAX_LOGICAL = 2**31 - 1
MAX_PHYSICAL = 2**63 - 1
MAX_NODE_NAME = 255


_new = tuple.__new__  # a named tuple without its generated __new__ (a Python frame)


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch from the system clock."""
    return time.time_ns() // 1_000_000


class Timestamp(NamedTuple):
    """A point in hybrid logical time; ordered by physical, logical, node.

    A named tuple rather than an attrs class: every received event carries
    one, and tuple construction and comparison run in C (attrs' generated
    ordering built two tuples per comparison, 1.4 µs on the receive path).
    """

    physical: int
    logical: int
    node: str

    def to_wire(self) -> list[int | str]:
        return [self.physical, self.logical, self.node]

    @classmethod
    def from_wire(cls, raw: object) -> Timestamp:
        """Build from ``[physical, logical, node]``; InvalidMessageError if malformed."""
        if not isinstance(raw, (list, tuple)) or len(raw) != 3:
            raise InvalidMessageError(
                f"timestamp must be [physical, logical, node], got {raw!r:.80}"
            )
        physical, logical, node = raw
        if type(physical) is not int or not 0 <= physical <= MAX_PHYSICAL:
            raise InvalidMessageError(
                f"timestamp physical must be int in [0, 2^63), got {physical!r:.40}"
            )
        if type(logical) is not int or not 0 <= logical <= MAX_LOGICAL:
            raise InvalidMessageError(
                f"timestamp logical must be int in [0, {MAX_LOGICAL}], got {logical!r:.40}"
            )
        if type(node) is not str or not 0 < len(node) <= MAX_NODE_NAME:
            raise InvalidMessageError(f"timestamp node must be a name of 1..{MAX_NODE_NAME} chars")
        return cls(physical, logical, node)

    def __str__(self) -> str:
        return f"{self.physical}.{self.logical}@{self.node}"


class HLC:
    """One node's hybrid logical clock.

    ``now()`` stamps a local or send event; ``update(remote)`` merges a
    received timestamp (the paper's receive rule) and stamps the receive event.
    """

    __slots__ = ("_c", "_edge", "_l", "_system", "_wall", "max_offset_ms", "node")

    def __init__(
        self,
        node: str,
        *,
        wall: Callable[[], int] = wall_clock_ms,
        max_offset_ms: int = DEFAULT_MAX_OFFSET_MS,
    ) -> None:
        if max_offset_ms < 0:
            raise ValueError(f"max_offset_ms must be >= 0, got {max_offset_ms}")
        self.node = node
        self.wall = wall
        self.max_offset_ms = max_offset_ms
        self._l = 0
        self._c = 0
        #: The system time (ns) at which the wall clock passes ``_l``: before it,
        #: now() needs no division to know it keeps ``_l`` (system clock only).
        self._edge = 1_000_000

    @property
    def wall(self) -> Callable[[], int]:
        """The wall clock, milliseconds since the epoch (replaceable, for tests)."""
        return self._wall

    @wall.setter
    def wall(self, wall: Callable[[], int]) -> None:
        self._wall = wall
        # The system clock is read inline by now(): it runs once per event.
        self._system = wall is wall_clock_ms

    @property
    def last(self) -> Timestamp:
        """The last timestamp issued (or 0.0 before any)."""
        return Timestamp(self._l, self._c, self.node)

    def now(self) -> Timestamp:
        """Timestamp for a local or send event. Never goes backwards."""
        if self._system:
            t = time.time_ns()  # looked up per call: tests replace time.time_ns
            if t < self._edge:
                # Still within (or behind) the last stamp's millisecond: keep l,
                # bump c. The common case when events come faster than 1/ms.
                c = self._c + 1
                if c <= MAX_LOGICAL:
                    self._c = c
                    return _new(Timestamp, (self._l, c, self.node))
            pt = t // 1_000_000
        else:
            pt = self._wall()
        last = self._l
        if pt > last:
            self._l = pt
            self._c = 0
            self._edge = (pt + 1) * 1_000_000
            return _new(Timestamp, (pt, 0, self.node))
        # Wall clock behind (or equal to) what we have seen: keep l, bump c.
        c = self._c + 1
        if c > MAX_LOGICAL:
            self._bump(self._c)  # raises ClockOverflowError
        self._c = c
        return _new(Timestamp, (last, c, self.node))

    def update(self, remote: Timestamp) -> Timestamp:
        """Merge a received timestamp; return the new local timestamp.

        Raises ClockOffsetError (clock unchanged) when ``remote`` is more than
        ``max_offset_ms`` ahead of our wall clock, and ClockOverflowError
        (clock unchanged) when the logical counter would pass its bound.
        """
        pt = self.wall()
        ahead = remote.physical - pt
        if ahead > self.max_offset_ms:
            raise ClockOffsetError(
                f"timestamp from {remote.node!r} is {ahead} ms ahead of local wall clock "
                f"(max_offset_ms {self.max_offset_ms})"
            )
        l_old, c_old = self._l, self._c
        l_new = max(l_old, remote.physical, pt)
        if l_new == l_old and l_new == remote.physical:
            c_new = self._bump(max(c_old, remote.logical))
        elif l_new == l_old:
            c_new = self._bump(c_old)
        elif l_new == remote.physical:
            c_new = self._bump(remote.logical)
        else:
            c_new = 0
        self._l, self._c = l_new, c_new
        self._edge = (l_new + 1) * 1_000_000
        return Timestamp(l_new, c_new, self.node)

    @staticmethod
    def _bump(c: int) -> int:
        if c >= MAX_LOGICAL:
            raise ClockOverflowError(
                f"logical counter would pass its bound {MAX_LOGICAL}: "
                "wall clock stuck far behind the cluster"
            )
        return c + 1
