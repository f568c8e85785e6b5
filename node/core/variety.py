"""Variety engineering: token buckets, semantic compression, adaptive quotas, pressure.

Ashby's law of requisite variety, applied to what one node sends to the others:
each VSM channel gets a ration of events per second (a token bucket), events over
the ration are folded into per-window aggregates when they resemble others instead
of being lost, the rations of the least vital channels shrink while the system is
congested (AIMD), and every channel reports how hard it is being pushed.

Sans-IO: nothing here reads a clock or does I/O. Every method that depends on time
takes ``now`` (monotonic seconds, e.g. ``trio.current_time()``); tests drive it by
hand. The runtime calls :meth:`VarietyManager.admit` for each outbound event,
:meth:`VarietyManager.flush` once per window, and
:meth:`VarietyManager.set_system_pressure` periodically.
"""

from __future__ import annotations

import enum
import math
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from node.core.events import MAX_DATA_DEPTH, Channel, Event
from node.core.hlc import Timestamp
from node.core.limits import (
    ChannelMap,
    by_channel,
    check_capacity,
    check_count,
    check_fraction,
    check_number,
    check_positive,
    check_quota,
)
from node.errors import ConfigError

#: Events per second, per node, outbound. ``None`` is unlimited.
DEFAULT_QUOTAS: Mapping[Channel, float | None] = types.MappingProxyType(
    {
        Channel.ALGEDONIC: None,
        Channel.S5_POLICY: 50.0,
        Channel.S4_INTELLIGENCE: 100.0,
        Channel.S3_CONTROL: 200.0,
        Channel.S2_COORDINATION: 500.0,
        Channel.S1_OPERATIONAL: 1000.0,
        Channel.GENERAL: 100.0,
    }
)
#: Burst allowance, in seconds of quota (never less than one token).
DEFAULT_CAPACITY_S = 1.0
DEFAULT_WINDOW_S = 1.0
#: Live signatures per channel and window (seen or aggregating). Bounds memory and
#: the number of aggregates one flush can emit per channel.
DEFAULT_MAX_SIGNATURES = 1024
#: Admitted events remembered per channel and window, for company (see _Lane.recorded).
DEFAULT_MAX_RECORDED = 4096
#: Time constant of the demand-rate smoothing behind pressure().
DEFAULT_PRESSURE_TAU_S = 2.0
DEFAULT_AIMD_HIGH = 0.8
DEFAULT_AIMD_LOW = 0.5
DEFAULT_AIMD_DECREASE = 0.5
DEFAULT_AIMD_FLOOR = 0.1
DEFAULT_AIMD_RECOVERY_PER_S = 0.1
DEFAULT_AIMD_INTERVAL_S = 1.0
#: Only the least vital channels are cut under congestion; S2-S5 keep their quotas.
DEFAULT_ADAPTIVE_CHANNELS: tuple[Channel, ...] = (Channel.S1_OPERATIONAL, Channel.GENERAL)

#: Pressure thresholds the UI uses: below MODERATE healthy, above HIGH high.
PRESSURE_MODERATE = 0.5
PRESSURE_HIGH = 0.8

# Continuous refill sums many small float increments; without a little slack a
# quota of 0.1/s could sit at 0.9999999999 tokens after ten seconds.
_TOKEN_EPSILON = 1e-9
_ONE_TOKEN = 1.0 - _TOKEN_EPSILON
_exp = math.exp
_LEAF_TYPES = frozenset({str, int, float, bool, bytes, type(None), list, tuple})

Signature = tuple[str, str, frozenset[Any]]
#: Per-channel settings keyed by channel name or Channel (mixing is fine).


class Verdict(enum.Enum):
    """What admit() decided for one event."""

    ADMIT = "admit"  # send it now
    COMPRESS = "compress"  # folded into an aggregate, sent by flush()
    THROTTLE = "throttle"  # not sent; counted


_ADMIT = Verdict.ADMIT
_COMPRESS = Verdict.COMPRESS
_THROTTLE = Verdict.THROTTLE


def pressure_level(pressure: float) -> str:
    """``"healthy"`` (< 0.5), ``"moderate"`` (0.5-0.8) or ``"high"`` (> 0.8)."""
    if pressure < PRESSURE_MODERATE:
        return "healthy"
    if pressure <= PRESSURE_HIGH:
        return "moderate"
    return "high"


