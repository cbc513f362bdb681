"""Captures continued by a restarted recorder: sessions in the writer, the reader (torn tails
included), the addon (in this process and with its worker), `gwsproxy info` and export."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow
from rich.console import Console

from gwsproxy import cli, report
from gwsproxy.capture import (
    CaptureFileError,
    CaptureReader,
    CaptureWriter,
    Follower,
    Kind,
    encode_frame,
)
from gwsproxy.capture.writer import previous_sessions
from gwsproxy.record.addon import GwsRecorder
from gwsproxy.record.worker import Worker

T0 = 1_700_000_000.0


def _pair(i: int, t: float) -> dict[str, Any]:
    return {"id": i, "t": t, "t_note": t + 0.25, "status": "matched", "media": "chat"}


def _session(
    path: Path, ids: range, *, t0: float = T0, end: bool = True, **header: Any
) -> list[int]:
    """One session of pairs `ids` (one a second from t0); returns the frame offsets written."""
    w = CaptureWriter(path, {"created": t0, **header}, append=True)
    offsets = [w.write(Kind.PAIR, _pair(i, t0 + k + 1), {"n": i}) for k, i in enumerate(ids)]
    w.close(end=end)
    return offsets


def _pair_ids(path: Path) -> list[int]:
    with CaptureReader(path) as r:
        return [e.summary["id"] for e in r.index() if e.kind == Kind.PAIR]


# ---- the reader -------------------------------------------------------------------------------


def test_the_reader_finds_each_session_with_its_times_counts_and_end(tmp_path: Path) -> None:
    p = tmp_path / "day.gwscap"
    _session(p, range(1, 4), session=1)
    _session(p, range(4, 6), t0=T0 + 100, end=False, session=2, continues="restart")
    _session(p, range(6, 10), t0=T0 + 200, session=3, continues="restart")
    with CaptureReader(p) as r:
        entries = r.index()
        headers = [e for e in entries if e.kind == Kind.HEADER]
        sessions = r.sessions
        assert [s.offset for s in sessions] == [h.offset for h in headers]
        assert [s.header.get("session") for s in sessions] == [1, 2, 3]
        assert [s.header.get("continues") for s in sessions] == [None, "restart", "restart"]
        assert [s.pairs for s in sessions] == [3, 2, 4]
        assert [s.last_id for s in sessions] == [3, 5, 9]
        assert [s.ended for s in sessions] == [True, False, True]
        assert [s.start for s in sessions] == [T0, T0 + 100, T0 + 200]
        # A session cut short ends with its last record: here the pair's notification.
        assert sessions[1].end == T0 + 100 + 2 + 0.25
        assert sessions[0].end is not None and sessions[0].end > T0  # the END's close time
        assert sessions[1].counts == {Kind.HEADER: 1, Kind.PAIR: 2}
        assert r.ended and r.damage == [] and r.header.get("session") == 1
        assert r.notices == [
            "session 2 of 3 has no end record: that recording was interrupted before the "
            "next one began"
        ]
        # A second full pass finds the same sessions, not twice as many.
        list(r.records())
        assert [s.offset for s in r.sessions] == [h.offset for h in headers]
        assert len(r.notices) == 1


def test_a_later_sessions_newer_version_is_a_notice(tmp_path: Path) -> None:
    p = tmp_path / "v.gwscap"
    _session(p, range(1, 2))
    _session(p, range(2, 3), future_field="ignored")  # unknown header fields are fine
    with CaptureReader(p) as r:
        r.index()
        assert r.notices == []
    with open(p, "ab") as f:
        f.write(encode_frame(Kind.HEADER, {"format": "gwsproxy-capture", "version": 9}, None))
    with CaptureReader(p) as r:
        r.index()
        assert any(n.startswith("session 3 of 3: written with format version 9") for n in r.notices)


def test_records_before_any_readable_header_form_a_headerless_session(tmp_path: Path) -> None:
    p = tmp_path / "h.gwscap"
    offsets = _session(p, range(1, 3))
    data = bytearray(p.read_bytes())
    data[8 + 20] ^= 0xFF  # inside the first header's summary: its CRC fails
    p.write_bytes(bytes(data))
    with CaptureReader(p) as r:
        r.index()
        (s,) = r.sessions
        assert s.header == {} and s.offset == offsets[0] and s.pairs == 2 and s.ended
        assert s.start == T0 + 1  # no header: the first record's time


# ---- torn tails: a recorder killed in the middle of a write, then restarted ---------------------


@pytest.mark.parametrize(
    "into", [2, 6, 10, 15, 40, -1], ids=["sync", "length", "crc", "kind", "body", "last"]
)
def test_a_new_session_after_a_torn_tail_keeps_the_file_readable(tmp_path: Path, into: int) -> None:
    p = tmp_path / "torn.gwscap"
    offsets = _session(p, range(1, 6), end=False)
    size = p.stat().st_size
    cut = offsets[-1] + into if into >= 0 else size - 1
    with open(p, "r+b") as f:
        f.truncate(cut)  # kill -9 in the middle of writing pair 5
    with CaptureReader(p) as r:
        assert [e.summary.get("id") for e in r.index() if e.kind == Kind.PAIR] == [1, 2, 3, 4]
        assert [d.offset for d in r.damage] == [offsets[-1]]
        assert "torn tail" in r.damage[0].reason

    previous = previous_sessions(p)
    assert [s.last_id for s in previous] == [4] and not previous[0].ended
    first = previous[0].last_id + 1
    again = _session(p, range(first, first + 3), t0=T0 + 60, session=2, continues="restart")

    with CaptureReader(p) as r:
        entries = r.index()
        assert [e.summary["id"] for e in entries if e.kind == Kind.PAIR] == [1, 2, 3, 4, 5, 6, 7]
        (d,) = r.damage
        # The torn bytes up to the new session's header, which starts where the file ended.
        assert (d.offset, d.offset + d.length) == (offsets[-1], cut) and cut < again[0]
        assert r.sessions[1].offset == cut
        assert d.reason.startswith("damaged end of a session (")
        assert d.reason.endswith("the next session starts after it")
        assert [s.ended for s in r.sessions] == [False, True] and r.ended
        assert [s.last_id for s in r.sessions] == [4, 7]
        bodies = [b for e, b in r.records() if e.kind == Kind.PAIR]
        assert [b["n"] for b in bodies] == [1, 2, 3, 4, 5, 6, 7]
    # A follower that tails the file from the start reads the same records.
    with Follower(p) as f:
        assert [e.offset for e in f.poll()] == [e.offset for e in entries]
        assert [s.last_id for s in f.sessions] == [4, 7]


# ---- the writer: one at a time, and what it may continue ---------------------------------------


def test_previous_sessions_of_what_is_not_a_capture(tmp_path: Path) -> None:
    assert previous_sessions(tmp_path / "missing.gwscap") == []
    empty = tmp_path / "empty.gwscap"
    empty.touch()
    assert previous_sessions(empty) == []
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a capture")
    with pytest.raises(CaptureFileError, match="notes.txt is not a gwsproxy capture; refusing"):
        previous_sessions(foreign)
    with pytest.raises(CaptureFileError, match="not a regular file"):
        previous_sessions(tmp_path)
    assert foreign.read_text() == "not a capture"


def test_one_writer_at_a_time_and_a_reader_of_sessions_waits_for_it(tmp_path: Path) -> None:
    p = tmp_path / "busy.gwscap"
    first = CaptureWriter(p, {})
    first.write(Kind.PAIR, _pair(1, T0))
    with pytest.raises(CaptureFileError, match="busy.gwscap is locked by another writer"):
        CaptureWriter(p, {}, append=True, lock_wait=0.1)
    with pytest.raises(CaptureFileError, match="locked by another writer"):
        previous_sessions(p, wait=0.1)
    started = threading.Event()
    found: list[Any] = []

    def read() -> None:
        started.set()
        found.append(previous_sessions(p, wait=30))

    reader = threading.Thread(target=read)
    reader.start()
    started.wait(30)
    first.write(Kind.PAIR, _pair(2, T0 + 1))  # a killed recorder's worker, finishing
    first.close()
    reader.join(30)
    (sessions,) = found
    assert [(s.pairs, s.last_id, s.ended) for s in sessions] == [(2, 2, True)]
    with CaptureWriter(p, {}, append=True) as again:
        again.write(Kind.PAIR, _pair(3, T0 + 2))
    assert _pair_ids(p) == [1, 2, 3]


def test_a_not_empty_file_is_still_refused_without_append(tmp_path: Path) -> None:
    p = tmp_path / "x.gwscap"
    _session(p, range(1, 2))
    with pytest.raises(CaptureFileError, match="already exists"):
        CaptureWriter(p, {})


# ---- the addon: a restarted recorder continues the file -----------------------------------------


def _record(path: Path, interactions: list[str], *, worker: bool) -> GwsRecorder:
    """A recorder on `path` that sees one UpdateUserData per interaction; none is answered,
    so each is written as an incomplete pair when the recorder stops."""
    recorder = GwsRecorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, gws_capture=str(path), gws_worker=worker)
        for ix in interactions:
            recorder.request(_flow(ix))
        recorder.done()
    return recorder


def _flow(ix: str) -> Any:
    flow = tflow.tflow(resp=True)
    flow.request.method = "POST"
    flow.request.path = f"/api/v2/me/chats/{ix}"
    body = {"operationName": "UpdateUserData", "userData": {"k": ix}}
    flow.request.content = json.dumps(body).encode()
    return flow


def _headers(path: Path) -> list[dict[str, Any]]:
    with CaptureReader(path) as r:
        return [e.summary for e in r.index() if e.kind == Kind.HEADER]


@pytest.mark.e2e  # the recorder with its worker process
@pytest.mark.parametrize("worker", [False, True], ids=["in-process", "worker"])
def test_a_restarted_recorder_appends_a_session_with_ids_after_the_last(
    tmp_path: Path, worker: bool
) -> None:
    p = tmp_path / "today.gwscap"
    _record(p, ["A1", "A2", "A3"], worker=worker)
    _record(p, ["B1", "B2"], worker=not worker)  # either way, on the same file
    _record(p, ["C1"], worker=worker)
    headers = _headers(p)
    assert [h["session"] for h in headers] == [1, 2, 3]
    assert [h.get("continues") for h in headers] == [None, "restart", "restart"]
    exported = list(report.export_pairs(str(p)))
    assert [(o["id"], o["interaction_id"]) for o in exported] == [
        (1, "A1"),
        (2, "A2"),
        (3, "A3"),
        (4, "B1"),
        (5, "B2"),
        (6, "C1"),
    ]
    with CaptureReader(p) as r:
        r.index()
        assert [s.pairs for s in r.sessions] == [3, 2, 1] and r.ended and r.damage == []


@pytest.mark.e2e  # the recorder with its worker process
def test_after_a_hand_over_and_a_restart_pair_ids_stay_unique(tmp_path: Path) -> None:
    p = tmp_path / "handover.gwscap"
    _record(p, ["A1", "A2"], worker=True)
    recorder = GwsRecorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, gws_capture=str(p), gws_worker=True)
        for ix in ("B1", "B2"):
            recorder.request(_flow(ix))
        sink = recorder.sink
        assert isinstance(sink, Worker)
        sink.process.kill()  # the worker dies: B1 and B2 die with it, unwritten
        sink.process.wait(30)
        for ix in ("C1", "C2"):
            recorder.request(_flow(ix))
        assert not isinstance(recorder.sink, Worker)
        recorder.done()
    _record(p, ["D1"], worker=False)
    headers = _headers(p)
    assert [h["session"] for h in headers] == [1, 2, 3, 4]
    assert [h.get("continues") for h in headers] == [None, "restart", "worker died", "restart"]
    assert headers[2]["upstream"] == headers[1]["upstream"]  # the real upstream, still
    pairs = {o["interaction_id"]: o["id"] for o in report.export_pairs(str(p))}
    assert set(pairs) == {"A1", "A2", "C1", "C2", "D1"}  # B1 and B2 died with the worker
    # The proxy's process numbers after every id the dead worker could have used (B1, B2);
    # the restart after the highest id in the file.
    assert (pairs["A1"], pairs["A2"]) == (1, 2)
    assert 4 < pairs["C1"] < pairs["C2"] == pairs["D1"] - 1


def test_the_recorder_refuses_a_file_that_is_not_a_capture_in_one_line(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.txt"
    foreign.write_text("my notes")
    recorder = GwsRecorder()
    with taddons.context(recorder) as tctx:
        with pytest.raises(exceptions.OptionsError) as refused:
            tctx.configure(recorder, gws_capture=str(foreign), gws_worker=False)
        message = f"{foreign} is not a gwsproxy capture; refusing to append to it"
        assert str(refused.value) == message
        assert recorder.sink is None
    assert foreign.read_text() == "my notes"


# ---- gwsproxy info ------------------------------------------------------------------------------


def _rows(text: str, title: str) -> list[list[str]]:
    """The cells of each body row of the table titled `title` in rich's text output."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.strip() == "by media":
            break
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip().strip("│").split("│")])
    return rows


