"""One user-data key of a pair in full: before, after, and what differs inside them."""

from __future__ import annotations

import json

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from gwsproxy.tui.widgets.body_view import body_renderable
from gwsproxy.tui.widgets.diff_view import change_text
from gwsproxy.verdict import MISSING, KeyChange, details


def _value(label: str, value: object, dark: bool) -> RenderableType:
    if value is MISSING:
        return Text(f"{label}: absent", style="bold")
    raw = json.dumps(value, ensure_ascii=False, default=repr).encode()
    return body_renderable([f"{label}:"], raw, dark=dark)


class ValueScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, change: KeyChange, before_known: bool) -> None:
        super().__init__()
        self.change = change
        self.before_known = before_known

    def compose(self) -> ComposeResult:
        c = self.change
        dark = self.app.current_theme.dark
        parts: list[RenderableType] = [Text(f"{c.key}: {change_text(c)}", style="bold")]
        lines = details(c)
        if lines:
            parts.append(Text("\n".join(lines[:50])))
        if self.before_known:
            parts.append(_value("before", c.before, dark))
        else:
            parts.append(Text("before: unknown", style="bold"))
        parts.append(_value("after", c.after, dark))
        if c.requested:
            parts.append(_value("requested", c.expected, dark))
        with VerticalScroll(id="value-body"):
            yield Static(Group(*parts))
        yield Footer()