class VarietyManager:
    """Per-channel rationing of outbound events.

    ``quotas`` maps channel names or :class:`Channel` to events per second
    (``None`` for unlimited, ``0`` for closed); channels left out keep
    :data:`DEFAULT_QUOTAS`. ``capacities`` sets burst sizes in tokens (default:
    one second of quota, at least one). Algedonic events always pass and cannot
    be given a quota. Bad settings raise :class:`~node.errors.ConfigError`.

    Semantic compression. An event over quota is folded (COMPRESS) when an
    earlier event of the current window shares its signature (channel, type,
    source and the key structure of ``data``); otherwise it is THROTTLE. "Earlier
    event" counts admitted, throttled and folded ones alike. ``admit`` must answer
    at once and the answer is final (the runtime counts it per peer), so the
    first over-quota event of a signature with no company yet cannot wait to see
    whether company comes: it is throttled, and it becomes the company of the next
    one. Under steady overload the admitted events of a signature are its company,
    so nothing is throttled there; only lone events (and events beyond
    ``max_signatures``) are. Aggregates bypass the buckets: at most one per live
    signature per window crosses on top of the quota. A closed channel (quota 0)
    throttles everything and emits no aggregates.

    Aggregates from :meth:`flush` keep the type, channel and source of what they
    fold and carry ``compressed=True``. Their HLC is the latest HLC folded, so
    they sort right after everything they stand for; their id then equals that
    (never sent) event's id. A node that relays others' events should pass
    ``stamp`` (e.g. its ``HLC.now``) to give aggregates fresh timestamps instead.
    """

    __slots__ = (
        "_adaptive",
        "_aimd_decrease",
        "_aimd_floor",
        "_aimd_high",
        "_aimd_interval",
        "_aimd_low",
        "_aimd_recovery",
        "_general",
        "_inv_tau",
        "_lanes",
        "_last_cut",
        "_max_recorded",
        "_max_signatures",
        "_ordered",
        "_pressure_t",
        "_stamp",
        "_system_pressure",
        "_window_start",
        "window_s",
    )

    def __init__(
        self,
        quotas: ChannelMap | None = None,
        *,
        capacities: ChannelMap | None = None,
        window_s: float = DEFAULT_WINDOW_S,
        max_signatures: int = DEFAULT_MAX_SIGNATURES,
        max_recorded: int = DEFAULT_MAX_RECORDED,
        pressure_tau_s: float = DEFAULT_PRESSURE_TAU_S,
        aimd_high: float = DEFAULT_AIMD_HIGH,
        aimd_low: float = DEFAULT_AIMD_LOW,
        aimd_decrease: float = DEFAULT_AIMD_DECREASE,
        aimd_floor: float = DEFAULT_AIMD_FLOOR,
        aimd_recovery_per_s: float = DEFAULT_AIMD_RECOVERY_PER_S,
        aimd_interval_s: float = DEFAULT_AIMD_INTERVAL_S,
        adaptive_channels: Iterable[Channel | str] = DEFAULT_ADAPTIVE_CHANNELS,
        stamp: Callable[[], Timestamp] | None = None,
    ) -> None:
        bases = dict(DEFAULT_QUOTAS)
        for channel, quota in by_channel(quotas, "quotas").items():
            bases[channel] = check_quota(channel, quota)
        caps = {c: check_capacity(c, v) for c, v in by_channel(capacities, "capacities").items()}

        self.window_s = check_positive("window_s", window_s)
        self._max_signatures = check_count("max_signatures", max_signatures)
        self._max_recorded = check_count("max_recorded", max_recorded)
        self._inv_tau = 1.0 / check_positive("pressure_tau_s", pressure_tau_s)
        self._aimd_high = check_fraction("aimd_high", aimd_high)
        self._aimd_low = check_fraction("aimd_low", aimd_low)
        if self._aimd_low > self._aimd_high:
            raise ConfigError(f"aimd_low {aimd_low} must not exceed aimd_high {aimd_high}")
        self._aimd_decrease = check_fraction("aimd_decrease", aimd_decrease)
        if self._aimd_decrease == 0:
            raise ConfigError("aimd_decrease must be > 0 (it multiplies the quota)")
        self._aimd_floor = check_fraction("aimd_floor", aimd_floor)
        self._aimd_recovery = check_number("aimd_recovery_per_s", aimd_recovery_per_s)
        self._aimd_interval = check_number("aimd_interval_s", aimd_interval_s)
        self._stamp = stamp

        self._ordered = tuple(
            _Lane(c, bases[c], caps.get(c, DEFAULT_CAPACITY_S * (bases[c] or 0.0))) for c in Channel
        )
        # Keyed by id(): Enum.__hash__ is a Python-level call, and this lookup is
        # on the per-event path. Members are singletons, so identity is exact.
        self._lanes = {id(lane.channel): lane for lane in self._ordered}
        self._general = self._lanes[id(Channel.GENERAL)]
        adaptive = {Channel.parse(c) for c in adaptive_channels}
        if Channel.ALGEDONIC in adaptive:
            raise ConfigError("algedonic bypasses every limit; it cannot be adaptive")
        self._adaptive = tuple(
            lane for lane in self._ordered if lane.channel in adaptive and not lane.fixed
        )
        self._system_pressure = 0.0
        self._pressure_t: float | None = None
        self._last_cut: float | None = None
        self._window_start: float | None = None

    # --- the per-event path -------------------------------------------------

    def admit_by(self, event: Event, clock: Callable[[], float]) -> Verdict:
        """:meth:`admit`, reading ``clock`` only if the event's lane is limited
        (an unlimited lane needs no time: the publish path saves a clock read)."""
        lane = self._lanes.get(id(event.channel))
        if lane is not None and lane.unlimited:
            lane.offered += 1
            lane.admitted += 1
            return _ADMIT
        return self.admit(event, clock())

    def admit_many(
        self, events: list[Event], channel: Channel | None, now: float
    ) -> tuple[list[Event], int, int]:
        """:meth:`admit` each of ``events`` (in order, at one instant ``now``):
        the admitted ones, and how many were compressed and throttled.
        ``channel``: the one they all belong to, if the caller knows; one
        without a limit (a flood with quotas lifted) admits all at once."""
        if channel is not None:
            lane = self._lanes.get(id(channel))
            if lane is not None and lane.unlimited:
                n = len(events)
                lane.offered += n
                lane.admitted += n
                return events, 0, 0
        admitted: list[Event] = []
        compressed = throttled = 0
        admit = self.admit
        for event in events:
            verdict = admit(event, now)
            if verdict is _ADMIT:
                admitted.append(event)
            elif verdict is _COMPRESS:
                compressed += 1
            else:
                throttled += 1
        return admitted, compressed, throttled

    def admit(self, event: Event, now: float) -> Verdict:
        """Decide one outbound event: ADMIT, COMPRESS or THROTTLE."""
        lane = self._lanes.get(id(event.channel))
        if lane is None:
            lane = self._lane_for(event.channel)
        lane.offered += 1
        if lane.unlimited:
            lane.admitted += 1
            return _ADMIT
        tokens = lane.tokens
        dt = now - lane.t
        if dt > 0.0:
            lane.t = now
            # Continuous refill. The first event sees dt = inf: a full bucket.
            tokens += dt * lane.rate
            if not tokens < lane.capacity:  # also catches inf * 0.0 = nan
                tokens = lane.capacity
            inv_tau = self._inv_tau
            lane.demand = lane.demand * _exp(-dt * inv_tau) + inv_tau
        else:
            lane.demand += self._inv_tau
        if tokens >= _ONE_TOKEN:
            lane.tokens = tokens - 1.0
            lane.admitted += 1
            if lane.hot:
                self._remember(lane, event)
            else:
                recorded = lane.recorded
                recorded.append(event)
                if len(recorded) >= self._max_recorded:
                    self._heat(lane)
            return _ADMIT
        lane.tokens = tokens
        return self._over_quota(lane, event, now)

    def _over_quota(self, lane: _Lane, event: Event, now: float) -> Verdict:
        # The path a flood takes, hence inlined: a flat payload's shape and numeric
        # leaves in one loop (see _scan for the general case), then the fold.
        if lane.closed:
            lane.throttled += 1
            return _THROTTLE
        if not lane.hot:
            self._heat(lane)
        data = event.data
        numbers: list[tuple[str, Any]] = []
        for key, value in data.items():
            kind = type(value)
            if kind is str:
                continue
            if kind is float:
                if value == value:  # NaN would poison min, max and mean
                    numbers.append((key, value))
            elif kind is int:
                numbers.append((key, value))
            elif kind not in _LEAF_TYPES:
                shape, numbers = _scan(data)
                break
        else:
            shape = frozenset(data)
        sig = (event.type, event.source, shape)
        sigs = lane.sigs
        agg = sigs.get(sig, _UNSEEN)
        if type(agg) is _Aggregate:
            agg.count += 1
            hlc = event.hlc
            # Timestamps are tuples: (physical, logical, node) compared in C.
            if hlc > agg.last:
                agg.last = hlc
            elif hlc < agg.first:
                agg.first = hlc
            if event.hops > agg.hops:
                agg.hops = event.hops
            if numbers:
                _fold_numbers(agg.stats, numbers)
        elif agg is None:
            sigs[sig] = _Aggregate(event, numbers)
        else:
            # No company in this window: throttle it, but remember the signature
            # so the next one like it is folded.
            if self._window_start is None:
                self._window_start = now
            if len(sigs) < self._max_signatures:
                sigs[sig] = None
            else:
                lane.overflow += 1
            lane.throttled += 1
            return _THROTTLE
        lane.compressed += 1
        return _COMPRESS

    def _remember(self, lane: _Lane, event: Event) -> None:
        sigs = lane.sigs
        if len(sigs) < self._max_signatures:
            sigs.setdefault(_signature(event), None)

    def _heat(self, lane: _Lane) -> None:
        # Admitted events are company for later over-quota ones, but computing
        # their signatures costs more than the rest of admit(). Until a channel
        # first goes over quota in a window we only keep references, and sign
        # them here, once, when that happens (or when too many pile up).
        for event in lane.recorded:
            self._remember(lane, event)
        lane.recorded.clear()
        lane.hot = True

    def _lane_for(self, channel: object) -> _Lane:
        if isinstance(channel, str):
            for lane in self._ordered:
                if lane.channel.value == channel:
                    return lane
        return self._general

    # --- windows --------------------------------------------------------------

    def flush(self, now: float) -> list[Event]:
        """Close the current window: one aggregate per signature that folded events.

        The runtime calls this every ``window_s`` seconds (see :meth:`flush_due`).
        Aggregates come in channel priority order, algedonic first.
        """
        out: list[Event] = []
        stamp = self._stamp
        for lane in self._ordered:
            if lane.sigs:
                for agg in lane.sigs.values():
                    if agg is not None:
                        out.append(agg.to_event(lane.channel, stamp))
                        lane.aggregates += 1
                        lane.folded_emitted += agg.count
                lane.sigs = {}
            lane.recorded.clear()
            lane.hot = False
        self._window_start = now
        return out

    def flush_due(self, now: float) -> bool:
        """True once the current window (since the last flush) is ``window_s`` old."""
        start = self._window_start
        return start is not None and now - start >= self.window_s

    # --- adaptive quotas --------------------------------------------------------

    @property
    def system_pressure(self) -> float:
        """The last value given to :meth:`set_system_pressure` (0.0 before any)."""
        return self._system_pressure

    def set_system_pressure(self, pressure: float, now: float) -> None:
        """Feed congestion in [0, 1] (values outside are clipped): AIMD on quotas.

        Above ``aimd_high`` the effective quotas of the adaptive channels (S1 and
        general) are multiplied by ``aimd_decrease``, floored at ``aimd_floor`` of
        base, at most once per ``aimd_interval_s``. Below ``aimd_low`` they regain
        ``aimd_recovery_per_s`` of base per second elapsed since the previous
        report, up to base. In between they hold. Report periodically (0.1-1 s).
        """
        if pressure != pressure:
            raise ConfigError("system pressure must be a number in [0, 1], got nan")
        pressure = min(1.0, max(0.0, float(pressure)))
        previous = self._pressure_t
        elapsed = 0.0 if previous is None else max(0.0, now - previous)
        if previous is None or now > previous:
            self._pressure_t = now
        self._system_pressure = pressure
        if pressure > self._aimd_high:
            last = self._last_cut
            if last is not None and now - last < self._aimd_interval:
                return
            self._last_cut = now
            for lane in self._adaptive:
                assert lane.base is not None
                rate = max(lane.base * self._aimd_floor, lane.rate * self._aimd_decrease)
                self._set_rate(lane, rate, now)
        elif pressure < self._aimd_low and elapsed > 0.0:
            for lane in self._adaptive:
                assert lane.base is not None
                if lane.rate < lane.base:
                    rate = min(lane.base, lane.rate + lane.base * self._aimd_recovery * elapsed)
                    self._set_rate(lane, rate, now)

    def _set_rate(self, lane: _Lane, rate: float, now: float) -> None:
        self._advance(lane, now)  # tokens earned so far accrue at the old rate
        assert lane.base is not None
        lane.rate = rate
        # The burst scales with the quota: under congestion a refilled bucket
        # must not release a full second of the *base* quota at once.
        lane.capacity = max(1.0, lane.capacity_base * rate / lane.base)
        lane.tokens = min(lane.tokens, lane.capacity)

    def _advance(self, lane: _Lane, now: float) -> None:
        dt = now - lane.t
        if dt > 0.0:
            lane.t = now
            tokens = lane.tokens + dt * lane.rate
            lane.tokens = tokens if tokens < lane.capacity else lane.capacity
            lane.demand *= math.exp(-dt * self._inv_tau)

    def effective_quotas(self) -> dict[Channel, float | None]:
        """Events/s each channel may send now (after AIMD); ``None`` is unlimited."""
        return {lane.channel: None if lane.unlimited else lane.rate for lane in self._ordered}

    # --- pressure and stats --------------------------------------------------------

    def pressure(self, now: float) -> dict[Channel, float]:
        """Per channel, smoothed demand over effective quota, clipped to [0, 1].

        Demand counts every offered event (admitted, compressed or throttled),
        smoothed exponentially with time constant ``pressure_tau_s``. Unlimited
        channels report 0.0; a closed channel (quota 0) 1.0 while it has demand.
        """
        out: dict[Channel, float] = {}
        for lane in self._ordered:
            if lane.unlimited:
                out[lane.channel] = 0.0
                continue
            dt = now - lane.t
            demand = lane.demand * math.exp(-dt * self._inv_tau) if dt > 0.0 else lane.demand
            if lane.rate > 0.0:
                out[lane.channel] = min(1.0, demand / lane.rate)
            else:
                out[lane.channel] = 1.0 if demand > _TOKEN_EPSILON else 0.0
        return out

    def overall_pressure(self, now: float) -> float:
        """The highest channel pressure.

        Not an average: a saturated channel loses variety however idle the
        others are, and that is what the operator must see.
        """
        return max(self.pressure(now).values())

    def stats(self) -> dict[str, dict[str, Any]]:
        """Counters per channel, keyed by channel name; JSON-able (None = unlimited).

        ``offered == admitted + compressed + throttled`` always holds.
        ``throttled_overflow`` is the part of ``throttled`` refused for lack of a
        signature slot; ``aggregates`` counts aggregates emitted by flush,
        ``pending`` events folded but not yet flushed, ``compression_ratio`` events
        per emitted aggregate (0.0 before the first).
        """
        out: dict[str, dict[str, Any]] = {}
        for lane in self._ordered:
            out[lane.channel.value] = {
                "quota": lane.base,
                "effective_quota": None if lane.unlimited else lane.rate,
                "capacity": None if lane.unlimited else lane.capacity,
                "offered": lane.offered,
                "admitted": lane.admitted,
                "compressed": lane.compressed,
                "throttled": lane.throttled,
                "throttled_overflow": lane.overflow,
                "aggregates": lane.aggregates,
                "pending": lane.compressed - lane.folded_emitted,
                "signatures": len(lane.sigs),
                "compression_ratio": (
                    lane.folded_emitted / lane.aggregates if lane.aggregates else 0.0
                ),
            }
        return out


