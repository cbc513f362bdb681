"""`gwsproxy import` of a HAR 1.2 file (Chrome, Edge, Firefox, Playwright, mitmproxy's hardump).

Each entry becomes the typed events of `gwsproxy.record.events`, as the mitmproxy addon makes
them of a live flow, and a `Recording` correlates, redacts and writes them: a user-data request at
`startedDateTime`, its answer when the response ended (`startedDateTime` + `time`), a long-poll
answer's notifications when that response ended, a WebSocket's received frames (Chrome's
`_webSocketMessages`) at their own times.

The file is streamed (`ijson`): memory holds one entry at a time and, for the time order, a small
index of the events kept (their bodies wait in a temporary file). Entries come in the order their
writer chose (browsers: by start; mitmproxy: as flows ended, a WebSocket's frames all at its end),
so the events are sorted by time before they are recorded. Times in a HAR are good to a
millisecond or so: a request sorts a millisecond ahead of what has the same time, and
referenceIds, not times, pair a request with its notification.

What a HAR lacks is not guessed: an answer whose body the HAR did not save (a browser's HAR
"without content") is said on its pair (`error`); a request or a long-poll answer without its
body, which no pair can hold, is recorded raw with what is missing.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from gwsproxy import bayeux
from gwsproxy.errors import GwsProxyError
from gwsproxy.record.core import Recording, identity_of
from gwsproxy.record.events import (
    FAILED,
    FRAME,
    KNOWN,
    RAW,
    REQUEST,
    RESPONSE,
    Failed,
    Frame,
    Identity,
    Known,
    Raw,
    Request,
    Response,
)
from gwsproxy.record.spill import Spill

# What the live recorder keeps of a body, at most (gwsproxy.record.addon's gws_max_body default).
MAX_BODY = 4 * 1024 * 1024
# A request sorts this much ahead of what carries the same time: HAR times are rounded to the
# millisecond, and a notification cannot come before the request that caused it. (Which user
# data a request met is the Correlator's: the state its interaction's earlier operations left.)
REQUEST_LEAD = 0.001
# Playwright writes WebSocket frame times in milliseconds, Chrome and mitmproxy in seconds.
_MILLISECONDS = 1e11


# The events an entry makes: all of them carry their time `t`.
EntryEvent = Request | Response | Frame | Failed | Raw | Known


class HarError(GwsProxyError):
    """The file is no HAR we can read."""


def is_har(head: bytes) -> bool:
    """Whether a file's first bytes are a JSON object (a HAR), not a mitmproxy dump."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


@dataclass
class HarImport:
    """What an import read: the recording's counts, and what the HAR lacked or held besides."""

    path: str
    recording: Recording
    entries: int = 0
    not_http: int = 0  # blob:, data:, chrome-extension: ... entries: no traffic at all
    lacking: int = 0  # exchanges recorded raw for what the HAR did not save
    unsaved_gets: int = 0  # GWS GET answers without their body (what user data was before)
    stopped: str | None = None  # why reading stopped before the end of the file
    writer: str = ""  # log.creator.name
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return self.recording.counts()

    def summary(self) -> list[str]:
        """Lines for the user about what the file held besides pairs."""
        lines = []
        if self.not_http:
            lines.append(f"{self.not_http} entries skipped: not HTTP (blob:, data: ...)")
        if self.lacking:
            lines.append(
                f"{self.lacking} exchanges without their body in the HAR: said on their pairs or"
                " recorded raw, with what is missing"
            )
        if self.unsaved_gets:
            lines.append(f"{self.unsaved_gets} GWS GET answers without their body in the HAR")
        if self.stopped:
            lines.append(self.stopped)
        return lines


def import_har(
    har_path: str,
    output: str,
    timeout: float = 10.0,
    progress: Callable[[int, int], None] | None = None,
) -> HarImport:
    """A capture from a HAR file, its events recorded in time order; `progress(read, size)`
    is told how many of the file's bytes have been read, now and then."""
    import ijson  # type: ignore[import-untyped]  # ijson ships no types

    try:
        f = open(har_path, "rb")  # noqa: SIM115 - closed by the `with` below
    except FileNotFoundError:
        raise HarError(f"{har_path}: no such file") from None
    except OSError as e:
        raise HarError(f"{har_path}: {e.strerror or e}") from None
    with f, Spill() as spill:
        size = os.fstat(f.fileno()).st_size
        recording = Recording(timeout)
        result = HarImport(output, recording)
        try:
            result.writer = _creator(f, ijson)
            f.seek(0)
            for entry in ijson.items(f, "log.entries.item", use_float=True):
                result.entries += 1
                if progress is not None and result.entries % 256 == 0:
                    progress(f.tell(), size)
                for event in entry_events(entry, result):
                    lead = REQUEST_LEAD if event[0] in (REQUEST, KNOWN) else 0.0
                    spill.add((event.t - lead,), event)
        except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError) as e:
            if not result.entries:
                raise HarError(f"{har_path} is not a HAR file: {e}") from None
            result.stopped = (
                f"reading stopped after entry {result.entries}: the file is not valid JSON"
                f" from there ({e})"
            )
        if not result.entries and not len(spill):
            f.seek(0)
            if not _has_log(f, ijson):
                raise HarError(f"{har_path} is not a HAR file: it has no log.entries")
        if progress is not None:
            progress(size, size)
        result.path = recording.open(output, upstream=f"import:{har_path}")
        last = spill.last()
        for t, recorded in spill.replay():
            recording.advance(t)
            recording.handle(recorded)
        # As a recorder stops: what is still open when the file ends is incomplete, not timed out.
        recording.close(time.time() if last is None else last)
    return result


