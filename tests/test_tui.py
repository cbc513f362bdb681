"""The capture inspector driven through Textual's Pilot: what a user sees and can do.

Captures are written by the real Correlator and record schema (gwsproxy.testing.synthetic).
Set GWSPROXY_SCREENSHOTS=1 to refresh docs/screenshots/main.svg and diff.svg.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from gwsproxy.capture.format import Kind
from gwsproxy.capture.index import sidecar
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.capture.writer import CaptureWriter
from gwsproxy.report import export_pairs, pair_object
from gwsproxy.testing.synthetic import Traffic, write_capture
from gwsproxy.tui.app import InspectorApp, run_tui
from gwsproxy.tui.help_screen import HelpScreen
from gwsproxy.tui.model import parse_filter
from gwsproxy.tui.playback_screen import PlaybackScreen
from gwsproxy.tui.snippet_screen import SnippetScreen
from gwsproxy.tui.value_screen import ValueScreen
from gwsproxy.tui.widgets.body_view import BodyView
from gwsproxy.tui.widgets.detail_panel import TABS
from gwsproxy.tui.widgets.diff_view import DiffView
from gwsproxy.tui.widgets.notice_banner import NoticeBanner
from gwsproxy.tui.widgets.pair_table import PairTable
from gwsproxy.tui.widgets.timeline_view import TimelineView
from gwsproxy.verdict import VerdictName, judge

pytestmark = pytest.mark.asyncio

BIG = 1024 * 1024
LISTED = (Kind.PAIR, Kind.NOTIFICATION, Kind.RAW, Kind.NOTE)
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


# ---- helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tui") / "synthetic.gwscap"
    write_capture(path, 300, seed=1)
    return path


def listed(path: Path) -> list[dict]:
    """The summaries the inspector should list, read without it."""
    with CaptureReader(path) as reader:
        return [e.summary | {"_kind": e.kind} for e in reader.index() if e.kind in LISTED]


def verdicts(path: Path) -> Counter:
    """Verdict names of every pair, computed through the export API and judge."""
    out: Counter = Counter()
    for p in export_pairs(str(path)):
        v = judge(p["status"], p["operation"], p["media"], p["requested"], p["before"], p["after"])
        out[v.name] += 1
    return out


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await pilot.pause(0.02)


async def loaded(pilot: Pilot) -> InspectorApp:
    app = pilot.app
    assert isinstance(app, InspectorApp)
    await until(pilot, lambda: app.listing.settled)
    await pilot.pause()
    return app


async def filtered(pilot: Pilot, text: str) -> int:
    """Type a filter like a user and wait until every match is in."""
    app: InspectorApp = pilot.app  # type: ignore[assignment]
    await pilot.press("slash", "ctrl+a", "ctrl+k")
    await pilot.press(*text)
    await pilot.press("enter")
    await until(pilot, lambda: app.listing.filter.text == text)
    await until(pilot, lambda: app.listing.settled, timeout=20)
    await pilot.pause()
    return len(app.table.rows)


def notifications(app: InspectorApp) -> list[str]:
    """Record what the app notifies."""
    seen: list[str] = []
    notify = app.notify

    def recording(message: str, *args, **kwargs) -> None:
        seen.append(message)
        notify(message, *args, **kwargs)

    app.notify = recording  # type: ignore[method-assign]
    return seen


def plain(static: Static, width: int = 200) -> str:
    """The text a Static shows (its content rendered without styles)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(static.content)
    return console.export_text()


def static_text(app: InspectorApp, selector: str) -> str:
    return plain(app.screen.query_one(selector, Static))


def screen_text(app: InspectorApp) -> str:
    """Every character on screen (from the SVG export, which holds the text)."""
    import html
    import re

    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


# ---- opening and moving -------------------------------------------------------------------------


async def test_lists_every_record_and_detail_follows_the_cursor(capture: Path) -> None:
    expected = listed(capture)
    app = InspectorApp([capture])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        assert len(app.table.rows) == len(expected)
        times = [r.t for r in app.table.rows]
        assert times == sorted(times)
        first = app.panel.detail
        assert first is not None and first.row is app.table.rows[0]
        await pilot.press("down", "down")
        assert app.panel.detail.row is app.table.rows[2]
        title = static_text(app, "#detail-title")
        row = app.table.rows[2]
        assert str(row.summary.get("interaction_id") or "") in title
        await pilot.press("end")
        assert app.panel.detail.row is app.table.rows[-1]
        await pilot.press("home")
        assert app.panel.detail.row is app.table.rows[0]


