"""The filter input: free text and field:value terms, applied a moment after typing stops."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input, Label

PLACEHOLDER = "filter: text media: op: verdict: key: agent: interaction:  (-term negates)"
DEBOUNCE = 0.15


class FilterBar(Horizontal):
    BINDINGS = [
        Binding("escape", "leave(True)", "Clear", show=False),
        Binding("enter", "leave(False)", "Done", show=False),
        Binding("down", "leave(False)", "To the list", show=False),
    ]

    class Changed(Message):
        """The filter text settled on a new value."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Done(Message):
        """The user left the filter (enter or escape)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._timer: Timer | None = None
        self._sent = ""

    def compose(self) -> ComposeResult:
        yield Label("/", id="filter-prompt")
        yield Input(placeholder=PLACEHOLDER, id="filter-input", compact=True)

    @property
    def input(self) -> Input:
        return self.query_one(Input)

    @property
    def value(self) -> str:
        return self.input.value

    def set_value(self, text: str, *, apply: bool = True) -> None:
        """Replace the filter text and apply it at once (or not: the caller applies it)."""
        self.input.value = text
        if apply:
            self._send()
        else:
            self._sent = text

    def focus_input(self) -> None:
        # At once, not via focus(): keys typed right after "/" must land in the input.
        self.screen.set_focus(self.input)
        self.input.cursor_position = len(self.input.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE, self._send)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_leave(False)

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        text = self.input.value
        if text != self._sent:
            self._sent = text
            self.post_message(self.Changed(text))

    def action_leave(self, clear: bool) -> None:
        if clear and self.input.value:
            self.input.value = ""
        self._send()
        self.post_message(self.Done())