def _creator(f: BinaryIO, ijson: Any) -> str:
    """log.creator.name, read up to the entries (where every writer we know puts it)."""
    for prefix, event, value in ijson.parse(f):
        if prefix == "log.creator.name" and isinstance(value, str):
            return value
        if prefix == "log.entries" and event == "start_array":
            break
    return ""


def _has_log(f: BinaryIO, ijson: Any) -> bool:
    try:
        for prefix, _, _ in ijson.parse(f):
            if prefix == "log.entries":
                return True
    except ijson.JSONError:
        return False
    return False


# ---- one entry -> events ---------------------------------------------------------------------


def entry_events(entry: Any, result: HarImport) -> list[EntryEvent]:
    """The events of one HAR entry, as the live recorder would make them of its flow."""
    if not isinstance(entry, dict):
        return []
    request = entry.get("request") or {}
    url = str(request.get("url") or "")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https", "ws", "wss"):
        result.not_http += 1  # blob:, data:, about:, chrome-extension: none of it went to GWS
        return []
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    method = str(request.get("method") or "GET").upper()
    start = _started(entry.get("startedDateTime"))
    if start is None:
        return []
    end = start + _duration(entry, result.writer) / 1000
    headers = _headers(request.get("headers"))
    identity = _identity(headers, request.get("cookies"))
    flow_id = ("har", result.entries)
    events: list[EntryEvent] = []
    notifications = bayeux.is_notifications_path(path)

    if method == "POST" and "api/v2/me/" in path and not notifications:
        body = _post_data(request.get("postData"))
        if body is None:
            result.lacking += 1
            reason = "the HAR has no body for this request (not saved): what it asked is unknown"
            events.append(Raw(RAW, start, reason, "request", b"", identity, path))
            return events
        if len(body) > MAX_BODY:
            reason = f"body of {len(body)} bytes exceeds gws_max_body ({MAX_BODY})"
            events.append(Raw(RAW, start, reason, "request", body[:MAX_BODY], identity, path))
            return events
        known = _exported_before(entry)
        if known is not None:
            events.append(Known(KNOWN, *known, start))
        events.append(Request(REQUEST, flow_id, identity, method, path, headers, body, start))

    messages = entry.get("_webSocketMessages")
    response = entry.get("response") or {}
    status = _int(response.get("status"))
    if isinstance(messages, list) or status == 101:
        if notifications:
            events += _frames(messages or [], identity, path)
        return events
    if "/api/v2/" not in path:
        return events
    if not status:  # no answer: Chrome's status 0 with `_error`, mitmproxy's broken flow
        why = str(response.get("_error") or "no answer in the HAR (status 0)")
        events.append(Failed(FAILED, flow_id, why, end, _reached(entry, why, result.writer)))
        return events
    body = _content(response.get("content"))
    response_headers = _headers(response.get("headers"))
    if body is None:
        if method != "POST":  # a GET's interactions only tell what user data was before
            result.unsaved_gets += 1
            return events
        result.lacking += 1
        if not notifications:  # said on the pair, which its notification may still close
            reason = f"the HAR has no body for this answer (HTTP {status}, not saved)"
            events.append(Failed(FAILED, flow_id, reason, end, True))
            return events
        reason = (
            "the HAR has no body for this long-poll answer (not saved): the notifications"
            " it carried are unknown"
        )
        events.append(Raw(RAW, end, reason, "response", b"", identity, path))
        return events
    if len(body) > MAX_BODY:
        reason = f"body of {len(body)} bytes exceeds gws_max_body ({MAX_BODY})"
        events.append(Raw(RAW, end, reason, "response", body[:MAX_BODY], identity, path))
        if notifications:
            return events
        body = b""
    events.append(
        Response(RESPONSE, flow_id, identity, method, path, status, response_headers, body, end)
    )
    return events


