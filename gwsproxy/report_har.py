"""`gwsproxy export FILE --format har`: a capture as a HAR 1.2 file, for browsers' network panels
and mitmproxy (`mitmproxy -r`).

Each pair gives its request entry (the request and GWS's answer, as recorded: redacted headers
stay redacted) and, when a notification came over long polling, a notification entry: a POST to
the notifications path whose answer is the Bayeux batch holding that one message, started at
the time it arrived. Notifications over WebSocket become receive frames in Chrome's
`_webSocketMessages` form, on one WebSocket entry per scope (the capture keeps no connections),
written after the HTTP entries. Unsolicited notifications are entries or frames the same way;
raw (unreadable) records are left out. `_gwsproxy` on each entry names its pair, verdict and
referenceId.

The JSON is written entry by entry: WebSocket frames wait in a temporary file, so memory does
not grow with the capture.
"""

from __future__ import annotations

import base64
import json
import tempfile
from array import array
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import IO, Any, TextIO
from urllib.parse import parse_qsl, urlsplit

from gwsproxy import __version__, bayeux
from gwsproxy.capture.format import CaptureError, Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.record.indexing import judge_pair, verdict_name

HAR_VERSION = "1.2"
LONG_POLLING, WEBSOCKET = "long-polling", "websocket"
UNKNOWN_HOST = "gws.invalid"  # the capture named no host (HTTP/2 without Host, an example file)
_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def write_har(path: str, out: TextIO, progress: Callable[[int], None] | None = None) -> int:
    """Write the capture at `path` to `out` as HAR 1.2; returns the number of entries.
    `progress` gets the file offset of each record read."""
    writer = _HarWriter(out)
    with CaptureReader(path) as reader, tempfile.TemporaryFile() as spill:
        frames = _Frames(spill)
        writer.begin(f"gwsproxy export of {path}")
        upstream = ""
        for entry in reader.iter_entries():
            if progress is not None:
                progress(entry.offset)
            if entry.kind == Kind.HEADER:
                upstream = str(entry.summary.get("upstream") or "")
            elif entry.kind in (Kind.PAIR, Kind.NOTIFICATION):
                try:
                    body = reader.body(entry) or {}
                except CaptureError:  # a damaged body: what its summary says is still exported
                    body = {}
                for har_entry, frame in _entries(entry.kind, entry.summary, body, upstream):
                    if frame is None:
                        writer.entry(har_entry)
                    else:
                        frames.add(har_entry, frame)
        for har_entry, frame_texts in frames.sockets():
            writer.entry(har_entry, frame_texts)
        writer.end()
    return writer.count


# ---- records to entries ---------------------------------------------------------------------


