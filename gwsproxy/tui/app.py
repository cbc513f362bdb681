"""`gwsproxy tui`: the capture inspector. Lists pairs of one or more captures merged by time,
shows the selected one in tabs, filters, follows a growing capture, plays it back, exports it,
replays it against a GWS (r) and shows which pairs still pass.

Large captures: the index grows in a worker and rows show as soon as the first ones are read;
verdicts need bodies and are computed only for rows on screen (or for a verdict: filter).
"""

from __future__ import annotations

import gc
import sys
import time
from collections import deque
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.worker import get_current_worker

from gwsproxy.capture.format import CaptureError
from gwsproxy.capture.reader import Follower
from gwsproxy.tui.commands import InspectorCommands
from gwsproxy.tui.help_screen import HelpScreen
from gwsproxy.tui.messages import JumpTo, NeedVerdicts
from gwsproxy.tui.model import Filter, Index, Row, parse_filter, position
from gwsproxy.tui.pairs import Source, Sources, open_source
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

FIRST_BATCH = 200  # rows shown before the rest of the index is read
MAX_BATCH = 20_000
BATCH_SECONDS = 0.1  # a batch is also sent when this much time passed since the last one
POLL_SECONDS = 0.1  # follow mode: how often the capture is polled for new records
SYNC_FILTER_ROWS = 20_000  # up to this many rows a filter is applied at once, beyond in a worker
PROGRESS_SECONDS = 0.1  # a verdict: filter shows its matches this often while judging


MAIN_SCREEN_ACTIONS = frozenset(
    {"focus_filter", "changed_only", "playback", "export", "snippet", "toggle_others", "tab"}
    | {"replay", "stop_replay"}
)


