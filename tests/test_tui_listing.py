"""The inspector's listing without Textual: reading, filtering and judging behind the pair list.

A small host stands in for the app: the listing's threads hand it callbacks, which run in the
test's thread when it pumps them (as Textual's call_from_thread runs them on the app's loop).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwsproxy.capture.format import Kind
from gwsproxy.capture.index import sidecar
from gwsproxy.capture.writer import CaptureWriter
from gwsproxy.record import indexing as indexing_module
from gwsproxy.report import export_pairs
from gwsproxy.testing.synthetic import write_capture
from gwsproxy.tui import listing as listing_module
from gwsproxy.tui.listing import Listing
from gwsproxy.tui.model import Merged, Row, insert_sorted, merged, parse_filter
from gwsproxy.verdict import judge


class Host:
    """The UI side of a listing: its view, and the callbacks its threads wait on."""

    def __init__(self) -> None:
        self.view: list[Row] = []
        self.calls: queue.Queue[tuple[Callable[[], object], threading.Event]] = queue.Queue()
        self.held: list[Callable[[], None]] | None = None  # a list: threads wait to be started

    def call_from_thread(self, callback: Callable[..., Any], *args: Any) -> None:
        done = threading.Event()
        self.calls.put((partial(callback, *args), done))
        done.wait()

    def run_in_thread(self, work: Callable[[], None], name: str) -> None:
        if self.held is not None:
            self.held.append(work)
        else:
            threading.Thread(target=work, name=name, daemon=True).start()

    def rows_shown(self, rows: list[Row], *, replace: bool) -> None:
        self.view = list(rows) if replace else sorted([*self.view, *rows], key=lambda r: r.key)

    def listing_changed(self, *, verdicts: bool = False, problems: bool = False) -> None:
        pass

    def pump(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        """Run the callbacks the threads send until condition holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            try:
                call, done = self.calls.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"condition not met within {timeout} s") from None
            call()
            done.set()


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("listing") / "synthetic.gwscap"
    write_capture(path, 300, seed=5)
    return path


def coerced_ids(path: Path) -> list[int]:
    """Ids of the coerced pairs, judged through the export API."""
    ids = []
    for p in export_pairs(str(path)):
        v = judge(p["status"], p["operation"], p["media"], p["requested"], p["before"], p["after"])
        if v.name == "coerced":
            ids.append(p["id"])
    return sorted(ids)


def loaded(host: Host, path: Path) -> Listing:
    listing = Listing(host, [path], follow=False)
    listing.load()
    host.pump(lambda: listing.settled)
    return listing


