"""Playback: the rows of the list replayed in time order, at 1x, 10x, 100x or step by step.

Each step shows its interaction's user data after it, the keys it changed highlighted.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Static

from gwsproxy.capture.format import Kind
from gwsproxy.correlate import Status
from gwsproxy.tui import text
from gwsproxy.tui.colours import (
    BOLD,
    COMPONENTS,
    OTHER,
    component_style,
    outcome_style,
    verdict_style,
)
from gwsproxy.tui.model import KIND_NAMES, Row
from gwsproxy.tui.pairs import Detail, Sources
from gwsproxy.tui.widgets.diff_view import change_text
from gwsproxy.verdict import ADDED, REMOVED, TYPE_CHANGED, UNCHANGED, KeyChange, judge

SPEEDS = {"1": 1.0, "2": 10.0, "3": 100.0}
MAX_GAP = 3.0  # an idle stretch of the capture is shortened to this (seconds, before speed)
MIN_DELAY = 0.02
LOOKBACK = 5000  # rows searched backwards for an interaction's previous state
LOG_LINES = 6


class PlaybackScreen(Screen[None]):
    COMPONENT_CLASSES = COMPONENTS
    BINDINGS = [
        Binding("space", "toggle", "Play/pause"),
        Binding("n,right", "step(1)", "Step"),
        Binding("left", "step(-1)", "Back"),
        Binding("1", "speed('1')", "1x"),
        Binding("2", "speed('2')", "10x"),
        Binding("3", "speed('3')", "100x"),
        Binding("left_square_bracket", "step(-10)", "-10", show=False),
        Binding("right_square_bracket", "step(10)", "+10", show=False),
        Binding("home", "seek(0)", "First", show=False),
        Binding("end", "seek(-1)", "Last", show=False),
        Binding("escape,q", "close", "Back"),
    ]

    def __init__(self, rows: list[Row], start: int, sources: Sources) -> None:
        super().__init__()
        self.rows = rows
        self.step = max(0, min(start, len(rows) - 1))
        self.sources = sources
        self.speed = 1.0
        self.playing = False
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="play-status")
        yield Static("", id="play-step")
        state: DataTable[Any] = DataTable(id="play-state", cursor_type="none", zebra_stripes=True)
        state.can_focus = False  # keys belong to the player: the table only shows
        yield state
        yield Static("", id="play-log")
        yield Footer()

    def on_mount(self) -> None:
        self.show_step()

    # ---- actions ------------------------------------------------------------------------------

    def action_toggle(self) -> None:  # type: ignore[override]  # not DOMNode.toggle(attribute)
        self.playing = not self.playing
        if self.playing and self.step >= len(self.rows) - 1:
            self.step = 0
            self.show_step()
        self._schedule()
        self._status()

    def action_step(self, n: int) -> None:
        self.playing = False
        self._schedule()
        self.seek(self.step + n)

    def action_seek(self, where: int) -> None:
        self.seek(len(self.rows) - 1 if where < 0 else where)

    def action_speed(self, key: str) -> None:
        self.speed = SPEEDS[key]
        self._schedule()
        self._status()

    def action_close(self) -> None:
        self.playing = False
        self._schedule()
        self.dismiss()

    def seek(self, i: int) -> None:
        self.step = max(0, min(i, len(self.rows) - 1))
        self.show_step()

    # ---- timing -------------------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if not self.playing or self.step >= len(self.rows) - 1:
            self.playing = False
            return
        gap = self.rows[self.step + 1].t - self.rows[self.step].t
        delay = max(MIN_DELAY, min(max(gap, 0.0), MAX_GAP) / self.speed)
        self._timer = self.set_timer(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not self.playing:
            return
        self.step += 1
        self.show_step()
        self._schedule()

    # ---- rendering ----------------------------------------------------------------------------

    def _status(self) -> None:
        state = "▶ playing" if self.playing else "■ paused"
        n = len(self.rows)
        row = self.rows[self.step] if n else None
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"{state} {self.speed:g}x", style="bold")
        t.append(f"  step {self.step + 1 if n else 0}/{n}")
        if row is not None:
            t.append(f"  {text.when(row.t)}", style="dim")
        self.query_one("#play-status", Static).update(t, layout=False)

    def show_step(self) -> None:
        self._status()
        table = self.query_one("#play-state", DataTable)
        table.clear(columns=True)
        if not self.rows:
            self.query_one("#play-step", Static).update("nothing to play: the list is empty")
            return
        row = self.rows[self.step]
        detail = self.sources.detail(row)
        state, changes, headline = self._state(detail)
        self.query_one("#play-step", Static).update(headline, layout=False)
        width = max(20, self.size.width - 58)
        table.add_column("key", width=28)
        table.add_column("value", width=width)
        table.add_column("change", width=22)
        by_key = {c.key: c for c in changes}
        shown: set[Any] = set()
        for key, value in (state or {}).items():
            shown.add(key)
            self._add_state_row(table, key, value, by_key.get(key))
        for c in changes:  # removed keys are shown struck through with their old value
            if c.key not in shown and c.kind == REMOVED:
                self._add_state_row(table, c.key, c.before, c)
        if state is None:
            table.add_row(Text("(user data unknown)", style="italic"), "", "")
        self._log()

    def _add_state_row(self, table: DataTable, key: Any, value: Any, c: KeyChange | None) -> None:
        changed = c is not None and (c.kind != UNCHANGED or c.outcome not in ("", "ok"))
        style = "bold" if changed else ""
        if c is not None and c.kind == REMOVED:
            style = "strike"
        mark = {ADDED: "+ ", REMOVED: "- ", TYPE_CHANGED: "~ "}.get(c.kind if c else "", "")
        if c is not None and c.kind == "changed":
            mark = "~ "
        width = max(20, self.size.width - 58)
        cell = Text(text.value_cell(value, width), style=style, no_wrap=True, overflow="ellipsis")
        change = Text(change_text(c), style=outcome_style(self, c.outcome)) if c and changed else ""
        label = Text(f"{mark or '  '}{key}", style=("reverse " + style) if changed else "")
        table.add_row(label, cell, change)

    def _state(self, d: Detail) -> tuple[dict | None, tuple[KeyChange, ...], Text]:
        """The interaction's user data after this step, what changed, and a headline."""
        row, s = d.row, d.row.summary
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"{s.get('media') or '-'} {s.get('interaction_id') or ''} ", style="bold")
        head.append(f"{text.agent(s.get('scope'))}  ")
        if d.error:
            head.append(d.error)
            return None, (), head
        if row.kind == Kind.PAIR and d.verdict is not None:
            v = d.verdict
            head.append(f"{s.get('operation')} ")
            head.append(v.name, style=verdict_style(self, v.name) + BOLD)
            head.append(f"  {v.summary}")
            keys = ", ".join(str(c.key) for c in v.changes if c.requested)
            if keys:
                head.append(f"  requested: {text.clip(keys, 60)}", style="dim")
            state = d.after if v.after_known else d.before
            return state, v.changes, head
        if row.kind == Kind.NOTIFICATION:
            head.append(f"unsolicited {s.get('note_type') or ''}", style="italic")
            if d.after is None:
                return self._previous(row), (), head
            prev = self._previous(row)
            v = judge(Status.MATCHED, "", str(s.get("media")), None, prev, d.after)
            head.append(f"  {v.summary}")
            return d.after, v.changes, head
        head.append(
            f"{KIND_NAMES.get(row.kind, 'record')}: {s.get('reason') or ''}", style="italic"
        )
        return self._previous(row), (), head

    def _previous(self, row: Row) -> dict | None:
        """The interaction's user data before this row, from the latest earlier record."""
        iid = row.summary.get("interaction_id")
        if iid is None:
            return None
        i = self.step - 1
        stop = max(-1, self.step - LOOKBACK)
        while i > stop:
            r = self.rows[i]
            if r.summary.get("interaction_id") == iid and r.kind in (Kind.PAIR, Kind.NOTIFICATION):
                d = self.sources.detail(r)
                if d.verdict is not None:
                    return d.after if d.verdict.after_known else d.before
                if d.after is not None:
                    return d.after
            i -= 1
        return None

    def _log(self) -> None:
        lines = Text(no_wrap=True, overflow="ellipsis")
        lo = max(0, self.step - LOG_LINES + 1)
        other = component_style(self, OTHER)
        for i in range(lo, self.step + 1):
            r = self.rows[i]
            s = r.summary
            marker = "▶ " if i == self.step else "  "
            lines.append(f"{marker}{text.clock(r.t)} ", style="bold" if i == self.step else "")
            if r.is_pair:
                lines.append(f"{text.short_op(s.get('operation')):<10} ")
                lines.append(f"{(s.get('interaction_id') or '')[:16]:<16} ")
                verdict = r.verdict or str(s.get("status"))
                lines.append(f"{verdict:<12}", style=verdict_style(self, r.verdict))
                lines.append(f" {r.delta or ''}")
            else:
                lines.append(
                    f"{KIND_NAMES.get(r.kind, '?')} {s.get('note_type') or s.get('reason') or ''}",
                    style=other,
                )
            if i < self.step:
                lines.append("\n")
        self.query_one("#play-log", Static).update(lines)
