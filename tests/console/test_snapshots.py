"""Snapshot tests: the console's main screen and resolution screen, as SVG.

What pytest-textual-snapshot would do, built here (it pins syrupy 4.8, which
needs pytest < 9): the app over a 5-node demo cluster (manual strategy, the
demo's synthetic load) at a fixed size, brought to (1) the main screen with a
healthy cluster, (2) the main screen with a 3|2 split awaiting the operator and
(3) the resolution screen, each exported with ``App.export_screenshot()`` and
compared with ``tests/console/snapshots/<name>.svg``. On a mismatch the new
SVG is written beside it as ``<name>.new.svg`` (gitignored) for a human to
look at. Regenerate with::

    VSM_UPDATE_SNAPSHOTS=1 pytest tests/console/test_snapshots.py

How the picture is made deterministic (inputs pinned, nothing masked):

* Virtual time only: trio runs on a MockClock that does not autojump by
  itself. ``run_for`` lets it autojump for exactly ``seconds`` of virtual time
  from inside trio, then stops it and waits until every trio task is blocked,
  so each capture happens at the same virtual instant with the cluster at rest.
* The wall clock follows the virtual one: ``time.time``/``time.time_ns`` (the
  HLC, the event log's and signals' times, the variety panel's rates and plot
  history, log records) return ``EPOCH + virtual time``; ``TZ=UTC``.
* Panels refresh only when the test says (``refresh_hz`` is set so low that
  Textual's real-time interval never fires): once per virtual second, so the
  plot's history and the rate column are the same every time.
* trio's scheduler shuffles batches of runnable tasks with a module-level
  ``random.Random``; it is seeded, so tasks run in the same order every time.
  The simulated network is seeded by the demo (``DemoOptions.seed``). Timers
  due at the same instant are ordered by creation rather than by memory address.
* The one ordering left open, which of several nodes' simultaneous events the
  viewed node hears first, is made canonical in the event log before each
  refresh (lines of one instant sorted by source and text; none dropped).
* The export waits until two exports a settle apart are equal: Textual draws
  some things (the event log's scroll) a frame later, late on a busy machine.

Still random, and not on screen: nonces, signal ids and decision ids
(``secrets``). A panel that starts showing one of them will make these
snapshots differ from run to run; pin it then, do not mask it.
"""

from __future__ import annotations

import asyncio
import heapq
import html
import itertools
import math
import os
import re
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from consoletest import press, settled, status
from textual.pilot import Pilot

from console.app import ConsoleApp, make_app
from console.demo import DemoOptions
from console.screens.resolve import ResolveScreen
from console.session import Session

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE_ENV = "VSM_UPDATE_SNAPSHOTS"
SIZE = (150, 48)
EPOCH = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: the wall clock at virtual time 0
NEVER_HZ = 1e-6  # Textual's own refresh interval: once in 11 days of real time
WALL_LIMIT_S = 20.0  # per step of virtual time
STILL_TRIES = 20
STILL_GAP_S = 0.1
TEST_LIMIT_S = 90.0  # the whole test, in wall time (about 4 s on a quiet machine)
TRIO_SEED = 12
# The SVG is Textual's rendering: another version of these may draw the same
# screen differently, so the versions the snapshots were made with are kept
# beside them and named in a mismatch.
RENDERERS = ("textual", "textual-plotext", "plotext", "rich")
VERSIONS = SNAPSHOTS / "versions.txt"
TEXT_RUN = re.compile(r"<text [^>]*>([^<]*)</text>")


def renderer_versions() -> str:
    return "".join(f"{name} {version(name)}\n" for name in RENDERERS)


@pytest.fixture
def frozen_wall(monkeypatch: pytest.MonkeyPatch) -> Iterator[trio.testing.MockClock]:
    """A MockClock that only moves when told, and a wall clock that follows it."""
    clock = trio.testing.MockClock(autojump_threshold=math.inf)
    monkeypatch.setattr(time, "time", lambda: EPOCH + clock.current_time())
    monkeypatch.setattr(time, "time_ns", lambda: int((EPOCH + clock.current_time()) * 1e9))
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("NO_COLOR", raising=False)
    time.tzset()
    state = trio._core._run._r.getstate()
    trio._core._run._r.seed(TRIO_SEED)
    # Timers due at the same instant expire in id(cancel_scope) order, a memory
    # address (trio says so beside its scheduler); break the tie by creation order.
    order = itertools.count()

    def add(self: Any, deadline: float, cancel_scope: Any) -> None:
        heapq.heappush(self._heap, (deadline, next(order), cancel_scope))
        self._active += 1

    monkeypatch.setattr(trio._core._run.Deadlines, "add", add)
    try:
        yield clock
    finally:
        trio._core._run._r.setstate(state)
        monkeypatch.undo()
        time.tzset()


async def run_for(app: ConsoleApp, clock: trio.testing.MockClock, seconds: float) -> None:
    """Let the cluster run ``seconds`` of virtual time, then hold it still and at rest."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    async def step() -> None:
        clock.autojump_threshold = 0
        await trio.sleep(seconds)
        clock.autojump_threshold = math.inf
        await trio.testing.wait_all_tasks_blocked()

    def finished(_: Any, error: BaseException | None) -> None:
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(None)

    app.session.submit(step, done=finished)
    await asyncio.wait_for(done, WALL_LIMIT_S)


async def watch(pilot: Pilot[Any], clock: trio.testing.MockClock, seconds: int) -> None:
    """Run ``seconds`` of virtual time with a panel refresh after each one, as the
    console's interval would (so the plot has a history and the rates a figure)."""
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    for _ in range(seconds):
        await run_for(app, clock, 1.0)
        canonical_order(app)
        app.refresh_panels()
    await settled(pilot)


