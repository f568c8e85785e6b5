"""What the console runs inside trio: the embedded node (or the demo cluster) and a
queue of operator commands.

The console's UI runs on asyncio (Textual); this module runs inside the trio
guest run the app starts (see ``console/app.py``), and imports no textual. The UI
talks to it in two ways only:

* ``snapshot()``: a plain synchronous read of the viewed node's facade,
  called by the UI 2-4 times a second (trio runs as a guest on the same
  thread, so the facade's views are safe to call from a UI handler);
* ``submit(fn, *args, done=...)``: queue a command (resolve, test signal,
  strategy switch) to run as a trio task; ``done(result, error)`` is called
  back on the same thread when it finishes.

Recent events (from a ``"*"`` subscription on the viewed node) and the
node's log records are kept in bounded rings, so a flood costs a deque
append per event and the UI reads at most the ring's length.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from console.demo import NODE_NAME, OBSERVER, DemoCluster, DemoOptions
from console.snapshot import collect
from node.config import NodeConfig
from node.core.events import Channel, Event
from node.delivery import Subscription
from node.errors import JournalError
from node.node import Node, open_node
from node.runtime.control import ControlServer, bind_control
from node.runtime.metrics import MetricsServer, open_metrics_listeners
from node.telemetry import EVENTS as TELEMETRY_EVENTS
from node.telemetry import VARIETY_FLOW

EVENT_RING = 500
LOG_RING = 300
SIGNAL_RING = 50
COMMAND_QUEUE = 64
TELEMETRY_HANDLER = "vsm-console-event-log"
HISTORY_EVERY_S = 2.0
HISTORY_LIMIT = 5

Done = Callable[[Any, BaseException | None], None]


@attrs.frozen
class LogLine:
    """One entry in the console's event log: an event or a log record."""

    at: float  # wall clock, seconds since the epoch
    kind: str  # "event" or the log level name
    source: str
    text: str


@attrs.frozen
class Signal:
    """An algedonic event seen by the viewed node."""

    at: float
    event_type: str
    source: str
    data: dict[str, Any]


class RingHandler(logging.Handler):
    """Keeps the node's log records in a bounded ring instead of writing to the terminal."""

    def __init__(self, ring: deque[LogLine]) -> None:
        super().__init__(logging.DEBUG)
        self.ring = ring

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string must not break the node
            text = str(record.msg)
        source = NODE_NAME.get() or record.name
        self.ring.append(
            LogLine(record.created, record.levelname, source, f"{record.name}: {text}")
        )


