"""`gwsproxy tui`: the capture inspector. Lists pairs of one or more captures merged by time,
shows the selected one in tabs, filters, follows a growing capture, plays it back, exports it,
replays it against a GWS (r) and shows which pairs still pass.

This is the layout, the keys and what they do. What the list holds and the work behind it
(reading, following, filtering, judging) are in listing.py, which reaches the screen through the
host methods below.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input

from gwsproxy.capture.format import MAGIC, CaptureError
from gwsproxy.errors import GwsProxyError
from gwsproxy.tui.help_screen import HelpScreen
from gwsproxy.tui.listing import Listing
from gwsproxy.tui.messages import JumpTo, NeedVerdicts
from gwsproxy.tui.model import Filter, Row, parse_filter
from gwsproxy.tui.pairs import Sources, open_source
from gwsproxy.tui.playback_screen import PlaybackScreen
from gwsproxy.tui.replay_screen import ReplayScreen, StopReplayScreen
from gwsproxy.tui.replays import DEFAULT_TARGET, ReplayFailure, ReplayRequest, ReplayRun
from gwsproxy.tui.snippet import export_pair, pytest_snippet
from gwsproxy.tui.snippet_screen import SnippetScreen
from gwsproxy.tui.value_screen import ValueScreen
from gwsproxy.tui.widgets.detail_panel import TABS, DetailPanel
from gwsproxy.tui.widgets.diff_view import DiffView
from gwsproxy.tui.widgets.filter_bar import FilterBar
from gwsproxy.tui.widgets.notice_banner import NoticeBanner
from gwsproxy.tui.widgets.pair_table import PairTable
from gwsproxy.tui.widgets.status_line import StatusLine
from gwsproxy.verdict import VerdictName

if TYPE_CHECKING:
    from gwsproxy.gws.session import Access

MAIN_SCREEN_ACTIONS = frozenset(
    {"focus_filter", "changed_only", "playback", "export", "snippet", "toggle_others", "tab"}
    | {"replay", "stop_replay"}
)


class InspectorApp(App[int]):
    CSS_PATH = "gwsproxy.tcss"
    TITLE = "gwsproxy inspector"
    BINDINGS = [
        # Priority: decided as the key arrives, so the keys typed right after it reach the input.
        Binding("slash", "focus_filter", "Filter", priority=True),
        Binding("d", "changed_only", "Changed/all"),
        Binding("p", "playback", "Play"),
        Binding("e", "export", "Export"),
        Binding("c", "snippet", "Test"),
        # Not in the footer: at 80 columns it would push out Help and Quit (help and palette).
        Binding("r", "replay", "Replay", show=False),
        Binding("escape", "stop_replay", "Stop replay", show=False),  # while one runs
        Binding("u", "toggle_others", "Unsolicited", show=False),
        *(
            Binding(str(n), f"tab('{name}')", name.title(), show=False)
            for n, name in enumerate(TABS, 1)
        ),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        paths: list[str | Path],
        *,
        follow: bool = False,
        replay_target: str | None = None,
        replay_access: Access | None = None,
    ) -> None:
        super().__init__()
        # the dialog's defaults; bearer tokens, headers and TLS come from the command line only
        self.replay_request = ReplayRequest(replay_target or DEFAULT_TARGET, access=replay_access)
        self.listing = Listing(self, [Path(p) for p in paths], follow=follow)
        self._notified: set[str] = set()

    # ---- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield FilterBar(id="filter-bar")
        yield NoticeBanner(id="banner")
        yield PairTable(id="pairs")
        yield StatusLine(id="status")
        yield DetailPanel(id="detail")
        yield Footer()

    @property
    def table(self) -> PairTable:
        return self.query_one(PairTable)

    @property
    def panel(self) -> DetailPanel:
        return self.query_one(DetailPanel)

    def on_mount(self) -> None:
        self.table.tail = self.listing.follow
        self.table.focus()
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.listing.load()

    def on_unmount(self) -> None:
        self.listing.close()

    # ---- the listing's host -------------------------------------------------------------------

    def run_in_thread(self, work: Callable[[], None], name: str) -> None:
        self.run_worker(work, name=name, group=name, thread=True)

    def rows_shown(self, rows: Sequence[Row], *, replace: bool) -> None:
        if replace:
            self.table.set_rows(rows)
        else:
            self.table.add_rows(rows)

    def listing_changed(self, *, verdicts: bool = False, problems: bool = False) -> None:
        if problems:
            self._problems()
        if verdicts:
            self.table.refresh()
            self.panel.verdicts_changed()
        self._status()

    def _problems(self) -> None:
        lines = self.listing.problems()
        self.query_one(NoticeBanner).show(lines)
        for line in lines:
            if line not in self._notified:
                self._notified.add(line)
                self.notify(line, title="capture problem", severity="warning", timeout=8)

    def _status(self) -> None:
        listing = self.listing
        flags = []
        if listing.follow:
            if listing.recording_closed:
                flags.append("following: the recording was closed")
            else:
                flags.append(
                    "following" + (" (at the end)" if self.table.tail else ", End to tail")
                )
        if not listing.show_others:
            flags.append("pairs only (u)")
        self.query_one(StatusLine).set(
            shown=len(self.table.rows),
            total=len(listing.index.rows),
            progress=listing.progress,
            flags=flags,
            problems=listing.filter.problems,
            files=", ".join(p.name for p in listing.paths),
        )

    # ---- filtering ----------------------------------------------------------------------------

    @on(FilterBar.Changed)
    def _filter_changed(self, event: FilterBar.Changed) -> None:
        self.apply_filter(event.text)

    @on(FilterBar.Done)
    def _filter_done(self) -> None:
        self.table.focus()

    def apply_filter(self, text: str) -> None:
        self.listing.refilter(parse_filter(text))

    def filter_verdict(self, verdict: str | None) -> None:
        """Replace the filter by one verdict (None: clear it)."""
        self.set_filter("" if verdict is None else f"verdict:{verdict.replace(' ', '-')}")

    def set_filter(self, text: str) -> None:
        self.query_one(FilterBar).set_value(text)

    @on(NeedVerdicts)
    def _need_verdicts(self, event: NeedVerdicts) -> None:
        self.listing.want_verdicts(event.rows)

    # ---- selection ----------------------------------------------------------------------------

    @on(PairTable.Highlighted)
    def _highlighted(self, event: PairTable.Highlighted) -> None:
        row = event.row
        if row is None:
            self.panel.show(None, [])
        else:
            detail = self.listing.sources.detail(row)
            self.panel.show(detail, self.listing.index.interaction(row))
            self.table.refresh()
        self._status()

    @on(PairTable.Opened)
    def _opened(self) -> None:
        self.panel.focus_content()

    @on(DetailPanel.Left)
    def _left(self) -> None:
        self.table.focus()

    @on(JumpTo)
    def _jump(self, event: JumpTo) -> None:
        row = event.row
        if not self.table.move_to(row):
            self.query_one(FilterBar).set_value("", apply=False)
            others = self.listing.show_others or not row.is_pair
            self.listing.refilter(Filter(), others=others, then=partial(self.table.move_to, row))
            self.notify("the filter hid that record: cleared it")
        self.table.focus()

    @on(DiffView.ShowValue)
    def _show_value(self, event: DiffView.ShowValue) -> None:
        v = event.detail.verdict
        self.push_screen(ValueScreen(event.change, bool(v and v.before_known)))

    # ---- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The list's keys only act (and only show in the footer) on the main screen.
        if action == "stop_replay" and not self._replaying():
            return False
        if action == "focus_filter" and isinstance(self.focused, Input):
            return False  # a "/" typed into an input (the filter, a replay target) is text
        return not (action in MAIN_SCREEN_ACTIONS and len(self.screen_stack) > 1)

    def action_focus_filter(self) -> None:
        self.query_one(FilterBar).focus_input()

    def action_changed_only(self) -> None:
        self.panel.open_tab("diff")
        self.panel.toggle_changed_only()

    def action_tab(self, name: str) -> None:
        self.panel.open_tab(name)

    def action_toggle_others(self) -> None:
        others = not self.listing.show_others
        self.listing.refilter(others=others)
        self.notify("all records" if others else "pairs only")

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def _theme_changed(self, _theme: object) -> None:
        self.panel.redraw()
        self.table.refresh()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_playback(self) -> None:
        rows = list(self.table.rows)
        if not rows:
            self.notify("nothing to play: the list is empty", severity="warning")
            return
        self.push_screen(PlaybackScreen(rows, self.table.cursor, self.listing.sources))

    def _selected_pair(self) -> Row | None:
        row = self.table.cursor_row
        if row is None or not row.is_pair:
            self.notify("select a pair first (this row is not a pair)", severity="warning")
            return None
        return row

    def action_export(self) -> None:
        row = self._selected_pair()
        if row is None:
            return
        try:
            body = self.listing.sources.body(row) or {}
            path = export_pair(row.summary, body, Path.cwd())
        except (CaptureError, OSError) as e:
            self.notify(f"cannot export: {e}", severity="error")
            return
        self.notify(f"exported {path}", title="pair exported")

    def action_snippet(self) -> None:
        row = self._selected_pair()
        if row is None:
            return
        sources = self.listing.sources
        try:
            body = sources.body(row) or {}
        except CaptureError as e:
            self.notify(f"cannot read this pair: {e}", severity="error")
            return
        code = pytest_snippet(sources[row.src].path, row.summary, body)
        self.copy_to_clipboard(code)
        self.notify("pytest test copied to the clipboard; w in the dialog saves it")
        self.push_screen(SnippetScreen(code, f"test_pair_{row.summary.get('id')}.py"))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette: Textual's commands, then filters by verdict and the actions."""
        yield from super().get_system_commands(screen)
        for v in VerdictName:
            term = f"verdict:{v.replace(' ', '-')}"
            yield SystemCommand(
                f"Filter by verdict: {v}",
                f"show only pairs judged {v} ({term})",
                partial(self.filter_verdict, v),
            )
        yield SystemCommand(
            "Clear the filter", "show every row", partial(self.filter_verdict, None)
        )
        yield SystemCommand(
            "Open playback", "replay the listed rows in time order (p)", self.action_playback
        )
        yield SystemCommand(
            "Replay against a target…",
            "re-send the open captures to a GWS and compare, pair by pair (r)",
            self.action_replay,
        )
        yield SystemCommand(
            "Filter: replay failures",
            "pairs whose last replay changed user data otherwise (replay:fail)",
            partial(self.set_filter, "replay:fail"),
        )
        yield SystemCommand(
            "Toggle changed-only / all keys",
            "what the Diff tab lists (d)",
            self.action_changed_only,
        )
        yield SystemCommand(
            "Export pair as JSON", "write pair-<id>.json here (e)", self.action_export
        )
        yield SystemCommand(
            "Copy pytest snippet", "a test asserting this pair (c)", self.action_snippet
        )
        yield SystemCommand(
            "Show / hide unsolicited and raw records",
            "rows that are not pairs (u)",
            self.action_toggle_others,
        )
        yield SystemCommand("Toggle dark / light theme", "ctrl+t", self.action_toggle_theme)
        yield SystemCommand("Help: keys and filter syntax", "? or F1", self.action_help)

    # ---- replay against a GWS -----------------------------------------------------------------

    def _replaying(self) -> bool:
        return self.listing.replay is not None and self.listing.replay.running

    def action_replay(self) -> None:
        if self._replaying():
            return self.action_stop_replay()
        listing = self.listing
        files = [(i, s.path) for i, s in enumerate(listing.sources.items) if s.error is None]
        if not files:
            return self.notify("nothing to replay: no capture could be read", severity="warning")
        pairs = None if listing.loading else listing.index.pairs()
        screen = ReplayScreen(self.replay_request, pairs, [p.name for _, p in files])
        # The callback's value (a Worker or None) is not awaitable, so Textual drops it.
        self.push_screen(screen, lambda request: request and self._replay(request, files, pairs))  # type: ignore[arg-type]

    def action_stop_replay(self) -> None:
        run = self.listing.replay
        if run is not None and run.running:
            screen = StopReplayScreen(run.request.target, run.progress(hint=False))
            self.push_screen(screen, self._stop_replay)

    def _stop_replay(self, stop: bool | None) -> None:
        if stop:
            self.workers.cancel_group(self, "replay")

    @work(exclusive=True, group="replay", exit_on_error=False)
    async def _replay(
        self, request: ReplayRequest, files: list[tuple[int, Path]], total: int | None
    ) -> None:
        self.replay_request = request
        listing = self.listing
        if listing.replay is not None:
            listing.replay.clear()
        run = listing.replay = ReplayRun(request, listing.index.rows, total)
        self.table.show_replay = True
        self._replay_shown(final=True)
        try:
            await run.run(files, self._replayed)
            self.notify(run.summary(), title="replay")
        except ReplayFailure as e:
            self.notify(str(e), title="replay failed", severity="error", timeout=10)
        finally:
            self._replay_shown(final=True)
            if isinstance(self.screen, StopReplayScreen):
                self.screen.dismiss(False)

    def _replayed(self, row: Row | None) -> None:
        """One comparison arrived (on the loop, from the replay's progress callback)."""
        self.table.refresh()
        if row is not None and self.panel.detail is not None and self.panel.detail.row is row:
            self.panel.replay_changed()
        self._replay_shown()

    def _replay_shown(self, final: bool = False) -> None:
        """Status line, and a replay: filter (now and then while running, and at the end)."""
        self._status()
        self.listing.replay_changed(final)
        if final:
            self.table.refresh()
            self.panel.replay_changed()
            self.refresh_bindings()  # Escape asks to stop only while a replay runs