def counting_judge(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls of verdict.judge made through record.indexing (index building, details)."""
    calls: list[int] = []

    def counted(*args: Any) -> Any:
        calls.append(1)
        return judge(*args)

    monkeypatch.setattr(indexing_module, "judge", counted)
    return calls


@pytest.mark.parametrize("sync_rows", [20_000, 10], ids=["at-once", "in-a-thread"])
def test_a_verdict_filter_lists_its_pairs_from_the_index_without_judging(
    capture: Path, sync_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing_module, "SYNC_FILTER_ROWS", sync_rows)
    host = Host()
    listing = loaded(host, capture)
    calls = counting_judge(monkeypatch)
    try:
        assert host.view == listing.index.rows and not listing.progress
        listing.refilter(parse_filter("verdict:coerced"))
        host.pump(lambda: listing.settled)
        assert calls == []  # the verdicts were judged once, when the index was built
        assert sorted(r.summary["id"] for r in host.view) == coerced_ids(capture)
        assert {r.verdict for r in host.view} == {"coerced"}
        assert not listing.progress

        seen: list[int] = []
        listing.refilter(parse_filter("-kind:pair"), then=lambda: seen.append(len(host.view)))
        host.pump(lambda: listing.settled)
        assert host.view and all(r.kind != Kind.PAIR for r in host.view)
        assert seen == [len(host.view)]  # `then` ran once, with the new view in place
    finally:
        listing.close()


def test_with_its_index_a_capture_opens_without_judging_and_lists_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.gwscap"
    write_capture(path, 200, seed=9)
    listings = []
    for has_index in (False, True):
        assert sidecar(path).exists() == has_index
        calls = counting_judge(monkeypatch)
        host = Host()
        listing = loaded(host, path)
        try:
            assert bool(calls) != has_index  # judged when the index is built, only then
            views = []
            for text in ("", "verdict:coerced", "key:Priority", "chat", "-media:voice op:Upd*"):
                listing.refilter(parse_filter(text))
                host.pump(lambda listing=listing: listing.settled)
                views.append([(r.offset, r.verdict, r.delta) for r in host.view])
            listings.append(views)
        finally:
            listing.close()
    assert listings[0] == listings[1]
    assert all(listings[0][1:])  # every filter found something


def test_a_filter_on_the_index_agrees_with_the_filter_on_summaries(capture: Path) -> None:
    host = Host()
    listing = loaded(host, capture)
    try:
        rows = listing.index.rows
        for text in (
            "chat",
            "PRIORITY",
            "key:Prio*",
            "key:priority",
            "-key:Priority",
            "op:Delete",
            "op:upd*data",
            "media:sms",
            "status:timeout",
            "kind:unsol",
            "kind:raw",
            "verdict:not-applied",
            "-verdict:applied agent:agent",
            "interaction:CH*",
            "ref:12",
            "note",
            "502",
        ):
            flt = parse_filter(text)
            listing.refilter(flt)
            host.pump(lambda: listing.settled)
            expected = [r for r in rows if flt.matches(r)]  # reads every summary
            assert host.view == expected, text
        for row in rows[::37]:
            iid = row.summary.get("interaction_id")
            alike = [r for r in rows if r.summary.get("interaction_id") == iid] if iid else [row]
            assert listing.index.interaction(row) == alike
    finally:
        listing.close()


def test_followed_rows_are_judged_on_screen_first_then_for_the_filter(tmp_path: Path) -> None:
    path = tmp_path / "live.gwscap"
    traffic = write_capture(path, 30, seed=3, close=False)
    host = Host()
    listing = Listing(host, [path], follow=True)
    listing.load()
    host.pump(lambda: not listing.loading)
    try:
        with CaptureWriter(path, {"upstream": "http://gws.test"}, append=True) as writer:
            for kind, summary, body in traffic.records(60):
                writer.write(kind, summary, body)
        host.pump(lambda: any(not r.from_index and r.is_pair for r in listing.index.rows))
        host.pump(lambda: len(listing.index.extra) > 60 and listing.settled)
        judged: list[Row] = []
        judge_row = listing.sources.judge

        def judge_and_note(row: Row) -> None:
            judged.append(row)
            judge_row(row)

        listing.sources.judge = judge_and_note  # type: ignore[method-assign]
        host.held = []  # the judging thread waits until both asks are queued
        listing.refilter(parse_filter("verdict:applied"))
        unjudged = [r for r in listing.index.rows if not r.judged]
        assert unjudged and all(not r.from_index for r in unjudged)
        on_screen = unjudged[-5:]
        listing.want_verdicts(on_screen)
        assert listing.progress == f"judging {len(unjudged):,} pairs for the verdict filter"
        (work,) = host.held
        host.held = None
        threading.Thread(target=work, daemon=True).start()
        host.pump(lambda: listing.settled)
        assert judged[:5] == on_screen
        assert all(r.judged for r in listing.index.rows)
        assert host.view and {r.verdict for r in host.view} == {"applied"}
        assert any(not r.from_index for r in host.view)
        assert not listing.progress
    finally:
        listing.close()


def test_the_listing_says_how_far_building_the_index_got(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gwsproxy.capture import index as index_module

    path = tmp_path / "c.gwscap"
    write_capture(path, 300, seed=12)
    monkeypatch.setattr(index_module, "BATCH", 50)
    monkeypatch.setattr(listing_module, "BATCH_SECONDS", 0.0)
    said: list[str] = []

    class Watching(Host):
        def listing_changed(self, *, verdicts: bool = False, problems: bool = False) -> None:
            said.append(listing.progress)

    host = Watching()
    listing = Listing(host, [path], follow=False)
    listing.load()
    host.pump(lambda: listing.settled)
    listing.close()
    building = [p for p in said if p.startswith("indexing")]
    assert len(set(building)) > 1  # it moved on as the capture was read
    assert not listing.progress


@settings(max_examples=200)
@given(
    base=st.lists(st.integers(0, 30), max_size=30),
    added=st.lists(st.integers(-2, 32), max_size=30),
)
def test_rows_inserted_among_a_lazy_view_land_where_a_list_puts_them(
    base: list[int], added: list[int]
) -> None:
    def row(t: int, offset: int) -> Row:
        return Row(0, offset, int(Kind.PAIR), {}, float(t))

    rows = [row(t, i) for i, t in enumerate(sorted(base))]
    as_list = list(rows)
    view = Merged(tuple(rows))  # a sequence that is not a list, as an index's rows are
    for i, t in enumerate(added):
        r = row(t, 1000 + i)
        assert insert_sorted(view, r) == insert_sorted(as_list, r)
    assert len(view) == len(as_list) and list(view) == as_list
    assert [view[i] for i in range(-len(view), 0)] == as_list
    assert view[1:-1] == as_list[1:-1]


def test_following_an_indexed_capture_keeps_its_rows_lazy(tmp_path: Path) -> None:
    """Rows that arrive are placed among the index's rows without making the others (a
    capture of a million pairs would otherwise make a million rows at the first new record)."""

    class Screen(Host):
        """Keeps the view as the listing gives it, as the pair table does."""

        def rows_shown(self, rows: Any, *, replace: bool) -> None:
            self.view = rows if replace else merged([self.view, rows])

    path = tmp_path / "live.gwscap"
    traffic = write_capture(path, 300, seed=7, close=False)
    host = Screen()
    listing = Listing(host, [path], follow=True)
    listing.load()
    host.pump(lambda: listing.settled)
    try:
        (indexed,) = listing.index.tables.values()
        assert sum(r is not None for r in indexed.rows_at) < 10  # none but those looked at
        with CaptureWriter(path, {"upstream": "http://gws.test"}, append=True) as writer:
            for kind, summary, body in traffic.records(20):
                writer.write(kind, summary, body)
        host.pump(lambda: len(listing.index.extra) > 20 and listing.settled)
        rows = listing.index.rows
        assert isinstance(rows, Merged)
        made = sum(r is not None for r in indexed.rows_at)
        assert made < len(indexed.rows_at) // 2, made
        listing.refilter(parse_filter(""))
        host.pump(lambda: listing.settled)
        # Where each row is, as a listing of the whole file read afresh has it.
        again = loaded(Host(), path)
        try:
            assert [r.key for r in rows] == [r.key for r in again.index.rows]
            assert [r.key for r in host.view] == [r.key for r in again.index.rows]
        finally:
            again.close()
    finally:
        listing.close()