class Session:
    """The node(s) behind the console, and the commands sent to them."""

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        demo: DemoOptions | None = None,
        transport: Any = None,
        control: str | None = None,
    ) -> None:
        if (config is None) == (demo is None):
            raise ValueError("a session needs either a node config or demo options")
        self.config = config
        self.transport = transport
        self.control = control  # control socket path (ctl), as the daemon serves it
        self.demo = DemoCluster(demo) if demo is not None else None
        if self.demo is not None:
            self.viewed = OBSERVER if demo and demo.observer else self.demo.names[0]
        else:
            self.viewed = config.name if config else ""
        self.events: deque[LogLine] = deque(maxlen=EVENT_RING)
        self.signals: deque[Signal] = deque(maxlen=SIGNAL_RING)
        self.logs: deque[LogLine] = deque(maxlen=LOG_RING)
        self.events_seen = 0
        # The partition journal, read every HISTORY_EVERY_S where the node keeps one.
        self.history: dict[str, Any] = {"not_built": "the partition history is not read yet"}
        self.ready = False
        self._node: Node | None = None
        self._sub: Subscription | None = None
        self._subscribed_to: Node | None = None
        self._send: trio.MemorySendChannel[tuple[Any, tuple[Any, ...], Done | None]] | None = None

    # --- what the UI calls -------------------------------------------------------------

    @property
    def node(self) -> Node | None:
        """The node the console shows (in the demo, the one chosen with ``v``)."""
        if self.demo is not None:
            return self.demo.nodes.get(self.viewed)
        return self._node

    def snapshot(self) -> dict[str, Any]:
        """One consistent read of the viewed node for every panel."""
        node = self.node
        self._follow(node)
        snap = collect(node, self.demo)
        snap["viewed"] = self.viewed
        snap["events_seen"] = self.events_seen
        snap["history"] = self.history
        return snap

    def submit(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, done: Done | None = None
    ) -> None:
        """Run ``await fn(*args)`` as a trio task; WouldBlock if the queue is full."""
        if self._send is None:
            raise RuntimeError("the node is not running")
        self._send.send_nowait((fn, args, done))

    def view(self, name: str) -> None:
        if self.demo is None or name not in self.demo.names:
            raise ValueError(f"no demo node {name!r}")
        self.viewed = name

    # --- trio side -----------------------------------------------------------------------

    async def run(self, *, on_ready: Callable[[], None] | None = None) -> None:
        """Run the node(s) and the command queue until cancelled."""
        handler = RingHandler(self.logs)
        vsm = logging.getLogger("vsm")
        saved = (vsm.propagate, vsm.level)
        vsm.addHandler(handler)
        # Nothing may reach the terminal under the TUI (logging's last-resort
        # handler writes warnings to stderr when no handler is configured).
        vsm.propagate = False
        level = self.config.log_level.upper() if self.config is not None else "INFO"
        vsm.setLevel(getattr(logging, level, logging.INFO))
        send, receive = trio.open_memory_channel[tuple[Any, tuple[Any, ...], Done | None]](
            COMMAND_QUEUE
        )
        try:
            async with trio.open_nursery() as nursery:
                if self.demo is not None:
                    await nursery.start(self.demo.run)
                else:
                    assert self.config is not None
                    await nursery.start(self._run_node)
                nursery.start_soon(self._poll_history)
                self._send = send
                self.ready = True
                if on_ready is not None:
                    on_ready()
                async with receive:
                    async for fn, args, done in receive:
                        nursery.start_soon(self._command, fn, args, done)
        finally:
            self._send = None
            self.ready = False
            vsm.removeHandler(handler)
            vsm.propagate, _ = saved
            vsm.setLevel(saved[1])

    async def _run_node(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The embedded node, with the control socket and /metrics the daemon would serve."""
        assert self.config is not None
        # No busy polling here: this trio loop is a guest on the UI's thread, and
        # a console has no reply to wait for in microseconds (node.runtime.busypoll).
        config = self.config.evolve(busy_poll_us=0)
        NODE_NAME.set(config.name)
        control = await bind_control(self.control) if self.control else None
        try:
            metrics = (
                await open_metrics_listeners(config.metrics_listen)
                if config.metrics_listen
                else None
            )
            async with open_node(config, transport=self.transport) as node:
                self._node = node
                try:
                    async with trio.open_nursery() as nursery:
                        if control is not None:
                            await nursery.start(ControlServer(node).serve, control)
                            control = None  # served: the server closes and removes it
                        if metrics is not None:
                            await nursery.start(MetricsServer(node).serve, metrics)
                        task_status.started()
                        await trio.sleep_forever()
                finally:
                    self._node = None
        finally:
            if control is not None:  # bound but never served
                with trio.CancelScope(shield=True):
                    await control.aclose()
                with contextlib.suppress(OSError):
                    os.unlink(str(self.control))

    async def _poll_history(self) -> None:
        """Keep ``self.history`` fresh from ``node.history(limit)`` (the audit journal).

        A node without a journal (no data_dir, or --no-journal) says so, and the
        panel shows that sentence instead of entries.
        """
        while True:
            node = self.node
            if node is None:
                self.history = {"not_built": "node not running"}
            else:
                try:
                    result = await node.history(HISTORY_LIMIT)
                    self.history = {"entries": list(result)[-HISTORY_LIMIT:]}
                except JournalError as exc:
                    self.history = {"not_built": str(exc)}
                except Exception as exc:  # shown in the panel, never fatal to the node
                    self.history = {"error": f"{type(exc).__name__}: {exc}"}
            await trio.sleep(HISTORY_EVERY_S)

    async def _command(self, fn: Any, args: tuple[Any, ...], done: Done | None) -> None:
        try:
            result = await fn(*args)
        except Exception as exc:  # reported to the operator, never fatal to the node
            if done is not None:
                done(None, exc)
            else:
                logging.getLogger("vsm.console").error("command failed: %s", exc)
            return
        if done is not None:
            done(result, None)

    def _follow(self, node: Node | None) -> None:
        """Keep one ``"*"`` subscription (and telemetry handler), on the node being viewed."""
        if node is self._subscribed_to:
            return
        if self._sub is not None:
            self._sub.cancel()
            self._sub = None
        if self._subscribed_to is not None:
            self._subscribed_to.telemetry.detach(TELEMETRY_HANDLER)
        self._subscribed_to = node
        if node is not None:
            self._sub = node.subscribe("*", self._on_event)
            # Telemetry events in the log, but not variety.flow: a few per second per
            # channel, and the variety panel shows those figures already.
            names = [name for name in TELEMETRY_EVENTS if name != VARIETY_FLOW]
            node.telemetry.attach(TELEMETRY_HANDLER, names, self._on_telemetry, node.name)

    def _on_telemetry(
        self, name: tuple[str, ...], measurements: Any, metadata: Any, source: str
    ) -> None:
        short = ".".join(name[2:] if name[:2] == ("vsm", "cluster") else name)
        figures = " ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in measurements.items()
        )
        extra = {k: v for k, v in metadata.items() if k != "node"}
        text = f"{short} {figures}" + (f" {extra}" if extra else "")
        self.logs.append(LogLine(time.time(), "telem", source, text[:200]))

    def _on_event(self, event: Event) -> None:
        self.events_seen += 1
        now = time.time()
        text = f"{event.channel.value} {event.type}"
        if "load" not in event.data:  # synthetic demo load says so; show the rest
            text += f" {event.data}"[:160]
        self.events.append(LogLine(now, "event", event.source, text))
        if event.channel is Channel.ALGEDONIC:
            self.signals.append(Signal(now, event.type, event.source, dict(event.data)))
