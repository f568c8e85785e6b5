"""Busy polling after connection I/O: a reply is caught by a hot loop, not a wakeup.

On a loopback round trip most of the time is not Python's but the operating
system's: a process that blocks in ``epoll_wait`` is put to sleep, and waking it
when the reply lands costs tens of microseconds on each hop, more on a virtual
machine, with caches gone cold meanwhile. Measured on the 2-core VM this project
is benchmarked on: a bare trio ping-pong between two processes takes 79 µs when
both block, 23 µs when each keeps its loop turning for half a millisecond after
its own I/O.

So, as Linux's ``busy_poll`` socket option and its guest ``haltpoll`` cpuidle
driver do, a node keeps its trio loop turning for a short window after each
frame read from or written to a peer connection: one task checkpoints in a loop,
so trio polls for I/O without blocking, and the reader waiting for a reply is
run the moment it lands. The spinner yields the CPU to other runnable processes
(``sched_yield``) on every turn, so a busy machine loses little to it.

The window adapts as haltpoll's does, so that only traffic that gains from it
pays for it: when the gap between two I/Os on the connections was within the
window's ceiling (``busy_poll_us``), a spin would have caught the second one,
and the window is the full ceiling; when the gap was longer (a heartbeat a
second apart, sporadic events), the spin was wasted and the window halves, down
to none below an eighth of the ceiling. A steady request/reply exchange
therefore spins; an idle cluster or a stream of events a few milliseconds
apart does not. In a flood the reader never waits, and a turn (a few µs) falls
between rounds of work. ``busy_poll_us = 0`` turns it off.

This module is trio-specific runtime; it keeps no state worth persisting.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import trio

#: Turns of one spin at most, whatever the clocks say (a bound on every loop).
MAX_TURNS = 100_000

#: Give the CPU to another runnable process, if one waits for it (POSIX; else nothing).
sched_yield: Callable[[], None] = getattr(os, "sched_yield", lambda: None)


class BusyPoll:
    """Keeps the trio loop turning for ``window`` seconds after connection I/O.

    :meth:`poke` is called by the connections on every read that returned data
    and every write (cheap: one clock read and a few comparisons); :meth:`run`
    is the spinning task, started in the bridge's nursery. The window is measured
    on ``time.perf_counter`` (real time), never trio's clock: under a MockClock
    a spin lasts its real microseconds and the clock jumps once it is over.
    """

    def __init__(self, ceiling_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        if ceiling_s < 0:
            raise ValueError(f"busy poll ceiling must be >= 0, got {ceiling_s!r}")
        self.ceiling = ceiling_s
        self.floor = ceiling_s / 8  # below this the window is closed
        self.window = ceiling_s
        self._clock = clock
        self._last = -1e300  # the last I/O (clock seconds)
        self._until = 0.0  # spin until then
        self._sleeping = False
        self._wake = trio.Event()
        #: Totals for stats(): spins begun, turns taken (each a sched_yield and a
        #: pass of the scheduler, a few µs), and seconds with a window open (the
        #: loop kept from blocking; other tasks run during it, so this bounds the
        #: CPU the spinning cost from above, it does not measure it).
        self.spins = 0
        self.turns = 0
        self.open_s = 0.0

    @property
    def enabled(self) -> bool:
        return self.ceiling > 0

    def poke(self) -> None:
        """Connection I/O happened now: adapt the window and spin for it."""
        now = self._clock()
        gap = now - self._last
        self._last = now
        if gap <= self.ceiling:
            self.window = self.ceiling  # a spin would have caught this one
        elif self.window:
            half = self.window / 2
            self.window = half if half >= self.floor else 0.0
        if self.window:
            self._until = now + self.window
            if self._sleeping:
                self._sleeping = False
                self._wake.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Spin while a window is open; sleep (on an event, no timer) while none is.
        With a ceiling of 0 no window ever opens, so it sleeps for good."""
        task_status.started()
        clock = self._clock
        checkpoint = trio.lowlevel.checkpoint
        while True:
            self._wake = trio.Event()
            self._sleeping = True
            await self._wake.wait()
            self.spins += 1
            start = clock()
            turns = 0
            while clock() < self._until and turns < MAX_TURNS:
                turns += 1
                sched_yield()  # another runnable process gets this CPU first
                await checkpoint()  # trio polls for I/O without blocking, runs what is ready
            self.turns += turns
            self.open_s += clock() - start

    def stats(self) -> dict[str, Any]:
        return {
            "ceiling_us": round(self.ceiling * 1e6),
            "window_us": round(self.window * 1e6),
            "spins": self.spins,
            "turns": self.turns,
            "open_s": round(self.open_s, 6),
        }


class YieldWhenBusy(trio.abc.Instrument):
    """A trio instrument: while the loop has work without pause, offer the CPU
    to other processes (``sched_yield``) at most every ``interval_s``.

    A loop that never waits for I/O (a producer publishing flat out) keeps its
    process runnable for whole scheduler time slices, milliseconds each; on a
    host shared with other nodes, an alarm that reached one of them waits
    behind those slices. Trio calls ``before_io_wait`` once per scheduling
    batch, with a timeout of 0 when tasks are still runnable: then, at most
    every ``interval_s``, the process yields. Yielding with nobody waiting for
    the CPU costs one system call and changes nothing.
    """

    def __init__(self, interval_s: float = 0.0005, clock: Callable[[], float] = time.perf_counter):
        self.interval = interval_s
        self._clock = clock
        self._last = 0.0
        self.yields = 0

    def before_io_wait(self, timeout: float) -> None:
        if timeout > 0:
            return  # the loop is about to wait: the CPU is offered anyway
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            self.yields += 1
            sched_yield()


_SHARED: trio.lowlevel.RunVar[list[Any]] = trio.lowlevel.RunVar("vsm_yield_when_busy")


@contextlib.contextmanager
def yielding_when_busy() -> Iterator[YieldWhenBusy]:
    """Install :class:`YieldWhenBusy` in the current trio run for the duration:
    one instrument per run, however many nodes share it (tests, the demo)."""
    try:
        shared = _SHARED.get()
    except LookupError:
        shared = [YieldWhenBusy(), 0]
        _SHARED.set(shared)
    if shared[1] == 0:
        trio.lowlevel.add_instrument(shared[0])
    shared[1] += 1
    try:
        yield shared[0]
    finally:
        shared[1] -= 1
        if shared[1] == 0:
            trio.lowlevel.remove_instrument(shared[0])
