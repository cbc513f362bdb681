"""A raw message as it passed the proxy: a few header lines, then its body as highlighted JSON.

Pretty-printed from the recorded bytes; what is not JSON is shown escaped; both are capped.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from gwsproxy.tui import text


def body_renderable(
    head: list[str], raw: Any, *, dark: bool = True, limit: int = text.VIEW_BYTES
) -> RenderableType:
    parts: list[RenderableType] = []
    if head:
        parts.append(Text("\n".join(text.clip(line, 500) for line in head), style="bold"))
    body, is_json, notes = text.json_view(raw, limit)
    for note in notes:
        parts.append(Text(note, style="italic"))
    if body:
        if is_json:
            parts.append(
                Syntax(
                    body,
                    "json",
                    theme="ansi_dark" if dark else "ansi_light",
                    word_wrap=True,
                )
            )
        else:
            parts.append(Text(body))
    return Group(*parts)


class BodyView(VerticalScroll):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.head: list[str] = []
        self.raw: Any = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="body-text")

    def show(self, head: list[str], raw: Any) -> None:
        self.head, self.raw = head, raw
        self.redraw()

    def redraw(self) -> None:
        """Render again (the theme changed)."""
        renderable = body_renderable(self.head, self.raw, dark=self.app.current_theme.dark)
        self.query_one(Static).update(renderable)
        self.scroll_home(animate=False)
