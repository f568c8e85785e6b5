"""Per-peer circuit breaker, modelled on resilience4j's.

States and transitions (``now`` in seconds on any monotonic clock)::

    closed ----(failure rate >= threshold over the window, or N failures in a row)---> open
    open ------(open wait elapsed; seen by allow() or state())------------------------> half_open
    half_open -(all half_open_calls trial calls succeeded)----------------------------> closed
    half_open -(a trial call failed)--------------------------------------------------> open

- **closed**: every call is allowed. Outcomes go into a count-based window of
  the last ``window`` calls; once it holds at least ``minimum_calls`` and the
  failure rate reaches ``failure_rate_threshold`` the breaker opens. So does
  ``consecutive_failures`` failures in a row, whatever the window says.
- **open**: nothing is allowed for the current open wait. The first wait is
  ``open_wait_s``; each reopen from half-open doubles it, up to
  ``max_open_wait_s``; closing resets it.
- **half_open**: ``allow()`` grants exactly ``half_open_calls`` trial calls and
  refuses more until they resolve. Only outcomes of granted trials count there:
  a late outcome of a call started before the breaker opened is ignored, as
  are outcomes recorded while open.

Each transition is a :class:`Transition`, passed to ``on_transition`` (for
telemetry) and kept in a short history.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable

import attrs

from node.errors import ConfigError

DEFAULT_WINDOW = 20
DEFAULT_MINIMUM_CALLS = 5
DEFAULT_FAILURE_RATE_THRESHOLD = 0.5
DEFAULT_CONSECUTIVE_FAILURES = 5
DEFAULT_OPEN_WAIT_S = 5.0
DEFAULT_MAX_OPEN_WAIT_S = 60.0
DEFAULT_HALF_OPEN_CALLS = 3
#: How many past transitions ``CircuitBreaker.transitions`` keeps.
DEFAULT_TRANSITION_HISTORY = 16


class BreakerState(enum.StrEnum):
    """A breaker's state; a ``str`` so it goes straight into telemetry."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@attrs.frozen
class Transition:
    """One state change: when (the ``now`` of the call that made it), from, to, why."""

    at: float
    from_state: BreakerState
    to_state: BreakerState
    reason: str