class _Lane:
    """One channel's bucket, counters, demand estimate and window state."""

    __slots__ = (
        "admitted",
        "aggregates",
        "base",
        "capacity",
        "capacity_base",
        "channel",
        "closed",
        "compressed",
        "demand",
        "fixed",
        "folded_emitted",
        "hot",
        "offered",
        "overflow",
        "rate",
        "recorded",
        "sigs",
        "t",
        "throttled",
        "tokens",
        "unlimited",
    )

    def __init__(self, channel: Channel, base: float | None, capacity: float) -> None:
        self.channel = channel
        self.base = base
        self.unlimited = base is None
        self.closed = base == 0
        # Unlimited and closed channels have nothing for AIMD to adjust.
        self.fixed = self.unlimited or self.closed
        self.rate = base or 0.0
        self.capacity_base = 0.0 if self.closed else max(1.0, capacity)
        self.capacity = self.capacity_base
        self.tokens = self.capacity
        # Time of the last refill and demand update; -inf makes the first
        # event find a full bucket and no past demand.
        self.t = -math.inf
        self.demand = 0.0  # smoothed offered events per second
        self.offered = self.admitted = self.compressed = self.throttled = 0
        self.overflow = self.aggregates = self.folded_emitted = 0
        # Window state: signature -> aggregate, or None when seen but not folding.
        self.sigs: dict[Signature, _Aggregate | None] = {}
        # Admitted events not yet signed (see VarietyManager._heat).
        self.recorded: list[Event] = []
        self.hot = False


