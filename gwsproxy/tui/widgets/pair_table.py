"""The pair list: a virtual table that renders only the rows on screen (toolong's line API).

It holds the filtered rows as a list of references; verdicts of visible rows are asked for lazily.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gwsproxy.tui import text
from gwsproxy.tui.colours import COMPONENTS, OTHER, component_style, replay_style, verdict_style
from gwsproxy.tui.messages import NeedVerdicts
from gwsproxy.tui.model import KIND_NAMES, Merged, Row, insert_sorted, position


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    label: str
    min: int
    pref: int
    max: int
    priority: int  # lower stays longer when the terminal is narrow
    right: bool = False


COLUMNS = (
    Column("time", "time", 8, 12, 12, 0),
    Column("agent", "agent", 6, 8, 16, 2),
    Column("media", "media", 5, 8, 9, 2),
    Column("interaction", "interaction", 8, 12, 24, 1),
    Column("operation", "operation", 6, 10, 16, 1),
    Column("ref", "ref", 4, 5, 8, 3, right=True),
    Column("verdict", "verdict", 7, 12, 12, 0),
    Column("replay", "replay", 6, 6, 6, 1),  # only once the capture was replayed
    Column("latency", "latency", 6, 7, 8, 4, right=True),
    Column("delta", "+/~/-", 8, 9, 10, 3),
    Column("keys", "keys", 8, 12, 400, 5),
)


# What a narrow terminal gives up first: (column, new width), 0 drops the column. The replay
# column is the first essential one to go, but still fits at 80 columns.
SACRIFICES = (
    ("keys", 0),
    ("latency", 0),
    ("time", 8),
    ("agent", 6),
    ("interaction", 10),
    ("media", 5),
    ("replay", 0),
    ("ref", 0),
    ("operation", 7),
    ("delta", 0),
    ("verdict", 8),
    ("agent", 0),
    ("media", 0),
    ("interaction", 8),
)


def layout(width: int, replay: bool = False) -> list[tuple[Column, int]]:
    """Columns that fit in width, each with its width (one space between columns); the replay
    column only when asked for."""
    widths = {c.name: c.pref for c in COLUMNS if replay or c.name != "replay"}

    def used() -> int:
        return sum(widths.values()) + len(widths) - 1

    for name, w in SACRIFICES:
        if used() <= width:
            break
        if name not in widths:
            continue
        if w:
            widths[name] = min(widths[name], w)
        else:
            del widths[name]
    spare = width - used()
    for c in sorted(COLUMNS, key=lambda c: c.priority):
        if c.name in widths and spare > 0:
            grow = max(0, min(c.max - widths[c.name], spare))
            widths[c.name] += grow
            spare -= grow
    return [(c, widths[c.name]) for c in COLUMNS if c.name in widths]


def cells(row: Row) -> dict[str, str]:
    """The text of each column for a row (unclipped)."""
    s = row.summary
    out = {
        "agent": text.agent(s.get("scope")),
        "media": str(s.get("media") or "-"),
        "interaction": str(s.get("interaction_id") or "-"),
        "ref": text.reference(s),
        "latency": text.latency(s),
        "delta": row.delta or "",
        "replay": "" if row.replay is None else "pass" if row.replay.passed else "FAIL",
        "keys": ", ".join(str(k) for k in s.get("requested_keys") or ()),
    }
    if row.is_pair:
        out["operation"] = text.short_op(s.get("operation"))
        out["verdict"] = row.verdict or str(s.get("status") or "?")
    elif row.kind in KIND_NAMES and KIND_NAMES[row.kind] == "raw":
        out["operation"] = f"{s.get('where') or 'raw'}: {s.get('reason') or ''}"
        out["verdict"] = "raw"
        out["media"] = "-"
    else:
        out["operation"] = str(s.get("note_type") or s.get("message") or "-")
        out["verdict"] = KIND_NAMES.get(row.kind, "?")
    return out


def _fit(value: str, width: int, right: bool = False) -> str:
    if cell_len(value) > width:
        return set_cell_size(value, width - 1) + "…" if width > 1 else value[:width]
    if right:
        return " " * (width - cell_len(value)) + value
    return set_cell_size(value, width)


class PairTable(ScrollView, can_focus=True):
    """Rows of the current view; the cursor row is the selected pair."""

    COMPONENT_CLASSES = COMPONENTS | {
        "pair-table--header",
        "pair-table--cursor",
        "pair-table--cursor-blurred",
    }
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "open", "Details", show=False),
    ]

    class Opened(Message):
        """Enter on a row: the user wants to look into its detail."""

    class Highlighted(Message):
        """The cursor moved to another row (None: the view is empty)."""

        def __init__(self, table: PairTable, row: Row | None) -> None:
            super().__init__()
            self.table = table
            self.row = row

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: Sequence[Row] = []
        self.cursor = 0
        self.tail = False  # keep the cursor on the last row as rows arrive (follow mode)
        self._show_replay = False
        self._announced: Row | None = None
        self._asked: set[tuple[int, int]] = set()
        self._wanted: list[Row] = []
        self._layout: list[tuple[Column, int]] = []
        self._layout_width = -1
        self._base = Style()

    # ---- the view ---------------------------------------------------------------------------

    @property
    def show_replay(self) -> bool:
        """Whether the replay column is shown (from the first replay on)."""
        return self._show_replay

    @show_replay.setter
    def show_replay(self, value: bool) -> None:
        if value != self._show_replay:
            self._show_replay = value
            self._layout_width = -1
            self.refresh()

    @property
    def cursor_row(self) -> Row | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def set_rows(self, rows: Sequence[Row]) -> None:
        """Show another view, keeping the cursor on the same row when it is still there."""
        current = self.cursor_row
        self.rows = rows
        if current is not None:
            i = position(rows, current)
            if i is None:  # the row left the view: stay at the same place in time
                i = bisect.bisect_left(rows, current.key, key=lambda r: r.key)
            self.cursor = i
        if self.tail and rows:
            self.cursor = len(rows) - 1
        self._changed()

    def add_rows(self, rows: Sequence[Row]) -> None:
        """Insert rows (already filtered) into the view in time order."""
        current = self.cursor_row
        at_end = self.tail or not self.rows or self.cursor >= len(self.rows) - 1
        if not isinstance(self.rows, list | Merged):  # a view of an index's rows: kept lazy
            self.rows = Merged(self.rows)
        for r in rows:
            i = insert_sorted(self.rows, r)
            if current is not None and i <= self.cursor:
                self.cursor += 1
        if self.tail and at_end and self.rows:
            self.cursor = len(self.rows) - 1
        self._changed()

    def move_to(self, row: Row) -> bool:
        i = position(self.rows, row)
        if i is None:
            return False
        self._set_cursor(i)
        return True

    def _changed(self) -> None:
        self.cursor = max(0, min(self.cursor, len(self.rows) - 1))
        self.virtual_size = Size(1, len(self.rows) + 1)
        self._scroll_to_cursor()
        self.refresh()
        self._announce()

    def _announce(self) -> None:
        row = self.cursor_row
        if row is not self._announced:
            self._announced = row
            self.post_message(self.Highlighted(self, row))

    # ---- cursor -------------------------------------------------------------------------------

    def _set_cursor(self, i: int) -> None:
        n = len(self.rows)
        if not n:
            return
        i = max(0, min(i, n - 1))
        self.cursor = i
        self.tail = i == n - 1 and self.tail
        self._scroll_to_cursor()
        self.refresh()
        self._announce()

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False)

    def action_cursor(self, step: int) -> None:
        self._set_cursor(self.cursor + step)

    def action_page(self, direction: int) -> None:
        page = max(1, self.scrollable_content_region.height - 2)
        self._set_cursor(self.cursor + direction * page)

    def action_jump(self, where: int) -> None:
        if where < 0:
            self.tail = True
            self._set_cursor(len(self.rows) - 1)
        else:
            self._set_cursor(0)

    def action_open(self) -> None:
        if self.cursor_row is not None:
            self.post_message(self.Opened())

    def on_click(self, event: events.Click) -> None:
        y = event.get_content_offset(self)
        if y is None or y.y < 1:
            return
        self._set_cursor(int(self.scroll_offset.y) + y.y - 1)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_resize(self) -> None:
        self._layout_width = -1
        self._scroll_to_cursor()

    # ---- rendering ----------------------------------------------------------------------------

    def _columns(self, width: int) -> list[tuple[Column, int]]:
        if width != self._layout_width:
            self._layout = layout(width, self._show_replay)
            self._layout_width = width
        return self._layout

    def render_lines(self, crop: Region) -> list[Strip]:
        self._base = self.rich_style  # computed once per paint, not once per line
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self._base
        columns = self._columns(width)
        if y == 0:
            style = base + component_style(self, "pair-table--header")
            label = " ".join(_fit(c.label, w, c.right) for c, w in columns)
            return Strip([Segment(label, style)]).adjust_cell_length(width, style)
        i = int(self.scroll_offset.y) + y - 1
        if i >= len(self.rows):
            return Strip.blank(width, base)
        row = self.rows[i]
        if not row.judged and row.ident not in self._asked:
            self._asked.add(row.ident)
            if not self._wanted:
                self.call_later(self._ask)
            self._wanted.append(row)
        values = cells(row)
        other = not row.is_pair
        row_style = base
        if other:
            row_style += component_style(self, OTHER)
        if i == self.cursor:
            name = "pair-table--cursor" if self.has_focus else "pair-table--cursor-blurred"
            row_style += component_style(self, name)
        segments: list[Segment] = []
        for n, (col, w) in enumerate(columns):
            if n:
                segments.append(Segment(" ", row_style))
            style = row_style
            if col.name == "verdict" and not other:
                style = row_style + verdict_style(self, row.verdict)
            elif col.name == "replay" and row.replay is not None:
                style = row_style + replay_style(self, row.replay.passed)
            elif col.name == "time":
                values["time"] = text.clock(row.t, ms=w >= 12)
            segments.append(Segment(_fit(values.get(col.name, ""), w, col.right), style))
        return Strip(segments).adjust_cell_length(width, row_style)

    def _ask(self) -> None:
        wanted, self._wanted = self._wanted, []
        if wanted:
            self.post_message(NeedVerdicts(wanted))