def run_tui(
    paths: list[str],
    follow: bool,
    replay_target: str | None = None,
    replay_access: Access | None = None,
) -> int:
    """Run the inspector on captures; a file that cannot be opened is one line on stderr, exit 2."""
    if not paths:
        print("gwsproxy tui: give at least one capture file", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gwsproxy-tui-") as scratch:
        try:
            paths = [_as_capture(p, scratch) for p in paths]
        except GwsProxyError as e:
            print(f"gwsproxy tui: {e}", file=sys.stderr)
            return 2
        for p in paths:
            try:
                source = open_source(p, follow)
            except CaptureError as e:
                print(f"gwsproxy tui: {e}", file=sys.stderr)
                return 2
            Sources([source]).close()
        app = InspectorApp(
            list(paths), follow=follow, replay_target=replay_target, replay_access=replay_access
        )
        app.run()
        return app.return_code or 0


def _as_capture(path: str, scratch: str) -> str:
    """A capture as it is; a HAR or a mitmproxy dump imported first, to `FILE.gwscap` beside it
    (used again while it is newer than FILE) or, where that cannot be written, into `scratch`."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
        if head == MAGIC or not head:  # an empty file may be a capture about to be written
            return path
    except OSError:
        return path  # open_source says why
    beside = path + ".gwscap"
    if os.path.exists(beside) and os.path.getmtime(beside) >= os.path.getmtime(path):
        return beside
    target = beside if os.access(os.path.dirname(os.path.abspath(path)), os.W_OK) else None
    if target is None or os.path.exists(target):
        target = os.path.join(scratch, os.path.basename(path) + ".gwscap")
    from rich.progress import Progress

    from gwsproxy.record.command import import_file

    with Progress(transient=True) as bar:
        task = bar.add_task(f"importing {os.path.basename(path)}", total=None)
        result = import_file(
            path, target, progress=lambda read, size: bar.update(task, completed=read, total=size)
        )
    print(f"{path}: {result.counts['pairs']} pairs, imported into {target}", file=sys.stderr)
    for line in result.told():
        print(line, file=sys.stderr)
    return target
