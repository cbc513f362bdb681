"""The Replay tab: how the selected pair fared when the capture was last replayed (r).

A failing pair lists each key whose change differs: before, expected (recorded), actual, typed.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from gwsproxy.tui import text
from gwsproxy.tui.colours import BOLD, COMPONENTS, replay_style
from gwsproxy.tui.model import Row
from gwsproxy.verdict import MISSING, same


def typed(value: Any, width: int) -> str:
    """A value as JSON with its type, so that 123 (int) and "123" (str) tell apart."""
    if value is MISSING:
        return "(absent)"
    return f"{text.value_cell(value, max(8, width - 8))} ({text.type_name(value)})"


class ReplayView(Vertical):
    COMPONENT_CLASSES = COMPONENTS

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.row: Row | None = None
        self._spec: tuple[tuple[str, int], ...] = ()

    def compose(self) -> ComposeResult:
        yield Static("", id="replay-summary")
        yield DataTable(id="replay-table", cursor_type="row", zebra_stripes=True, show_cursor=False)

    def show(self, row: Row | None) -> None:
        self.row = row
        self.redraw()

    def on_resize(self) -> None:
        if self.row is not None:
            self.redraw()

    def redraw(self) -> None:
        summary = self.query_one("#replay-summary", Static)
        table = self.query_one("#replay-table", DataTable)
        table.clear()
        row = self.row
        c = row.replay if row is not None else None
        if row is None:
            summary.update("", layout=False)
            return
        if c is None:
            why = "not replayed" if row.is_pair else "only pairs are replayed"
            summary.update(
                Text(f"{why} (r: replay the open captures against a GWS)", style="italic"),
                layout=False,
            )
            return
        head = Text()
        head.append("pass" if c.passed else "FAIL", style=replay_style(self, c.passed) + BOLD)
        if c.passed:
            head.append("  changed user data as recorded")
        else:
            head.append(f"  {c.problem or 'user data changed differently'}")
        summary.update(head, layout=False)
        if not c.mismatches:
            return
        width = max(40, self.size.width - 4)
        key_w = min(28, max([len(m.key) + 1 for m in c.mismatches] + [5]))
        value_w = max(14, (width - key_w - 6) // 3)
        spec = (("key", key_w), ("before", value_w), ("expected", value_w), ("actual", value_w))
        if spec != self._spec:
            self._spec = spec
            table.clear(columns=True)
            for label, w in spec:
                table.add_column(label, width=w)
        for m in c.mismatches:
            actual = typed(m.actual, value_w)
            if same(m.expected, m.actual):  # the key already held it: the replay changed nothing
                actual += ", unchanged"
            table.add_row(
                Text(m.key, style="bold"),
                Text(typed(m.before, value_w), style="dim", no_wrap=True, overflow="ellipsis"),
                Text(typed(m.expected, value_w), no_wrap=True, overflow="ellipsis"),
                Text(
                    actual,
                    style=replay_style(self, False),
                    no_wrap=True,
                    overflow="ellipsis",
                ),
            )