async def test_rows_come_with_their_verdicts_from_the_index(capture: Path) -> None:
    app = InspectorApp([capture])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        table = app.table
        # Rows are made from the index's columns as they are looked at: those on screen.
        (indexed,) = app.listing.index.tables.values()
        made = sum(r is not None for r in indexed.rows_at)
        assert table.size.height - 1 <= made < len(table.rows) / 4
        # Judged once, when the capture's index was built: every row, on screen or not.
        assert all(r.judged and r.from_index for r in table.rows)
        # Far below the screen no summary was read: rows are made from the index's columns.
        assert not any(r._summary is not None for r in table.rows[200:])
        matched = [r for r in table.rows if r.is_pair and r.summary["status"] == "matched"]
        assert matched and all(r.verdict in set(VerdictName) and r.delta for r in matched)


async def test_a_capture_shows_and_filters_alike_with_and_without_its_index(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.gwscap"
    write_capture(path, 150, seed=21)
    seen = []
    for has_index in (False, True):
        assert sidecar(path).exists() == has_index
        app = InspectorApp([path])
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            screens = [app.export_screenshot()]
            counts = [len(app.table.rows)]
            for text in ("verdict:not", "key:Priority -media:voice", "sms"):
                counts.append(await filtered(pilot, text))
                screens.append(app.export_screenshot())
            seen.append((counts, screens))
    assert seen[0][0] == seen[1][0] and all(seen[0][0])
    assert seen[0][1] == seen[1][1]


# ---- filters ------------------------------------------------------------------------------------


async def test_filters_count_the_right_rows(capture: Path) -> None:
    rows = listed(capture)
    voice = sum(r.get("media") == "voice" for r in rows)
    user_data1 = sum("UserData1" in (r.get("requested_keys") or ()) for r in rows)
    coerced = verdicts(capture)["coerced"]
    assert voice and user_data1 and coerced  # the synthetic capture has some of each
    app = InspectorApp([capture])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        assert await filtered(pilot, "media:voice") == voice
        assert all(r.summary["media"] == "voice" for r in app.table.rows)
        assert await filtered(pilot, "-media:voice") == len(rows) - voice
        assert await filtered(pilot, "!media:voice") == len(rows) - voice
        assert await filtered(pilot, "key:UserData1") == user_data1
        assert await filtered(pilot, "verdict:coerced") == coerced
        assert {r.verdict for r in app.table.rows} == {"coerced"}
        chat_timeouts = sum(r.get("media") == "chat" and r.get("status") == "timeout" for r in rows)
        assert await filtered(pilot, "media:chat verdict:timeout") == chat_timeouts
        agent = sum(r.get("scope") == "user:agent2" for r in rows)
        assert await filtered(pilot, "agent:agent2") == agent
        assert await filtered(pilot, "user:agent2") == agent  # free text on the scope
        assert await filtered(pilot, "") == len(rows)
        # the filter hides nothing of the status line's total
        assert str(len(rows)) in static_text(app, "#status").replace(",", "")


async def until_found(pilot: Pilot, selector: str) -> Input:
    found: list[Input] = []

    def present() -> bool:
        found[:] = pilot.app.screen.query(selector).results(Input)
        return bool(found)

    await until(pilot, present)
    return found[0]


async def test_a_slash_typed_in_the_filter_is_text(capture: Path) -> None:
    """ "/" opens the filter from the list; inside it, "/" is a character like any other (a
    path such as calls/ is a filter a user types)."""
    app = InspectorApp([capture])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("slash", *"me/calls/")
        await until(pilot, lambda: app.query_one("#filter-input", Input).value == "me/calls/")
        await pilot.press("enter")
        await until(pilot, lambda: app.listing.filter.text == "me/calls/")
        await pilot.press("r")  # the replay dialog: its target is a URL, slashes and all
        target = await until_found(pilot, "#replay-target")
        target.focus()
        target.value = ""
        await pilot.press(*"http://gws:8090/")
        await until(pilot, lambda: target.value == "http://gws:8090/")


async def test_unsolicited_and_raw_rows_can_be_hidden(capture: Path) -> None:
    rows = listed(capture)
    pairs = sum(r["_kind"] == Kind.PAIR for r in rows)
    assert pairs < len(rows)
    app = InspectorApp([capture])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("u")
        assert len(app.table.rows) == pairs
        await pilot.press("u")
        assert len(app.table.rows) == len(rows)


async def test_filter_language() -> None:
    f = parse_filter('media:chat -verdict:"not applied" !key:User* free')
    assert [str(t) for t in f.terms] == [
        "media:chat",
        '-verdict:"not applied"',
        "-key:User*",
        "free",
    ]
    assert not f.problems
    assert parse_filter("verdict:nonsense").problems
    assert parse_filter("unknownfield:x").terms[0].field is None  # free text, not an error


# ---- detail tabs --------------------------------------------------------------------------------


async def _select_pair(pilot: Pilot, predicate: Callable) -> None:
    app: InspectorApp = pilot.app  # type: ignore[assignment]
    row = next(r for r in app.table.rows if r.is_pair and predicate(r))
    app.table.move_to(row)
    await pilot.pause()
    assert app.panel.detail.row is row


async def test_every_detail_tab(capture: Path) -> None:
    app = InspectorApp([capture])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await _select_pair(pilot, lambda r: r.summary["status"] == "matched")
        diff = app.query_one(DiffView)
        assert diff.table.row_count >= 1
        await pilot.press("2")
        assert app.panel.active == "request"
        request = plain(app.query_one("#request-view", BodyView).query_one(Static))
        assert "POST /api/v2/me/" in request and "operationName" in request
        await pilot.press("3")
        response = plain(app.query_one("#response-view", BodyView).query_one(Static))
        assert "HTTP 200" in response and "statusCode" in response
        await pilot.press("4")
        note = plain(app.query_one("#notification-view", BodyView).query_one(Static))
        assert "long-polling" in note and "userData" in note
        await pilot.press("5")
        timeline = app.query_one(TimelineView)
        table = timeline.query_one(DataTable)
        assert table.row_count == len(app.listing.index.interaction(app.panel.detail.row))
        # selecting another record of the interaction jumps to it
        other = next(i for i, r in enumerate(timeline.window) if r is not timeline.current)
        table.move_cursor(row=other)
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.panel.detail.row is timeline.window[other]
        await pilot.press("1")
        assert app.panel.active == "diff"


async def test_diff_marks_requested_keys_and_type_changes(capture: Path) -> None:
    app = InspectorApp([capture])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await until(pilot, lambda: True)
        # a coerced pair: a requested key came back with another type
        for r in app.table.rows:
            if r.is_pair and r.summary["status"] == "matched":
                app.listing.sources.judge(r)
        await _select_pair(pilot, lambda r: r.verdict == "coerced")
        diff = app.query_one(DiffView)
        cells = [[str(c) for c in diff.table.get_row_at(i)] for i in range(diff.table.row_count)]
        assert any("→" in row[3] and "coerced" in row[3] for row in cells), cells
        assert any(row[0].startswith("●") for row in cells)


async def test_changed_only_toggle(capture: Path) -> None:
    app = InspectorApp([capture])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)

        def has_unchanged(r) -> bool:
            d = app.listing.sources.detail(r)
            return d.verdict is not None and len(d.verdict.changed()) < len(d.verdict.changes)

        await _select_pair(pilot, has_unchanged)
        diff = app.query_one(DiffView)
        v = app.panel.detail.verdict
        assert diff.table.row_count == len(v.changed())
        await pilot.press("d")
        assert diff.table.row_count == len(v.changes)
        assert "all keys" in static_text(app, "#diff-summary")
        await pilot.press("d")
        assert diff.table.row_count == len(v.changed())


