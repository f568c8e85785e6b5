"""``?``: every key the console answers to."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "close"),
        Binding("question_mark", "close", "close"),
        Binding("q", "close", "close"),
    ]

    def __init__(self, keys: Sequence[tuple[str, str]], note: str = "") -> None:
        super().__init__()
        self.keys = list(keys)
        self.note = note

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _ in self.keys), default=4) + 2
        lines = [f"{key:<{width}}{what}" for key, what in self.keys]
        with VerticalScroll(classes="dialog", id="help-dialog"):
            yield Static("Keys    (escape, ? or q: close)", classes="dialog-title")
            yield Static("\n".join(lines), id="help-keys")
            if self.note:
                yield Static(self.note, classes="note")

    def action_close(self) -> None:
        self.dismiss(None)
