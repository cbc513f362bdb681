"""The recorder addon in-process (mitmproxy's own test helpers), for what timing makes awkward
to provoke through real processes."""

import json
import time
from pathlib import Path

import msgpack
import pytest
from mitmproxy.test import taddons, tflow

from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.record import events
from gwsproxy.record.addon import GwsRecorder
from gwsproxy.record.core import Recording


@pytest.mark.e2e  # the recorder writes through its worker process
def test_an_answer_after_the_timeout_is_recorded_not_dropped(tmp_path):
    path = tmp_path / "late.gwscap"
    recorder = GwsRecorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, gws_capture=str(path), gws_timeout="0.5")
        flow = tflow.tflow(resp=True)
        flow.request.method = "POST"
        flow.request.path = "/api/v2/me/chats/C1"
        flow.request.content = json.dumps(
            {"operationName": "UpdateUserData", "userData": {"K": 1}}
        ).encode()
        flow.response.content = b'{"statusCode": 0}'
        recorder.request(flow)
        recorder.advance(time.time() + 1)  # the timeout passes with no answer
        recorder.response(flow)
        recorder.done()
    with CaptureReader(str(path)) as reader:
        entries = reader.index()
        pairs = [e.summary for e in entries if e.kind == Kind.PAIR]
        raws = [e for e in entries if e.kind == Kind.RAW]
        assert [p["status"] for p in pairs] == ["timeout"]
        assert len(raws) == 1
        assert raws[0].summary["reason"].startswith("late answer (HTTP 200)")
        assert reader.body(raws[0])["bytes"] == b'{"statusCode": 0}'


# ---- events: what the addon hands the recording core, in this process or through the pipe -----

T0 = 1_700_000_000.0
WHO = ("agent1", None, "127.0.0.1")
JSON_TYPE = [(b"Content-Type", b"application/json")]
UPDATE = b'{"operationName": "UpdateUserData", "userData": {"K": 1}}'
NOTE = (
    b'[{"channel": "/v2/me/chats", "data": {"messageType": "ChatStateChangeMessage", '
    b'"notificationType": "PropertiesUpdated", "chat": {"id": "C1", "userData": {"K": 1}}}}]'
)


def _events() -> list[events.Event]:
    path = "/api/v2/me/chats/C1"
    return [
        events.Request(events.REQUEST, "f1", WHO, "POST", path, JSON_TYPE, UPDATE, T0),
        events.Response(
            events.RESPONSE, "f1", WHO, "POST", path, 200, JSON_TYPE, b'{"statusCode": 0}', T0
        ),
        events.Frame(events.FRAME, WHO, "/api/v2/notifications", NOTE, T0 + 0.1),
        events.Request(events.REQUEST, "f2", WHO, "POST", path, JSON_TYPE, UPDATE, T0 + 1),
        events.Failed(events.FAILED, "f2", "Connection refused", T0 + 1.1, False),
        events.Raw(events.RAW, T0 + 2, "too large", "request", b"{", WHO, path, 10_000_000),
        events.Advance(events.ADVANCE, T0 + 30),
    ]


def _recorded(path: Path, items: list) -> list[tuple[int, dict]]:
    recording = Recording()
    recording.open(str(path), "http://gws.test")
    for item in items:
        recording.handle(item)
    recording.close(T0 + 31)
    with CaptureReader(str(path)) as reader:
        entries = reader.index()
        assert reader.ended and reader.damage == []
    return [(e.kind, e.summary) for e in entries if e.kind not in (Kind.HEADER, Kind.END)]


def test_an_event_crosses_the_pipe_as_a_plain_array_and_records_alike(tmp_path: Path):
    typed = _events()
    wire = [msgpack.unpackb(msgpack.packb(e)) for e in typed]
    # The worker's wire form: the kind, then the fields in order (tuples become lists).
    assert wire[0] == [
        events.REQUEST,
        "f1",
        ["agent1", None, "127.0.0.1"],
        "POST",
        "/api/v2/me/chats/C1",
        [[b"Content-Type", b"application/json"]],
        UPDATE,
        T0,
    ]
    assert wire[4] == [events.FAILED, "f2", "Connection refused", T0 + 1.1, False]
    assert [type(events.decode(item)) for item in wire] == [type(e) for e in typed]
    in_process = _recorded(tmp_path / "typed.gwscap", typed)
    assert in_process == _recorded(tmp_path / "wire.gwscap", wire)
    statuses = [s.get("status") or s.get("reason") for _, s in in_process]
    assert statuses == ["matched", "failed", "too large"]


def test_a_raw_event_without_identity_path_and_size_is_recorded_all_the_same(tmp_path: Path):
    # The addon's own internal error: the 5 leading fields of a RAW event.
    reason = "internal error in request: boom"
    short = [events.RAW, T0, reason, "request", b""]
    assert events.decode(short) == (events.RAW, T0, reason, "request", b"", None, None, None)
    ((kind, summary),) = _recorded(tmp_path / "raw.gwscap", [short])
    assert kind == Kind.RAW
    assert (summary["reason"], summary["scope"], summary["size"]) == (reason, None, 0)


def test_what_is_no_event_is_recorded_raw_as_an_internal_error(tmp_path: Path):
    ((kind, summary),) = _recorded(tmp_path / "bad.gwscap", [[99, "?"]])
    assert kind == Kind.RAW
    assert summary["reason"].startswith("internal error in event: ValueError")


def test_the_live_line_counts_the_requests_that_never_reached_gws(tmp_path: Path):
    import io

    from gwsproxy.record.command import Counter

    recording = Recording()
    recording.open(str(tmp_path / "live.gwscap"), "http://gws.test")
    for event in _events()[:-1]:  # before the timeout: the failed pair is closed already
        recording.handle(event)

    class Recorder:  # what Counter reads of GwsRecorder: its counts
        def counts(self) -> dict[str, int]:
            return recording.counts()

    line = Counter(Recorder(), io.StringIO()).line()  # type: ignore[arg-type]
    recording.close(T0 + 31)
    assert line == "pairs 2  open 0  unmatched 0  failed 1  raw 1"
