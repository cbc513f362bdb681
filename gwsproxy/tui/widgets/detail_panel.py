"""The selected row in tabs: Diff, Request, Response, Notification, Timeline, Replay.

Only the visible tab is rendered when the selection moves; the others catch up when opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static, TabbedContent, TabPane, Tabs

from gwsproxy.capture.format import Kind
from gwsproxy.tui import text
from gwsproxy.tui.colours import BOLD, COMPONENTS, replay_style, verdict_style
from gwsproxy.tui.model import KIND_NAMES, Row
from gwsproxy.tui.pairs import Detail
from gwsproxy.tui.widgets.body_view import BodyView
from gwsproxy.tui.widgets.diff_view import DiffView
from gwsproxy.tui.widgets.replay_view import ReplayView
from gwsproxy.tui.widgets.timeline_view import TimelineView

TABS = ("diff", "request", "response", "notification", "timeline", "replay")


class DetailPanel(Vertical):
    COMPONENT_CLASSES = COMPONENTS
    BINDINGS = [Binding("escape", "leave", "Back to the list")]

    class Left(Message):
        """Escape in the detail: back to the list."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.detail: Detail | None = None
        self.timeline: Sequence[Row] = []
        self._stale: set[str] = set(TABS)

    def compose(self) -> ComposeResult:
        yield Static("", id="detail-title")
        with TabbedContent(id="detail-tabs"):
            with TabPane("Diff", id="diff"):
                yield DiffView(id="diff-view")
            with TabPane("Request", id="request"):
                yield BodyView(id="request-view")
            with TabPane("Response", id="response"):
                yield BodyView(id="response-view")
            with TabPane("Notification", id="notification"):
                yield BodyView(id="notification-view")
            with TabPane("Timeline", id="timeline"):
                yield TimelineView(id="timeline-view")
            with TabPane("Replay", id="replay"):
                yield ReplayView(id="replay-view")

    @property
    def active(self) -> str:
        return self.query_one(TabbedContent).active

    def open_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name

    def focus_content(self) -> None:
        """Focus what the active tab shows (its table, or its scrolling body)."""
        pane = self.query_one(TabbedContent).active_pane
        if pane is None:
            return
        for widget in pane.query("DataTable, BodyView"):
            if widget.focusable:
                self.screen.set_focus(widget)
                return

    def action_leave(self) -> None:
        self.post_message(self.Left())

    def on_mount(self) -> None:
        # Tabs switch with 1-6; keeping the tab strip out of the focus chain makes Tab go
        # straight from the list to the tab's content.
        self.query_one(Tabs).can_focus = False

    def show(self, detail: Detail | None, timeline: Sequence[Row]) -> None:
        self.detail, self.timeline = detail, timeline
        self.query_one("#detail-title", Static).update(self._title(), layout=False)
        self._stale = set(TABS)
        self._update(self.active)

    def toggle_changed_only(self) -> bool:
        return self.query_one(DiffView).toggle()

    def verdicts_changed(self) -> None:
        """Verdicts were computed: the title and timeline may show them now."""
        self.query_one("#detail-title", Static).update(self._title(), layout=False)
        if self.active == "timeline":
            self.query_one(TimelineView).redraw()
        else:
            self._stale.add("timeline")

    def replay_changed(self) -> None:
        """The shown row got a replay result (or lost it): the title and Replay tab show it."""
        self.query_one("#detail-title", Static).update(self._title(), layout=False)
        self._stale.add("replay")
        self._update(self.active)

    def redraw(self) -> None:
        """Render every tab again (after a theme change)."""
        self._stale = set(TABS)
        self.query_one("#detail-title", Static).update(self._title(), layout=False)
        self._update(self.active)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.tabbed_content.id == "detail-tabs":
            self._update(event.pane.id or "")

    def _update(self, tab: str) -> None:
        if tab not in self._stale:
            return
        self._stale.discard(tab)
        d = self.detail
        if tab == "diff":
            self.query_one(DiffView).show(d)
        elif tab == "timeline":
            self.query_one(TimelineView).show(self.timeline, d.row if d else None)
        elif tab == "replay":
            self.query_one(ReplayView).show(d.row if d else None)
        else:
            head, raw = _message(d, tab)
            self.query_one(f"#{tab}-view", BodyView).show(head, raw)

    def _title(self) -> Text:
        d = self.detail
        t = Text(no_wrap=True, overflow="ellipsis")
        if d is None:
            t.append("no row selected", style="dim")
            return t
        r, s = d.row, d.row.summary
        if r.is_pair:
            t.append(f"#{s.get('id')} ", style="bold")
            t.append(f"{s.get('operation')} ")
            if r.verdict:
                t.append(r.verdict, style=verdict_style(self, r.verdict) + BOLD)
            else:
                t.append(str(s.get("status")), style=verdict_style(self, None))
            if r.replay is not None:
                passed = r.replay.passed
                t.append(" replay ")
                t.append("pass" if passed else "FAIL", style=replay_style(self, passed) + BOLD)
        else:
            t.append(KIND_NAMES.get(r.kind, "record"), style="bold")
            t.append(f" {s.get('note_type') or s.get('reason') or ''}")
        t.append(f"  {s.get('media') or '-'} {s.get('interaction_id') or ''}")
        t.append(f"  {s.get('scope') or ''}")
        t.append(f"  {text.when(r.t)}", style="dim")
        if r.is_pair:
            ref = text.reference(s)
            if ref:
                t.append(f"  ref {ref} ({s.get('correlation')})", style="dim")
            lat = text.latency(s)
            if lat:
                t.append(f"  {lat}", style="dim")
        return t


