"""The recording core: plain events in, Correlator in the middle, capture records out.

The mitmproxy addon (`gwsproxy.record.addon`) turns flows into events (`gwsproxy.record.events`);
this module knows nothing of mitmproxy, so the same core runs inside mitmdump, in a separate
worker process fed through a pipe (`gwsproxy.record.worker`), or over an imported flow dump.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gwsproxy import __version__, bayeux, gws
from gwsproxy.capture.format import CaptureError, Kind
from gwsproxy.capture.reader import CaptureReader, Entry
from gwsproxy.capture.writer import CaptureWriter
from gwsproxy.correlate import Closed, Correlator, Pair, Status
from gwsproxy.lenient import Unreadable, loads
from gwsproxy.record.events import (
    TYPES,
    Event,
    Failed,
    Frame,
    Headers,
    Identity,
    Raw,
    Request,
    Response,
    decode,
    name,
)
from gwsproxy.record.records import pair_record, raw_record, unsolicited_record
from gwsproxy.redact import DEFAULT_HEADERS, Redactor

log = logging.getLogger(__name__)

# Closed without a notification that may still come.
_UNFINISHED = (Status.INCOMPLETE, Status.TIMEOUT, Status.AMBIGUOUS)
JSESSIONID = re.compile(rb"(?:^|;)\s*JSESSIONID=([^;\s]*)")


def text(value: bytes) -> str:
    """A raw header value as mitmproxy's Headers would give it."""
    return value.decode("utf-8", "surrogateescape")


def identity_of(
    fields: Iterable[tuple[bytes, bytes]], client: str | None, session: str | None = None
) -> Identity:
    """(Basic-auth user, JSESSIONID, client address) of a request's raw header fields, in one
    pass; `session` where the JSESSIONID is known apart from the headers (a HAR's cookie list)."""
    auth, cookies = None, []
    for header, value in fields:
        header = header.lower()
        if header == b"authorization":
            auth = auth or value
        elif header == b"cookie":
            cookies.append(value)
    found = JSESSIONID.search(b"; ".join(cookies)) if cookies else None
    return (
        _basic_user(text(auth)) if auth else None,
        text(found[1]) if found else session,
        client,
    )


@functools.lru_cache(maxsize=1024)  # the same Authorization comes with each request of a session
def _basic_user(value: str) -> str | None:
    found = gws.basic_credentials(value)
    return found[0] if found else None


@dataclass(slots=True)
class CarriedOver:
    """What a session that continues a capture takes from the ones before it: the requests
    that closed without their notification (open when a recorder stopped, timed out or
    ambiguous) in the file's last two `timeout`s, whose notifications may still come, and the
    referenceIds of the notifications placed, of which copies may still come."""

    unfinished: list[tuple[int, str, gws.UserDataRequest]] = field(default_factory=list)
    placed: list[tuple[str, Any, int]] = field(default_factory=list)  # scope, ref, pair id


def carried_over(path: str, timeout: float) -> CarriedOver:
    """What the capture at `path` leaves to a session that continues it."""
    out = CarriedOver()
    unfinished: list[Entry] = []
    end = 0.0
    try:
        with CaptureReader(path) as reader:
            for entry in reader.iter_entries():
                s = entry.summary
                if isinstance(s.get("t"), int | float):
                    end = max(end, s["t"])
                ref = s.get("reference_id")
                if entry.kind == Kind.NOTIFICATION:
                    if ref is not None and _changes(s):
                        out.placed.append((str(s.get("scope")), ref, 0))
                elif entry.kind != Kind.PAIR:
                    continue
                elif s.get("status") in (Status.MATCHED, Status.ERROR):
                    if ref is not None:
                        out.placed.append((str(s.get("scope")), ref, s.get("id") or 0))
                elif s.get("status") in _UNFINISHED and isinstance(s.get("id"), int):
                    unfinished.append(entry)
            for entry in unfinished:
                if entry.summary.get("t", 0) < end - 2 * timeout:
                    continue
                raw = (reader.body(entry) or {}).get("request") or {}
                request = gws.classify_request(
                    raw.get("method", "POST"), raw.get("path", ""), raw.get("body", b"")
                )
                if isinstance(request, gws.UserDataRequest):
                    s = entry.summary
                    out.unfinished.append((s["id"], str(s.get("scope")), request))
    except (CaptureError, OSError) as e:  # what it cannot read, it cannot carry over
        log.warning("gwsproxy: nothing carried over from %s: %s", path, e)
    return out


def _changes(summary: dict[str, Any]) -> bool:
    """Whether an unsolicited notification's type may answer a request."""
    return summary.get("note_type") in (*gws.CHANGE_TYPES, gws.VOICE_ERROR)


