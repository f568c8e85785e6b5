"""ConsoleApp: the Textual operator console, hosting the node as a trio guest.

This is the one module in ``console/`` that touches both trio and textual.
Textual runs on asyncio; the node runs on trio. ``on_mount`` starts the
session (``console.session``) with ``trio.lowlevel.start_guest_run`` on
Textual's own loop, so both share one thread: the UI reads the node's
facade directly (``Session.snapshot()``, 3 times a second) and queues
commands with ``Session.submit`` (a ``send_nowait``). ``on_unmount`` cancels
the guest run and awaits its end, so quitting never leaves trio running under
a closed loop or the terminal in a bad state. If the node crashes, the error
is shown and the app exits with status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import outcome
import trio
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Footer

from console.demo import STRATEGIES
from console.screens.help import HelpScreen
from console.screens.pick import PickScreen
from console.screens.resolve import ResolveScreen
from console.session import Session
from console.themes import register_themes
from console.widgets.algedonic import AlgedonicPanel
from console.widgets.breakers import BreakerPanel
from console.widgets.eventlog import EventLog
from console.widgets.header import HeaderBar
from console.widgets.partitions import PartitionPanel, member_health
from console.widgets.variety import VarietyPanel

REFRESH_HZ = 3.0
DEFAULT_THEME = "vsm-dark"
EXIT_CRASHED = 1
EXIT_SIGTERM = 143
SIGNAL_KINDS = ("pain", "pleasure", "emergency")
# Severities 1-10; these four cover the directives the node derives from them.
SEVERITIES = ("2", "5", "8", "10")
SEVERITY_LABELS = ("2 (low)", "5 (medium)", "8 (high)", "10 (critical)")

# (key, action, description, demo only) - the one list behind the bindings,
# the help screen and the command palette.
ACTIONS: tuple[tuple[str, str, str, bool], ...] = (
    ("question_mark", "help", "help: every key", False),
    ("r", "resolve", "resolve a partition awaiting the operator", False),
    ("s", "signal", "send a test algedonic signal", False),
    ("slash", "filter", "filter the event log", False),
    ("space", "pause", "pause / resume updates", False),
    ("c", "cut", "cut a link (choose two nodes)", True),
    ("p", "split", "split the cluster (choose the minority side)", True),
    ("h", "heal", "heal a link (choose two nodes)", True),
    ("H", "heal_all", "heal every link and rejoin isolated nodes", True),
    ("o", "one_way", "cut one direction of a link (from, to)", True),
    ("i", "isolate", "isolate a node, or rejoin it", True),
    ("k", "kill", "kill a node, or start it again", True),
    ("f", "flood", "flood S1 from the viewed node", True),
    ("t", "strategy", "switch strategy (rolling restart)", True),
    ("v", "view", "view another node", True),
    ("ctrl+q", "quit", "quit", False),
)
KEY_NAMES = {"question_mark": "?", "slash": "/", "space": "space"}


class ConsoleCommands(Provider):
    """Every console action in the command palette (ctrl+p)."""

    def _commands(self) -> list[tuple[str, str, str]]:
        app = self.app
        assert isinstance(app, ConsoleApp)
        return [
            (desc, action, f"key: {KEY_NAMES.get(key, key)}")
            for key, action, desc, demo in ACTIONS
            if not demo or app.session.demo is not None
        ]

    async def discover(self) -> Hits:
        for title, action, keys in self._commands():
            yield DiscoveryHit(Text(title), partial(self.app.run_action, action), help=keys)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, keys in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(title), partial(self.app.run_action, action), help=keys
                )


class ConsoleApp(App[int]):
    """The operator console over a :class:`Session` (embedded node or demo cluster)."""

    CSS_PATH = "app.tcss"
    TITLE = "vsm-console"
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    BINDINGS = [
        Binding(
            key,
            action,
            desc.split(" (")[0],
            show=key in {"question_mark", "r", "ctrl+q"},
            priority=key == "ctrl+q",
        )
        for key, action, desc, _ in ACTIONS
    ]

    def __init__(
        self,
        session: Session,
        *,
        theme: str | None = None,
        theme_dir: Path | None = None,
        clock: trio.abc.Clock | None = None,
        refresh_hz: float = REFRESH_HZ,
    ) -> None:
        super().__init__()
        self.session = session
        self.theme_errors = register_themes(self, theme_dir)
        self.theme = theme or DEFAULT_THEME
        self.clock = clock
        self.refresh_hz = refresh_hz
        self.paused = False
        self.snap: dict[str, Any] = {}
        self.node_error: BaseException | None = None
        self._scope = trio.CancelScope()
        self._done: asyncio.Future[outcome.Outcome[Any]] | None = None

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Horizontal(id="row-top"):
            yield VarietyPanel(id="variety", classes="panel")
            with Vertical(id="right"):
                yield BreakerPanel(id="breakers", classes="panel")
                yield PartitionPanel(id="partitions", classes="panel")
        with Horizontal(id="row-bottom"):
            yield AlgedonicPanel(id="algedonic", classes="panel")
            yield EventLog(id="events", classes="panel")
        yield Footer()

    # --- hosting trio ------------------------------------------------------------------

    def on_mount(self) -> None:
        # Textual calls on_mount once per class in the MRO: never super() here,
        # or the guest run would start twice.
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        trio.lowlevel.start_guest_run(
            self._trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=self._trio_done,
            host_uses_signal_set_wakeup_fd=True,
            clock=self.clock,
        )
        # Not possible off the main thread (some test runners): ctrl+q still quits.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, lambda: self.exit(return_code=EXIT_SIGTERM))
        for error in self.theme_errors:
            self.notify(f"theme skipped: {error}", severity="warning", timeout=10)
        self.set_interval(1.0 / self.refresh_hz, self.refresh_panels)

    async def _trio_main(self) -> None:
        with self._scope:
            # on the UI's side: a panel's bug must not take the node down
            await self.session.run(on_ready=lambda: self.call_later(self.refresh_panels))

    def _trio_done(self, result: outcome.Outcome[Any]) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(result)
        if isinstance(result, outcome.Error) and not self._scope.cancel_called:
            self.node_error = _single(result.error)
            self.exit(
                return_code=EXIT_CRASHED,
                message=f"vsm-console: the node stopped: {self.node_error}",
            )
        elif isinstance(result, outcome.Value) and not self._scope.cancel_called:
            self.exit(return_code=EXIT_CRASHED, message="vsm-console: the node stopped")

    async def on_unmount(self) -> None:
        self._scope.cancel()
        if self._done is not None:
            await self._done
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)

    @property
    def node_stopped(self) -> bool:
        return self._done is not None and self._done.done()

    # --- refresh -------------------------------------------------------------------------

    def refresh_panels(self) -> None:
        if self.node_stopped or not self.session.ready or not self.screen_stack:
            return
        base = self.screen_stack[0]  # the panels' screen, under any dialog
        try:
            header = base.query_one(HeaderBar)
        except NoMatches:
            return  # not composed yet, or already torn down

        if self.paused:
            if self.snap:
                header.show(self.snap, paused=True)
            return
        snap = self.session.snapshot()
        self.snap = snap
        # A killed or restarting node: the panels keep its last figures, dimmed.
        base.set_class(not snap["running"], "stale")
        header.show(snap)
        base.query_one(VarietyPanel).show(snap)
        base.query_one(BreakerPanel).show(snap)
        base.query_one(PartitionPanel).show(snap)
        base.query_one(AlgedonicPanel).show(snap, list(self.session.signals))
        base.query_one(EventLog).show(self.session.events, self.session.logs, snap["events_seen"])

    # --- actions -----------------------------------------------------------------------

    def key_descriptions(self) -> list[tuple[str, str]]:
        out = [
            (KEY_NAMES.get(key, key), desc)
            for key, _, desc, demo in ACTIONS
            if not demo or self.session.demo is not None
        ]
        out.append(("ctrl+p", "command palette: every action, and theme switching"))
        return out

    def action_help(self) -> None:
        note = "" if self.session.demo is not None else "fault keys work in --demo only"
        self.push_screen(HelpScreen(self.key_descriptions(), note))

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.refresh_panels()

    def action_filter(self) -> None:
        self.screen_stack[0].query_one(EventLog).open_filter()

    def _report(self, what: str) -> Any:
        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                self.notify(f"{what} failed: {error}", severity="error", timeout=8)
            elif result:
                self.notify(str(result), title=what, timeout=6)
            self.refresh_panels()

        return done

    def _submit(self, what: str, fn: Any, *args: Any) -> None:
        try:
            self.session.submit(fn, *args, done=self._report(what))
        except (RuntimeError, trio.WouldBlock) as exc:
            self.notify(f"{what}: cannot queue the command ({exc!r})", severity="error")

    def action_resolve(self) -> None:
        snap = self.snap
        if not snap.get("running"):
            self.notify("the viewed node is not running", severity="warning")
            return
        part = snap["partition"]
        if part["status"] == "healthy" or len(part.get("components", [])) < 2:
            self.notify(f"nothing to resolve: partition status is {part['status']}")
            return
        node = self.session.node

        def chosen(keep: list[str] | None) -> None:
            if not keep or node is None:
                return

            async def resolve() -> str:
                status = await node.resolve_partition(keep, operator=f"console@{node.name}")
                dec = status.get("decision") or {}
                return f"kept {', '.join(keep)}: {dec.get('reason', status['status'])}"

            self._submit("resolve", resolve)

        self.push_screen(ResolveScreen(part, member_health(snap)), chosen)

    def action_signal(self) -> None:
        node = self.session.node
        if node is None:
            self.notify("the viewed node is not running", severity="warning")
            return

        def typed(kind: list[str] | None) -> None:
            if kind:
                self.push_screen(
                    PickScreen("Severity", SEVERITIES, labels=SEVERITY_LABELS),
                    partial(severity, kind[0]),
                )

        def severity(kind: str, level: list[str] | None) -> None:
            if not level:
                return
            signal = {
                "type": kind,
                "severity": int(level[0]),
                "source": f"console@{node.name}",
                "data": {"test": True, "reason": "test signal from the operator console"},
            }

            async def send() -> str:
                # the same shape as `ctl scream`; waits for every member's confirmation
                result = await node.algedonic_scream(signal)
                failed = result.get("failed") or []
                return (
                    f"{kind} {level[0]}: {result.get('directive')}; "
                    f"confirmed by {len(result.get('confirmed') or [])}"
                    + (f", FAILED at {', '.join(failed)}" if failed else "")
                    + f" in {result.get('latency_ms')} ms"
                )

            self._submit("test signal", send)

        self.push_screen(PickScreen("Test signal type", SIGNAL_KINDS), typed)

    # --- demo faults -----------------------------------------------------------------------

    def _demo_pick(self, title: str, count: int, act: Any, names: Sequence[str] = ()) -> None:
        demo = self.session.demo
        if demo is None:
            self.notify("fault keys work in --demo only", severity="warning")
            return

        def picked(chosen: list[str] | None) -> None:
            if not chosen:
                return
            try:
                message = act(demo, *chosen)
            except ValueError as exc:
                self.notify(str(exc), severity="error")
                return
            if message:
                self.notify(message, timeout=4)
            self.refresh_panels()

        self.push_screen(PickScreen(title, list(names) or demo.names, count=count), picked)

    def action_cut(self) -> None:
        self._demo_pick("Cut link between", 2, lambda d, a, b: (d.cut(a, b), f"cut {a} x {b}")[1])

    def action_split(self) -> None:
        demo = self.session.demo
        count = max(1, len(demo.names) // 2) if demo is not None else 1

        def split(d: Any, *side: str) -> str:
            d.split(list(side))
            rest = [n for n in d.names if n not in side]
            return f"split {', '.join(side)} | {', '.join(rest)}"

        self._demo_pick(f"Split: choose the {count} nodes of one side", count, split)

    def action_heal(self) -> None:
        self._demo_pick(
            "Heal link between", 2, lambda d, a, b: (d.heal(a, b), f"healed {a} - {b}")[1]
        )

    def action_one_way(self) -> None:
        self._demo_pick(
            "One-way cut: from, then to",
            2,
            lambda d, a, b: (d.cut_one_way(a, b), f"cut {a} -> {b}")[1],
        )

    def action_heal_all(self) -> None:
        demo = self.session.demo
        if demo is None:
            self.notify("fault keys work in --demo only", severity="warning")
            return
        demo.heal_all()
        self.notify("healed every link")

    def action_isolate(self) -> None:
        def toggle(d: Any, name: str) -> str:
            if name in d.isolated:
                d.rejoin(name)
                return f"{name} rejoined"
            d.isolate(name)
            return f"{name} isolated"

        self._demo_pick("Isolate (or rejoin) node", 1, toggle)

    def action_kill(self) -> None:
        def toggle(d: Any, name: str) -> str:
            if d.alive(name):
                d.kill(name)
                return f"{name} killed"
            d.start(name)
            return f"{name} starting"

        self._demo_pick("Kill (or start) node", 1, toggle)

    def action_flood(self) -> None:
        demo = self.session.demo
        if demo is None:
            self.notify("fault keys work in --demo only", severity="warning")
            return
        demo.flood(self.session.viewed)
        self.notify(f"{self.session.viewed} floods S1 for a while")

    def action_strategy(self) -> None:
        def switch(d: Any, strategy: str) -> str:
            self._submit("strategy switch", self._switch, strategy)
            return f"rolling restart of every node with strategy {strategy}"

        self._demo_pick("Switch strategy", 1, switch, STRATEGIES)

    async def _switch(self, strategy: str) -> str:
        demo = self.session.demo
        assert demo is not None
        await demo.switch_strategy(strategy)
        return f"every running node restarted with strategy {strategy}"

    def action_view(self) -> None:
        def view(d: Any, name: str) -> str:
            self.session.view(name)
            return f"viewing {name}"

        self._demo_pick("View node", 1, view)


def _single(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups, or the group if there are several."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def make_app(session: Session, **kw: Any) -> ConsoleApp:
    """The console over ``session`` (tests pass a MockClock as ``clock``)."""
    return ConsoleApp(session, **kw)