def _message(d: Detail | None, tab: str) -> tuple[list[str], Any]:
    """Header lines and raw body for the Request / Response / Notification tab."""
    if d is None:
        return [], None
    if d.error:
        return [d.error], None
    body = d.body or {}
    s = d.row.summary
    if d.row.kind == Kind.RAW:
        where = s.get("where")
        wanted = {"request": "request", "response": "response"}.get(str(where), "notification")
        if wanted != tab:
            return [f"(a raw {where} record: see the {wanted.title()} tab)"], None
        head = [f"raw {where}: {s.get('reason')}", f"{s.get('size')} bytes"]
        head += [f"{k}: {v}" for k, v in s.items() if k not in _RAW_SHOWN and v is not None]
        return head, body.get("bytes")
    if tab == "request":
        req = body.get("request")
        if not isinstance(req, dict):
            return ["(no request: an unsolicited notification)"], None
        head = [f"{req.get('method')} {req.get('path')}"]
        head += _headers(req.get("headers"))
        head += [f"repaired: {r}" for r in req.get("repairs") or ()]
        return head, req.get("body")
    if tab == "response":
        resp = body.get("response")
        if not isinstance(resp, dict):
            what = "no HTTP answer recorded" if d.row.is_pair else "no response: unsolicited"
            return [f"({what})"], None
        head = [f"HTTP {resp.get('status')}"] + _headers(resp.get("headers"))
        return head, resp.get("body")
    note = body.get("notification")
    if not isinstance(note, dict):
        return [f"(no notification: {s.get('status') or 'none'})"], None
    head = [
        " · ".join(
            str(x)
            for x in (
                note.get("transport"),
                note.get("channel"),
                note.get("message_type"),
                note.get("notification_type"),
                f"referenceId {note.get('reference_id')}"
                if note.get("reference_id") is not None
                else None,
            )
            if x
        )
    ]
    head += [f"repaired: {r}" for r in note.get("repairs") or ()]
    return head, note.get("raw")


_RAW_SHOWN = {"t", "reason", "where", "size"}


def _headers(headers: Any) -> list[str]:
    if not isinstance(headers, list):
        return []
    out = []
    for h in headers[:50]:
        if isinstance(h, list | tuple) and len(h) == 2:
            out.append(f"{h[0]}: {h[1]}")
    return out
