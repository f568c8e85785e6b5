"""Event log: recent events and the node's log records, filterable with ``/``."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Log, Static

SHOWN = 200  # lines rebuilt per refresh, at most


class EventLog(Vertical):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.filter = ""

    def compose(self) -> ComposeResult:
        yield Static("Event log", classes="title", id="eventlog-title")
        yield Input(placeholder="filter (enter applies, escape clears)", id="eventlog-filter")
        yield Log(id="eventlog", max_lines=SHOWN, auto_scroll=True)

    def on_mount(self) -> None:
        self.query_one(Input).display = False

    def open_filter(self) -> None:
        field = self.query_one(Input)
        field.display = True
        field.value = self.filter
        field.focus()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        message.stop()
        self.filter = message.value.strip()
        self._close_field()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.query_one(Input).display:
            event.stop()
            self.filter = ""
            self._close_field()

    def _close_field(self) -> None:
        field = self.query_one(Input)
        field.display = False
        self.screen.set_focus(None)  # keys go back to the app's bindings
        self._title()

    def _title(self) -> None:
        title = "Event log" + (f"  (filter: {self.filter!r})" if self.filter else "")
        self.query_one("#eventlog-title", Static).update(title)

    def show(self, events: Iterable[Any], logs: Iterable[Any], seen: int) -> None:
        lines = sorted([*events, *logs], key=lambda line: line.at)
        needle = self.filter.lower()
        out = []
        for line in lines:
            text = (
                f"{time.strftime('%H:%M:%S', time.localtime(line.at))} {line.kind:<7} "
                f"{line.source:<6} {line.text}"
            )
            if needle and needle not in text.lower():
                continue
            out.append(text)
        log = self.query_one(Log)
        log.clear()
        log.write_lines(out[-SHOWN:])
        log.border_subtitle = f"{seen} events seen"