class _Unseen:
    pass


_UNSEEN = _Unseen()


class _Aggregate:
    """Events of one signature folded within one window."""

    __slots__ = ("count", "first", "hops", "last", "sample", "stats", "template")

    def __init__(self, event: Event, numbers: list[tuple[str, Any]]) -> None:
        self.template = event
        self.sample = event.data
        self.count = 1
        self.first = self.last = event.hlc
        self.hops = event.hops
        # dotted path -> [min, max, sum, n]
        self.stats: dict[str, list[Any]] = {}
        _fold_numbers(self.stats, numbers)

    def to_event(self, channel: Channel, stamp: Callable[[], Timestamp] | None) -> Event:
        first, last = self.first, self.last
        data = {
            "count": self.count,
            "first_hlc": [first.physical, first.logical, first.node],
            "last_hlc": [last.physical, last.logical, last.node],
            "sample": self.sample,
            "stats": {
                name: {"min": lo, "max": hi, "mean": total / n}
                for name, (lo, hi, total, n) in self.stats.items()
            },
        }
        template = self.template
        hlc = last if stamp is None else stamp()
        return Event(template.type, channel, data, template.source, hlc, self.hops, compressed=True)


def _fold_numbers(stats: dict[str, list[Any]], numbers: list[tuple[str, Any]]) -> None:
    """Fold (path, value) pairs into running [min, max, sum, n] per path."""
    for name, value in numbers:
        acc = stats.get(name)
        if acc is None:
            stats[name] = [value, value, value, 1]
            continue
        if value < acc[0]:
            acc[0] = value
        elif value > acc[1]:
            acc[1] = value
        acc[2] += value
        acc[3] += 1


