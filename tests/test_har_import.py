"""`gwsproxy import` of HAR files: mitmproxy's own HAR writer, Chrome-shaped HARs with
WebSocket frames, HARs without response content, blob:/data: entries; secrets stay out."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flow_builders import gws_flow
from mitmproxy import flow as mitm_flow
from mitmproxy.addons.savehar import SaveHar

from gwsproxy import cli
from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.record import har
from gwsproxy.record.command import import_file
from gwsproxy.record.records import after_of

T0 = 1_790_000_000.0
USER, PASSWORD = "agent7", "pa55-SECRET-word"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
JSESSION = "JSESS-SECRET-0042"
OTHER_COOKIE = "tracker-SECRET-77"
CSRF = "csrf-SECRET-token"
CLIENT_ID = "clientid-SECRET-9"
COOKIE = f"JSESSIONID={JSESSION}; other={OTHER_COOKIE}"
SECRETS = (
    PASSWORD,
    AUTH.split()[1],
    JSESSION,
    OTHER_COOKIE,
    CSRF,
    CLIENT_ID,
    "SETCOOKIE-SECRET",
)
CHAT = "/api/v2/me/chats/C1"
HOST = "https://gws.example.test"


def _update(user_data: dict[str, Any]) -> bytes:
    return json.dumps({"operationName": "UpdateUserData", "userData": user_data}).encode()


def _note(ref: int, user_data: dict[str, Any]) -> dict[str, Any]:
    return {
        "channel": "/v2/me/chats",
        "clientId": CLIENT_ID,
        "data": {
            "messageType": "ChatStateChangeMessage",
            "notificationType": "PropertiesUpdated",
            "referenceId": ref,
            "chat": {"id": "C1", "userData": user_data},
        },
    }


def _secret_headers() -> list[tuple[bytes, bytes]]:
    return [
        (b"Host", b"gws.example.test"),
        (b"Authorization", AUTH.encode()),
        (b"Cookie", COOKIE.encode()),
        (b"X-CSRF-Token", CSRF.encode()),
        (b"Content-Type", b"application/json"),
    ]


def _flow(method: str, path: str, body: bytes, answer: bytes, start: float, end: float):
    return gws_flow(
        method,
        path,
        body,
        answer,
        sent=start,
        answered=end,
        headers=_secret_headers(),
        answer_headers=[
            (b"Content-Type", b"application/json"),
            (b"Set-Cookie", b"X=SETCOOKIE-SECRET; Path=/"),
        ],
    )


def _mitmproxy_har(tmp_path: Path) -> Path:
    """Two updates of chat C1, their notifications in long-poll answers that started before the
    requests and ended after them, in the order mitmproxy's hardump writes flows (as they end)."""
    flows = [
        _flow(
            "GET",
            CHAT,
            b"",
            b'{"statusCode": 0, "chat": {"id": "C1", "userData": {"A": "1"}}}',
            T0,
            T0 + 0.05,
        ),
        _flow("POST", CHAT, _update({"B": 2}), b'{"statusCode": 0}', T0 + 1, T0 + 1.02),
        _flow(
            "POST",
            "/api/v2/notifications/connect",
            b"[]",
            json.dumps([_note(11, {"A": "1", "B": 2})]).encode(),
            T0 + 0.5,
            T0 + 1.03,
        ),
        _flow("POST", CHAT, _update({"C": 3}), b'{"statusCode": 0}', T0 + 2, T0 + 2.01),
        _flow(
            "POST",
            "/api/v2/notifications/connect",
            b"[]",
            json.dumps([_note(12, {"A": "1", "B": 2, "C": "3"})]).encode(),
            T0 + 1.04,
            T0 + 2.5,
        ),
    ]
    path = tmp_path / "mitm.har"
    path.write_text(json.dumps(SaveHar().make_har(flows), indent=4))
    return path


def _records(path: Path) -> tuple[list[tuple[dict, dict]], list[dict], bytes]:
    """Pairs (summary, body), raw summaries, and every record's decompressed bytes."""
    pairs, raws, blob = [], [], []
    with CaptureReader(str(path)) as reader:
        for entry in reader.index():
            body = reader.body(entry)
            blob.append(repr((entry.summary, body)))
            if entry.kind == Kind.PAIR:
                pairs.append((entry.summary, body))
            elif entry.kind == Kind.RAW:
                raws.append(entry.summary)
        blob.append(repr((reader.header, reader.sessions)))
    return pairs, raws, "".join(blob).encode()