def _entries(
    kind: int, summary: dict[str, Any], body: dict[str, Any], upstream: str
) -> Iterable[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(entry, None) for HTTP entries; (its WebSocket entry, frame) for a WebSocket message."""
    request = body.get("request") or {}
    headers = request.get("headers") or []
    if kind == Kind.PAIR:
        marks = _marks(summary, body)
        if request:
            yield _request_entry(summary, body, upstream, marks), None
    else:
        marks = {
            "pair": None,
            "verdict": None,
            "referenceId": summary.get("reference_id"),
            "scope": summary.get("scope"),
            "media": summary.get("media"),
            "interaction_id": summary.get("interaction_id"),
            "unsolicited": summary.get("reason") or True,
        }
    note = body.get("notification") or {}
    raw = note.get("raw")
    t_note = summary.get("t_note") if kind == Kind.PAIR else summary.get("t")
    if not isinstance(raw, bytes | str) or not isinstance(t_note, int | float):
        return
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    note_marks = {**marks, "role": "notification"}
    url = _url(upstream, headers, bayeux.NOTIFICATIONS_PATH)
    if note.get("transport") == WEBSOCKET:
        socket = _websocket_entry(url, t_note, summary.get("scope"))
        yield socket, {"type": "receive", "time": t_note, "opcode": 1, "data": f"[{text}]"}
    else:
        yield _long_poll_entry(url, t_note, f"[{text}]", note_marks), None


def _marks(summary: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    status = str(summary.get("status") or "")
    return {
        "pair": summary.get("id"),
        "verdict": verdict_name(judge_pair(summary, body)),
        "referenceId": summary.get("reference_id"),
        "status": status,
        "correlation": summary.get("correlation"),
        "scope": summary.get("scope"),
        "media": summary.get("media"),
        "operation": summary.get("operation"),
        "interaction_id": summary.get("interaction_id"),
        "before": body.get("before"),
    }


def _request_entry(
    summary: dict[str, Any], body: dict[str, Any], upstream: str, marks: dict[str, Any]
) -> dict[str, Any]:
    request = body["request"]
    headers = _headers(request.get("headers"))
    url = _url(upstream, request.get("headers") or [], str(request.get("path") or "/"))
    data = _bytes(request.get("body"))
    har_request: dict[str, Any] = {
        "method": str(request.get("method") or "POST"),
        "url": url,
        "httpVersion": "HTTP/1.1",
        "headers": headers,
        "queryString": _query(url),
        "cookies": [],
        "headersSize": -1,
        "bodySize": len(data),
    }
    if data:
        har_request["postData"] = {
            "mimeType": _header(headers, "content-type") or "application/json",
            "text": data.decode("utf-8", "replace"),
        }
    t = summary.get("t")
    t = t if isinstance(t, int | float) else 0.0
    t_answer = summary.get("t_answer")
    answer = body.get("response")
    wait = round(max(0.0, t_answer - t) * 1000, 3) if isinstance(t_answer, int | float) else 0.0
    entry = {
        "startedDateTime": _iso(t),
        "time": wait,
        "request": har_request,
        "response": _response(answer) if answer else _no_response(),
        "cache": {},
        "timings": _timings(wait),
        "_resourceType": "xhr",
        "_gwsproxy": {**marks, "role": "request"},
    }
    if summary.get("error"):
        entry["_error"] = str(summary["error"])
    return entry


def _long_poll_entry(url: str, t: float, batch: str, marks: dict[str, Any]) -> dict[str, Any]:
    content = batch.encode("utf-8")
    headers = [{"name": "Content-Type", "value": "application/json;charset=UTF-8"}]
    return {
        "startedDateTime": _iso(t),
        "time": 0,
        "request": {
            "method": "POST",
            "url": url,
            "httpVersion": "HTTP/1.1",
            "headers": [],
            "queryString": _query(url),
            "cookies": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": 200,
            "statusText": "OK",
            "httpVersion": "HTTP/1.1",
            "headers": headers,
            "cookies": [],
            "content": {
                "size": len(content),
                "mimeType": "application/json;charset=UTF-8",
                "text": batch,
            },
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": len(content),
        },
        "cache": {},
        "timings": _timings(0),
        "_resourceType": "xhr",
        "_gwsproxy": marks,
    }


def _websocket_entry(url: str, t: float, scope: Any) -> dict[str, Any]:
    ws_url = "ws" + url[4:] if url.startswith("http") else url
    return {
        "startedDateTime": _iso(t),
        "time": 0,
        "request": {
            "method": "GET",
            "url": ws_url,
            "httpVersion": "HTTP/1.1",
            "headers": [
                {"name": "Upgrade", "value": "websocket"},
                {"name": "Connection", "value": "Upgrade"},
            ],
            "queryString": [],
            "cookies": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": 101,
            "statusText": "Switching Protocols",
            "httpVersion": "HTTP/1.1",
            "headers": [
                {"name": "Upgrade", "value": "websocket"},
                {"name": "Connection", "value": "Upgrade"},
            ],
            "cookies": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": 0,
        },
        "cache": {},
        "timings": _timings(0),
        "_resourceType": "websocket",
        "_gwsproxy": {"role": "websocket", "scope": scope},
    }


def _response(answer: dict[str, Any]) -> dict[str, Any]:
    status = answer.get("status")
    status = status if isinstance(status, int) else 0
    headers = _headers(answer.get("headers"))
    data = _bytes(answer.get("body"))
    mime = _header(headers, "content-type") or "application/json"
    content: dict[str, Any] = {"size": len(data), "mimeType": mime}
    if data:
        try:
            content["text"] = data.decode("utf-8")
        except UnicodeDecodeError:
            content["text"] = base64.b64encode(data).decode("ascii")
            content["encoding"] = "base64"
    return {
        "status": status,
        "statusText": _REASONS.get(status, ""),
        "httpVersion": "HTTP/1.1",
        "headers": headers,
        "cookies": [],
        "content": content,
        "redirectURL": _header(headers, "location") or "",
        "headersSize": -1,
        "bodySize": len(data),
    }


def _no_response() -> dict[str, Any]:
    """What browsers write for a request that got no answer."""
    return {
        "status": 0,
        "statusText": "",
        "httpVersion": "",
        "headers": [],
        "cookies": [],
        "content": {"size": 0, "mimeType": "x-unknown"},
        "redirectURL": "",
        "headersSize": -1,
        "bodySize": -1,
    }


# ---- small parts ----------------------------------------------------------------------------


def _headers(raw: Any) -> list[dict[str, str]]:
    out = []
    for pair in raw or []:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            name, value = (_text(x) for x in pair)
            out.append({"name": name, "value": value})
    return out


def _header(headers: list[dict[str, str]], name: str) -> str | None:
    return next((h["value"] for h in headers if h["name"].lower() == name), None)


def _text(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def _bytes(x: Any) -> bytes:
    if isinstance(x, bytes):
        return x
    return x.encode("utf-8") if isinstance(x, str) else b""


def _url(upstream: str, raw_headers: Any, path: str) -> str:
    """scheme://host + path: the host from the request's Host header, else from the upstream."""
    target = upstream.split(":", 1)[1] if upstream.startswith(("reverse:", "upstream:")) else ""
    target = target or upstream
    parts = urlsplit(target) if "://" in target else None
    scheme = parts.scheme if parts and parts.scheme in ("http", "https") else "http"
    host = next(
        (
            _text(v)
            for k, v in (p for p in raw_headers or [] if len(p) == 2)
            if _text(k).lower() == "host"
        ),
        None,
    )
    host = host or (parts.netloc if parts else "") or UNKNOWN_HOST
    return f"{scheme}://{host}{path if path.startswith('/') else '/' + path}"


def _query(url: str) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in parse_qsl(urlsplit(url).query, True)]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _timings(wait: float) -> dict[str, float]:
    # HAR 1.2: send, wait and receive are required and not negative; -1 marks the others unknown.
    return {
        "blocked": -1,
        "dns": -1,
        "connect": -1,
        "ssl": -1,
        "send": 0,
        "wait": wait,
        "receive": 0,
    }


