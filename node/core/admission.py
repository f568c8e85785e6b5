"""Who may hold a handshake slot (sans-IO).

Unauthenticated connections are cheap to open and were once able to hold all
64 handshake slots. The rules here make a stranger cost little and never
block a member from joining:

* each source host holds at most ``per_host`` pending handshakes;
* strangers (hosts where no known member lives) share ``total - reserved``
  slots; the ``reserved`` rest is kept for hosts of known members;
* a full share is made room in by evicting the *oldest* pending handshake
  that the newcomer may displace (same host first, else the oldest stranger).

Newest-wins rather than refuse-new: an honest handshake takes a few round
trips, so an idle connection holding a slot is the attack, and it is the one
that goes. To displace a member's handshake an attacker must open ``per_host``
connections from its very host within one handshake round trip.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import attrs

DEFAULT_MAX_PENDING = 64
DEFAULT_PER_HOST = 4
DEFAULT_RESERVED_FOR_MEMBERS = 16


@attrs.frozen
class _Slot:
    host: str
    member: bool


@attrs.define
class PendingHandshakes:
    """Bookkeeping of handshake slots. ``admit`` always takes the newcomer and
    returns the keys of the handshakes it displaced (the caller cancels them)."""

    total: int = DEFAULT_MAX_PENDING
    per_host: int = DEFAULT_PER_HOST
    reserved: int = DEFAULT_RESERVED_FOR_MEMBERS
    _slots: OrderedDict[Hashable, _Slot] = attrs.field(factory=OrderedDict)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.per_host <= self.total or not 0 <= self.reserved < self.total:
            raise ValueError(
                f"need 0 < per_host <= total and 0 <= reserved < total, got "
                f"per_host={self.per_host} reserved={self.reserved} total={self.total}"
            )

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._slots

    def on_host(self, host: str) -> int:
        return sum(1 for s in self._slots.values() if s.host == host)

    @property
    def strangers(self) -> int:
        return sum(1 for s in self._slots.values() if not s.member)

    def admit(self, key: Hashable, host: str, *, member: bool) -> list[Hashable]:
        """Give ``key`` (from ``host``; ``member``: a known member lives there) a slot."""
        if key in self._slots:
            raise ValueError(f"{key!r} already holds a slot")
        evicted: list[Hashable] = []
        if self.on_host(host) >= self.per_host:
            evicted.append(self._oldest(lambda s: s.host == host))
        if not member and self.strangers >= self.total - self.reserved:
            evicted.append(self._oldest(lambda s: not s.member))
        if len(self._slots) >= self.total:
            strangers = self.strangers > 0
            evicted.append(self._oldest(lambda s: not s.member or not strangers))
        self._slots[key] = _Slot(host, member)
        return evicted

    def release(self, key: Hashable) -> None:
        """The handshake ended (done, failed or evicted); idempotent."""
        self._slots.pop(key, None)

    def _oldest(self, match: Callable[[_Slot], bool]) -> Hashable:
        for key, slot in self._slots.items():
            if match(slot):
                del self._slots[key]
                return key
        raise AssertionError("no slot to evict")  # callers checked a count first


@attrs.define
class LogBudget:
    """At most ``per_window`` log lines per key in each ``window_s``; the rest are
    counted and reported with the next line let through, so a flood of strangers
    cannot flood the log (the counters still see every one)."""

    per_window: int = 5
    window_s: float = 10.0
    _spent: dict[str, tuple[float, int, int]] = attrs.field(factory=dict)

    def allow(self, key: str, now: float) -> tuple[bool, int]:
        """(log this one?, how many were held back since the last line logged)."""
        start, used, held = self._spent.get(key, (now, 0, 0))
        if now - start >= self.window_s:
            start, used = now, 0
        if used < self.per_window:
            self._spent[key] = (start, used + 1, 0)
            return True, held
        self._spent[key] = (start, used, held + 1)
        return False, 0
