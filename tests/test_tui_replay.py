"""Replay from the inspector (r), driven through Textual's Pilot against the real simulator.

The capture is a real recording (simulator <- `mitmdump -s addons/gws_recorder.py` <- simulated
agents, no faults), so it replays cleanly against a simulator seeded from it; `coerce=("chat",)`
makes that simulator store the int values of chat requests as strings: exactly those pairs fail.
"""

from __future__ import annotations

import asyncio
import html
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.capture.writer import CaptureWriter
from gwsproxy.report import export_pairs
from gwsproxy.sim.agents import LoadConfig, run_load
from gwsproxy.sim.server import RunningSim, SimConfig, start_simulator
from gwsproxy.tui.app import InspectorApp
from gwsproxy.tui.model import Row
from gwsproxy.tui.replay_screen import ReplayScreen, StopReplayScreen
from gwsproxy.tui.replays import DEFAULT_TARGET, ReplayRequest, ReplayRun
from gwsproxy.tui.widgets.replay_view import ReplayView

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[1]
MITMDUMP = Path(sys.executable).with_name("mitmdump")
WAIT = 20.0


# ---- a real recording ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _record(path: Path, scratch: Path) -> None:
    """4 agents x 15 operations through mitmdump with our addon, from a simulator without faults."""
    sim = await start_simulator(SimConfig(port=0, delay=0, jitter=0, seed=1))
    port = _free_port()
    command = [
        str(MITMDUMP),
        "-q",
        "-s",
        str(ROOT / "addons" / "gws_recorder.py"),
        "--mode",
        f"reverse:{sim.url}",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(port),
        "--set",
        f"confdir={scratch / 'mitmproxy'}",
        "--set",
        f"gws_capture={path}",
    ]
    with open(scratch / "mitmdump.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (scratch / "mitmdump.log").read_text()
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mitmdump did not start"
                await asyncio.sleep(0.05)
        target = f"http://127.0.0.1:{port}"
        await run_load(LoadConfig(target=target, agents=4, ops=15, seed=1))
        process.send_signal(signal.SIGINT)  # closes the capture cleanly
        assert await asyncio.to_thread(process.wait, 15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        await sim.stop()


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not MITMDUMP.exists():
        pytest.skip("mitmdump is not installed beside this Python")
    scratch = tmp_path_factory.mktemp("replay")
    path = scratch / "recorded.gwscap"
    asyncio.run(_record(path, scratch))
    return path


def coerced_chat_pairs(path: Path) -> set[int]:
    """Ids of the chat pairs that set an int value: those a chat-coercing GWS stores otherwise."""
    return {
        p["id"]
        for p in export_pairs(str(path))
        if p["media"] == "chat"
        and isinstance(p["requested"], dict)
        and any(isinstance(v, int) and not isinstance(v, bool) for v in p["requested"].values())
    }


def pair_ids(path: Path) -> set[int]:
    return {p["id"] for p in export_pairs(str(path))}


@pytest_asyncio.fixture
async def coercing_sim(capture: Path) -> AsyncIterator[RunningSim]:
    sim = await start_simulator(
        SimConfig(port=0, delay=0, jitter=0, seed_from=str(capture), coerce=("chat",))
    )
    yield sim
    await sim.stop()


# ---- driving the app ----------------------------------------------------------------------------


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await pilot.pause(0.02)


async def loaded(pilot: Pilot) -> InspectorApp:
    app: InspectorApp = pilot.app  # type: ignore[assignment]
    await until(pilot, lambda: app.listing.settled)
    await pilot.pause()
    return app


async def ask_replay(
    pilot: Pilot, target: str, *, user: str = "", typed: bool = False
) -> ReplayScreen:
    """Press r and fill in the dialog (typed key by key, or pasted); Enter not pressed yet."""
    app: InspectorApp = pilot.app  # type: ignore[assignment]
    await pilot.press("r")
    await until(pilot, lambda: isinstance(app.screen, ReplayScreen))
    dialog: ReplayScreen = app.screen  # type: ignore[assignment]
    if typed:
        await pilot.press("ctrl+a", "ctrl+k", *target)
    else:
        dialog.query_one("#replay-target", Input).value = target
    dialog.query_one("#replay-user", Input).value = user
    return dialog


async def replayed(pilot: Pilot, target: str, **fields: Any) -> InspectorApp:
    """Replay against target and wait until the run ended."""
    app: InspectorApp = pilot.app  # type: ignore[assignment]
    await ask_replay(pilot, target, **fields)
    await pilot.press("enter")
    await until(pilot, lambda: app.listing.replay is not None and not app.listing.replay.running)
    await pilot.pause()
    return app


async def filtered(pilot: Pilot, text: str, *, typed: bool = False) -> list[Row]:
    app: InspectorApp = pilot.app  # type: ignore[assignment]
    if typed:
        await pilot.press("slash", "ctrl+a", "ctrl+k", *text, "enter")
    else:
        app.set_filter(text)  # what the palette does
    await until(pilot, lambda: app.listing.filter.text == text and app.listing.settled)
    await pilot.pause()
    return list(app.table.rows)


def notifications(app: InspectorApp) -> list[tuple[str, str]]:
    """Record what the app notifies, with its severity."""
    seen: list[tuple[str, str]] = []
    notify = app.notify

    def recording(message: str, *args, **kwargs) -> None:
        seen.append((message, kwargs.get("severity", "information")))
        notify(message, *args, **kwargs)

    app.notify = recording  # type: ignore[method-assign]
    return seen


def screen_text(app: InspectorApp) -> str:
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def header(app: InspectorApp) -> str:
    """The pair list's column labels."""
    return next(line for line in screen_text(app).splitlines() if line.lstrip().startswith("time"))


def replay_cells(app: InspectorApp) -> list[list[str]]:
    table = app.query_one("#replay-table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def failing(app: InspectorApp, src: int | None = None) -> set[int]:
    return {
        r.summary["id"]
        for r in app.listing.index.rows
        if r.replay is not None and not r.replay.passed and (src is None or r.src == src)
    }


# ---- tests --------------------------------------------------------------------------------------


@pytest.mark.e2e
async def test_replay_fails_exactly_the_coerced_chat_pairs(
    capture: Path, coercing_sim: RunningSim
) -> None:
    expected = coerced_chat_pairs(capture)
    everything = pair_ids(capture)
    assert expected and expected != everything
    app = InspectorApp([capture])
    notes = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        assert "replay" not in header(app)  # no column before the first replay
        dialog = await ask_replay(pilot, "")
        assert dialog.query_one("#replay-target", Input).value == ""
        await pilot.press("escape")
        assert app.listing.replay is None and not isinstance(app.screen, ReplayScreen)
        await replayed(pilot, coercing_sim.url, typed=True)

        assert failing(app) == expected
        pairs = [r for r in app.listing.index.rows if r.is_pair]
        assert all(r.replay is not None for r in pairs)
        assert {r.summary["id"] for r in pairs if r.replay.passed} == everything - expected
        assert app.listing.replay.state == "done"
        status = str(app.query_one("#status", Static).render())
        assert f"replayed {len(everything)}: {len(expected)} failed" in status
        assert any(f"{len(expected)} failed" in m for m, _ in notes)
        text = screen_text(app)
        assert " replay " in text and "FAIL" in text and "pass" in text

        rows = await filtered(pilot, "replay:fail", typed=True)
        assert {r.summary["id"] for r in rows} == expected
        assert all(r.summary["media"] == "chat" for r in rows)
        rows = await filtered(pilot, "-replay:fail kind:pair")
        assert {r.summary["id"] for r in rows} == everything - expected
        rows = await filtered(pilot, "replay:pass media:chat")
        assert rows and not {r.summary["id"] for r in rows} & expected

        # the detail of a failing pair: what came back, typed, next to what was recorded
        await filtered(pilot, "replay:fail")
        await pilot.press("6")
        row = app.table.cursor_row
        assert row is not None and app.panel.active == "replay"
        mismatch = row.replay.mismatches[0]
        view = app.query_one(ReplayView)
        assert "FAIL" in str(view.query_one("#replay-summary", Static).render())
        cells = replay_cells(app)
        assert cells[0][0] == mismatch.key
        assert cells[0][2] == f"{mismatch.expected} (int)"
        assert cells[0][3] == f'"{mismatch.actual}" (str)'
        assert "replay FAIL" in str(app.query_one("#detail-title", Static).render())
        # ... and a passing one
        await filtered(pilot, "replay:pass")
        assert "pass" in str(view.query_one("#replay-summary", Static).render())
        assert replay_cells(app) == []


@pytest.mark.e2e
async def test_replay_dialog_checks_its_fields_and_remembers_them(
    capture: Path, coercing_sim: RunningSim
) -> None:
    app = InspectorApp([capture], replay_target="http://gws.example:8090")
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("r")
        dialog = app.screen
        assert isinstance(dialog, ReplayScreen)
        assert dialog.query_one("#replay-target", Input).value == "http://gws.example:8090"
        assert dialog.query_one("#replay-password", Input).value == "password"
        target = dialog.query_one("#replay-target", Input)
        target.value = "ftp://somewhere"
        await pilot.press("enter")
        error = dialog.query_one("#replay-error", Static)
        assert error.display and "http or https" in str(error.render())
        assert app.screen is dialog and app.listing.replay is None
        await pilot.press("ctrl+a", "ctrl+k", "h")
        assert not error.display  # typing clears the message
        target.value = coercing_sim.url
        ignore = dialog.query_one("#replay-ignore", Input)
        ignore.value = "Score("
        await pilot.press("enter")
        assert "not a regular expression" in str(error.render())
        assert app.focused is ignore
        ignore.value = "Score RTenant CustomerSegment CallbackNumber"  # what coercion touched
        await pilot.press("enter")
        await until(
            pilot, lambda: app.listing.replay is not None and not app.listing.replay.running
        )
        run = app.listing.replay
        assert run.failed == 0 and run.results  # ignored keys are not compared
        await pilot.press("r")
        dialog = app.screen
        assert isinstance(dialog, ReplayScreen)
        assert dialog.query_one("#replay-target", Input).value == coercing_sim.url
        assert dialog.query_one("#replay-ignore", Input).value.startswith("Score RTenant")
        await pilot.press("escape")


@pytest.mark.e2e
async def test_unreachable_target_or_bad_user_is_one_error_line(
    capture: Path, coercing_sim: RunningSim
) -> None:
    app = InspectorApp([capture])
    notes = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await replayed(pilot, "http://127.0.0.1:1")
        errors = [m for m, severity in notes if severity == "error"]
        assert errors == ["cannot reach http://127.0.0.1:1: connection refused"]
        assert app.listing.replay.state == "failed" and app.is_running
        assert "replay failed" in str(app.query_one("#status", Static).render())
        await replayed(pilot, coercing_sim.url, user="nobody")
        errors = [m for m, severity in notes if severity == "error"]
        assert len(errors) == 2 and "nobody" in errors[1] and "401" in errors[1]
        assert "\n" not in errors[1] and "Traceback" not in errors[1]
        await pilot.press("down", "6")  # the list and the detail still work
        assert not failing(app)


@pytest.mark.e2e
async def test_a_running_replay_can_be_stopped(capture: Path) -> None:
    slow = await start_simulator(
        SimConfig(port=0, delay=0.2, jitter=0, seed_from=str(capture), coerce=("chat",))
    )
    try:
        app = InspectorApp([capture])
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            await ask_replay(pilot, slow.url)
            await pilot.press("enter")
            await until(
                pilot, lambda: app.listing.replay is not None and bool(app.listing.replay.results)
            )
            assert app.listing.replay.running
            assert "replaying " in str(app.query_one("#status", Static).render())
            assert "(r stops)" in str(app.query_one("#status", Static).render())
            await pilot.press("escape")
            assert isinstance(app.screen, StopReplayScreen)
            await pilot.press("n")  # let it go on
            assert not isinstance(app.screen, StopReplayScreen) and app.listing.replay.running
            await pilot.press("r")
            assert isinstance(app.screen, StopReplayScreen)
            await pilot.press("y")
            await until(pilot, lambda: not app.listing.replay.running)
            assert app.listing.replay.state == "stopped"
            done = len(app.listing.replay.results)
            assert 0 < done < len(pair_ids(capture))
            assert f"replay stopped after {done}" in str(app.query_one("#status", Static).render())
            await pilot.pause(0.3)
            assert len(app.listing.replay.results) == done  # really stopped
    finally:
        await slow.stop()


def split_by_agent(path: Path, a: Path, b: Path) -> None:
    """agents 1-2 into a, 3-4 into b, each numbering its pairs from 1 (ids overlap across files)."""
    with CaptureReader(path) as reader:
        writers = {a: CaptureWriter(a, reader.header), b: CaptureWriter(b, reader.header)}
        ids = {a: 0, b: 0}
        for entry, body in reader.records():
            if entry.kind != Kind.PAIR:
                continue
            out = a if entry.summary["scope"] in ("user:agent1", "user:agent2") else b
            ids[out] += 1
            writers[out].write(Kind.PAIR, {**entry.summary, "id": ids[out]}, body)
        for w in writers.values():
            w.close()


@pytest.mark.e2e
async def test_several_files_are_replayed_each_by_its_own_pair_ids(
    capture: Path, coercing_sim: RunningSim, tmp_path: Path
) -> None:
    a, b = tmp_path / "a.gwscap", tmp_path / "b.gwscap"
    split_by_agent(capture, a, b)
    expected_a, expected_b = coerced_chat_pairs(a), coerced_chat_pairs(b)
    assert expected_a != expected_b and pair_ids(a) & pair_ids(b)
    app = InspectorApp([a, b])
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await replayed(pilot, coercing_sim.url)
        assert app.listing.replay.state == "done"
        assert len(app.listing.replay.results) == len(pair_ids(a)) + len(pair_ids(b))
        assert failing(app, 0) == expected_a
        assert failing(app, 1) == expected_b


@pytest.mark.e2e
async def test_replay_at_80x24_keeps_the_verdict_column(
    capture: Path, coercing_sim: RunningSim
) -> None:
    app = InspectorApp([capture])
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        assert "Quit" in screen_text(app)  # r is left out of the footer, which stays whole
        await replayed(pilot, coercing_sim.url)
        await pilot.press("ctrl+p", *"replay failures")
        await until(pilot, lambda: "(replay:fail)" in screen_text(app))  # its help line
        await pilot.press("enter")
        await until(pilot, lambda: app.listing.filter.text == "replay:fail")
        await pilot.pause()
        assert {r.summary["id"] for r in app.table.rows} == coerced_chat_pairs(capture)
        assert "verdict" in header(app) and "replay" in header(app), header(app)
        lines = screen_text(app).splitlines()
        row = next(line for line in lines if "FAIL" in line and "chat" in line)
        assert "applied" in row, row


async def test_replay_run_keys_results_by_file_and_pair() -> None:
    from gwsproxy.replay.compare import Comparison, Mismatch, Outcome

    def row(src: int, pair_id: int) -> Row:
        return Row(src, pair_id * 10, Kind.PAIR, {"id": pair_id, "status": "matched"}, 0.0)

    def comparison(pair_id: int, passed: bool) -> Comparison:
        o = Outcome(pair_id, "matched", "UpdateUserData", "chat", "X", {}, {}, {})
        return Comparison(o, o, () if passed else (Mismatch("K", 1, 1, "1"),))

    rows = [row(0, 1), row(1, 1), row(0, 2)]
    run = ReplayRun(ReplayRequest(DEFAULT_TARGET), rows, total=3)
    assert run.record(1, comparison(1, False)) is rows[1]
    assert run.record(0, comparison(1, True)) is rows[0]
    assert (rows[0].replay.passed, rows[1].replay.passed, rows[2].replay) == (True, False, None)
    assert run.progress() == "replaying 2/3 · 1 failed (r stops)"
    late = row(0, 3)
    run.record(0, comparison(3, False))
    run.attach([late])  # listed after its result came
    assert late.replay is not None and not late.replay.passed
    run.clear()
    assert all(r.replay is None for r in [*rows, late])


async def test_the_inspectors_replay_uses_the_command_lines_bearer_tokens_and_headers() -> None:
    """`gwsproxy tui --bearer-file F --header x-api-key:K`: the dialog's replay carries them."""
    from gwsproxy.gws.session import Access

    sms = ROOT / "captures" / "examples" / "seed-sms-update.gwscap"
    config = SimConfig(port=0, delay=0, jitter=0, seed_from=str(sms), bearer=True, api_key="k")
    sim = await start_simulator(config)
    try:
        tokens = {agent: token for token, agent in sim.simulator.bearer.items()}
        access = Access(bearers=tokens, headers=(("x-api-key", "k"),))
        app = InspectorApp([sms], replay_access=access)
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            await replayed(pilot, sim.url)
            run = app.listing.replay
            assert run is not None and run.state == "done" and run.failed == 0, run.progress()
            assert app.replay_request.access is access  # kept for the next replay
            assert [r.replay.passed for r in app.listing.index.rows if r.replay] == [True]
        assert len(sim.simulator.log) == 1
    finally:
        await sim.stop()
