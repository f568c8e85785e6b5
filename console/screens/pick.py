"""Choose one or more items from a list (nodes, strategies, signal types)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class PickScreen(ModalScreen[list[str] | None]):
    """Pick ``count`` distinct items, in order: enter (or the item's number) picks one."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    AUTO_FOCUS = "#pick-list"

    def __init__(
        self, title: str, items: Sequence[str], *, count: int = 1, labels: Sequence[str] = ()
    ) -> None:
        super().__init__()
        if not items:
            raise ValueError("nothing to choose from")
        self.title_text = title
        self.items = list(items)
        self.labels = list(labels) or self.items
        self.count = count
        self.chosen: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield Static(self._prompt(), id="pick-prompt")
            yield OptionList(
                *[
                    Option(f"{i}  {label}", id=item)
                    for i, (item, label) in enumerate(zip(self.items, self.labels, strict=True), 1)
                ],
                id="pick-list",
            )
            yield Static("enter or number: choose    escape: cancel", classes="dialog-keys")

    def _prompt(self) -> str:
        if self.count == 1:
            return "choose one"
        done = " ".join(self.chosen) or "-"
        return f"choose {self.count} (chosen: {done})"

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", "")
        if key.isdigit() and 1 <= int(key) <= len(self.items):
            self._choose(self.items[int(key) - 1])
            getattr(event, "stop", lambda: None)()

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        if message.option.id is not None:
            self._choose(message.option.id)

    def _choose(self, item: str) -> None:
        if item in self.chosen:
            self.notify(f"{item} already chosen", severity="warning")
            return
        self.chosen.append(item)
        if len(self.chosen) >= self.count:
            self.dismiss(self.chosen)
        else:
            self.query_one("#pick-prompt", Static).update(self._prompt())

    def action_cancel(self) -> None:
        self.dismiss(None)
