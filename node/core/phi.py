"""Phi accrual failure detector (Hayashibara et al., 2004), after Akka's.

Instead of a yes/no timeout, the detector keeps the distribution of recent
heartbeat intervals and reports phi = -log10(P(a heartbeat arrives later than
now)), assuming intervals are normally distributed. phi 1 means a 10 % chance
the peer is merely late, phi 8 (the default threshold) one in 10^8.

Semantics follow Akka's ``PhiAccrualFailureDetector``:

- the history is seeded from ``first_heartbeat_estimate_ms`` (two samples,
  ``estimate -+ estimate / 4``: mean = estimate, std = estimate / 4), so phi
  is meaningful after the very first heartbeat;
- ``acceptable_heartbeat_pause_ms`` is added to the mean, absorbing GC pauses
  and bursts of loss without suspecting the peer;
- the standard deviation is never below ``min_std_deviation_ms``; a perfectly
  regular peer would otherwise be suspected a few ms after it is late;
- phi is 0 before any heartbeat: a peer we never heard is not suspected;
- the interval ending a period in which the peer was unavailable is not
  recorded, since one long pause would skew the statistics for a long time.

Sans-IO: every call takes ``now_ms`` (milliseconds on any monotonic clock).
"""

from __future__ import annotations

import math
from array import array

from node.errors import ConfigError

DEFAULT_THRESHOLD = 8.0
DEFAULT_MAX_SAMPLE_SIZE = 1000
DEFAULT_MIN_STD_DEVIATION_MS = 100.0
DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE_MS = 3000.0
DEFAULT_FIRST_HEARTBEAT_ESTIMATE_MS = 1000.0

#: phi never exceeds this. Akka returns +inf once exp() underflows; a finite
#: cap keeps telemetry and comparisons sane. phi 1000 stands for a probability
#: of 1e-1000, far below what a double can hold (about 1e-308), so nothing
#: meaningful is lost; it is reached about 32 standard deviations past the mean.
MAX_PHI = 1000.0

# Beyond this many standard deviations phi is MAX_PHI (or 0 on the other side)
# whatever the formula says; stops y**3 from overflowing for absurd inputs.
_Y_LIMIT = 40.0
_LN10 = math.log(10.0)


def phi(elapsed_ms: float, mean_ms: float, std_ms: float) -> float:
    """Suspicion level after ``elapsed_ms`` without a heartbeat.

    Uses the logistic approximation of the normal CDF (Bowling et al., 2009),
    F(y) ~= 1 / (1 + e^-z) with z = y (1.5976 + 0.070566 y^2), y = (elapsed - mean) / std.
    Then phi = -log10(1 - F(y)) = log10(1 + e^z), evaluated so that neither
    ``exp`` overflows nor ``log`` sees 0: 0.0 far below the mean, at most
    ``MAX_PHI`` far above it, monotonic in ``elapsed_ms`` in between.
    """
    if not 0.0 < std_ms < math.inf:
        raise ConfigError(f"std_ms must be positive and finite, got {std_ms!r}")
    y = (elapsed_ms - mean_ms) / std_ms
    if math.isnan(y):
        raise ConfigError(f"phi of elapsed_ms={elapsed_ms!r}, mean_ms={mean_ms!r} is undefined")
    if y >= _Y_LIMIT:
        return MAX_PHI
    if y <= -_Y_LIMIT:
        return 0.0
    z = y * (1.5976 + 0.070566 * y * y)
    # log(1 + e^z) = max(z, 0) + log(1 + e^-|z|): exp never sees a positive
    # argument (no OverflowError) and log never sees 0 (Akka's -log10(0) = inf).
    value = (max(z, 0.0) + math.log1p(math.exp(-abs(z)))) / _LN10
    return min(value, MAX_PHI)