def _signature(event: Event) -> Signature:
    # The channel is implicit: signatures live in their channel's lane.
    return (event.type, event.source, _key_shape(event.data, 1))


def _key_shape(data: Mapping[str, Any], depth: int) -> frozenset[Any]:
    """The key structure of a map: keys, with (key, shape) for nested maps.

    Order-insensitive and value-blind. Lists are leaves: their items are values,
    and a length-dependent shape would split otherwise similar events.
    """
    nested: list[tuple[str, frozenset[Any]]] | None = None
    for key, value in data.items():
        if type(value) in _LEAF_TYPES:
            continue
        if depth < MAX_DATA_DEPTH and isinstance(value, Mapping):
            if nested is None:
                nested = []
            nested.append((key, _key_shape(value, depth + 1)))
    if nested is None:
        return frozenset(data)  # the common case: a flat payload
    keys: set[Any] = set(data)
    keys.difference_update(key for key, _ in nested)
    keys.update(nested)
    return frozenset(keys)


def _scan(data: Mapping[str, Any]) -> tuple[frozenset[Any], list[tuple[str, Any]]]:
    """The key shape and the numeric leaves of any payload.

    Numeric leaves are ints and floats (bools and NaN excluded), named by dotted
    path. This is the general walk; admit() does flat payloads inline.
    """
    numbers: list[tuple[str, Any]] = []
    _numeric_leaves(data, "", 1, numbers)
    return _key_shape(data, 1), numbers


def _numeric_leaves(
    data: Mapping[str, Any], prefix: str, depth: int, out: list[tuple[str, Any]]
) -> None:
    for key, value in data.items():
        kind = type(value)
        if kind in _LEAF_TYPES and kind is not int and kind is not float:
            continue
        if isinstance(value, Mapping):
            if depth < MAX_DATA_DEPTH:
                _numeric_leaves(value, f"{prefix}{key}.", depth + 1, out)
        elif isinstance(value, (int, float)) and kind is not bool and value == value:
            out.append((f"{prefix}{key}", value))