# ---- output ---------------------------------------------------------------------------------


class _HarWriter:
    """The HAR document, written as it goes: the log's head, entries one by one, the tail."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0

    def begin(self, comment: str) -> None:
        head = {
            "version": HAR_VERSION,
            "creator": {"name": "gwsproxy", "version": __version__},
            "pages": [],
            "comment": comment,
        }
        text = json.dumps({"log": head}, ensure_ascii=False)
        self.out.write(text[: -len("}}")] + ', "entries": [')  # the log stays open

    def entry(self, entry: dict[str, Any], frames: Iterable[str] | None = None) -> None:
        self.out.write("\n" if not self.count else ",\n")
        text = json.dumps(entry, ensure_ascii=False, default=repr)
        if frames is None:
            self.out.write(text)
        else:  # `_webSocketMessages` last, its frames written one by one
            self.out.write(text[:-1] + ', "_webSocketMessages": [')
            for i, frame in enumerate(frames):
                self.out.write(("," if i else "") + frame)
            self.out.write("]}")
        self.count += 1

    def end(self) -> None:
        self.out.write("\n]}}\n")


class _Frames:
    """WebSocket frames per scope, kept in a temporary file until the HTTP entries are out."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.first: dict[Any, dict[str, Any]] = {}  # scope -> its WebSocket entry
        self.where: dict[Any, tuple[array[int], array[int]]] = {}  # scope -> offsets, sizes

    def add(self, socket: dict[str, Any], frame: dict[str, Any]) -> None:
        scope = socket["_gwsproxy"]["scope"]
        self.first.setdefault(scope, socket)
        offsets, sizes = self.where.setdefault(scope, (array("q"), array("q")))
        data = json.dumps(frame, ensure_ascii=False).encode("utf-8")
        offsets.append(self.file.seek(0, 2))
        sizes.append(len(data))
        self.file.write(data)

    def sockets(self) -> Iterable[tuple[dict[str, Any], Iterable[str]]]:
        for scope, socket in self.first.items():
            offsets, sizes = self.where[scope]
            yield socket, self._read(offsets, sizes)

    def _read(self, offsets: array[int], sizes: array[int]) -> Iterable[str]:
        for offset, size in zip(offsets, sizes, strict=True):
            self.file.seek(offset)
            yield self.file.read(size).decode("utf-8")
