"""The mitmproxy addon: user-data requests and CometD notifications -> Correlator -> capture.

It only reads flows: traffic passes unchanged and undelayed, and nothing raises into mitmproxy;
what cannot be read is recorded raw with the reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from mitmproxy import ctx, exceptions, http

from gwsproxy import __version__, bayeux, gws
from gwsproxy.capture.format import Kind
from gwsproxy.capture.records import pair_record, raw_record, unsolicited_record
from gwsproxy.capture.writer import CaptureWriter
from gwsproxy.correlate import Closed, Correlator, Pair
from gwsproxy.lenient import Unreadable, loads
from gwsproxy.redact import DEFAULT_HEADERS, Redactor

log = logging.getLogger(__name__)

DEFAULT_CAPTURE = "captures/gws-%Y%m%d-%H%M%S.gwscap"
DEFAULT_MAX_BODY = 4 * 1024 * 1024
# flow.metadata key: (Basic-auth user, JSESSIONID, client address), read once per flow.
IDENTITY = "gwsproxy.identity"
_JSESSIONID = re.compile(rb"(?:^|;)\s*JSESSIONID=([^;\s]*)")


def _guarded(hook: Callable[..., None]) -> Callable[..., None]:
    """A hook that logs and records its own failure instead of raising into mitmproxy."""

    @functools.wraps(hook)
    def run(self: GwsRecorder, *args: Any) -> None:
        try:
            hook(self, *args)
        except Exception as e:  # noqa: BLE001 - the proxy must keep going, whatever we meet
            log.exception("gwsproxy: %s failed", hook.__name__)
            self.stats["internal_errors"] += 1
            self._write_raw(
                time.time(), f"internal error in {hook.__name__}: {e!r}", hook.__name__, b""
            )

    return run


class GwsRecorder:
    """Pairs GWS user-data requests with their notifications and appends them to a capture."""

    def __init__(self) -> None:
        self.correlator = Correlator()
        self.redactor = Redactor()
        self.writer: CaptureWriter | None = None
        self.stats = {"raw": 0, "internal_errors": 0}
        self.max_body = DEFAULT_MAX_BODY
        self.trim_websocket = False
        self._ticker: asyncio.Task[None] | None = None
        # Hooks only queue their event; it is recorded right after mitmproxy has forwarded the
        # message (mitmproxy holds a message until its hooks return), in arrival order.
        self._pending: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._drain_scheduled = False
        self._csrf_names: set[str] = set()
        self._asked: set[str] = set()  # flows carrying a user-data request, until answered

    # ---- options ----------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option("gws_capture", str, DEFAULT_CAPTURE, "Capture file (strftime allowed).")
        # A string: mitmproxy cannot parse `--set NAME=VALUE` for float options.
        loader.add_option(
            "gws_timeout", str, "10", "Seconds to wait for a request's notification (e.g. 2.5)."
        )
        loader.add_option("gws_fsync", bool, False, "fsync the capture after every record.")
        loader.add_option(
            "gws_redact_headers",
            Sequence[str],
            list(DEFAULT_HEADERS),
            "Headers whose values are replaced by keyed hashes in captures.",
        )
        loader.add_option(
            "gws_mask_keys", Sequence[str], [], "User-data keys whose values are masked."
        )
        loader.add_option(
            "gws_max_body", int, DEFAULT_MAX_BODY, "Bodies larger than this are kept raw, unparsed."
        )
        loader.add_option(
            "gws_trim_websocket",
            bool,
            False,
            "Drop WebSocket messages from mitmproxy's memory once recorded.",
        )

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "gws_timeout" in updated:
            self.correlator.timeout = _seconds(opts.gws_timeout)
        if "gws_max_body" in updated:
            if opts.gws_max_body <= 0:
                raise exceptions.OptionsError("gws_max_body must be positive")
            self.max_body = opts.gws_max_body
        self.trim_websocket = opts.gws_trim_websocket
        if updated & {"gws_redact_headers", "gws_mask_keys"}:
            self.redactor = Redactor(opts.gws_redact_headers, opts.gws_mask_keys)
        if "gws_capture" in updated:
            try:
                self.open(opts.gws_capture, _upstream(), fsync=opts.gws_fsync)
            except OSError as e:
                raise exceptions.OptionsError(str(e)) from None

    def open(self, pattern: str, upstream: str | None, fsync: bool = False) -> str:
        """Start a capture file (strftime in the name); raises OSError with a readable message."""
        self.close()
        path = time.strftime(pattern)
        header = {
            "tool_version": __version__,
            "upstream": upstream,
            "options": {
                "timeout": self.correlator.timeout,
                "mask_keys": sorted(self.redactor.mask_keys),
                "redact_headers": sorted(self.redactor.headers),
            },
        }
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self.writer = CaptureWriter(path, header, fsync=fsync)
        except OSError as e:
            raise OSError(f"cannot write capture {path}: {e.strerror or e}") from None
        log.info("gwsproxy: recording to %s", path)
        return path

    def close(self, now: float | None = None) -> None:
        """Write what is still open as incomplete and close the capture cleanly."""
        self._flush(self.correlator.close(time.time() if now is None else now))
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def running(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            with contextlib.suppress(Exception):
                self.advance(time.time())

    def advance(self, now: float) -> None:
        """Close, as timed out, the pairs whose notification is overdue at `now`."""
        self._drain()
        self._flush(self.correlator.expire(now))

    def done(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self._drain()
        self.close()

    def _defer(self, work: Callable[..., None], *args: Any) -> None:
        self._pending.append((work, args))
        if self._drain_scheduled:
            return
        try:
            asyncio.get_running_loop().call_soon(self._drain)
        except RuntimeError:  # no event loop (unit tests driving hooks by hand): record now
            self._drain()
        else:
            self._drain_scheduled = True

    def _drain(self) -> None:
        self._drain_scheduled = False
        while self._pending:
            work, args = self._pending.popleft()
            work(*args)  # each is @_guarded: it never raises

    # ---- hooks ------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        self._defer(self._request, flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._defer(self._response, flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._defer(self._error, flow)

    @_guarded
    def _request(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        if bayeux.is_notifications_path(req.path):
            return
        if req.method.upper() != "POST" or gws.parse_target(req.path) is None:
            return  # not a user-data request: its body is none of our business (nor recorded)
        body = self._body(req, "request", flow)
        if body is None:
            return
        found = gws.classify_request(req.method, req.path, body)
        if found is None:
            return
        t = req.timestamp_start
        scope = self._scope(flow)
        if isinstance(found, gws.BadRequest):
            self._write_raw(t, found.reason, "request", body, scope, path=req.path)
            return
        raw = {
            "method": req.method,
            "path": req.path,
            "headers": self._headers(req.headers),
            "body": self._masked_body(body, found.repairs),
            "repairs": list(found.repairs),
        }
        self._asked.add(flow.id)
        self._flush(self.correlator.request(flow.id, scope, found, t, raw))

    @_guarded
    def _response(self, flow: http.HTTPFlow) -> None:
        req, resp = flow.request, flow.response
        if resp is None:
            return
        # One pass over the fields: each Headers.get() re-scans and re-decodes all of them.
        wanted = _first_fields(resp.headers, b"x-csrf-header", b"content-type", b"set-cookie")
        csrf = wanted.get(b"x-csrf-header")
        if csrf:
            self._csrf_names.add(_text(csrf).lower())
        if b"set-cookie" in wanted:
            self._learn_session(flow)
        if bayeux.is_notifications_path(req.path):
            if flow.websocket is not None or resp.status_code == 101:
                return  # a WebSocket upgrade: its messages come through websocket_message
            body = self._body(resp, "response", flow)
            if body is not None:
                content_type = wanted.get(b"content-type")
                self._batch(
                    flow,
                    body,
                    _text(content_type) if content_type is not None else None,
                    "long-polling",
                    resp.timestamp_end,
                )
            return
        t = resp.timestamp_end or time.time()
        asked = flow.id in self._asked
        self._asked.discard(flow.id)
        if self.correlator.is_open(flow.id):
            body = self._body(resp, "response", flow) or b""
            raw = {
                "status": resp.status_code,
                "headers": self._headers(resp.headers),
                "body": self._masked_body(body, ()),
            }
            self._flush(
                self.correlator.answer(flow.id, gws.parse_answer(body), resp.status_code, t, raw)
            )
        elif asked:  # its pair closed (timed out) before the answer came: keep it all the same
            body = self._body(resp, "response", flow) or b""
            reason = f"late answer (HTTP {resp.status_code}): its pair had already closed"
            self._write_raw(t, reason, "response", body, self._scope(flow), path=req.path)
        elif req.method == "GET" and resp.status_code == 200 and "/api/v2/" in req.path:
            body = self._body(resp, "response", flow)
            answer = gws.parse_answer(body) if body is not None else None
            if isinstance(answer, gws.Answer):
                for obj in gws.interactions_in(answer.value):
                    self.correlator.observe(str(obj["id"]), obj["userData"])

    @_guarded
    def websocket_message(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None or not bayeux.is_notifications_path(flow.request.path):
            return
        message = flow.websocket.messages[-1]  # taken now: the trim below drops older ones
        if not message.from_client:
            self._defer(self._frame, flow, message)
        if self.trim_websocket:
            # mitmproxy keeps every message of a flow; on a CometD socket that lives for days
            # that is unbounded memory. Keep only the latest, which later hooks may still read.
            del flow.websocket.messages[:-1]

    def frame(self, flow: http.HTTPFlow, message: Any) -> None:
        """One WebSocket message of a CometD socket: the server's carry notifications."""
        if not message.from_client and bayeux.is_notifications_path(flow.request.path):
            self._batch(flow, message.content, None, "websocket", message.timestamp)

    @_guarded
    def _frame(self, flow: http.HTTPFlow, message: Any) -> None:
        self.frame(flow, message)

    @_guarded
    def _error(self, flow: http.HTTPFlow) -> None:
        self._asked.discard(flow.id)
        if flow.error is not None:
            self._flush(self.correlator.failed(flow.id, flow.error.msg, time.time()))

    # ---- helpers ----------------------------------------------------------------------------

    def _batch(
        self,
        flow: http.HTTPFlow,
        body: bytes,
        content_type: str | None,
        transport: str,
        t: float | None,
    ) -> None:
        t = t or time.time()
        scope = self._scope(flow)
        batch = bayeux.parse_batch(body, content_type)
        if isinstance(batch, Unreadable):
            self._write_raw(t, batch.reason, transport, body, scope, path=flow.request.path)
            return
        client_ids = [m["clientId"] for m in batch.messages if isinstance(m.get("clientId"), str)]
        closed: list[Closed] = []
        for i, message in enumerate(batch.messages):
            if not bayeux.is_data(message):
                continue
            note = gws.parse_notification(message)
            if note is not None and self.redactor.mask_keys:
                text = json.dumps(self.redactor.mask_document(message))
            elif batch.texts is not None:
                text = batch.texts[i]
            else:
                text = json.dumps(message)
            # Scrubbed last, so that masking (which re-encodes the message) cannot undo it.
            raw_bytes = self.redactor.scrub(text.encode("utf-8", "replace"), client_ids)
            if note is None:
                self._write_raw(
                    t,
                    "not a GWS notification",
                    transport,
                    raw_bytes,
                    scope,
                    channel=message.get("channel"),
                )
                continue
            raw = {"transport": transport, "raw": raw_bytes, "repairs": list(batch.repairs)}
            closed += self.correlator.notification(scope, note, t, raw)
        self._flush(closed)

    def _flush(self, closed: list[Closed]) -> None:
        if self.writer is None:
            return
        for item in closed:
            if isinstance(item, Pair):
                self.writer.write(Kind.PAIR, *pair_record(item, self.redactor))
            else:
                self.writer.write(Kind.NOTIFICATION, *unsolicited_record(item))

    def _write_raw(
        self,
        t: float,
        reason: str,
        where: str,
        data: bytes,
        scope: str | None = None,
        **context: Any,
    ) -> None:
        self.stats["raw"] += 1
        if self.writer is not None:
            summary, body = raw_record(t, reason, where, data[: self.max_body], scope, **context)
            summary["size"] = len(data)
            self.writer.write(Kind.RAW, summary, body)

    def _body(self, message: http.Message, where: str, flow: http.HTTPFlow) -> bytes | None:
        """The decoded body, or None (recorded raw) when it is too large to parse."""
        content = message.get_content(strict=False) or b""
        if len(content) > self.max_body:
            reason = f"body of {len(content)} bytes exceeds gws_max_body ({self.max_body})"
            self._write_raw(
                time.time(), reason, where, content, self._scope(flow), path=flow.request.path
            )
            return None
        return content

    def _masked_body(self, body: bytes, repairs: Sequence[str]) -> bytes:
        # A repaired (quirky) body is masked too, at the cost of its original spelling: the
        # user asked for those values to stay out of the capture.
        if not self.redactor.mask_keys:
            return body
        parsed = loads(body)
        if isinstance(parsed, Unreadable):
            return body
        return json.dumps(self.redactor.mask_document(parsed.value)).encode()

    def _headers(self, headers: http.Headers) -> list[list[str]]:
        return self.redactor.header_fields(headers.items(multi=True), self._csrf_names)

    def _identity(self, flow: http.HTTPFlow) -> tuple[str | None, str | None, str | None]:
        """(Basic-auth user, JSESSIONID, client address) of the flow's request; read once per
        flow (a CometD WebSocket asks for it on every frame) in one pass over the headers."""
        identity = flow.metadata.get(IDENTITY)
        if identity is None:
            auth, cookies = None, []
            for name, value in flow.request.headers.fields:
                name = name.lower()
                if name == b"authorization":
                    auth = auth or value
                elif name == b"cookie":
                    cookies.append(value)
            found = _JSESSIONID.search(b"; ".join(cookies)) if cookies else None
            peer = flow.client_conn.peername
            identity = (
                _basic_user(_text(auth)) if auth else None,
                _text(found[1]) if found else None,
                peer[0] if peer else None,
            )
            flow.metadata[IDENTITY] = identity
        return identity

    def _scope(self, flow: http.HTTPFlow) -> str:
        return self.correlator.scopes.scope(*self._identity(flow))

    def _learn_session(self, flow: http.HTTPFlow) -> None:
        user = self._identity(flow)[0]
        if user and flow.response is not None:
            for value in flow.response.headers.get_all("set-cookie"):
                found = _JSESSIONID.match(value.encode("utf-8", "surrogateescape"))
                if found:
                    self.correlator.scopes.learn(_text(found[1]), user)
                    return


def _text(value: bytes) -> str:
    """A raw header value as mitmproxy's Headers would give it."""
    return value.decode("utf-8", "surrogateescape")


def _first_fields(headers: http.Headers, *names: bytes) -> dict[bytes, bytes]:
    """The first raw value of each of `names` (lower case) present in `headers`."""
    found: dict[bytes, bytes] = {}
    for name, value in headers.fields:
        name = name.lower()
        if name in names and name not in found:
            found[name] = value
    return found


def _basic_user(value: str) -> str | None:
    found = gws.basic_credentials(value)
    return found[0] if found else None


def _seconds(text: str | float) -> float:
    """The gws_timeout option: a positive number of seconds."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise exceptions.OptionsError(
            f"gws_timeout {text!r} is not a number of seconds, e.g. gws_timeout=2.5"
        ) from None
    if not value > 0 or value == float("inf"):
        raise exceptions.OptionsError(f"gws_timeout must be a positive number, not {text!r}")
    return value


def _upstream() -> str | None:
    with contextlib.suppress(AttributeError, IndexError):
        return ",".join(ctx.options.mode)
    return None