def test_info_lists_the_sessions_and_the_gaps_between_them(tmp_path: Path) -> None:
    p = tmp_path / "day.gwscap"
    _session(p, range(1, 4), end=False, session=1)  # last record: T0 + 3.25
    _session(p, range(4, 6), t0=T0 + 3.25 + 185, end=False, session=2, continues="restart")
    # its last record: T0 + 190.5
    _session(p, range(6, 7), t0=T0 + 190.5 + 2.5, session=3, continues="restart")
    console = Console(record=True, width=160)
    console.print(report.info(str(p)))
    text = console.export_text()
    assert re.search(r"│\s*sessions\s*│\s*3\s*│", text), text
    assert re.search(r"│\s*pairs\s*│\s*6\s*│", text), text
    assert re.search(r"closed cleanly\s*│\s*the last session yes; cut short: session 1, 2", text)
    rows = _rows(text, "sessions")
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert [r[3] for r in rows] == ["3", "2", "1"]  # pairs
    assert [r[4] for r in rows] == ["cut short", "cut short", "cleanly"]
    assert [r[5] for r in rows] == ["-", "3 min 05 s", "2.5 s"]  # gap before
    assert [r[6] for r in rows] == ["-", "restart", "restart"]
    day = report._day(T0)
    assert rows[1][1] == report._clock(T0 + 188.25, day)  # started
    assert rows[1][2] == report._clock(T0 + 190.5, day)  # last record: pair 5's notification


def test_info_of_a_single_session_has_no_sessions_table(tmp_path: Path) -> None:
    p = tmp_path / "one.gwscap"
    _session(p, range(1, 3))
    console = Console(record=True, width=160)
    console.print(report.info(str(p)))
    text = console.export_text()
    assert re.search(r"│\s*sessions\s*│\s*1\s*│", text) and "gap before" not in text
    assert re.search(r"closed cleanly\s*│\s*yes\s*│", text)


def test_cli_info_of_a_restarted_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    p = tmp_path / "cli.gwscap"
    _session(p, range(1, 3))
    _session(p, range(3, 4), t0=T0 + 7300, continues="restart")
    assert cli.main(["info", str(p)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "gap before" in out and "restart" in out


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.04, "0.0 s"),
        (59.94, "59.9 s"),
        (61, "1 min 01 s"),
        (3 * 3600 + 62, "3 h 01 min"),
        (50 * 3600, "2 d 02 h"),
        (-1.5, "-1.5 s"),
    ],
)
def test_durations(seconds: float, shown: str) -> None:
    assert report._duration(seconds) == shown
