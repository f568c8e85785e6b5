"""Manual partition resolution: choose the side that continues, then confirm."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from console.screens.confirm import ConfirmScreen


def describe_side(members: list[str], health: dict[str, float]) -> str:
    parts = []
    for name in members:
        h = health.get(name)
        parts.append(f"{name} ({h:.2f})" if h is not None else f"{name} (health unknown)")
    return ", ".join(parts)


class ResolveScreen(ModalScreen[list[str] | None]):
    """Each side with its members and health; enter chooses; a modal confirms.

    Dismissed with the chosen side's members, or None if the operator backs out.
    """

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    AUTO_FOCUS = "#resolve-sides"

    def __init__(self, partition: dict[str, Any], health: dict[str, float]) -> None:
        super().__init__()
        self.partition = partition
        self.health = health
        self.sides: list[list[str]] = [list(c) for c in partition.get("components", [])]

    def compose(self) -> ComposeResult:
        part = self.partition
        with Vertical(classes="dialog", id="resolve-dialog"):
            yield Static("Resolve partition: which side continues?", classes="dialog-title")
            reason = (part.get("decision") or {}).get("reason", "")
            yield Static(f"status {part.get('status')}; {reason}", id="resolve-reason")
            yield OptionList(
                *[
                    Option(f"side {i}: {describe_side(side, self.health)}", id=str(i - 1))
                    for i, side in enumerate(self.sides, 1)
                ],
                id="resolve-sides",
            )
            yield Static("enter: choose    escape: cancel", classes="dialog-keys")

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        index = int(message.option.id or 0)
        keep = self.sides[index]
        others = sorted({n for i, s in enumerate(self.sides) if i != index for n in s})
        body = (
            f"Keep side {index + 1}: {', '.join(keep)}.\n"
            f"These nodes will be degraded: "
            f"{', '.join(others) or 'none'}.\n"
            "The decision is sent to every node this one can reach."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.dismiss(keep)

        self.app.push_screen(ConfirmScreen("Confirm resolution", body), answered)

    def action_cancel(self) -> None:
        self.dismiss(None)