# ---- playback -----------------------------------------------------------------------------------


async def test_playback_steps_change_the_shown_state(capture: Path) -> None:
    app = InspectorApp([capture])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("p")
        screen = app.screen
        assert isinstance(screen, PlaybackScreen)
        state = screen.query_one("#play-state", DataTable)

        def shown() -> tuple:
            return (
                screen.step,
                static_text(app, "#play-step"),
                tuple(tuple(str(c) for c in state.get_row_at(i)) for i in range(state.row_count)),
            )

        first = shown()
        assert first[0] == 0
        await pilot.press("n")
        second = shown()
        assert second[0] == 1 and second != first
        await pilot.press("right", "right")
        assert screen.step == 3
        await pilot.press("left")
        assert screen.step == 2
        await pilot.press("right_square_bracket")
        assert screen.step == 12
        await pilot.press("end")
        assert screen.step == len(screen.rows) - 1
        await pilot.press("home")
        assert screen.step == 0
        await pilot.press("3", "space")  # 100x
        assert screen.playing
        await until(pilot, lambda: screen.step >= 3)
        await pilot.press("space")
        assert not screen.playing
        paused_at = screen.step
        await pilot.pause(0.3)
        assert screen.step == paused_at
        await pilot.press("escape")
        assert not isinstance(app.screen, PlaybackScreen)


