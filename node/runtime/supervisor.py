"""rest_for_one supervision of the node's long-running components, in trio.

Erlang/OTP's ``rest_for_one`` strategy: components are started in order, each
fully started (it called ``task_status.started()``) before the next one begins,
because later components use earlier ones. When component *i* crashes, every
component started after it depends on something that just died, so they are
cancelled too (last first, the reverse of start order) and then *i* and its
tail are started again, in order. Components before *i* are never touched.

Restart intensity is OTP's ``MaxR``/``MaxT`` pair, counted over the whole
supervisor (not per component): if more than ``max_restarts`` crashes happen
within ``within_s`` seconds, restarting is clearly not helping, so everything is
stopped and :class:`~node.errors.EscalationError` is raised, chained to the
crash that tipped it over. Time is ``trio.current_time()``, so tests drive it
with ``MockClock``.

Each component runs in its own host task inside its own cancel scope. That is
what makes stopping the tail exact: the supervisor cancels one scope, waits
for that component to finish, and moves on to the previous one.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import attrs
import trio

from node.errors import ConfigError, EscalationError

DEFAULT_MAX_RESTARTS = 3
DEFAULT_WITHIN_S = 5.0

log = logging.getLogger("vsm.supervisor")

EventKind = Literal["started", "crashed", "restarting", "escalated", "stopped"]
OnEvent = Callable[[str, str, BaseException | None], None]


@attrs.frozen
class Component:
    """A named long-running service under supervision.

    ``run`` is called as ``await run(task_status=...)``. It must call
    ``task_status.started()`` once it is ready to be used by the components
    after it, and then run until cancelled. Returning without being cancelled
    counts as a crash.
    """

    name: str
    run: Callable[..., Awaitable[None]]


class _StartSignal:
    """The ``task_status`` handed to a component.

    Not a real nursery ``TaskStatus``: with ``nursery.start`` an error raised
    before ``started()`` would surface in the supervisor's own task (wrapped in
    an exception group), while here every crash, before or after start, is
    caught in one place by the component's host task.
    """

    __slots__ = ("_slot",)

    def __init__(self, slot: _Slot) -> None:
        self._slot = slot

    def started(self, value: object = None) -> None:
        if self._slot.started:
            raise RuntimeError(f"component {self._slot.name!r} called task_status.started() twice")
        self._slot.started = True
        self._slot.supervisor._wake()


@attrs.define(eq=False)
class _Slot:
    """One incarnation of one component: its scope and how it ended."""

    supervisor: Supervisor
    index: int
    name: str
    # Shielded: only the supervisor stops a component, even when the
    # supervisor itself is cancelled, so shutdown order is always last-first.
    scope: trio.CancelScope = attrs.field(factory=lambda: trio.CancelScope(shield=True))
    started: bool = False
    finished: bool = False
    # Set before cancelling, so whatever the component does while it winds
    # down is not mistaken for a fresh crash.
    stopping: bool = False
    done: trio.Event = attrs.field(factory=trio.Event)


class Supervisor:
    """Run components in order under rest_for_one supervision.

    ``on_event(kind, component_name, exc)`` is told of ``"started"``,
    ``"crashed"`` (with the exception), ``"restarting"``, ``"stopped"`` and
    ``"escalated"`` (with the crash that caused it); it is for telemetry and
    logging and must not block. ``restarts[name]`` counts how often a component
    was started again, whether it crashed itself or was taken down with an
    earlier one; ``crashes[name]`` counts its own crashes. An error of a type in
    ``permanent`` escalates at once, without a restart: no retry can fix it.
    """

    def __init__(
        self,
        components: Sequence[Component],
        *,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        within_s: float = DEFAULT_WITHIN_S,
        on_event: OnEvent | None = None,
        permanent: tuple[type[BaseException], ...] = (),
    ) -> None:
        names = [c.name for c in components]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"component names must be unique, repeated: {', '.join(duplicates)}")
        if max_restarts < 0:
            raise ConfigError(f"max_restarts must be >= 0, got {max_restarts}")
        if not (within_s > 0 and math.isfinite(within_s)):
            raise ConfigError(f"within_s must be a positive number of seconds, got {within_s}")
        self._components = tuple(components)
        self.max_restarts = max_restarts
        self.within_s = within_s
        self._on_event = on_event
        # Errors a restart cannot fix (a port in use): escalate at the first one.
        self.permanent = permanent
        self.restarts: dict[str, int] = {n: 0 for n in names}
        self.crashes: dict[str, int] = {n: 0 for n in names}
        self._status: dict[str, str] = {n: "stopped" for n in names}
        self._slots: list[_Slot | None] = [None] * len(self._components)
        # Whether a start was tried in this run: a later start is a restart.
        self._attempted = [False] * len(self._components)
        # Crashes not yet handled, by component index. Several can pile up
        # while the supervisor is busy stopping or starting others.
        self._pending: dict[int, BaseException] = {}
        self._recent: collections.deque[tuple[float, str]] = collections.deque()
        self._wakeup = trio.Event()
        self._running = False
        self._closing = False

    def status(self) -> dict[str, str]:
        """Per component: ``"running"``, ``"restarting"`` or ``"stopped"``."""
        return dict(self._status)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every component, supervise them until cancelled.

        Calls ``task_status.started()`` once all components are up for the
        first time. Raises :class:`EscalationError` (``__cause__`` = the
        crash) when restarts exceed ``max_restarts`` within ``within_s``,
        after stopping every component.
        """
        if self._running:
            raise RuntimeError("this Supervisor is already running")
        self._running = True
        self._closing = False
        self._pending.clear()
        self._recent.clear()
        self._attempted = [False] * len(self._components)
        escalation: EscalationError | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    escalation = await self._supervise(nursery, task_status)
                finally:
                    # Shielded so that, on cancellation from outside too, the
                    # components go down in reverse order rather than all at once.
                    self._closing = True
                    with trio.CancelScope(shield=True):
                        await self._stop_from(0)
        finally:
            self._running = False
            for name in self._status:
                self._status[name] = "stopped"
        if escalation is not None:
            # Raised outside the nursery so callers see EscalationError itself,
            # not an exception group around it.
            raise escalation

    async def _supervise(
        self, nursery: trio.Nursery, task_status: trio.TaskStatus[None]
    ) -> EscalationError | None:
        announced = False
        index = 0
        while True:
            if not self._pending:
                await self._start_from(nursery, index)
            if not self._pending:
                if not announced:
                    announced = True
                    task_status.started()
                await self._wait_until(lambda: bool(self._pending))
            index = min(self._pending)
            cause = self._pending[index]
            name = self._components[index].name
            # Decided before stopping anything: on escalation the whole set
            # goes down last-first in one pass, tail included.
            escalation = self._count_restart(name, cause)
            if isinstance(cause, self.permanent):
                escalation = EscalationError(f"component {name!r} cannot run: {cause}")
                escalation.__cause__ = cause
                self._emit("escalated", name, cause)
                return escalation
            if escalation is not None:
                self._emit("escalated", name, cause)
                log.error("supervisor escalates: %s", escalation)
                return escalation
            for later in range(index, len(self._components)):
                if self._attempted[later]:
                    self._status[self._components[later].name] = "restarting"
            await self._stop_from(index)
            # Crashes of index and of its tail are dealt with by this restart;
            # crashes of earlier components that came in meanwhile stay pending.
            self._pending = {i: e for i, e in self._pending.items() if i < index}
            tail = len(self._components) - index - 1
            log.warning("restarting %s and the %d component(s) after it", name, tail)

    def _count_restart(self, name: str, cause: BaseException) -> EscalationError | None:
        now = trio.current_time()
        self._recent.append((now, name))
        while self._recent and now - self._recent[0][0] >= self.within_s:
            self._recent.popleft()
        if len(self._recent) <= self.max_restarts:
            return None
        own = sum(1 for _, n in self._recent if n == name)
        error = EscalationError(
            f"component {name!r} crashed ({type(cause).__name__}: {cause!s:.200}); "
            f"{len(self._recent)} crashes within {self.within_s:g} s ({own} of them {name!r}) "
            f"exceed max_restarts={self.max_restarts}"
        )
        error.__cause__ = cause
        return error

    async def _start_from(self, nursery: trio.Nursery, index: int) -> None:
        """Start components index.. in order; stop early if anything crashes."""
        for i in range(index, len(self._components)):
            component = self._components[i]
            if self._attempted[i]:
                self.restarts[component.name] += 1
                self._emit("restarting", component.name, None)
            self._attempted[i] = True
            slot = _Slot(self, i, component.name)
            self._slots[i] = slot
            nursery.start_soon(self._host, slot, component, name=f"component:{component.name}")
            # Also wake on an earlier component's crash: this one may be
            # waiting, to start, on something that just died.
            await self._wait_until(functools.partial(self._start_settled, slot))
            if self._pending or not slot.started:
                return
            self._status[component.name] = "running"
            self._emit("started", component.name, None)

    def _start_settled(self, slot: _Slot) -> bool:
        return slot.started or slot.finished or bool(self._pending)

    async def _host(self, slot: _Slot, component: Component) -> None:
        error: BaseException | None = None
        try:
            with slot.scope:
                await component.run(task_status=_StartSignal(slot))
            if not slot.scope.cancel_called and not self._closing:
                when = "after" if slot.started else "before"
                error = RuntimeError(
                    f"component {slot.name!r} exited unexpectedly ({when} it started)"
                )
        except Exception as exc:
            error = exc
        finally:
            slot.finished = True
            slot.done.set()
            self._wake()
        if error is None:
            return
        if slot.stopping or self._closing:
            # It failed while being stopped; the restart or shutdown already
            # under way covers it, so report it without counting it.
            log.warning("component %s failed while stopping", slot.name, exc_info=error)
            return
        self.crashes[slot.name] += 1
        self._pending.setdefault(slot.index, error)
        if isinstance(error, self.permanent):
            # Raised to the caller in the EscalationError; it says all in one line.
            log.debug("component %s failed: %s", slot.name, error)
        else:
            log.warning("component %s crashed", slot.name, exc_info=error)
        self._emit("crashed", slot.name, error)

    async def _stop_from(self, index: int) -> None:
        """Cancel components index.. last first, each finished before the next."""
        for i in reversed(range(index, len(self._slots))):
            slot = self._slots[i]
            if slot is None:
                continue
            self._slots[i] = None
            if slot.finished:
                continue
            slot.stopping = True
            slot.scope.cancel()
            await slot.done.wait()
            self._emit("stopped", slot.name, None)

    async def _wait_until(self, predicate: Callable[[], bool]) -> None:
        # No checkpoint between the test and the wait, so no wake-up is lost.
        while not predicate():
            self._wakeup = trio.Event()
            await self._wakeup.wait()

    def _wake(self) -> None:
        self._wakeup.set()

    def _emit(self, kind: EventKind, name: str, exc: BaseException | None) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, name, exc)
        except Exception:
            # Telemetry must never take supervision down with it.
            log.exception("on_event callback failed for %s %s", kind, name)