def canonical_order(app: ConsoleApp) -> None:
    """Put simultaneous lines of the event log in one order (by source, then text).

    Events from several nodes that arrive at one virtual instant are delivered in
    an order trio leaves open (which task a wake-up reaches first); only lines of
    the same instant are reordered, nothing is dropped or hidden.
    """
    session = app.session
    for ring in (session.events, session.logs):
        lines = sorted(ring, key=lambda line: (line.at, line.kind, line.source, line.text))
        ring.clear()
        ring.extend(lines)


def screen_text(svg: str) -> list[str]:
    """The SVG's text runs in order: enough to point at what changed."""
    return [html.unescape(t).replace("\xa0", " ") for t in TEXT_RUN.findall(svg)]


async def still_screen(pilot: Pilot[Any], name: str) -> str:
    """The screen as SVG once it has stopped changing: two exports, a settle apart, equal.

    Trio is frozen here, so only Textual's own deferred work (a scroll after a
    refresh, a scrollbar drawn on the next frame) can still change it; on a busy
    machine that lags behind the message queues going quiet.
    """
    app = pilot.app
    await pilot.wait_for_scheduled_animations()
    svg = app.export_screenshot(title=name)
    for _ in range(STILL_TRIES):
        await asyncio.sleep(STILL_GAP_S)
        await settled(pilot)
        again = app.export_screenshot(title=name)
        if again == svg:
            return svg
        svg = again
    raise AssertionError(f"{name}: the screen kept changing with the clock frozen")


def check(svg: str, name: str) -> str | None:
    """Compare ``svg`` with ``snapshots/<name>.svg``: None if equal, else what differs
    (and ``<name>.new.svg`` written beside it)."""
    stored = SNAPSHOTS / f"{name}.svg"
    new = SNAPSHOTS / f"{name}.new.svg"
    if os.environ.get(UPDATE_ENV):
        SNAPSHOTS.mkdir(exist_ok=True)
        stored.write_text(svg, encoding="utf-8")
        VERSIONS.write_text(renderer_versions(), encoding="utf-8")
        new.unlink(missing_ok=True)
        return None
    if not stored.exists():
        new.write_text(svg, encoding="utf-8")
        return f"no stored snapshot {stored}; wrote {new}"
    old = stored.read_text(encoding="utf-8")
    if old == svg:
        new.unlink(missing_ok=True)
        return None
    new.write_text(svg, encoding="utf-8")
    was, now = screen_text(old), screen_text(svg)
    at = next((i for i, (a, b) in enumerate(zip(was, now, strict=False)) if a != b), None)
    if at is not None:
        where = f"first text change: {was[at]!r} -> {now[at]!r}"
    elif len(was) != len(now):
        where = f"{len(was)} text runs -> {len(now)}"
    else:
        where = "same text, different styling or layout"
    return f"{stored.name} differs ({where}); the new screen is {new}"


async def compare(pilot: Pilot[Any], name: str) -> str | None:
    return check(await still_screen(pilot, name), name)


def verdict(problems: list[str]) -> None:
    if not problems:
        return
    made_with = VERSIONS.read_text(encoding="utf-8") if VERSIONS.exists() else "unknown\n"
    running = renderer_versions()
    versions = (
        "" if made_with == running else f"\nsnapshots made with:\n{made_with}running:\n{running}"
    )
    pytest.fail(
        "\n".join(problems)
        + f"\nOpen the .svg and .new.svg in a browser; if the change is intended, "
        f"regenerate with {UPDATE_ENV}=1 pytest tests/console/test_snapshots.py" + versions
    )


def test_main_and_resolution_screens(frozen_wall: trio.testing.MockClock) -> None:
    made_with = VERSIONS.read_text(encoding="utf-8") if VERSIONS.exists() else ""
    if made_with != renderer_versions() and not os.environ.get(UPDATE_ENV):
        # Another renderer draws the same screen differently: the comparison
        # would say nothing about our code. Say so instead of failing.
        pytest.skip(
            "snapshots were made with "
            + ", ".join(made_with.split("\n")).strip(", ")
            + f"; running {', '.join(renderer_versions().split(chr(10))).strip(', ')}: "
            f"regenerate with {UPDATE_ENV}=1 pytest tests/console/test_snapshots.py"
        )
    clock = frozen_wall

    async def main() -> None:
        options = DemoOptions(nodes=5, strategy="manual", load_scale=1.0, seed=0)
        app = make_app(Session(demo=options), clock=clock, refresh_hz=NEVER_HZ)
        async with app.run_test(size=SIZE) as pilot:
            deadline = time.perf_counter() + WALL_LIMIT_S
            while not app.session.ready:
                assert time.perf_counter() < deadline, "the demo did not start"
                await pilot.pause(0.01)
            demo = app.session.demo
            assert demo is not None

            # (1) healthy: 20 s of load, every node in the vote
            await watch(pilot, clock, 20)
            assert app.snap["partition"]["status"] == "healthy"
            assert len(app.snap["partition"]["members"]) == 5
            problems = [await compare(pilot, "main-healthy")]

            # (2) a 3|2 split under the manual strategy: the banner
            demo.split(["n4", "n5"])
            await watch(pilot, clock, 10)
            assert status(app) == "awaiting_operator"
            problems.append(await compare(pilot, "main-awaiting-operator"))

            # (3) the resolution screen, each side with its members and health
            await press(pilot, "r")
            assert isinstance(app.screen, ResolveScreen)
            problems.append(await compare(pilot, "resolve"))
            await press(pilot, "escape")
        verdict([p for p in problems if p is not None])

    asyncio.run(asyncio.wait_for(main(), TEST_LIMIT_S))