# ---- follow, damage, size -----------------------------------------------------------------------


async def test_follow_shows_new_pairs_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "live.gwscap"
    traffic = Traffic(seed=3)
    writer = CaptureWriter(path, {"tool_version": "test"})
    for kind, summary, body in traffic.records(20):
        writer.write(kind, summary, body)
    try:
        app = InspectorApp([path], follow=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            before = len(app.listing.index.rows)
            assert before > 0
            assert "following" in static_text(app, "#status")
            new_pairs = 0
            for kind, summary, body in traffic.records(5):
                writer.write(kind, summary, body)
                new_pairs += kind == Kind.PAIR
            written = time.monotonic()
            await until(
                pilot,
                lambda: (
                    sum(r.is_pair for r in app.listing.index.rows)
                    >= sum(r.is_pair for r in app.listing.index.rows[:before]) + new_pairs
                ),
                timeout=1.0,
            )
            assert time.monotonic() - written < 1.0
            # the cursor tails the newest row
            assert app.table.cursor_row is app.table.rows[-1]
            assert not app.query_one(NoticeBanner).display
            # rows keep coming while another screen is up
            await pilot.press("p")
            assert isinstance(app.screen, PlaybackScreen)
            count = len(app.listing.index.rows)
            for kind, summary, body in traffic.records(3):
                writer.write(kind, summary, body)
            await until(pilot, lambda: len(app.listing.index.rows) > count, timeout=1.0)
            await pilot.press("escape")
            assert app.table.cursor_row is app.table.rows[-1]
    finally:
        writer.close()


async def test_follow_starts_on_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh.gwscap"
    path.write_bytes(b"")
    app = InspectorApp([path], follow=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        assert len(app.listing.index.rows) == 0
        write_capture(path, 5, seed=4)  # the recorder starts writing into the empty file
        await until(pilot, lambda: len(app.listing.index.rows) > 0, timeout=2.0)
        await pilot.press("down")
        assert app.panel.detail.body is not None


async def test_damaged_capture_opens_with_a_notice(tmp_path: Path) -> None:
    path = tmp_path / "damaged.gwscap"
    write_capture(path, 60, seed=2)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data[:-7]))  # and a torn tail
    app = InspectorApp([path])
    notes = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        banner = app.query_one(NoticeBanner)
        assert banner.display
        text = "\n".join(banner.lines)
        assert "damage at offset" in text and "torn tail" in text
        assert any("damage" in message for message in notes)
        assert len(app.table.rows) > 10  # everything around the damage is listed
        await pilot.press("end", "up", "2", "3", "4", "5", "p", "n", "escape")