class PhiAccrualDetector:
    """Failure detector for one monitored peer.

    Call ``heartbeat(now_ms)`` on every heartbeat received; ask ``phi(now_ms)``
    or ``is_available(now_ms)`` whenever needed. Memory is one fixed ring of
    ``max_sample_size`` doubles (8 kB at the default) plus a few counters.
    """

    __slots__ = (
        "_count",
        "_last_ms",
        "_next",
        "_ring",
        "_sum",
        "_sum_sq",
        "acceptable_heartbeat_pause_ms",
        "first_heartbeat_estimate_ms",
        "max_sample_size",
        "min_std_deviation_ms",
        "threshold",
    )

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        max_sample_size: int = DEFAULT_MAX_SAMPLE_SIZE,
        min_std_deviation_ms: float = DEFAULT_MIN_STD_DEVIATION_MS,
        acceptable_heartbeat_pause_ms: float = DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE_MS,
        first_heartbeat_estimate_ms: float = DEFAULT_FIRST_HEARTBEAT_ESTIMATE_MS,
    ) -> None:
        if not 0.0 < threshold < MAX_PHI:
            raise ConfigError(f"threshold must be in (0, {MAX_PHI:g}), got {threshold!r}")
        if type(max_sample_size) is not int or max_sample_size < 1:
            raise ConfigError(f"max_sample_size must be an int >= 1, got {max_sample_size!r}")
        if not 0.0 < min_std_deviation_ms < math.inf:
            raise ConfigError(
                f"min_std_deviation_ms must be positive and finite, got {min_std_deviation_ms!r}"
            )
        if not 0.0 <= acceptable_heartbeat_pause_ms < math.inf:
            raise ConfigError(
                "acceptable_heartbeat_pause_ms must be >= 0 and finite, "
                f"got {acceptable_heartbeat_pause_ms!r}"
            )
        if not 0.0 < first_heartbeat_estimate_ms < math.inf:
            raise ConfigError(
                "first_heartbeat_estimate_ms must be positive and finite, "
                f"got {first_heartbeat_estimate_ms!r}"
            )
        self.threshold = float(threshold)
        self.max_sample_size = max_sample_size
        self.min_std_deviation_ms = float(min_std_deviation_ms)
        self.acceptable_heartbeat_pause_ms = float(acceptable_heartbeat_pause_ms)
        self.first_heartbeat_estimate_ms = float(first_heartbeat_estimate_ms)
        self._ring = array("d", bytes(8 * max_sample_size))
        self._count = 0
        self._next = 0
        self._sum = 0.0
        self._sum_sq = 0.0
        self._last_ms: float | None = None
        # Akka seeds the history at construction; it only changes on heartbeats.
        std = self.first_heartbeat_estimate_ms / 4.0
        self._add(self.first_heartbeat_estimate_ms - std)
        self._add(self.first_heartbeat_estimate_ms + std)

    # --- inputs -------------------------------------------------------------

    def heartbeat(self, now_ms: float) -> None:
        """Record a heartbeat received at ``now_ms``.

        A timestamp earlier than the previous heartbeat carries no news and is
        ignored (the clock passed in is expected to be monotonic).
        """
        last = self._last_ms
        if last is not None:
            if now_ms < last:
                return
            # Akka: skip the interval that ends an unavailable period, or one
            # long pause would inflate mean and std for max_sample_size beats.
            if self.is_available(now_ms):
                self._add(now_ms - last)
        self._last_ms = now_ms

    # --- outputs ------------------------------------------------------------

    def phi(self, now_ms: float) -> float:
        """Current suspicion level; 0.0 before the first heartbeat."""
        last = self._last_ms
        if last is None:
            return 0.0
        return phi(
            now_ms - last,
            self.mean_ms + self.acceptable_heartbeat_pause_ms,
            self.std_ms,
        )

    def is_available(self, now_ms: float) -> bool:
        """True while phi is below the threshold."""
        return self.phi(now_ms) < self.threshold

    # --- telemetry ----------------------------------------------------------

    @property
    def is_monitoring(self) -> bool:
        """True once a heartbeat has been received."""
        return self._last_ms is not None

    @property
    def last_heartbeat_ms(self) -> float | None:
        """When the last heartbeat arrived, or None before the first."""
        return self._last_ms

    @property
    def samples(self) -> int:
        """How many intervals the history holds (seed included), <= max_sample_size."""
        return self._count

    @property
    def mean_ms(self) -> float:
        """Mean heartbeat interval in the history (without the acceptable pause)."""
        return self._sum / self._count

    @property
    def std_ms(self) -> float:
        """Standard deviation used by phi: the history's, floored at min_std_deviation_ms."""
        mean = self._sum / self._count
        # Population variance, as Akka; rounding can make it a hair below 0.
        variance = max(self._sum_sq / self._count - mean * mean, 0.0)
        return max(math.sqrt(variance), self.min_std_deviation_ms)

    def intervals(self) -> list[float]:
        """The intervals in the history, oldest first (for tests and debugging)."""
        if self._count < self.max_sample_size:
            return self._ring[: self._count].tolist()
        return (self._ring[self._next :] + self._ring[: self._next]).tolist()

    # --- the ring -----------------------------------------------------------

    def _add(self, interval: float) -> None:
        ring = self._ring
        slot = self._next
        if self._count == self.max_sample_size:
            old = ring[slot]
            self._sum -= old
            self._sum_sq -= old * old
        else:
            self._count += 1
        ring[slot] = interval
        self._sum += interval
        self._sum_sq += interval * interval
        slot += 1
        if slot == self.max_sample_size:
            slot = 0
            # Running sums drift with non-integral samples; recompute exactly
            # once per lap (O(1) amortised) so the drift cannot accumulate.
            self._sum = math.fsum(ring)
            self._sum_sq = math.fsum(x * x for x in ring)
        self._next = slot
