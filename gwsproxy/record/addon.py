"""The mitmproxy addon: user-data requests and CometD notifications -> events -> capture.

It only reads flows: traffic passes unchanged and undelayed, and nothing raises into mitmproxy.
The hooks queue flows; right after mitmproxy has forwarded them they become plain events
(`gwsproxy.record.events`), which a worker process correlates and writes
(`gwsproxy.record.worker`, running `gwsproxy.record.core`), so that the proxy's own thread
spends next to nothing on recording. What cannot be read is recorded raw with the reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mitmproxy import ctx, exceptions, http

from gwsproxy import bayeux
from gwsproxy.capture.writer import previous_sessions
from gwsproxy.record import shutdown
from gwsproxy.record.core import Recording, identity_of
from gwsproxy.record.events import (
    ADVANCE,
    CONFIGURE,
    FAILED,
    FRAME,
    RAW,
    REQUEST,
    RESPONSE,
    Advance,
    Configure,
    Event,
    Failed,
    Frame,
    Identity,
    Raw,
    Request,
    Response,
)
from gwsproxy.record.worker import Worker, WorkerGone
from gwsproxy.redact import DEFAULT_HEADERS

log = logging.getLogger(__name__)

DEFAULT_CAPTURE = "captures/gws-%Y%m%d-%H%M%S.gwscap"
DEFAULT_MAX_BODY = 4 * 1024 * 1024
# flow.metadata key: (Basic-auth user, JSESSIONID, client address), read once per flow.
IDENTITY = "gwsproxy.identity"


class GwsRecorder:
    """The mitmproxy edge: flows become plain events (`gwsproxy.record.events`), recorded by a
    worker process (`gwsproxy.record.worker`, the default) or, with gws_worker=false, in this
    process."""

    def __init__(self) -> None:
        self.sink: Recording | Worker | None = None
        self.path: str | None = None
        self.settings: dict[str, Any] = {
            "timeout": 10.0,
            "redact_headers": list(DEFAULT_HEADERS),
            "mask_keys": [],
        }
        self.max_body = DEFAULT_MAX_BODY
        self.trim_websocket = True
        self.use_worker = True
        self.at_once = False  # flows become events in the hook itself (imports: no proxy)
        self._ticker: asyncio.Task[None] | None = None
        # Hooks only queue their flow; it becomes an event right after mitmproxy has forwarded
        # the message (mitmproxy holds a message until its hooks return), in arrival order.
        self._pending: collections.deque[tuple[Callable[..., Event | None], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._drain_scheduled = False
        self._counts: dict[str, int] = {}
        self._fsync = False
        self._requests = 0  # REQUEST events handed to the sink since open()
        # The open capture's: upstream, number of this session in the file, its first pair id.
        self._upstream: str | None = None
        self._session = 1
        self._first_id = 1

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
            True,
            "Drop WebSocket messages from mitmproxy's memory once recorded (false keeps them all,"
            " for other addons or a flow dump, in memory for the connection's life).",
        )
        loader.add_option(
            "gws_worker",
            bool,
            True,
            "Correlate and write in a separate process, so the proxy's CPU goes to traffic.",
        )

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        changed: dict[str, Any] = {}
        if "gws_timeout" in updated:
            changed["timeout"] = _seconds(opts.gws_timeout)
        if updated & {"gws_redact_headers", "gws_mask_keys"}:
            changed["redact_headers"] = list(opts.gws_redact_headers)
            changed["mask_keys"] = list(opts.gws_mask_keys)
        if "gws_max_body" in updated:
            if opts.gws_max_body <= 0:
                raise exceptions.OptionsError("gws_max_body must be positive")
            self.max_body = opts.gws_max_body
        self.trim_websocket = opts.gws_trim_websocket
        self.use_worker = opts.gws_worker
        self.settings.update(changed)
        if sys.exc_info()[0] is exceptions.OptionsError:
            # mitmproxy refused an option and calls us back with the previous values: that is
            # no reason to start a capture (at the default path) nobody asked for.
            return
        # gws_worker alone reopens a capture already open, it does not start one (that is the
        # capture option's job): `gwsproxy record --set gws_worker=false` sets it first.
        if "gws_capture" in updated or ("gws_worker" in updated and self.sink is not None):
            try:
                self.open(opts.gws_capture, _upstream(), fsync=opts.gws_fsync)
            except OSError as e:
                raise exceptions.OptionsError(str(e)) from None
        elif changed:
            self._emit(Configure(CONFIGURE, changed))

    def open(self, pattern: str, upstream: str | None, fsync: bool = False) -> str:
        """Start a capture file (strftime in the name), or continue an existing one in a new
        session (a restarted recorder); raises OSError with a readable message."""
        self.close()
        path = time.strftime(pattern)
        # Pair ids stay unique in the file: the new session numbers its pairs after the highest
        # one already there (read once a recorder still finishing the file has let go of it).
        try:
            previous = previous_sessions(path)
        except OSError as e:  # the message alone, as Recording.open gives its own
            raise OSError(e.strerror or str(e)) from None
        session = len(previous) + 1
        first_id = max((s.last_id for s in previous), default=0) + 1
        continues = "restart" if previous else None
        if self.use_worker:
            config: dict[str, Any] = {"path": path, "upstream": upstream}
            config |= {"fsync": fsync, "append": True, "session": session}
            config |= {"first_id": first_id, "continues": continues}
            self.sink = Worker({**config, "settings": self.settings})
        else:
            self.sink = self._in_process(path, upstream, fsync, session, first_id, continues)
        self.path = path
        self._fsync = fsync
        self._upstream, self._session, self._first_id = upstream, session, first_id
        self._requests = 0
        if previous:
            log.info("gwsproxy: recording to %s (session %d of the file)", path, session)
        else:
            log.info("gwsproxy: recording to %s", path)
        return path

    def close(self, now: float | None = None) -> None:
        """Write what is still open as incomplete and close the capture cleanly."""
        self._drain()
        if self.sink is not None:
            self.sink.close(time.time() if now is None else now)
            self._counts = self.sink.counts()
            self.sink = None

    def counts(self) -> dict[str, int]:
        """pairs, open, unsolicited, failed, raw: so far (as last reported by the worker)."""
        return self.sink.counts() if self.sink is not None else self._counts

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
        self._emit(Advance(ADVANCE, now))

    def done(self) -> Awaitable[None] | None:
        """The addon is unloaded: what is still open is written as incomplete, the capture closed.

        When mitmproxy itself stops, this returns a coroutine instead, which mitmproxy awaits: it
        first has mitmproxy end its connections (what they broke off is recorded, and nothing is
        left for asyncio to cancel with tracebacks at exit), then closes the capture. Not when
        the addon is only removed (a script reload): the proxy goes on, and mitmproxy calls that
        done() without awaiting anything."""
        if self._ticker is not None:
            self._ticker.cancel()
        if not shutdown.stopping(getattr(ctx, "master", None)):
            self.close()
            return None
        return self._stop()

    async def _stop(self) -> None:
        shutdown.quiet_cancellations()
        shutdown.skip_final_collection()
        shutdown.SecondSignal(self._forced).arm()
        try:
            await shutdown.end_connections(ctx.master, shutdown.CONNECTIONS_GRACE)
        finally:
            self.close()

    def _forced(self, frame: Any) -> None:
        """A second signal while stopping: the process exits right after this. A worker writes
        what is open once its pipe closes; a recording in this process writes it here, unless
        the signal came in the middle of its writing (the session then ends torn)."""
        sink = self.sink
        if isinstance(sink, Recording) and not shutdown.interrupted_in(
            frame, "gwsproxy.record.core", "gwsproxy.correlate", "gwsproxy.capture"
        ):
            sink.close(clean=False)

    # ---- hooks: they only queue the flow --------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        self._defer(self._request, flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._defer(self._response, flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._defer(self._error, flow)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None or not bayeux.is_notifications_path(flow.request.path):
            return
        message = flow.websocket.messages[-1]  # taken now: the trim below drops older ones
        if not message.from_client:
            self.frame(flow, message)
        if self.trim_websocket:
            # mitmproxy keeps every message of a flow; on a CometD socket that lives for days
            # that is unbounded memory. Keep only the latest, which later hooks may still read.
            del flow.websocket.messages[:-1]

    def _defer(self, work: Callable[..., Any], *args: Any) -> None:
        self._pending.append((work, args))
        if self.at_once:
            self._drain()
            return
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
            try:
                event = work(*args)
            except Exception as e:  # the proxy must keep going, whatever we meet
                log.exception("gwsproxy: %s failed", work.__name__)
                reason = f"internal error in {work.__name__}: {e!r}"
                event = Raw(RAW, time.time(), reason, work.__name__.strip("_"), b"")
            if event is not None:
                self._emit(event)

    def _emit(self, event: Event) -> None:
        if self.sink is None:
            return
        try:
            self.sink.handle(event)
        except WorkerGone as e:  # record on in this process, in a new session of the same file
            log.error("gwsproxy: %s; recording in the proxy's process from now on", e)
            # Pair ids stay unique in the file: the worker numbered at most one per request.
            self._session += 1
            self._first_id += self._requests
            self._requests = 0
            try:
                self.sink = self._in_process(
                    self.path or "",
                    self._upstream,
                    self._fsync,
                    self._session,
                    self._first_id,
                    "worker died",
                )
            except OSError as e:
                log.error("gwsproxy: recording stopped: %s", e)
                self.sink = None
                return
            self.sink.handle(event)

    def _in_process(
        self,
        path: str,
        upstream: str | None,
        fsync: bool,
        session: int = 1,
        first_id: int = 1,
        continues: str | None = None,
    ) -> Recording:
        """A recording in this process, continuing `path` if it is already a capture."""
        recording = Recording(first_id=first_id)
        recording.configure(self.settings)
        recording.open(path, upstream, fsync, True, session, continues)
        return recording

    # ---- flows -> events (cheap: the work is the sink's) ------------------------------------

    def _request(self, flow: http.HTTPFlow) -> Request | None:
        req = flow.request
        path = req.path
        # A cheap superset of user-data requests; the recording core classifies them exactly.
        if "api/v2/me/" not in path or req.method.upper() != "POST":
            return None  # not a user-data request: its body is none of our business
        if bayeux.is_notifications_path(path):
            return None
        body = self._body(req, "request", flow)
        if body is None:
            return None
        identity = self._identity(flow)
        self._requests += 1
        return Request(
            REQUEST,
            flow.id,
            identity,
            req.method,
            path,
            req.headers.fields,
            body,
            req.timestamp_start,
        )

    def _response(self, flow: http.HTTPFlow) -> Response | None:
        req, resp = flow.request, flow.response
        path = req.path
        if resp is None or "/api/v2/" not in path:
            return None  # not GWS
        notifications = bayeux.is_notifications_path(path)
        if notifications and (flow.websocket is not None or resp.status_code == 101):
            return None  # a WebSocket upgrade: its messages come through websocket_message
        body = self._body(resp, "response", flow)
        if body is None:
            if notifications:
                return None
            body = b""  # the pair still closes with the answer's status
        t = resp.timestamp_end or time.time()
        identity = self._identity(flow)
        return Response(
            RESPONSE,
            flow.id,
            identity,
            req.method,
            path,
            resp.status_code,
            resp.headers.fields,
            body,
            t,
        )

    def frame(self, flow: http.HTTPFlow, message: Any) -> None:
        """One WebSocket message of a CometD socket: the server's carry notifications."""
        self._defer(self._frame, flow, message)

    def _frame(self, flow: http.HTTPFlow, message: Any) -> Frame | None:
        if message.from_client or not bayeux.is_notifications_path(flow.request.path):
            return None
        t = message.timestamp or time.time()
        return Frame(FRAME, self._identity(flow), flow.request.path, message.content, t)

    def _error(self, flow: http.HTTPFlow) -> Failed | None:
        if flow.error is None:
            return None
        # A connection to GWS that never opened (refused, TLS failed) carried no request.
        server = flow.server_conn
        reached = server.timestamp_tcp_setup is not None and (
            not server.tls or server.timestamp_tls_setup is not None
        )
        return Failed(FAILED, flow.id, flow.error.msg, time.time(), reached)

    def _body(self, message: http.Message, where: str, flow: http.HTTPFlow) -> bytes | None:
        """The decoded body, or None (sent on as raw) when it is too large to parse."""
        content = message.get_content(strict=False) or b""
        if len(content) > self.max_body:
            reason = f"body of {len(content)} bytes exceeds gws_max_body ({self.max_body})"
            identity, path = self._identity(flow), flow.request.path
            t = time.time()
            self._emit(
                Raw(RAW, t, reason, where, content[: self.max_body], identity, path, len(content))
            )
            return None
        return content

    def _identity(self, flow: http.HTTPFlow) -> Identity:
        """(Basic-auth user, JSESSIONID, client address) of the flow's request; read once per
        flow (a CometD WebSocket asks for it on every frame) in one pass over the headers."""
        identity = flow.metadata.get(IDENTITY)
        if identity is None:
            peer = flow.client_conn.peername
            identity = identity_of(flow.request.headers.fields, peer[0] if peer else None)
            flow.metadata[IDENTITY] = identity
        return identity


def _seconds(option: str | float) -> float:
    """The gws_timeout option: a positive number of seconds."""
    try:
        value = float(option)
    except (TypeError, ValueError):
        raise exceptions.OptionsError(
            f"gws_timeout {option!r} is not a number of seconds, e.g. gws_timeout=2.5"
        ) from None
    if not value > 0 or value == float("inf"):
        raise exceptions.OptionsError(f"gws_timeout must be a positive number, not {option!r}")
    return value


def _upstream() -> str | None:
    with contextlib.suppress(AttributeError, IndexError):
        return ",".join(ctx.options.mode)
    return None
