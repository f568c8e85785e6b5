"""Shared helpers for the variety-engineering tests (on pythonpath)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from node.core.events import Channel, Event, classify
from node.core.hlc import Timestamp
from node.core.variety import VarietyManager, Verdict

A, C, T = Verdict.ADMIT, Verdict.COMPRESS, Verdict.THROTTLE
S1, GEN = Channel.S1_OPERATIONAL, Channel.GENERAL
_clock = itertools.count(1)


def ev(
    type: str = "task_execution",
    data: Mapping[str, Any] | None = None,
    *,
    source: str = "a",
    channel: Any = None,
    hlc: Timestamp | None = None,
    hops: int = 0,
) -> Event:
    """An event with a fresh, increasing HLC unless one is given."""
    return Event(
        type,
        classify(type) if channel is None else channel,
        {"task": "t", "ms": 1} if data is None else data,
        source,
        hlc or Timestamp(1_000, next(_clock), source),
        hops,
    )


def unique(i: int) -> Event:
    """An event whose signature no other ``unique(j)`` shares."""
    return ev(data={f"k{i}": i})


def admits(vm: VarietyManager, now: float, n: int = 50, *, make: Any = unique) -> int:
    """How many of ``n`` events offered at ``now`` are admitted."""
    return sum(vm.admit(make(i), now) is A for i in range(n))


def channel_stats(vm: VarietyManager, channel: Channel = S1) -> dict[str, Any]:
    return vm.stats()[channel.value]
