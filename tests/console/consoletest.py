"""Helpers for console tests: the app over a demo cluster under trio's MockClock.

Textual's ``run_test`` needs asyncio, so each test is a plain function calling
``asyncio.run``; pytest-trio stays off here. The node runs as a trio guest with
an autojumping MockClock, so seconds of cluster time (heartbeats, stable_after)
pass in milliseconds of wall time, exactly (no heartbeat is late because the
machine was busy); waits are bounded in wall time.

Pilot.press waits for the process to go idle (up to a second per key), which a
node on an autojumping clock never does; ``press`` here sends the same key
events and lets the app handle them instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import trio.testing
from textual import events
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from console.app import ConsoleApp, make_app
from console.demo import DemoOptions
from console.session import Session

WALL_LIMIT_S = 30.0
SIZE = (150, 48)
KEY_SETTLE_S = 0.01


def demo_app(nodes: int = 3, **kw: Any) -> ConsoleApp:
    options = DemoOptions(
        nodes=nodes,
        strategy=kw.pop("strategy", "static_quorum"),
        load_scale=kw.pop("load_scale", 0.0),
        stable_after_s=kw.pop("stable_after_s", 3.0),
        observer=kw.pop("observer", False),
    )
    clock = trio.testing.MockClock(autojump_threshold=0)
    return make_app(Session(demo=options), clock=clock, **kw)


async def until(
    pilot: Pilot[Any], predicate: Callable[[], bool], limit: float = WALL_LIMIT_S
) -> None:
    """Let the app and the node run until ``predicate()``; AssertionError past ``limit``."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {limit}s of wall time")
        await pilot.pause(0.02)


async def press(pilot: Pilot[Any], *keys: str) -> None:
    """Type ``keys`` (Textual key names) one by one, letting the app handle each."""
    app = pilot.app
    driver = app._driver
    assert driver is not None
    for key in keys:
        char = key if len(key) == 1 else {"space": " ", "question_mark": "?", "slash": "/"}.get(key)
        event = events.Key(key, char)
        event.set_sender(app)
        driver.send_message(event)
        await asyncio.sleep(KEY_SETTLE_S)
        await settled(pilot)


async def settled(pilot: Pilot[Any], limit: float = 5.0) -> None:
    """Wait until the app has handled what was sent: the screen on top is mounted and
    it, the app and the screen's widgets have empty message queues, three checks
    in a row (a pushed dialog composes over several loop turns)."""
    app = pilot.app
    deadline = time.monotonic() + limit
    calm = 0
    while calm < 3:
        if time.monotonic() > deadline:
            raise AssertionError(f"{app.screen!r} not settled within {limit}s")
        await asyncio.sleep(KEY_SETTLE_S)
        screen = app.screen
        quiet = (
            screen.is_mounted
            and app._message_queue.empty()
            and all(w._message_queue.empty() for w in (screen, *screen.walk_children()))
        )
        calm = calm + 1 if quiet else 0


def status(app: ConsoleApp, name: str | None = None) -> str:
    demo = app.session.demo
    assert demo is not None
    node = demo.nodes.get(name or app.session.viewed)
    return "not running" if node is None else str(node.partition_status()["status"])


def full_mesh(app: ConsoleApp) -> bool:
    demo = app.session.demo
    assert demo is not None
    if len(demo.nodes) != len(demo.names):
        return False
    for name, node in demo.nodes.items():
        up = {p for p, st in node.bridge.peer_states().items() if st["connected"]}
        if up != set(demo.names) - {name}:
            return False
        if node.partition_status()["status"] != "healthy":
            return False
        voters = [n for n in demo.names if demo.config(n).role == "member"]
        if node.partition_status()["members"] != voters:
            return False
    return True


def text_of(app: ConsoleApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def rows(app: ConsoleApp, selector: str) -> list[list[str]]:
    table = app.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
