"""Bounded memory of event identities ``(source, hlc)`` for deduplication.

Memory is what matters here (goal: under 1 MB per 10,000 remembered ids), so
an id is packed into one int below 2**60 whenever it can be (a small int is
32 bytes), kept in a set, with a fixed ring (a list) for FIFO eviction:
about 90 bytes an id in all (the ring shares the set's int objects), measured in the tests.

When the memory is full the oldest id is forgotten. A forgotten id that
arrives again is delivered again: a receiver must never refuse an event it
has not delivered, and a floor below which ids count as "seen" would (an
event held back by channel priority can arrive after many newer ones).
Events that come straight from their source are deduplicated exactly by link
sequence numbers (node.core.link); this memory serves copies that arrive by
other paths (relays, alarms over redundant paths).
"""

from __future__ import annotations

from node.core.hlc import Timestamp

DEFAULT_DEDUP_SIZE = 10_000

# Compact key: 12 bits source, 32 bits ms since the source's first event
# (49 days), 16 bits logical = 60 bits. Anything else takes the wide form,
# marked by a bit far above, so the two forms never collide.
_SRC_BITS, _MS_BITS, _LOG_BITS = 12, 32, 16
_WIDE = 1 << 200


class Deduplicator:
    """``seen(source, hlc)`` answers "already had it?" and remembers it if not."""

    __slots__ = (
        "_base",
        "_ids",
        "_next",
        "_ring",
        "_source_ids",
        "capacity",
        "duplicates",
        "forgotten",
    )

    def __init__(self, capacity: int = DEFAULT_DEDUP_SIZE) -> None:
        if capacity < 1:
            raise ValueError(f"dedup capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._source_ids: dict[str, int] = {}
        self._base: list[int] = []  # per source id: physical ms of its first event
        self._ids: set[int] = set()
        self._ring: list[int | None] = [None] * capacity  # the same int objects as _ids
        self._next = 0
        self.duplicates = 0
        self.forgotten = 0  # ids evicted to keep the bound

    def __len__(self) -> int:
        return len(self._ids)

    def seen(self, source: str, hlc: Timestamp) -> bool:
        """True if this id is remembered; else remember it (evicting the oldest)."""
        sid = self._source_ids.get(source)
        if sid is None:
            sid = self._source_ids[source] = len(self._source_ids)
            self._base.append(hlc.physical)
        key = self._key(sid, hlc.physical, hlc.logical)
        if key in self._ids:
            self.duplicates += 1
            return True
        self._ids.add(key)
        ring, slot = self._ring, self._next
        old = ring[slot]
        if old is not None:
            self._ids.discard(old)
            self.forgotten += 1
        ring[slot] = key
        self._next = slot + 1 if slot + 1 < self.capacity else 0
        return False

    def _key(self, sid: int, physical: int, logical: int) -> int:
        delta = physical - self._base[sid]
        if sid < (1 << _SRC_BITS) and 0 <= delta < (1 << _MS_BITS) and logical < (1 << _LOG_BITS):
            return (((sid << _MS_BITS) | delta) << _LOG_BITS) | logical
        return _WIDE | (sid << 128) | (physical << 64) | logical
