"""What the pair list holds and the work behind it, without Textual.

Each capture is opened through its index (gwsproxy.capture.index: read from beside it, or
built, with progress, then kept) in a thread, then followed. An index's rows carry their
verdicts and are made only as they are looked at; filters run over its columns. The view is
what the filter and the unsolicited switch let through, worked out at once or, past
SYNC_FILTER_ROWS, in a thread. Rows followed since the index was read need their bodies for a
verdict, so one queue judges those in a thread: the rows on screen first, then those a verdict:
filter waits for, whose matches join the view as they are found. Everything reaches the UI
through a Host (the inspector app), on its thread; `settled` says when nothing is left to do.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gwsproxy.capture.format import CaptureError
from gwsproxy.capture.reader import Follower
from gwsproxy.tui.model import Filter, Index, Indexed, Row, merged
from gwsproxy.tui.pairs import Source, Sources, open_source

if TYPE_CHECKING:
    from gwsproxy.tui.replays import ReplayRun

BATCH_SECONDS = 0.1  # how often building an index says how far it got
POLL_SECONDS = 0.1  # follow mode: how often the captures are polled for new records
SYNC_FILTER_ROWS = 20_000  # up to this many rows a filter is applied at once, beyond in a thread
PROGRESS_SECONDS = 0.1  # a verdict: filter shows its matches this often while judging
REPLAY_REFILTER_SECONDS = 0.5  # a replay: filter follows a running replay this often

_key = attrgetter("key")


class _Closed(Exception):
    """The listing was closed while an index was being built."""


class Host(Protocol):
    """The UI around a listing. Its callbacks are called on the UI thread."""

    def call_from_thread(self, callback: Callable[..., Any], *args: Any) -> Any:
        """From another thread: run callback on the UI thread and wait for it."""
        ...

    def run_in_thread(self, work: Callable[[], None], name: str) -> None:
        """Run work in a thread of its own."""
        ...

    def rows_shown(self, rows: Sequence[Row], *, replace: bool) -> None:
        """The view is now rows (replace), or rows join it in time order."""
        ...

    def listing_changed(self, *, verdicts: bool = False, problems: bool = False) -> None:
        """Counts or progress changed; verdicts: listed rows got theirs; problems: the damage,
        notices or end of a file did."""
        ...


def select(rows: Sequence[Row], flt: Filter, others: bool) -> tuple[list[Row], list[Row]]:
    """The rows flt lets through (only pairs unless others), and the pairs whose verdict it
    still waits for."""
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


def select_all(
    tables: list[Indexed], extra: list[Row], flt: Filter, others: bool
) -> tuple[Sequence[Row], list[Row]]:
    """select() over every row: those of capture indexes through their columns (each table's
    verdicts are known), the others (extra, in time order) one by one."""
    view, pending = select(extra, flt, others)
    return merged([*(t.select(flt, others) for t in tables), view]), pending


class Listing:
    """The rows of one or more captures merged by time, and the view of them the UI shows."""

    def __init__(self, host: Host, paths: list[Path], *, follow: bool) -> None:
        self.host = host
        self.paths = paths
        self.follow = follow
        self.sources = Sources([])
        self.index = Index()
        self.filter = Filter()
        self.show_others = True  # unsolicited, raw and note rows too, not only pairs
        self.replay: ReplayRun | None = None  # the last replay; rows listed later get its results
        self.loading = True  # the first pass over the files is not done
        self.started = 0.0  # when reading began (benchmarks time the index from here)
        self._closed = threading.Event()
        self._load_progress = ""
        self._gen = 0  # bumps on every change of the filter; results for an older one are dropped
        self._late: list[Row] | None = None  # while a filter runs in a thread: rows for the view
        self._then: Callable[[], object] | None = None  # runs once the filtered view is shown
        # To judge: each row with the gen of the filter waiting for it, or None for a row on
        # screen (those go first).
        self._queue: deque[tuple[Row, int | None]] = deque()
        self._judging = False  # a thread is judging the queue
        self._waiting = 0  # pairs in the queue whose verdict the filter waits for
        self._refiltered = 0.0

    @property
    def settled(self) -> bool:
        """Nothing left to do: the first pass over the files done, the view complete for the
        filter, and every pair asked for judged (when following, new records may still come)."""
        return not self.loading and self._late is None and not self._judging

    @property
    def progress(self) -> str:
        """What is under way, for the status line ("" when nothing is)."""
        if self._late is not None:
            filtering = "filtering…"
        elif self._waiting:
            filtering = f"judging {self._waiting:,} pairs for the verdict filter"
        else:
            filtering = ""
        replay = self.replay.progress() if self.replay else ""
        return " · ".join(p for p in (self._load_progress, filtering, replay) if p)

    @property
    def recording_closed(self) -> bool:
        """Every followed file was closed by its recorder (it wrote its end)."""
        followers = [s.follower for s in self.sources.items if s.follower is not None]
        return bool(followers) and all(f.ended for f in followers)

    def problems(self) -> list[str]:
        """What is wrong with the files (damage, a torn tail, notices), one line each."""
        lines: list[str] = []
        for s in self.sources.items:
            for line in s.problems(self.follow):
                lines.append(line if line.startswith(str(s.path)) else f"{s.name}: {line}")
        return lines

    def close(self) -> None:
        self._closed.set()
        self.sources.close()

    # ---- reading and following ----------------------------------------------------------------

    def load(self) -> None:
        """Open the files (one that cannot be opened is a problem) and read them in a thread."""
        items: list[Source] = []
        for p in self.paths:
            try:
                items.append(open_source(p, self.follow))
            except CaptureError as e:
                items.append(Source(p, None, error=str(e)))
        self.sources = Sources(items)
        self.host.listing_changed(problems=True)
        self.started = time.perf_counter()
        self.host.run_in_thread(self._read, "load")

    def _post(self, callback: Callable[..., object], *args: Any) -> None:
        """From a thread: run callback on the UI thread (nothing once closed)."""
        if not self._closed.is_set():
            self.host.call_from_thread(callback, *args)

    def _read(self) -> None:
        for src, source in enumerate(self.sources.items):
            if source.reader is None:
                continue
            try:
                indexed = self._indexed(src, source)
            except (CaptureError, OSError) as e:
                source.error = f"{source.name}: {e}"
                indexed = None
            if self._closed.is_set():
                return
            if indexed is not None:
                self._post(self._table_added)
            # Rows live as long as the app: keep the collector from rescanning them.
            gc.freeze()
            source.loaded = True
            self._post(partial(self.host.listing_changed, problems=True))
        self._post(self._loaded)
        if self.follow:
            self._follow()

    def _indexed(self, src: int, source: Source) -> Indexed | None:
        """Open (build or extend) the capture's index, and the rows of its table."""
        from gwsproxy.record.indexing import open_index

        assert source.reader is not None
        n = len(self.sources)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if self._closed.is_set():
                raise _Closed
            now = time.monotonic()
            if now - last[0] > BATCH_SECONDS:
                last[0] = now
                share = (src + done / max(total, 1)) / n
                self._post(self._progress_only, f"indexing {share:.0%}")

        paused = gc.isenabled()
        gc.disable()  # rows and summaries hold no cycles; the collector only slows this down
        try:
            index = open_index(source.reader, progress)
            table = index.table
            if table.num_rows:
                last = table.num_rows - 1
                source.last_offset = table["offset"][last].as_py()
                source.covered = source.last_offset + table["size"][last].as_py()
            return self.index.add_table(src, table, source)
        except _Closed:
            return None
        finally:
            if paused:
                gc.enable()

    def _table_added(self) -> None:
        """A file's index is read: its rows join the view (made as they are shown)."""
        self._load_progress = ""
        self.refilter()

    def _progress_only(self, progress: str) -> None:
        self._load_progress = progress
        self.host.listing_changed()

    def _follow(self) -> None:
        for source in self.sources.items:
            if source.follower is None and source.error is None:
                try:
                    source.follower = Follower(source.path)
                except CaptureError as e:
                    source.error = str(e)
                    continue
                if source.reader is not None and source.covered:
                    # On from where the index ends, not from the start of the file again.
                    source.follower.resume(source.reader.scan_state(), source.covered)
        self._post(partial(self.host.listing_changed, problems=True))
        known = {id(s): (0, 0, False) for s in self.sources.items}
        while not self._closed.is_set():
            for src, source in enumerate(self.sources.items):
                f = source.follower
                if f is None:
                    continue
                try:
                    entries = f.poll()
                except (CaptureError, OSError) as e:
                    source.error, source.follower = f"{source.name}: {e}", None
                    self._post(partial(self.host.listing_changed, problems=True))
                    continue
                fresh = [e for e in entries if e.offset > source.last_offset]
                if fresh:
                    source.last_offset = fresh[-1].offset
                    rows = self.index.make_rows(src, fresh)
                    if rows:
                        self._post(self._add, rows, "")
                seen = (len(f.damage), len(f.notices), f.ended)
                if seen != known[id(source)]:
                    known[id(source)] = seen
                    self._post(partial(self.host.listing_changed, problems=True))
            self._closed.wait(POLL_SECONDS)

    def _add(self, rows: list[Row], progress: str) -> None:
        """New rows: into the index, and into the view when the filter lets them through."""
        self._load_progress = progress
        if rows:
            self.index.add(rows)
            if self.replay is not None:
                self.replay.attach(rows)
            shown, pending = select(rows, self.filter, self.show_others)
            self._show_more(shown)
            self._judge(pending, self._gen)
        self.host.listing_changed()

    def _loaded(self) -> None:
        self.loading = False
        self._load_progress = ""
        self.host.listing_changed()

    # ---- the view -----------------------------------------------------------------------------

    def refilter(
        self,
        flt: Filter | None = None,
        *,
        others: bool | None = None,
        then: Callable[[], object] | None = None,
    ) -> None:
        """Show what the filter (flt, else the current one) and others let through; `then` runs
        once the new view is shown."""
        if flt is not None:
            self.filter = flt
        if others is not None:
            self.show_others = others
        self._gen += 1
        self._waiting = 0
        self._then = then
        index = self.index
        tables = list(index.tables.values())
        extra = list(index.extra)
        if len(index.rows) <= SYNC_FILTER_ROWS:
            self._late = None
            self._filtered(*select_all(tables, extra, self.filter, self.show_others), self._gen)
        else:
            self._late = []
            self.host.listing_changed()
            work = partial(self._filter, tables, extra, self.filter, self.show_others, self._gen)
            self.host.run_in_thread(work, "filter")

    def _filter(
        self, tables: list[Indexed], extra: list[Row], flt: Filter, others: bool, gen: int
    ) -> None:
        self._post(self._filtered, *select_all(tables, extra, flt, others), gen)

    def _filtered(self, view: Sequence[Row], pending: list[Row], gen: int) -> None:
        if gen != self._gen:
            return
        late, self._late = self._late or [], None
        if late:
            view = sorted([*view, *late], key=_key)
        self.host.rows_shown(view, replace=True)
        then, self._then = self._then, None
        if then is not None:
            then()
        self._judge(pending, gen)
        self.host.listing_changed()

    def _show_more(self, rows: list[Row]) -> None:
        if self._late is not None:
            self._late.extend(rows)
        elif rows:
            self.host.rows_shown(rows, replace=False)

    def replay_changed(self, final: bool) -> None:
        """Replay results came in: a replay: filter follows them now and then, and at the end."""
        due = time.monotonic() - self._refiltered > REPLAY_REFILTER_SECONDS
        if self.filter.needs_replay and (final or due):
            self._refiltered = time.monotonic()
            self.refilter()

    # ---- verdicts -----------------------------------------------------------------------------

    def want_verdicts(self, rows: list[Row]) -> None:
        """Rows on screen whose verdict needs their body: judged before anything else."""
        self._judge(rows, None)

    def _judge(self, rows: list[Row], gen: int | None) -> None:
        if gen is None:
            self._queue.extendleft([(r, None) for r in reversed(rows)])
        else:
            self._queue.extend([(r, gen) for r in rows])
            self._waiting += len(rows)
        self._wake()

    def _wake(self) -> None:
        if self._queue and not self._judging:
            self._judging = True
            self.host.run_in_thread(self._judge_queued, "judge")

    def _judge_queued(self) -> None:
        """In a thread: judge the queue. Rows on screen are repainted as soon as they are judged;
        a filter's matches are sent now and then, with how many pairs were judged for it."""
        queue = self._queue
        found: list[Row] = []
        gen, done, screen = self._gen, 0, False
        sent = time.monotonic()
        while not self._closed.is_set():
            try:
                row, wanted = queue.popleft()
            except IndexError:
                break
            if wanted is not None:
                if wanted != self._gen:
                    continue  # for a filter since replaced
                if wanted != gen:  # the first for a new filter: the rest was for the old one
                    found, gen, done = [], wanted, 0
            self.sources.judge(row)
            if wanted is None:
                screen = True
            else:
                done += 1
                if self.filter.matches(row):
                    found.append(row)
            if queue and (
                (screen and queue[0][1] is not None) or time.monotonic() - sent > PROGRESS_SECONDS
            ):
                self._post(self._judged, found, gen, done, screen, False)
                found, done, screen, sent = [], 0, False, time.monotonic()
        self._post(self._judged, found, gen, done, screen, True)

    def _judged(self, found: list[Row], gen: int, done: int, screen: bool, last: bool) -> None:
        if gen == self._gen:
            self._waiting -= done
            self._show_more(found)
        if last:
            self._judging = False
            self._wake()  # for what was queued after the thread found the queue empty
        self.host.listing_changed(verdicts=screen)