def _assert_no_secrets(blob: bytes) -> None:
    assert b"<redacted " in blob  # the headers are there, their values replaced
    for secret in SECRETS:
        assert secret.encode() not in blob, f"{secret} reached the capture"


def test_a_har_from_mitmproxys_writer_pairs_as_live_traffic(tmp_path):
    out = tmp_path / "mitm.gwscap"
    result = import_file(str(_mitmproxy_har(tmp_path)), str(out))
    capture = result.path
    counter = result.counts
    notes = result.notes
    assert counter["pairs"] == 2
    assert notes == []
    pairs, raws, blob = _records(Path(capture))
    assert [(s["reference_id"], s["status"], s["http_status"]) for s, _ in pairs] == [
        (11, "matched", 200),
        (12, "matched", 200),
    ]
    assert pairs[0][1]["before"] == {"A": "1"}  # from the GET's answer
    assert after_of(*pairs[1]) == {"A": "1", "B": 2, "C": "3"}  # coerced: asked 3, got "3"
    assert raws == []
    _assert_no_secrets(blob)


def _chrome_entry(url: str, started: float, ms: float, **extra: Any) -> dict[str, Any]:
    return {
        "startedDateTime": datetime.fromtimestamp(started, UTC).isoformat().replace("+00:00", "Z"),
        "time": ms,
        "request": {
            "method": "GET",
            "url": url,
            "httpVersion": "http/2.0",
            "headers": [
                {"name": ":authority", "value": "gws.example.test"},
                {"name": "authorization", "value": AUTH},
                {"name": "cookie", "value": COOKIE},
                {"name": "x-csrf-token", "value": CSRF},
            ],
            "cookies": [{"name": "JSESSIONID", "value": JSESSION}],
            "queryString": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": 200,
            "statusText": "",
            "httpVersion": "http/2.0",
            "headers": [{"name": "set-cookie", "value": "X=SETCOOKIE-SECRET"}],
            "cookies": [],
            "content": {"size": 0, "mimeType": "application/json"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        },
        "cache": {},
        "timings": {
            "blocked": 1,
            "dns": -1,
            "ssl": -1,
            "connect": -1,
            "send": 0,
            "wait": ms - 1,
            "receive": 0,
        },
        **extra,
    }


def _post(entry: dict[str, Any], body: bytes, answer: bytes | None) -> dict[str, Any]:
    entry["request"]["method"] = "POST"
    entry["request"]["postData"] = {"mimeType": "application/json", "text": body.decode()}
    if answer is not None:
        entry["response"]["content"] = {
            "size": len(answer),
            "mimeType": "application/json",
            "text": answer.decode(),
        }
    else:  # saved "without content": the size is known, the text is not
        entry["response"]["content"] = {"size": 17, "mimeType": "application/json"}
    return entry


def _chrome_har(with_content: bool = True) -> dict[str, Any]:
    """Chrome DevTools' shape: a CometD WebSocket whose frames carry the notifications (time in
    seconds), user-data requests over HTTP, blob: and data: entries in between."""
    answer = b'{"statusCode": 0}' if with_content else None
    frames = [
        {
            "type": "send",
            "time": T0 + 0.1,
            "opcode": 1,
            "data": json.dumps([{"channel": "/meta/connect", "clientId": CLIENT_ID}]),
        },
        {
            "type": "receive",
            "time": T0 + 1.0105,
            "opcode": 1,
            "data": json.dumps([_note(21, {"K": 1})]),
        },
        {
            "type": "receive",
            "time": T0 + 2.003,
            "opcode": 1,
            "data": json.dumps([_note(22, {"K": 1, "L": "x"})]),
        },
    ]
    ws = _chrome_entry(
        "wss://gws.example.test/api/v2/notifications",
        T0,
        5.0,
        _resourceType="websocket",
        _webSocketMessages=frames,
    )
    ws["response"]["status"] = 101
    entries = [
        ws,
        _chrome_entry("blob:https://gws.example.test/0c1d-22", T0 + 0.2, 1.0),
        _chrome_entry("data:image/png;base64,iVBORw0KGgo=", T0 + 0.3, 0.0),
        # HAR times are rounded: the request starts "after" its notification's frame time.
        _post(_chrome_entry(HOST + CHAT, T0 + 1.011, 9.0), _update({"K": 1}), answer),
        _post(_chrome_entry(HOST + CHAT, T0 + 2.0, 4.0), _update({"L": "x"}), answer),
    ]
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "WebInspector", "version": "537.36"},
            "pages": [],
            "entries": entries,
        }
    }


