"""`gwsproxy export FILE --format har`: a HAR 1.2 file that mitmproxy's own HAR reader reads back
with the capture's requests, answers and notifications, `_gwsproxy` marks on its entries, and
no secret in clear."""

from __future__ import annotations

import base64
import io
import json
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.io import read_flows_from_paths

from gwsproxy import bayeux, cli, gws, verdict
from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.record import events
from gwsproxy.record.core import Recording
from gwsproxy.report import export_pairs
from gwsproxy.report_har import write_har
from gwsproxy.testing.synthetic import PASSWORD, write_capture

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "captures" / "examples").glob("*.gwscap"))
T0 = 1_700_000_000.0


def _export(capture: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    har = tmp_path / (capture.stem + ".har")
    assert cli.main(["export", str(capture), "--format", "har", "-o", str(har)]) == 0
    return har, json.loads(har.read_text(encoding="utf-8"))


def _check_har(doc: dict[str, Any]) -> None:
    """The fields HAR 1.2 requires, with their types."""
    log = doc["log"]
    assert log["version"] == "1.2"
    assert isinstance(log["creator"]["name"], str) and isinstance(log["creator"]["version"], str)
    for entry in log["entries"]:
        datetime.fromisoformat(entry["startedDateTime"].replace("Z", "+00:00"))
        assert entry["time"] >= 0
        req, resp = entry["request"], entry["response"]
        for key, kind in (
            ("method", str),
            ("url", str),
            ("httpVersion", str),
            ("headers", list),
            ("queryString", list),
            ("cookies", list),
            ("headersSize", int),
            ("bodySize", int),
        ):
            assert isinstance(req[key], kind), key
        for key, kind in (
            ("status", int),
            ("statusText", str),
            ("httpVersion", str),
            ("headers", list),
            ("cookies", list),
            ("redirectURL", str),
            ("headersSize", int),
            ("bodySize", int),
        ):
            assert isinstance(resp[key], kind), key
        assert isinstance(resp["content"]["size"], int)
        assert isinstance(resp["content"]["mimeType"], str)
        for h in req["headers"] + resp["headers"]:
            assert isinstance(h["name"], str) and isinstance(h["value"], str)
        assert isinstance(entry["cache"], dict)
        timings = entry["timings"]
        assert all(timings[k] >= 0 for k in ("send", "wait", "receive"))
        assert all(timings.get(k, -1) >= -1 for k in ("blocked", "dns", "connect", "ssl"))


def _expected_exchanges(capture: Path) -> list[tuple[str, str, bytes, int, bytes]]:
    """From the capture itself: (method, path, request body, status, response body) of each
    HTTP exchange the HAR should hold, in file order: a pair's request, then its long-poll
    notification (an answer holding the one message), and each unsolicited long-poll one."""
    out = []
    with CaptureReader(str(capture)) as reader:
        for entry in reader.iter_entries():
            if entry.kind not in (Kind.PAIR, Kind.NOTIFICATION):
                continue
            body = reader.body(entry) or {}
            req, resp = body.get("request"), body.get("response")
            if req:
                status, content = (resp["status"], resp["body"]) if resp else (0, b"")
                out.append((req["method"], req["path"], req["body"], status, content))
            note = body.get("notification")
            if note and note["transport"] == "long-polling":
                batch = b"[" + note["raw"] + b"]"
                out.append(("POST", bayeux.NOTIFICATIONS_PATH, b"", 200, batch))
    return out


def _read_back(har: Path) -> list[http.HTTPFlow]:
    flows = read_flows_from_paths([str(har)])
    assert all(isinstance(f, http.HTTPFlow) for f in flows)
    return flows  # type: ignore[return-value]


def _exchanges(flows: list[http.HTTPFlow]) -> list[tuple[str, str, bytes, int, bytes]]:
    out = []
    for f in flows:
        assert f.response is not None
        if f.response.status_code == 101:  # a WebSocket entry: its frames are not read
            continue
        content = f.response.content or b""
        out.append(
            (f.request.method, f.request.path, f.request.content, f.response.status_code, content)
        )
    return out


@pytest.mark.parametrize("capture", EXAMPLES, ids=lambda p: p.stem)
def test_an_example_capture_exports_a_har_mitmproxy_reads_back(capture: Path, tmp_path: Path):
    har, doc = _export(capture, tmp_path)
    _check_har(doc)
    flows = _read_back(har)
    assert _exchanges(flows) == _expected_exchanges(capture)
    # the request entries carry the pairs, in file order
    ids = [
        e["_gwsproxy"]["pair"] for e in doc["log"]["entries"] if e["_gwsproxy"]["role"] == "request"
    ]
    assert ids == [p["id"] for p in export_pairs(str(capture))]


def test_a_synthetic_capture_reads_back_with_its_pairs_times_and_verdicts(tmp_path: Path):
    capture = tmp_path / "synthetic.gwscap"
    write_capture(capture, 120, seed=3)
    har, doc = _export(capture, tmp_path)
    _check_har(doc)
    flows = _read_back(har)
    assert _exchanges(flows) == _expected_exchanges(capture)

    entries = doc["log"]["entries"]
    requests = [e for e in entries if e["_gwsproxy"]["role"] == "request"]
    pairs = list(export_pairs(str(capture)))
    assert len(requests) == len(pairs) > 100
    judged = set()
    for entry, pair in zip(requests, pairs, strict=True):
        marks = entry["_gwsproxy"]
        want = verdict.judge(
            pair["status"],
            pair["operation"],
            pair["media"],
            pair["requested"],
            pair["before"],
            pair["after"],
        ).name
        assert (marks["pair"], marks["verdict"], marks["referenceId"]) == (
            pair["id"],
            want,
            pair["reference_id"],
        )
        judged.add(marks["verdict"])
        started = datetime.fromisoformat(entry["startedDateTime"].replace("Z", "+00:00"))
        assert started.timestamp() == pytest.approx(pair["timings"]["request"], abs=0.001)
    # synthetic traffic holds every outcome: the verdicts are judged, not the statuses copied
    assert {"applied", "coerced", "not applied", "side effects", "timeout"} <= judged

    # a notification entry is marked with its pair and timed when the notification came
    notes = {e["_gwsproxy"]["pair"]: e for e in entries if e["_gwsproxy"]["role"] == "notification"}
    matched = [p for p in pairs if p["status"] == "matched"]
    assert matched
    for pair in matched:
        started = datetime.fromisoformat(
            notes[pair["id"]]["startedDateTime"].replace("Z", "+00:00")
        )
        assert started.timestamp() == pytest.approx(pair["timings"]["notification"], abs=0.001)
    # the unsolicited notifications are entries too
    assert any(e["_gwsproxy"].get("unsolicited") for e in entries)

    # mitmproxy's flows are timed as the entries
    assert flows[0].request.timestamp_start == pytest.approx(
        pairs[0]["timings"]["request"], abs=0.001
    )


def test_no_secret_of_the_capture_is_in_the_har(tmp_path: Path):
    capture = tmp_path / "synthetic.gwscap"
    write_capture(capture, 40, seed=1)
    out = io.StringIO()
    write_har(str(capture), out)
    text = out.getvalue()
    assert "<redacted " in text  # the Authorization header is there, as the capture holds it
    assert PASSWORD not in text
    for n in range(1, 5):
        credentials = base64.b64encode(f"agent{n}:{PASSWORD}".encode()).decode()
        assert credentials not in text
        assert gws.basic_authorization(f"agent{n}", PASSWORD) not in text


# ---- WebSocket notifications: Chrome's `_webSocketMessages` ----------------------------------

JSON_TYPE = [(b"Content-Type", b"application/json")]


def _websocket_capture(path: Path) -> None:
    """Two agents whose notifications come over WebSocket, one over long polling, one request
    that never reached GWS."""
    recording = Recording()
    recording.open(str(path), "reverse:https://gws.example.com")
    t = T0
    for n, agent in enumerate(("agent1", "agent2", "agent1")):
        who = (agent, None, "127.0.0.1")
        chat = f"C{n}"
        path_ = f"/api/v2/me/chats/{chat}"
        value = f"café {n}"
        doc = {"operationName": "UpdateUserData", "userData": {"K": value}}
        body = json.dumps(doc, ensure_ascii=False).encode()
        headers = [(b"Host", b"gws.example.com"), *JSON_TYPE]
        recording.handle(
            events.Request(events.REQUEST, f"f{n}", who, "POST", path_, headers, body, t)
        )
        answer = b'{"statusCode": 0}'
        recording.handle(
            events.Response(
                events.RESPONSE, f"f{n}", who, "POST", path_, 200, JSON_TYPE, answer, t + 0.01
            )
        )
        note = json.dumps(
            [
                {
                    "channel": "/v2/me/chats",
                    "data": {
                        "messageType": "ChatStateChangeMessage",
                        "notificationType": "PropertiesUpdated",
                        "chat": {"id": chat, "userData": {"K": value}},
                    },
                }
            ],
            ensure_ascii=False,
        ).encode()
        recording.handle(events.Frame(events.FRAME, who, bayeux.NOTIFICATIONS_PATH, note, t + 0.05))
        t += 1
    who = ("agent3", None, "127.0.0.1")
    body = b'{"operationName": "UpdateUserData", "userData": {"K": 1}}'
    recording.handle(
        events.Request(events.REQUEST, "f9", who, "POST", "/api/v2/me/chats/C9", JSON_TYPE, body, t)
    )
    recording.handle(events.Failed(events.FAILED, "f9", "Connection refused", t + 0.1, False))
    recording.close(t + 1)


def test_websocket_notifications_are_frames_on_one_socket_per_scope(tmp_path: Path):
    capture = tmp_path / "ws.gwscap"
    _websocket_capture(capture)
    har, doc = _export(capture, tmp_path)
    _check_har(doc)
    entries = doc["log"]["entries"]
    sockets = [e for e in entries if e.get("_resourceType") == "websocket"]
    assert [s["request"]["url"] for s in sockets] == [
        "wss://gws.example.com/api/v2/notifications"
    ] * 2
    assert all(s["response"]["status"] == 101 for s in sockets)
    frames = {s["_gwsproxy"]["scope"]: s["_webSocketMessages"] for s in sockets}
    assert [len(f) for f in frames.values()] == [2, 1]  # agent1's two, agent2's one
    with CaptureReader(str(capture)) as reader:
        notes = [
            (e.summary["scope"], e.summary["t_note"], reader.body(e)["notification"]["raw"])
            for e in reader.iter_entries()
            if e.kind == Kind.PAIR and e.summary["status"] == "matched"
        ]
    assert len(notes) == 3
    for scope, t_note, raw in notes:
        assert {
            "type": "receive",
            "time": t_note,
            "opcode": 1,
            "data": "[" + raw.decode() + "]",
        } in frames[scope]
    # the requests go to the upstream's host and scheme, non-ASCII bodies intact
    requests = [e for e in entries if e["_gwsproxy"].get("role") == "request"]
    assert requests[0]["request"]["url"] == "https://gws.example.com/api/v2/me/chats/C0"
    assert "café 0" in requests[0]["request"]["postData"]["text"]
    # the request that never got an answer: no response, its error said
    failed = [e for e in requests if e["_gwsproxy"]["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["response"]["status"] == 0
    assert "Connection refused" in failed[0]["_error"]

    flows = _read_back(har)
    assert _exchanges(flows) == _expected_exchanges(capture)
    assert sum(f.response is not None and f.response.status_code == 101 for f in flows) == 2
    assert json.loads(flows[0].request.content)["userData"] == {"K": "café 0"}


def test_export_writes_har_to_stdout_without_o(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["export", str(EXAMPLES[0]), "--format", "har"]) == 0
    doc = json.loads(capsys.readouterr().out)
    _check_har(doc)
    assert doc["log"]["entries"]


class _Counted(io.TextIOBase):
    """A sink that keeps only how much was written to it."""

    written = 0

    def write(self, s: str) -> int:
        self.written += len(s)
        return len(s)


def test_the_har_is_written_as_it_goes_in_bounded_memory(tmp_path: Path):
    capture = tmp_path / "big.gwscap"
    write_capture(capture, 1000, seed=2)
    tracemalloc.start()
    with CaptureReader(str(capture)) as reader:  # what reading every record costs anyway
        for entry in reader.iter_entries():
            reader.body(entry)
    reading = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    tracemalloc.start()
    sink = _Counted()
    write_har(str(capture), sink)
    exporting = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sink.written > 2_000_000
    # the document is never held whole: the export costs little more than reading the capture
    assert exporting - reading < sink.written / 10


def _what_matters(pair: dict[str, Any]) -> tuple[Any, ...]:
    fields = ("reference_id", "interaction_id", "operation", "status", "verdict")
    shown = ("before", "after", "findings")
    return tuple(pair[f] for f in fields) + tuple(
        json.dumps(pair[f], sort_keys=True) for f in shown
    )


@pytest.mark.parametrize("capture", [*EXAMPLES, "synthetic", "websocket"], ids=str)
def test_a_har_export_imports_back_to_the_same_pairs(capture: Any, tmp_path: Path):
    """The round trip: `export --format har`, then `import` of that HAR, gives the pairs again
    (referenceIds, before, after, statuses, verdicts and findings)."""
    from gwsproxy.record.command import import_file

    if capture == "synthetic":
        capture = tmp_path / "synthetic.gwscap"
        write_capture(capture, 120, seed=3)
    elif capture == "websocket":
        capture = tmp_path / "ws.gwscap"
        _websocket_capture(capture)
    har, _ = _export(capture, tmp_path)
    back = import_file(str(har), str(tmp_path / "back.gwscap"))
    original = sorted(map(_what_matters, export_pairs(str(capture))), key=repr)
    assert sorted(map(_what_matters, export_pairs(back.path)), key=repr) == original