async def test_unreadable_file_is_a_banner_not_a_traceback(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gwscap"
    junk.write_bytes(b"not a capture at all")
    app = InspectorApp([junk])
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        assert "not a gwsproxy capture" in "\n".join(app.query_one(NoticeBanner).lines)
        await pilot.press("down", "p", "e", "c")


async def test_run_tui_refuses_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_tui([str(tmp_path / "missing.gwscap")], follow=False) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such capture file" in err[0]


async def test_a_one_megabyte_value_renders_quickly(tmp_path: Path) -> None:
    path = tmp_path / "big.gwscap"
    write_capture(path, 10, seed=5, big_value=BIG)
    app = InspectorApp([path])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        started = time.monotonic()
        await _select_pair(pilot, lambda r: r.summary.get("requested_keys") == ["Transcript"])
        diff = app.query_one(DiffView)
        cells = " ".join(
            str(c) for i in range(diff.table.row_count) for c in diff.table.get_row_at(i)
        )
        assert f"({BIG} chars)" in cells
        for tab in "234":
            await pilot.press(tab)
        note = plain(app.query_one("#notification-view", BodyView).query_one(Static))
        assert "showing the first" in note
        await pilot.press("1")
        diff.table.focus()
        await pilot.press("enter")  # the whole value, capped
        assert isinstance(app.screen, ValueScreen)
        await pilot.press("escape")
        assert time.monotonic() - started < 5.0


# ---- export and snippet -------------------------------------------------------------------------


async def test_export_writes_the_pair_as_json(
    capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = InspectorApp([capture])
    notes = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await _select_pair(pilot, lambda r: r.summary["status"] == "matched")
        row = app.panel.detail.row
        await pilot.press("e")
        out = tmp_path / f"pair-{row.summary['id']}.json"
        exported = json.loads(out.read_text())
        with CaptureReader(capture) as reader:
            expected = pair_object(row.summary, reader.body(row.offset))
        assert exported == json.loads(json.dumps(expected, default=repr))
        assert any(str(out) in message for message in notes)


async def test_snippet_is_a_passing_pytest_test(
    capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = InspectorApp([capture])
    copied: list[str] = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        for r in app.table.rows:
            app.listing.sources.judge(r)
        await _select_pair(pilot, lambda r: r.verdict == "side effects")
        await pilot.press("c")
        assert isinstance(app.screen, SnippetScreen)
        code = app.screen.code
        assert copied == [code]
        await pilot.press("w")
        saved = tmp_path / app.screen.filename
        assert saved.read_text() == code
        namespace: dict = {}
        exec(compile(code, str(saved), "exec"), namespace)
        tests = [v for k, v in namespace.items() if k.startswith("test_")]
        assert len(tests) == 1
        tests[0]()  # the snippet passes against the capture
        assert "assert verdict.name == 'side effects'" in code


# ---- help, palette, themes, sizes ---------------------------------------------------------------


async def test_help_palette_and_theme(capture: Path) -> None:
    app = InspectorApp([capture])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.press(*"verdict: coerced")
        await until(pilot, lambda: "coerced" in screen_text(app))
        await pilot.press("enter")
        await until(pilot, lambda: app.listing.filter.text == "verdict:coerced")
        dark = app.current_theme.dark
        await pilot.press("ctrl+t")
        assert app.current_theme.dark != dark
        await pilot.press("down", "2")
        await pilot.press("ctrl+t")
        assert app.current_theme.dark == dark


async def test_readme_key_table_names_every_key_of_the_list() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("| key | does |") :].split("\n\n")[0]
    names = {"slash": "/", "question_mark": "?", "escape": "Esc", "up": "↑", "down": "↓"}
    names |= {"pageup": "PgUp", "pagedown": "PgDn", "ctrl+t": "ctrl+t"}
    for binding in [*InspectorApp.BINDINGS, *PairTable.BINDINGS]:
        assert isinstance(binding, Binding)
        for key in binding.key.split(","):
            if not key.isdigit():  # the tabs, below
                assert f"`{names.get(key, key.title() if len(key) > 1 else key)}`" in table, key
    assert "`1`..`6`" in table and all(name.title() in table for name in TABS)


async def test_readable_at_80x24(capture: Path) -> None:
    app = InspectorApp([capture])
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        text = screen_text(app)
        for word in ("time", "verdict", "Diff", "Timeline", "Filter", "Play", "Help", "Quit"):
            assert word in text, word
        first = app.table.rows[0]
        assert str(first.summary.get("interaction_id"))[:6] in text
        await pilot.press("p")
        text = screen_text(app)
        assert "step 1/" in text and "Play/pause" in text


async def test_two_captures_merge_by_time(tmp_path: Path) -> None:
    a, b = tmp_path / "a.gwscap", tmp_path / "b.gwscap"
    write_capture(a, 40, seed=6)
    write_capture(b, 40, seed=7, start=1_700_000_005.0)
    app = InspectorApp([a, b])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        rows = app.table.rows
        assert len(rows) == len(listed(a)) + len(listed(b))
        assert [r.t for r in rows] == sorted(r.t for r in rows)
        sources = [r.src for r in rows]
        assert sources != sorted(sources)  # really interleaved
        await _select_pair(pilot, lambda r: r.src == 1 and r.summary["status"] == "matched")
        assert app.panel.detail.body is not None  # bodies come from the right file


async def test_screenshots(capture: Path, tmp_path: Path) -> None:
    app = InspectorApp([capture])
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        for r in app.table.rows:
            app.listing.sources.judge(r)
        # a coerced pair: its diff shows a requested key that came back with another type
        coerced = next(i for i, r in enumerate(app.table.rows) if r.verdict == "coerced" and i > 12)
        app.table.move_to(app.table.rows[coerced - 12])
        app.table.move_to(app.table.rows[coerced])
        await pilot.pause()
        main = Path(app.save_screenshot(str(tmp_path / "main.svg")))
        text = screen_text(app)
        assert "verdict" in text and "coerced" in text and "Diff" in text
        assert "→" in text  # the type change, called so
        await pilot.press("d")
        await pilot.pause()
        diff = Path(app.save_screenshot(str(tmp_path / "diff.svg")))
        assert "all keys" in screen_text(app)
    for svg in (main, diff):
        assert svg.read_text().startswith("<svg")
    if os.environ.get("GWSPROXY_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(main, SCREENSHOTS / "main.svg")
        shutil.copy(diff, SCREENSHOTS / "diff.svg")


# ---- pairs the network broke: why they closed as they did ---------------------------------------


def faulty_capture(path: Path) -> None:
    """Through the recording core: a lost notification, an ambiguous one, a request that never
    reached GWS and a second copy of a notification."""
    from gwsproxy.record.core import Recording
    from gwsproxy.record.events import ADVANCE, FAILED, REQUEST, RESPONSE

    rec = Recording(timeout=10.0)
    rec.open(str(path), "http://gws.example:8090")
    who, t0, json_type = (
        ("agent1", None, "127.0.0.1"),
        1_700_000_000.0,
        [(b"content-type", b"application/json")],
    )

    def update(flow: str, iid: str, user_data: dict, t: float, answered: bool = True) -> None:
        body = json.dumps({"operationName": "UpdateUserData", "userData": user_data}).encode()
        path = f"/api/v2/me/chats/{iid}"
        rec.handle((REQUEST, flow, who, "POST", path, [], body, t))
        if answered:
            rec.handle((RESPONSE, flow, who, "POST", path, 200, json_type, b'{"statusCode":0}', t))

    def notify(iid: str, user_data: dict, ref: int, t: float) -> None:
        data = {"messageType": "ChatStateChangeMessage", "notificationType": "PropertiesUpdated"}
        batch = [
            {
                "channel": "/v2/me/chats",
                "data": data | {"referenceId": ref, "chat": {"id": iid, "userData": user_data}},
            }
        ]
        connect = "/api/v2/notifications/connect"
        rec.handle(
            (
                RESPONSE,
                f"lp{ref}{t}",
                who,
                "POST",
                connect,
                200,
                json_type,
                json.dumps(batch).encode(),
                t,
            )
        )

    rec.correlator.observe("CH1", {})
    rec.correlator.observe("CH2", {})
    update("a", "CH1", {"Disposition": "Sale"}, t0)  # its notification is lost
    update("b", "CH1", {"Topic": "billing"}, t0 + 1)
    notify("CH1", {"Disposition": "Sale", "Topic": "billing"}, 86, t0 + 1.1)
    update("c", "CH2", {"Topic": "billing"}, t0 + 2)
    update("d", "CH2", {"Topic": "billing"}, t0 + 2.1)
    notify("CH2", {"Topic": "billing"}, 90, t0 + 2.2)  # one of the two is lost
    update("e", "CH1", {"X": 1}, t0 + 3, answered=False)
    rec.handle((FAILED, "e", "Connection refused", t0 + 3.1, False))
    notify("CH1", {"Disposition": "Sale", "Topic": "billing"}, 86, t0 + 4)  # a second copy
    rec.handle((ADVANCE, t0 + 30))
    rec.close(t0 + 31)


async def test_a_pair_that_is_not_matched_says_why_at_80_columns(tmp_path: Path) -> None:
    path = tmp_path / "faults.gwscap"
    faulty_capture(path)
    app = InspectorApp([path])
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        seen, cells = {}, {}
        for _ in app.table.rows:
            row = app.panel.detail.row
            text = screen_text(app)
            seen[row.summary.get("status") or row.summary.get("reason")] = text
            diff = app.query_one(DiffView).table
            rows = [[str(c) for c in diff.get_row_at(i)] for i in range(diff.row_count)]
            cells[row.summary.get("status")] = rows
            await pilot.press("down")
        assert "its effect showed in pair 2's notification; its own never came" in seen["lost"]
        assert "shows the effect of pairs 3 and 4 alike" in seen["ambiguous"]
        assert "Connection refused" in seen["failed"]
        # it never reached GWS: what became of its key is not known, not "unchanged"
        assert cells["failed"] == [["● X", "—", "?", "unknown"]], cells["failed"]
        assert (
            "a second copy of the notification of pair 2"
            in seen["a second copy of the notification of pair 2"]
        )