def test_a_chrome_har_with_websocket_frames_pairs_by_reference_id(tmp_path):
    path = tmp_path / "chrome.har"
    path.write_text(json.dumps(_chrome_har()))
    result = import_file(str(path), str(tmp_path / "chrome.gwscap"))
    capture = result.path
    notes = result.notes
    pairs, raws, blob = _records(Path(capture))
    assert [(s["reference_id"], s["status"]) for s, _ in pairs] == [
        (21, "matched"),
        (22, "matched"),
    ]
    assert after_of(*pairs[1]) == {"K": 1, "L": "x"}
    assert raws == []
    assert notes == ["2 entries skipped: not HTTP (blob:, data: ...)"]
    _assert_no_secrets(blob)


def test_playwright_frame_times_in_milliseconds(tmp_path):
    doc = _chrome_har()
    for frame in doc["log"]["entries"][0]["_webSocketMessages"]:
        frame["time"] *= 1000
    path = tmp_path / "pw.har"
    path.write_text(json.dumps(doc))
    result = import_file(str(path), str(tmp_path / "pw.gwscap"))
    capture = result.path
    pairs, _, _ = _records(Path(capture))
    assert [(s["reference_id"], s["status"]) for s, _ in pairs] == [
        (21, "matched"),
        (22, "matched"),
    ]


def test_what_a_har_did_not_save_is_said_per_pair(tmp_path):
    path = tmp_path / "nocontent.har"
    path.write_text(json.dumps(_chrome_har(with_content=False)))
    result = import_file(str(path), str(tmp_path / "nc.gwscap"))
    capture = result.path
    notes = result.notes
    pairs, raws, blob = _records(Path(capture))
    # The notifications still pair them; each pair says its answer's body is missing.
    assert [(s["reference_id"], s["status"]) for s, _ in pairs] == [
        (21, "matched"),
        (22, "matched"),
    ]
    assert all("no body for this answer (HTTP 200, not saved)" in s["error"] for s, _ in pairs)
    assert raws == []
    assert "2 exchanges without their body in the HAR" in notes[1]
    _assert_no_secrets(blob)


def test_a_long_poll_answer_not_saved_is_said_not_guessed(tmp_path):
    doc = json.loads(_mitmproxy_har(tmp_path).read_text())
    for entry in doc["log"]["entries"]:
        if "notifications" in entry["request"]["url"]:
            del entry["response"]["content"]["text"]
    path = tmp_path / "lp.har"
    path.write_text(json.dumps(doc))
    result = import_file(str(path), str(tmp_path / "lp.gwscap"), timeout=1.0)
    capture = result.path
    pairs, raws, _ = _records(Path(capture))
    # The first one's second passed within the HAR; the HAR ended before the second one's did.
    assert [s["status"] for s, _ in pairs] == ["timeout", "incomplete"]
    assert [r["reason"].split(":")[0] for r in raws] == [
        "the HAR has no body for this long-poll answer (not saved)"
    ] * 2


def test_a_sanitized_har_without_secrets_still_pairs(tmp_path):
    doc = _chrome_har()
    for entry in doc["log"]["entries"]:
        entry["request"]["headers"] = [
            h for h in entry["request"]["headers"] if h["name"] not in ("authorization", "cookie")
        ]
        entry["request"]["cookies"] = []
    path = tmp_path / "sanitized.har"
    path.write_text(json.dumps(doc))
    result = import_file(str(path), str(tmp_path / "s.gwscap"))
    capture = result.path
    pairs, _, _ = _records(Path(capture))
    assert [s["status"] for s, _ in pairs] == ["matched", "matched"]


def test_a_truncated_har_keeps_what_it_read_and_says_where_it_stopped(tmp_path):
    text = json.dumps(_chrome_har())
    cut = text.index('"startedDateTime"', text.index("data:image"))  # inside the 4th entry
    path = tmp_path / "cut.har"
    path.write_text(text[:cut])
    result = import_file(str(path), str(tmp_path / "cut.gwscap"))
    notes = result.notes
    assert "reading stopped after entry 3" in notes[-1]