def _frames(messages: list[Any], identity: Identity, path: str) -> list[EntryEvent]:
    """The server's CometD frames of a WebSocket entry (what the client sent carries no
    notification)."""
    frames: list[EntryEvent] = []
    for m in messages:
        if not isinstance(m, dict) or m.get("type") != "receive":
            continue
        t = m.get("time")
        data = m.get("data")
        if not isinstance(t, (int, float)) or not isinstance(data, str):
            continue
        t = t / 1000 if t > _MILLISECONDS else float(t)
        if m.get("opcode") == 2:  # binary frames are written base64
            try:
                content = base64.b64decode(data)
            except (binascii.Error, ValueError):
                content = data.encode("utf-8", "surrogateescape")
        else:
            content = data.encode("utf-8", "surrogateescape")
        frames.append(Frame(FRAME, identity, path, content, t))
    return frames


def _exported_before(entry: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(interaction, user data) a request met, where gwsproxy's HAR export wrote it down."""
    marks = entry.get("_gwsproxy")
    if not isinstance(marks, dict) or marks.get("role") != "request":
        return None
    before, interaction = marks.get("before"), marks.get("interaction_id")
    if isinstance(before, dict) and isinstance(interaction, str):
        return interaction, before
    return None


# Chrome's errors for a request that never got to a server (no connection was made).
_UNREACHED = (
    "net::ERR_CONNECTION_REFUSED",
    "net::ERR_NAME_NOT_RESOLVED",
    "net::ERR_ADDRESS_UNREACHABLE",
    "net::ERR_CONNECTION_TIMED_OUT",
    "net::ERR_CERT_",
    "net::ERR_SSL_",
)


def _reached(entry: dict[str, Any], why: str, writer: str) -> bool:
    """Whether a request without an answer may have reached GWS: not if the connection was never
    made (Chrome's error says so; mitmproxy's entry names no server address, or its TLS never
    completed), or if gwsproxy's HAR export marked its pair failed."""
    marks = entry.get("_gwsproxy")
    if isinstance(marks, dict) and marks.get("status") == "failed":
        return False
    if writer == "mitmproxy":
        return _mitmproxy_connected(entry)
    return not why.startswith(_UNREACHED)


def _mitmproxy_connected(entry: dict[str, Any]) -> bool:
    """mitmproxy writes `serverIPAddress` once a connection is made, and a connection's
    `connect` and `ssl` times with its first request only (-1 with the later ones): a new
    connection to an https URL without `ssl` time never completed its TLS handshake."""
    if not entry.get("serverIPAddress"):
        return False  # refused, unresolvable: no connection was made
    timings = entry.get("timings") or {}
    connect, ssl = timings.get("connect"), timings.get("ssl")
    url = str((entry.get("request") or {}).get("url") or "")
    fresh = isinstance(connect, int | float) and connect >= 0
    handshake = isinstance(ssl, int | float) and ssl >= 0
    return not (url.startswith("https:") and fresh and not handshake)


def _started(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _duration(entry: dict[str, Any], writer: str) -> float:
    """Milliseconds from the start to the end of the response: `time` (the sum of `timings`).
    mitmproxy's start is the request's own, and its `connect` and `ssl` are the connection's,
    which may have been set up before: there the request ends after send, wait and receive."""
    timings = entry.get("timings") or {}
    if writer == "mitmproxy":
        parts = (timings.get(k) for k in ("send", "wait", "receive"))
        return float(sum(v for v in parts if isinstance(v, int | float) and v > 0))
    total = entry.get("time")
    if isinstance(total, int | float) and total >= 0:
        return float(total)
    return float(
        sum(v for k, v in timings.items() if isinstance(v, int | float) and v > 0 and k != "ssl")
    )


def _headers(fields: Any) -> list[tuple[bytes, bytes]]:
    out = []
    for h in fields or ():
        if isinstance(h, dict) and isinstance(h.get("name"), str):
            value = h.get("value")
            out.append((h["name"].encode(), str(value if value is not None else "").encode()))
    return out


def _identity(headers: list[tuple[bytes, bytes]], cookies: Any) -> Identity:
    """(Basic-auth user, JSESSIONID, client address): a HAR names no client address, and may
    list the cookies apart from the headers."""
    jar = [c for c in cookies or () if isinstance(c, dict) and c.get("name") == "JSESSIONID"]
    return identity_of(headers, None, str(jar[0].get("value")) if jar else None)


def _post_data(post: Any) -> bytes | None:
    if not isinstance(post, dict):
        return None
    return _decoded(post)


def _content(content: Any) -> bytes | None:
    """The response body, or None when the HAR did not save it (an empty body is b"")."""
    if not isinstance(content, dict):
        return None
    body = _decoded(content)
    if body is None and content.get("size") == 0:
        return b""
    return body


def _decoded(holder: dict[str, Any]) -> bytes | None:
    text = holder.get("text")
    if not isinstance(text, str):
        return None
    if holder.get("encoding") == "base64":
        try:
            return base64.b64decode(text)
        except (binascii.Error, ValueError):
            return None
    return text.encode("utf-8", "surrogateescape")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