class CircuitBreaker:
    """The breaker for one peer. See the module docstring for the rules."""

    __slots__ = (
        "_calls",
        "_consecutive",
        "_failures",
        "_next",
        "_open_until",
        "_outcomes",
        "_state",
        "_transitions",
        "_trials_granted",
        "_trials_succeeded",
        "_wait_s",
        "consecutive_failures",
        "failure_rate_threshold",
        "half_open_calls",
        "max_open_wait_s",
        "minimum_calls",
        "on_transition",
        "open_wait_s",
        "window",
    )

    def __init__(
        self,
        window: int = DEFAULT_WINDOW,
        minimum_calls: int = DEFAULT_MINIMUM_CALLS,
        failure_rate_threshold: float = DEFAULT_FAILURE_RATE_THRESHOLD,
        consecutive_failures: int = DEFAULT_CONSECUTIVE_FAILURES,
        open_wait_s: float = DEFAULT_OPEN_WAIT_S,
        max_open_wait_s: float = DEFAULT_MAX_OPEN_WAIT_S,
        half_open_calls: int = DEFAULT_HALF_OPEN_CALLS,
        *,
        on_transition: Callable[[Transition], object] | None = None,
        history: int = DEFAULT_TRANSITION_HISTORY,
    ) -> None:
        _check_int("window", window, 1)
        _check_int("minimum_calls", minimum_calls, 1)
        if minimum_calls > window:
            raise ConfigError(
                f"minimum_calls {minimum_calls} exceeds window {window}: the rate could never trip"
            )
        if not 0.0 < failure_rate_threshold <= 1.0:
            raise ConfigError(
                f"failure_rate_threshold must be in (0, 1], got {failure_rate_threshold!r}"
            )
        _check_int("consecutive_failures", consecutive_failures, 1)
        if not 0.0 < open_wait_s < math.inf:
            raise ConfigError(f"open_wait_s must be positive and finite, got {open_wait_s!r}")
        if not open_wait_s <= max_open_wait_s < math.inf:
            raise ConfigError(
                f"max_open_wait_s must be finite and >= open_wait_s {open_wait_s!r}, "
                f"got {max_open_wait_s!r}"
            )
        _check_int("half_open_calls", half_open_calls, 1)
        _check_int("history", history, 0)
        self.window = window
        self.minimum_calls = minimum_calls
        self.failure_rate_threshold = float(failure_rate_threshold)
        self.consecutive_failures = consecutive_failures
        self.open_wait_s = float(open_wait_s)
        self.max_open_wait_s = float(max_open_wait_s)
        self.half_open_calls = half_open_calls
        self.on_transition = on_transition
        self._state = BreakerState.CLOSED
        # Ring of the last `window` outcomes, 1 = failure.
        self._outcomes = bytearray(window)
        self._next = 0
        self._calls = 0
        self._failures = 0
        self._consecutive = 0
        self._wait_s = self.open_wait_s
        self._open_until: float | None = None
        self._trials_granted = 0
        self._trials_succeeded = 0
        self._transitions: deque[Transition] = deque(maxlen=history)

    # --- the protocol ----------------------------------------------------------

    def allow(self, now: float) -> bool:
        """May a call go out now? In half-open, True uses up one trial."""
        state = self._advance(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._trials_granted < self.half_open_calls:
            self._trials_granted += 1
            return True
        return False

    def record_success(self, now: float) -> None:
        """A call finished well."""
        state = self._advance(now)
        if state is BreakerState.CLOSED:
            self._consecutive = 0
            self._push(failure=False)
            self._check_rate(now)
        elif state is BreakerState.HALF_OPEN and self._trials_pending():
            self._trials_succeeded += 1
            if self._trials_succeeded == self.half_open_calls:
                self._wait_s = self.open_wait_s
                self._clear_window()
                reason = f"{self.half_open_calls} trial calls succeeded"
                self._move(now, BreakerState.CLOSED, reason)

    def record_failure(self, now: float) -> None:
        """A call failed (error, timeout, refused)."""
        state = self._advance(now)
        if state is BreakerState.CLOSED:
            self._consecutive += 1
            self._push(failure=True)
            if self._consecutive >= self.consecutive_failures:
                self._open(now, f"{self._consecutive} consecutive failures")
            else:
                self._check_rate(now)
        elif state is BreakerState.HALF_OPEN and self._trials_pending():
            self._wait_s = min(self._wait_s * 2.0, self.max_open_wait_s)
            self._open(now, "trial call failed")

    def state(self, now: float) -> BreakerState:
        """The state as of ``now``: an open breaker whose wait is over is half-open."""
        return self._advance(now)

    # --- telemetry ---------------------------------------------------------------

    @property
    def transitions(self) -> tuple[Transition, ...]:
        """The most recent transitions, oldest first."""
        return tuple(self._transitions)

    @property
    def open_until(self) -> float | None:
        """When the current open period ends; None unless open."""
        return self._open_until if self._state is BreakerState.OPEN else None

    @property
    def current_open_wait_s(self) -> float:
        """The wait the breaker is using (open) or will use next (otherwise)."""
        return self._wait_s

    @property
    def calls_in_window(self) -> int:
        return self._calls

    @property
    def failures_in_a_row(self) -> int:
        """Consecutive failures counted now (reset by a success)."""
        return self._consecutive

    @property
    def failure_rate(self) -> float | None:
        """Failure rate over the window; None below minimum_calls."""
        if self._calls < self.minimum_calls:
            return None
        return self._failures / self._calls

    # --- internals --------------------------------------------------------------

    def _advance(self, now: float) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._open_until is not None
            and now >= self._open_until
        ):
            self._trials_granted = 0
            self._trials_succeeded = 0
            self._move(now, BreakerState.HALF_OPEN, f"open wait of {self._wait_s:g}s elapsed")
        return self._state

    def _trials_pending(self) -> bool:
        return self._trials_succeeded < self._trials_granted

    def _push(self, *, failure: bool) -> None:
        slot = self._next
        if self._calls == self.window:
            self._failures -= self._outcomes[slot]
        else:
            self._calls += 1
        self._outcomes[slot] = failure
        self._failures += failure
        self._next = (slot + 1) % self.window

    def _clear_window(self) -> None:
        self._outcomes = bytearray(self.window)
        self._next = self._calls = self._failures = self._consecutive = 0

    def _check_rate(self, now: float) -> None:
        if self._calls < self.minimum_calls:
            return
        # Divide rather than multiply the threshold: 3/10 >= 0.3 holds, 3 >= 0.3*10 does not.
        if self._failures / self._calls >= self.failure_rate_threshold:
            reason = (
                f"failure rate {self._failures}/{self._calls} reached "
                f"threshold {self.failure_rate_threshold:g}"
            )
            self._open(now, reason)

    def _open(self, now: float, reason: str) -> None:
        self._open_until = now + self._wait_s
        self._clear_window()
        self._move(now, BreakerState.OPEN, f"{reason}; open for {self._wait_s:g}s")

    def _move(self, now: float, to_state: BreakerState, reason: str) -> None:
        transition = Transition(at=now, from_state=self._state, to_state=to_state, reason=reason)
        self._state = to_state
        self._transitions.append(transition)
        if self.on_transition is not None:
            self.on_transition(transition)


def _check_int(name: str, value: object, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