class InspectorApp(App[int]):
    CSS_PATH = "gwsproxy.tcss"
    TITLE = "gwsproxy inspector"
    COMMANDS = App.COMMANDS | {InspectorCommands}
    BINDINGS = [
        Binding("slash", "focus_filter", "Filter"),
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
        self, paths: list[str | Path], *, follow: bool = False, replay_target: str | None = None
    ) -> None:
        super().__init__()
        self.replay_request = ReplayRequest(replay_target or DEFAULT_TARGET)  # dialog defaults
        self.replay: ReplayRun | None = None  # the last replay run (its results are on the rows)
        self._refiltered = 0.0
        self.paths = [Path(p) for p in paths]
        self.follow = follow
        self.index = Index()
        self.sources = Sources([])
        self.filter: Filter = Filter()
        self.show_others = True
        self.loading = True
        self._gen = 0  # bumps on every filter change; stale worker results are dropped
        self._late: list[Row] | None = None  # rows that arrived while a filter ran in a worker
        self._judge_queue: deque[Row] = deque()
        self._judging = False
        self._filter_queue: deque[Row] = deque()
        self._filter_judging = False
        self._notified: set[str] = set()
        self._jump_pending: Row | None = None
        self.load_started = 0.0
        self._load_progress = ""
        self._filter_progress = ""

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
        items: list[Source] = []
        for p in self.paths:
            try:
                items.append(open_source(p, self.follow))
            except CaptureError as e:
                items.append(Source(p, None, error=str(e)))
        self.sources = Sources(items)
        self.table.tail = self.follow
        self.table.focus()
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self._status()
        self._problems()
        self.load_started = time.perf_counter()  # benchmarks time the index from here
        self.load()

    def on_unmount(self) -> None:
        self.sources.close()

    # ---- loading and following ----------------------------------------------------------------

    @work(thread=True, exclusive=True, group="load")
    def load(self) -> None:
        worker = get_current_worker()
        for src, source in enumerate(self.sources.items):
            if source.reader is None:
                continue
            size = max(1, source.reader.path.stat().st_size)
            batch: list = []
            want = FIRST_BATCH
            sent = time.monotonic()
            for entry in source.reader.iter_entries():
                if worker.is_cancelled:
                    return
                batch.append(entry)
                if len(batch) >= want or time.monotonic() - sent > BATCH_SECONDS:
                    self._send(src, batch, entry.offset / size)
                    batch, sent = [], time.monotonic()
                    want = min(want * 4, MAX_BATCH)
            self._send(src, batch, 1.0)
            source.loaded = True
            self.call_from_thread(self._problems)
        self.call_from_thread(self._loaded)
        if self.follow:
            self._follow(worker)

    def _send(self, src: int, entries: list, progress: float) -> None:
        if entries:
            self.sources[src].last_offset = entries[-1].offset
        rows = self.index.make_rows(src, entries)
        if len(self.sources) > 1:
            progress = (src + progress) / len(self.sources)
        self.call_from_thread(self._add, rows, f"loading {progress:.0%}")
        # Summaries live as long as the app: keep the collector from rescanning them on every
        # pass, which otherwise makes indexing a large capture several times slower.
        gc.freeze()

    def _follow(self, worker) -> None:
        for source in self.sources.items:
            if source.follower is None and source.error is None:
                try:
                    source.follower = Follower(source.path)
                except CaptureError as e:
                    source.error = str(e)
        self.call_from_thread(self._problems)
        known = {id(s): (0, 0, False) for s in self.sources.items}
        while not worker.is_cancelled:
            for src, source in enumerate(self.sources.items):
                f = source.follower
                if f is None:
                    continue
                try:
                    entries = f.poll()
                except (CaptureError, OSError) as e:
                    source.error, source.follower = f"{source.name}: {e}", None
                    self.call_from_thread(self._problems)
                    continue
                fresh = [e for e in entries if e.offset > source.last_offset]
                if fresh:
                    source.last_offset = fresh[-1].offset
                    rows = self.index.make_rows(src, fresh)
                    if rows:
                        self.call_from_thread(self._add, rows, "")
                seen = (len(f.damage), len(f.notices), f.ended)
                if seen != known[id(source)]:
                    known[id(source)] = seen
                    self.call_from_thread(self._problems)
                    self.call_from_thread(self._status)
            time.sleep(POLL_SECONDS)

    def _add(self, rows: list[Row], progress: str) -> None:
        self._load_progress = progress
        if rows:
            self.index.add(rows)
            if self.replay is not None:
                self.replay.attach(rows)
            shown: list[Row] = []
            pending: list[Row] = []
            for r in rows:
                if not self._listed(r):
                    continue
                hit = self.filter.matches(r)
                if hit:
                    shown.append(r)
                elif hit is None:
                    pending.append(r)
            if self._late is not None:
                self._late.extend(shown)
            elif shown:
                self.table.add_rows(shown)
            if pending:
                self._judge_for_filter(pending)
        self._status()

    def _loaded(self) -> None:
        self.loading = False
        self._load_progress = ""
        self._status()

    def _problems(self) -> None:
        lines: list[str] = []
        for s in self.sources.items:
            for line in s.problems(self.follow):
                lines.append(f"{s.name}: {line}" if not line.startswith(str(s.path)) else line)
        self.query_one(NoticeBanner).show(lines)
        for line in lines:
            if line not in self._notified:
                self._notified.add(line)
                self.notify(line, title="capture problem", severity="warning", timeout=8)

    def _status(self) -> None:
        flags = []
        if self.follow:
            followers = [s.follower for s in self.sources.items if s.follower is not None]
            if followers and all(f.ended for f in followers):
                flags.append("following: the recording was closed")
            else:
                flags.append(
                    "following" + (" (at the end)" if self.table.tail else ", End to tail")
                )
        if not self.show_others:
            flags.append("pairs only (u)")
        replay = self.replay.progress() if self.replay else ""
        progress = (self._load_progress, self._filter_progress, replay)
        self.query_one(StatusLine).set(
            shown=len(self.table.rows),
            total=len(self.index.rows),
            progress=" · ".join(p for p in progress if p),
            flags=flags,
            problems=self.filter.problems,
            files=", ".join(p.name for p in self.paths),
        )

    # ---- filtering ----------------------------------------------------------------------------

    def _listed(self, row: Row) -> bool:
        return self.show_others or row.is_pair

    @on(FilterBar.Changed)
    def _filter_changed(self, event: FilterBar.Changed) -> None:
        self.apply_filter(event.text)

    @on(FilterBar.Done)
    def _filter_done(self) -> None:
        self.table.focus()

    def apply_filter(self, text: str) -> None:
        self.filter = parse_filter(text)
        self._refilter()

    def _refilter(self) -> None:
        self._gen += 1
        self._filter_queue.clear()
        self._filter_progress = ""
        rows = self.index.rows
        if len(rows) <= SYNC_FILTER_ROWS:
            view, pending = self._select(rows, self.filter, self.show_others)
            self._late = None
            self.table.set_rows(view)
            if pending:
                self._judge_for_filter(pending)
            self._status()
        else:
            self._late = []
            self._filter_progress = "filtering…"
            self._status()
            self._filter_worker(list(rows), self.filter, self.show_others, self._gen)

    @staticmethod
    def _select(rows: list[Row], flt: Filter, others: bool) -> tuple[list[Row], list[Row]]:
        if flt.empty:
            return (list(rows) if others else [r for r in rows if r.is_pair]), []
        view: list[Row] = []
        pending: list[Row] = []
        for r in rows:
            if not others and not r.is_pair:
                continue
            hit = flt.matches(r)
            if hit:
                view.append(r)
            elif hit is None:
                pending.append(r)
        return view, pending

    @work(thread=True, exclusive=True, group="filter")
    def _filter_worker(self, rows: list[Row], flt: Filter, others: bool, gen: int) -> None:
        view, pending = self._select(rows, flt, others)
        self.call_from_thread(self._filtered, view, pending, gen)

    def _filtered(self, view: list[Row], pending: list[Row], gen: int) -> None:
        if gen != self._gen:
            return
        late, self._late = self._late or [], None
        if late:
            view = sorted(view + late, key=lambda r: r.key)
        self.table.set_rows(view)
        self._filter_progress = ""
        if self._jump_pending is not None:
            self.table.move_to(self._jump_pending)
            self._jump_pending = None
        if pending:
            self._judge_for_filter(pending)
        self._status()

    def _judge_for_filter(self, rows: list[Row]) -> None:
        self._filter_queue.extend(rows)
        if not self._filter_judging:
            self._filter_judging = True
            self._filter_judge_worker()

    @work(thread=True, group="filter-judge")
    def _filter_judge_worker(self) -> None:
        """Judge the pairs a verdict: filter needs, sending matches as they are found."""
        queue = self._filter_queue
        found: list[Row] = []
        gen = self._gen
        sent = time.monotonic()
        while True:
            try:
                row = queue.popleft()
            except IndexError:
                break
            if gen != self._gen:  # the filter changed: what was found is for the old one
                found, gen = [], self._gen
            self.sources.judge(row)
            if self.filter.matches(row):
                found.append(row)
            if time.monotonic() - sent > PROGRESS_SECONDS:
                self.call_from_thread(self._filter_found, found, gen, len(queue))
                found, sent = [], time.monotonic()
        self.call_from_thread(self._filter_found, found, gen, 0, True)

    def _filter_found(self, rows: list[Row], gen: int, left: int, last: bool = False) -> None:
        if last:
            self._filter_judging = False
        if gen == self._gen:
            rows = [r for r in rows if self._listed(r)]
            if self._late is not None:
                self._late.extend(rows)
            elif rows:
                self.table.add_rows(rows)
            self._filter_progress = f"judging {left:,} pairs for the verdict filter" if left else ""
        if last and self._filter_queue:
            self._judge_for_filter([])
        self._status()

    def filter_verdict(self, verdict: str | None) -> None:
        """Replace the filter by one verdict (None: clear it)."""
        self.set_filter("" if verdict is None else f"verdict:{verdict.replace(' ', '-')}")

    def set_filter(self, text: str) -> None:
        self.query_one(FilterBar).set_value(text)

    # ---- verdicts of the rows on screen -------------------------------------------------------

    @on(NeedVerdicts)
    def _need_verdicts(self, event: NeedVerdicts) -> None:
        self._judge_queue.extend(event.rows)
        if not self._judging:
            self._judging = True
            self._judge_worker()

    @work(thread=True, group="judge")
    def _judge_worker(self) -> None:
        queue = self._judge_queue
        while queue:
            try:
                row = queue.popleft()
            except IndexError:
                break
            self.sources.judge(row)
        self.call_from_thread(self._judged)

    def _judged(self) -> None:
        self._judging = False
        self.table.refresh()
        self.panel.verdicts_changed()
        if self._judge_queue:
            self._judging = True
            self._judge_worker()

    # ---- selection ----------------------------------------------------------------------------

    @on(PairTable.Highlighted)
    def _highlighted(self, event: PairTable.Highlighted) -> None:
        row = event.row
        if row is None:
            self.panel.show(None, [])
        else:
            detail = self.sources.detail(row)
            self.panel.show(detail, self.index.interaction(row))
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
        if not self.table.move_to(event.row):
            self.query_one(FilterBar).set_value("", apply=False)
            self.filter = parse_filter("")
            if not self._listed(event.row):
                self.show_others = True
            self._jump_pending = event.row
            self._refilter()
            if self._late is None:  # filtered at once
                self.table.move_to(event.row)
                self._jump_pending = None
            self.notify("the filter hid that record: cleared it")
        self.table.focus()

    @on(DiffView.ShowValue)
    def _show_value(self, event: DiffView.ShowValue) -> None:
        v = event.detail.verdict
        self.push_screen(ValueScreen(event.change, bool(v and v.before_known)))

    # ---- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The list's keys only act (and only show in the footer) on the main screen.
        if action == "stop_replay" and not (self.replay and self.replay.running):
            return False
        return not (action in MAIN_SCREEN_ACTIONS and len(self.screen_stack) > 1)

    def action_focus_filter(self) -> None:
        self.query_one(FilterBar).focus_input()

    def action_changed_only(self) -> None:
        self.panel.open_tab("diff")
        self.panel.toggle_changed_only()

    def action_tab(self, name: str) -> None:
        self.panel.open_tab(name)

    def action_toggle_others(self) -> None:
        self.show_others = not self.show_others
        self._refilter()
        self.notify("all records" if self.show_others else "pairs only")

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
        self.push_screen(PlaybackScreen(rows, self.table.cursor, self.sources))

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
            body = self.sources.body(row) or {}
            path = export_pair(row.summary, body, Path.cwd())
        except (CaptureError, OSError) as e:
            self.notify(f"cannot export: {e}", severity="error")
            return
        self.notify(f"exported {path}", title="pair exported")

    def action_snippet(self) -> None:
        row = self._selected_pair()
        if row is None:
            return
        try:
            body = self.sources.body(row) or {}
        except CaptureError as e:
            self.notify(f"cannot read this pair: {e}", severity="error")
            return
        code = pytest_snippet(self.sources[row.src].path, row.summary, body)
        self.copy_to_clipboard(code)
        self.notify("pytest test copied to the clipboard; w in the dialog saves it")
        self.push_screen(SnippetScreen(code, f"test_pair_{row.summary.get('id')}.py"))

    # ---- replay against a GWS -----------------------------------------------------------------

    def action_replay(self) -> None:
        if self.replay is not None and self.replay.running:
            return self.action_stop_replay()
        files = [(i, s.path) for i, s in enumerate(self.sources.items) if s.error is None]
        if not files:
            return self.notify("nothing to replay: no capture could be read", severity="warning")
        pairs = None if self.loading else sum(r.is_pair for r in self.index.rows)
        screen = ReplayScreen(self.replay_request, pairs, [p.name for _, p in files])
        # The callback's value (a Worker or None) is not awaitable, so Textual drops it.
        self.push_screen(screen, lambda request: request and self._replay(request, files, pairs))  # type: ignore[arg-type]

    def action_stop_replay(self) -> None:
        if self.replay is not None and self.replay.running:
            screen = StopReplayScreen(self.replay.request.target, self.replay.progress(hint=False))
            self.push_screen(screen, self._stop_replay)

    def _stop_replay(self, stop: bool | None) -> None:
        if stop:
            self.workers.cancel_group(self, "replay")

    @work(exclusive=True, group="replay", exit_on_error=False)
    async def _replay(
        self, request: ReplayRequest, files: list[tuple[int, Path]], total: int | None
    ) -> None:
        self.replay_request = request
        if self.replay is not None:
            self.replay.clear()
        run = self.replay = ReplayRun(request, self.index.rows, total)
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
        if self.filter.needs_replay and (final or time.monotonic() - self._refiltered > 0.5):
            self._refiltered = time.monotonic()
            self._refilter()
        if final:
            self.table.refresh()
            self.panel.replay_changed()
            self.refresh_bindings()  # Escape asks to stop only while a replay runs

    # ---- tests and benchmarks -----------------------------------------------------------------

    def row_of(self, pair_id: int, src: int = 0) -> Row | None:
        for r in self.index.rows:
            if r.src == src and r.is_pair and r.summary.get("id") == pair_id:
                return r
        return None

    def select_row(self, row: Row) -> bool:
        ok = self.table.move_to(row)
        return ok and position(self.table.rows, row) is not None


def run_tui(paths: list[str], follow: bool, replay_target: str | None = None) -> int:
    """Run the inspector on captures; a file that cannot be opened is one line on stderr, exit 2."""
    if not paths:
        print("gwsproxy tui: give at least one capture file", file=sys.stderr)
        return 2
    for p in paths:
        try:
            source = open_source(p, follow)
        except CaptureError as e:
            print(f"gwsproxy tui: {e}", file=sys.stderr)
            return 2
        Sources([source]).close()
    app = InspectorApp(list(paths), follow=follow, replay_target=replay_target)
    app.run()
    return app.return_code or 0