def test_not_a_har_is_said_in_one_line(tmp_path, capsys):
    path = tmp_path / "x.har"
    path.write_text('{"hello": [1, 2')
    assert cli.main(["import", str(path), "-o", str(tmp_path / "x.gwscap")]) != 0
    assert "is not a HAR file" in capsys.readouterr().err


def test_the_command_line_tells_har_from_a_flow_dump_by_content(tmp_path, capsys):
    path = tmp_path / "no-suffix"
    path.write_bytes(_mitmproxy_har(tmp_path).read_bytes())
    assert cli.main(["import", str(path), "-o", str(tmp_path / "c.gwscap")]) == 0
    assert ": 2 pairs" in capsys.readouterr().out


def test_entries_out_of_order_are_recorded_in_time_order(tmp_path):
    doc = json.loads(_mitmproxy_har(tmp_path).read_text())
    doc["log"]["entries"].reverse()
    path = tmp_path / "rev.har"
    path.write_text(json.dumps(doc))
    result = import_file(str(path), str(tmp_path / "rev.gwscap"))
    capture = result.path
    pairs, _, _ = _records(Path(capture))
    assert [(s["reference_id"], s["status"]) for s, _ in pairs] == [
        (11, "matched"),
        (12, "matched"),
    ]


@pytest.mark.parametrize("head", [b'{"log"', b'\xef\xbb\xbf  {\n "log"'])
def test_a_har_is_told_by_its_first_bytes(head):
    assert har.is_har(head)
    assert not har.is_har(b"1234:5:flows,")


def test_the_inspector_opens_a_har_through_a_capture_beside_it(tmp_path, capsys):
    from gwsproxy.tui.app import _as_capture, run_tui

    source = _mitmproxy_har(tmp_path)
    beside = str(source) + ".gwscap"
    assert _as_capture(str(source), str(tmp_path / "scratch")) == beside
    assert "2 pairs, imported into" in capsys.readouterr().err
    pairs, _, _ = _records(Path(beside))
    assert [s["reference_id"] for s, _ in pairs] == [11, 12]
    assert _as_capture(str(source), str(tmp_path / "scratch")) == beside  # used again
    assert capsys.readouterr().err == ""
    assert _as_capture(beside, str(tmp_path / "scratch")) == beside  # a capture as it is
    (tmp_path / "junk.har").write_text('{"not": "a har"}')
    assert run_tui([str(tmp_path / "junk.har")], follow=False) == 2
    assert "junk.har is not a HAR file" in capsys.readouterr().err


def test_a_mitmproxy_har_says_which_requests_never_reached_gws(tmp_path):
    """mitmproxy's HAR of requests it could not forward: refused (no server address), a
    certificate refused (connected, no TLS time), and one that broke after it reached GWS."""

    def broken(chat: str, why: str, start: float, connected: bool, tls: bool):
        flow = _flow("POST", f"/api/v2/me/chats/{chat}", _update({"K": chat}), b"", start, start)
        flow.response = None
        flow.error = mitm_flow.Error(why)
        server = flow.server_conn
        server.timestamp_start = start
        server.peername = ("10.0.0.9", 443) if connected else None
        server.timestamp_tcp_setup = start + 0.001 if connected else None
        server.timestamp_tls_setup = start + 0.002 if tls else None
        return flow

    flows = [
        broken("R1", "[Errno 111] Connect call failed ('10.0.0.9', 443)", T0, False, False),
        broken("R2", "Certificate verify failed: self-signed certificate", T0 + 1, True, False),
        broken("R3", "peer closed connection", T0 + 2, True, True),
    ]
    path = tmp_path / "refused.har"
    path.write_text(json.dumps(SaveHar().make_har(flows)))
    pairs, _, _ = _records(Path(import_file(str(path), str(tmp_path / "r.gwscap")).path))
    got = {
        s["interaction_id"]: (s["status"], s.get("error"), s.get("http_status")) for s, _ in pairs
    }
    assert got["R1"] == ("failed", "[Errno 111] Connect call failed ('10.0.0.9', 443)", None)
    assert got["R2"] == ("failed", "Certificate verify failed: self-signed certificate", None)
    assert got["R3"][0] in ("timeout", "incomplete")  # it reached GWS: it may have been done