class Writer(Protocol):
    """Where a Recording writes its records: a CaptureWriter, or a stand-in that keeps them."""

    def write(self, kind: int, summary: dict, body: dict | None = None) -> int: ...

    def close(self, end: bool = True) -> None: ...


class Recording:
    """One capture being written: `handle(event)` for each event, in arrival order, then
    `close()`. Never raises from `handle`: what it cannot process is recorded raw, with why."""

    def __init__(self, timeout: float = 10.0, first_id: int = 1) -> None:
        self.correlator = Correlator(timeout, first_id)
        self.redactor = Redactor()
        self.writer: Writer | None = None
        self.raw = 0
        self.internal_errors = 0
        self._csrf_names: set[str] = set()
        self._asked: set[Any] = set()  # flows carrying a user-data request, until answered
        # Indexed by the event's kind.
        self._handlers: tuple[Callable[[Any], None], ...] = (
            self._request,
            self._response,
            self._frame,
            self._failed,
            self._raw,
            lambda e: self.advance(e.now),
            lambda e: self.configure(e.settings),
            lambda e: self.close(e.now, e.clean),
            lambda e: self.correlator.observe(e.interaction_id, e.user_data),
        )

    # ---- the file ---------------------------------------------------------------------------

    def open(
        self,
        path: str,
        upstream: str | None,
        fsync: bool = False,
        append: bool = False,
        session: int = 1,
        continues: str | None = None,
    ) -> str:
        """Start the capture file `path` (or a new session at its end, with `append`); raises
        OSError with a readable message. `session` is this session's number in the file and
        `continues` why it continues the file (its header says both)."""
        self.close()
        header: dict[str, Any] = {
            "tool_version": __version__,
            "upstream": upstream,
            "options": {
                "timeout": self.correlator.timeout,
                "mask_keys": sorted(self.redactor.mask_keys),
                "redact_headers": sorted(self.redactor.headers),
            },
            "session": session,
        }
        if continues:
            header["continues"] = continues
        if append and os.path.exists(path):
            carried = carried_over(path, self.correlator.timeout)
            for pair_id, scope, request in carried.unfinished:
                self.correlator.carry_over(pair_id, scope, request)
            for scope, ref, pair_id in carried.placed:
                self.correlator.placed_before(scope, ref, pair_id)
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self.writer = CaptureWriter(path, header, fsync=fsync, append=append)
        except OSError as e:
            raise OSError(f"cannot write capture {path}: {e.strerror or e}") from None
        return path

    def close(self, now: float | None = None, clean: bool = True) -> None:
        """Write what is still open as incomplete and close the capture; `clean=False` leaves
        out the END record, so that readers see the recording was cut short."""
        self._flush(self.correlator.close(time.time() if now is None else now))
        if self.writer is not None:
            self.writer.close(end=clean)
            self.writer = None

    def counts(self) -> dict[str, int]:
        c = self.correlator
        return {
            "pairs": c.counts.pairs,
            "open": c.open_count,
            "unsolicited": c.counts.unsolicited,
            "failed": c.counts.by_status.get(Status.FAILED, 0),  # never reached GWS
            "raw": self.raw,
            "internal_errors": self.internal_errors,
        }

    # ---- events -----------------------------------------------------------------------------

    def handle(self, event: Event | Sequence[Any]) -> None:
        """Record one event, or its wire form (the list msgpack unpacks it to)."""
        try:
            if type(event) not in TYPES:
                event = decode(event)
            self._handlers[event[0]](event)
        except Exception as e:  # the recording must keep going, whatever we meet
            what = name(event[0])
            log.exception("gwsproxy: %s failed", what)
            self.internal_errors += 1
            self._write_raw(time.time(), f"internal error in {what}: {e!r}", what, b"")

    def configure(self, settings: dict[str, Any]) -> None:
        if "timeout" in settings:
            self.correlator.timeout = float(settings["timeout"])
        if "redact_headers" in settings or "mask_keys" in settings:
            self.redactor = Redactor(
                settings.get("redact_headers", DEFAULT_HEADERS), settings.get("mask_keys", ())
            )

    def advance(self, now: float) -> None:
        """Close, as timed out, the pairs whose notification is overdue at `now`."""
        self._flush(self.correlator.expire(now))

    def _request(self, e: Request) -> None:
        found = gws.classify_request(e.method, e.path, e.body)
        if found is None:
            return
        scope = self._scope(e.identity)
        if isinstance(found, gws.BadRequest):
            self._write_raw(e.t, found.reason, "request", e.body, e.identity, e.path)
            return
        raw = {
            "method": e.method,
            "path": self.redactor.url(e.path),
            "headers": self._headers(e.headers),
            "body": self._masked_body(e.body),
            "repairs": list(found.repairs),
        }
        self._asked.add(e.flow_id)
        self._flush(self.correlator.request(e.flow_id, scope, found, e.t, raw))

    def _response(self, e: Response) -> None:
        content_type = csrf = None
        cookies = []
        for field_name, value in e.headers:
            field_name = field_name.lower()
            if field_name == b"content-type":
                content_type = content_type or text(value)
            elif field_name == b"x-csrf-header":
                csrf = csrf or value
            elif field_name == b"set-cookie":
                cookies.append(value)
        if csrf:
            self._csrf_names.add(text(csrf).lower())
        if cookies and (e.identity[0] or e.identity[1]):
            self._learn_session(e.identity, cookies)
        if bayeux.is_notifications_path(e.path):
            self._batch(e.identity, e.path, e.body, content_type, "long-polling", e.t)
            return
        asked = e.flow_id in self._asked
        self._asked.discard(e.flow_id)
        if self.correlator.is_open(e.flow_id):
            raw = {
                "status": e.status,
                "headers": self._headers(e.headers),
                "body": self._masked_body(e.body),
            }
            answer = gws.parse_answer(e.body)
            self._flush(self.correlator.answer(e.flow_id, answer, e.status, e.t, raw))
        elif asked:  # its pair closed (timed out) before the answer came: keep it all the same
            reason = f"late answer (HTTP {e.status}): its pair had already closed"
            self._write_raw(e.t, reason, "response", e.body, e.identity, e.path)
        elif e.method == "GET" and e.status == 200 and "/api/v2/" in e.path:
            answer = gws.parse_answer(e.body)
            if isinstance(answer, gws.Answer):
                for obj in gws.interactions_in(answer.value):
                    self.correlator.observe(str(obj["id"]), obj["userData"])

    def _frame(self, e: Frame) -> None:
        self._batch(e.identity, e.path, e.content, None, "websocket", e.t)

    def _failed(self, e: Failed) -> None:
        self._asked.discard(e.flow_id)
        self._flush(self.correlator.failed(e.flow_id, e.message, e.t, e.reached))

    def _raw(self, e: Raw) -> None:
        self._write_raw(e.t, e.reason, e.where, e.data, e.identity, e.path, e.size)

    # ---- helpers ----------------------------------------------------------------------------

    def _batch(
        self,
        identity: Identity,
        path: str,
        body: bytes,
        content_type: str | None,
        transport: str,
        t: float,
    ) -> None:
        scope = self._scope(identity)
        batch = bayeux.parse_batch(body, content_type)
        if isinstance(batch, Unreadable):
            self._write_raw(t, batch.reason, transport, body, identity, path)
            return
        client_ids = [m["clientId"] for m in batch.messages if isinstance(m.get("clientId"), str)]
        closed: list[Closed] = []
        for i, message in enumerate(batch.messages):
            if not bayeux.is_data(message):
                continue
            note = gws.parse_notification(message)
            if note is not None and self.redactor.mask_keys:
                encoded = json.dumps(self.redactor.mask_document(message))
            elif batch.texts is not None:
                encoded = batch.texts[i]
            else:
                encoded = json.dumps(message)
            # Scrubbed last, so that masking (which re-encodes the message) cannot undo it.
            raw_bytes = self.redactor.scrub(encoded.encode("utf-8", "replace"), client_ids)
            if note is None:
                self._write_raw(
                    t,
                    "not a GWS notification",
                    transport,
                    raw_bytes,
                    identity,
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
        identity: Identity | None = None,
        path: str | None = None,
        size: int | None = None,
        **context: Any,
    ) -> None:
        self.raw += 1
        if self.writer is not None:
            scope = self._scope(identity) if identity is not None else None
            if path is not None:
                context["path"] = self.redactor.url(path)
            summary, body = raw_record(t, reason, where, data, scope, **context)
            summary["size"] = len(data) if size is None else size
            self.writer.write(Kind.RAW, summary, body)

    def _masked_body(self, body: bytes) -> bytes:
        # A repaired (quirky) body is masked too, at the cost of its original spelling: the
        # user asked for those values to stay out of the capture.
        if not self.redactor.mask_keys:
            return body
        parsed = loads(body)
        if isinstance(parsed, Unreadable):
            return body
        return json.dumps(self.redactor.mask_document(parsed.value)).encode()

    def _headers(self, fields: Headers) -> list[list[str]]:
        return self.redactor.header_fields(
            ((text(name), text(value)) for name, value in fields), self._csrf_names
        )

    def _scope(self, identity: Identity) -> str:
        return self.correlator.scopes.scope(*identity)

    def _learn_session(self, identity: Identity, cookies: list[bytes]) -> None:
        """A session cookie handed out stays with the agent who was handed it."""
        user, old, _ = identity
        for value in cookies:
            found = JSESSIONID.match(value)
            if found:
                if user:
                    self.correlator.scopes.learn(text(found[1]), user)
                elif old:
                    self.correlator.scopes.renew(old, text(found[1]))
                return
