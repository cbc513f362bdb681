"""The Timeline tab: every record of the selected pair's interaction in order, with verdicts.

Selecting one (enter or click) jumps the pair list to it. Long histories are windowed.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from gwsproxy.tui import text
from gwsproxy.tui.colours import COMPONENTS, OTHER, component_style, verdict_style
from gwsproxy.tui.messages import JumpTo, NeedVerdicts
from gwsproxy.tui.model import KIND_NAMES, Row, position

WINDOW = 100  # rows shown on each side of the selected one


class TimelineView(Vertical):
    COMPONENT_CLASSES = COMPONENTS

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: Sequence[Row] = []
        self.current: Row | None = None
        self.window: Sequence[Row] = []
        self._spec: tuple[tuple[str, int], ...] = ()

    def compose(self) -> ComposeResult:
        yield Static("", id="timeline-summary")
        yield DataTable(
            id="timeline-table", cursor_type="row", zebra_stripes=True, show_cursor=False
        )

    def show(self, rows: Sequence[Row], current: Row | None) -> None:
        self.rows, self.current = rows, current
        self.redraw()

    def redraw(self) -> None:
        table = self.query_one("#timeline-table", DataTable)
        summary = self.query_one("#timeline-summary", Static)
        table.clear()
        cur = self.current
        if cur is None:
            summary.update("", layout=False)
            self.window = []
            return
        i = position(self.rows, cur)
        if i is None:
            i = 0
        lo, hi = max(0, i - WINDOW), min(len(self.rows), i + WINDOW + 1)
        self.window = self.rows[lo:hi]
        iid = cur.summary.get("interaction_id") or "-"
        head = f"{iid} ({cur.summary.get('media') or '-'}): {len(self.rows)} records"
        if lo or hi < len(self.rows):
            head += f", showing {lo + 1}-{hi}"
        summary.update(
            Text(head + "  (enter: go to it)", no_wrap=True, overflow="ellipsis"), layout=False
        )
        spec = (
            ("time", 14),
            ("agent", 8),
            ("operation", 12),
            ("ref", 5),
            ("verdict", 12),
            ("+/~/-", 9),
            ("keys", max(8, self.size.width - 76)),
        )
        if spec != self._spec:  # new columns cost a layout: only when the width changed
            self._spec = spec
            table.clear(columns=True)
            for label, width in spec:
                table.add_column(label, width=width)
        pending: list[Row] = []
        other = component_style(self, OTHER)
        for r in self.window:
            s = r.summary
            if not r.judged:
                pending.append(r)
            if r.is_pair:
                op = text.short_op(s.get("operation"))
                verdict = r.verdict or str(s.get("status"))
                vstyle = verdict_style(self, r.verdict)
                style = None
            else:
                op = str(s.get("note_type") or s.get("reason") or "-")
                verdict = KIND_NAMES.get(r.kind, "?")
                vstyle = other
                style = other
            keys = ", ".join(str(k) for k in s.get("requested_keys") or ())
            marker = "▶ " if r is cur else "  "
            table.add_row(
                Text(marker + text.clock(r.t), style=style or ""),
                Text(text.agent(s.get("scope")), style=style or ""),
                Text(op, style=style or "", no_wrap=True, overflow="ellipsis"),
                text.reference(s),
                Text(verdict, style=vstyle),
                r.delta or "",
                Text(text.clip(keys, 200), no_wrap=True, overflow="ellipsis"),
            )
        j = position(self.window, cur)
        if j is not None:
            table.move_cursor(row=j, animate=False, scroll=True)
        if pending:
            # Posted from this widget's own turn: a message made while the detail panel runs
            # would count the panel as its sender and stop bubbling there.
            self.call_later(self._ask, pending)

    def _ask(self, rows: list[Row]) -> None:
        self.post_message(NeedVerdicts(rows))

    # The row cursor shows only while the table has focus, so that it does not hide the
    # colours of the first row.
    def on_descendant_focus(self) -> None:
        self.query_one("#timeline-table", DataTable).show_cursor = True

    def on_descendant_blur(self) -> None:
        self.query_one("#timeline-table", DataTable).show_cursor = False

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        i = event.cursor_row
        if 0 <= i < len(self.window) and self.window[i] is not self.current:
            self.post_message(JumpTo(self.window[i]))
