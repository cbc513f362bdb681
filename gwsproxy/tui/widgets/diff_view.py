"""The Diff tab: user data before and after the request, key by key, requested keys marked.

Types matter: a key whose value changed type says so ("int → str"); cells are clipped, enter
opens the whole value.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from gwsproxy.tui import text
from gwsproxy.tui.colours import BOLD, COMPONENTS, outcome_style, verdict_style
from gwsproxy.tui.pairs import Detail
from gwsproxy.verdict import TYPE_CHANGED, UNCHANGED, KeyChange

REQUESTED_MARK = "●"


def change_text(c: KeyChange) -> str:
    """What happened to a key: added, removed, changed, "int → str", with its outcome."""
    if c.kind == TYPE_CHANGED:
        kind = f"{text.type_name(c.before)} → {text.type_name(c.after)}"
    else:
        kind = c.kind
    if c.outcome and c.outcome != "ok":
        return f"{kind} · {c.outcome}"
    return kind


class DiffView(Vertical):
    COMPONENT_CLASSES = COMPONENTS

    class ShowValue(Message):
        """Show one key's whole before and after values."""

        def __init__(self, change: KeyChange, detail: Detail) -> None:
            super().__init__()
            self.change = change
            self.detail = detail

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.changed_only = True
        self.detail: Detail | None = None
        self.shown: list[KeyChange] = []
        self._spec: tuple[tuple[str, int], ...] = ()

    def compose(self) -> ComposeResult:
        yield Static("", id="diff-summary")
        table: DataTable = DataTable(
            id="diff-table", cursor_type="row", zebra_stripes=True, show_cursor=False
        )
        yield table

    @property
    def table(self) -> DataTable:
        return self.query_one("#diff-table", DataTable)

    def show(self, detail: Detail | None) -> None:
        self.detail = detail
        self._render_diff()

    def toggle(self) -> bool:
        self.changed_only = not self.changed_only
        self._render_diff()
        return self.changed_only

    def on_resize(self) -> None:
        if self.detail is not None:
            self._render_diff()

    def _columns(self, *spec: tuple[str, int]) -> None:
        """Set the columns; kept when unchanged, since new columns cost a layout."""
        if spec != self._spec:
            self._spec = spec
            self.table.clear(columns=True)
            for label, width in spec:
                self.table.add_column(label, width=width)

    def _render_diff(self) -> None:
        table = self.table
        table.clear()
        summary = self.query_one("#diff-summary", Static)
        d = self.detail
        self.shown = []
        if d is None:
            summary.update("", layout=False)
            return
        if d.error:
            summary.update(Text(d.error, style="bold"), layout=False)
            return
        v = d.verdict
        if v is None:
            summary.update(self._not_a_pair(d))
            return
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(v.name, style=verdict_style(self, v.name) + BOLD)
        head.append(f"  {v.summary}  ")
        if not v.before_known:
            head.append("before unknown  ", style="italic")
        if not v.after_known:
            head.append("no user data came back  ", style="italic")
        rows = v.changed() if self.changed_only else v.changes
        hidden = len(v.changes) - len(rows)
        head.append(
            f"changed keys ({hidden} unchanged hidden, d: all)"
            if self.changed_only
            else "all keys (d: changed only)",
            style="dim",
        )
        reason = d.row.summary.get("error")  # why it closed so: lost to whom, failed how
        if reason:
            head.append(f"\n{reason}", style="italic")
        summary.update(head)
        width = max(40, self.size.width - 4)
        key_w = min(28, max([len(c.key) + 2 for c in rows] + [5]))
        # no user data came back (timeout, failed): what became of each key is not known
        changes = [change_text(c) if v.after_known else "unknown" for c in rows]
        change_w = min(26, max([len(change) for change in changes] + [6]))
        value_w = max(10, (width - key_w - change_w - 6) // 2)
        self._columns(("key", key_w), ("before", value_w), ("after", value_w), ("change", change_w))
        for c, change in zip(rows, changes, strict=True):
            style = outcome_style(self, c.outcome)
            key = Text(f"{REQUESTED_MARK} " if c.requested else "  ")
            key.append(str(c.key), style="bold" if c.requested else "")
            before = "?" if not v.before_known else text.value_cell(c.before, value_w)
            after = "?" if not v.after_known else text.value_cell(c.after, value_w)
            dim = "dim" if c.kind == UNCHANGED else ""
            table.add_row(
                key,
                Text(before, style=dim, no_wrap=True, overflow="ellipsis"),
                Text(after, style=dim, no_wrap=True, overflow="ellipsis"),
                Text(change, style=style),
            )
            self.shown.append(c)
        if not rows:
            summary.update(head.append("  nothing changed", style="italic"), layout=False)

    def _not_a_pair(self, d: Detail) -> Text:
        s = d.row.summary
        if d.note is not None:
            data = d.note.user_data
            t = Text(f"unsolicited {d.note.notification_type or d.note.message_type or ''}: ")
            t.append(f"{len(data)} user-data keys" if data is not None else "no user data")
            if s.get("reason"):  # a second copy, a late notification, undecided between pairs
                t.append(f"\n{s['reason']}", style="italic")
            if data:
                self._columns(("key", 28), ("value", max(20, self.size.width - 34)))
                for k, value in data.items():
                    self.table.add_row(str(k), text.value_text(value, 120))
            return t
        if s.get("reason"):
            return Text(f"raw record ({s.get('where')}): {s.get('reason')}")
        return Text(text.clip(str(s), 400))

    # The row cursor shows only while the table has focus, so that it does not hide the
    # colours of the first row.
    def on_descendant_focus(self) -> None:
        self.query_one("#diff-table", DataTable).show_cursor = True

    def on_descendant_blur(self) -> None:
        self.query_one("#diff-table", DataTable).show_cursor = False

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        i = event.cursor_row
        if self.detail is not None and 0 <= i < len(self.shown):
            self.post_message(self.ShowValue(self.shown[i], self.detail))
