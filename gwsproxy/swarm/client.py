"""One agent's GWS session for Locust's gevent workers: log in, the CSRF token, CometD.

Synchronous code that cooperates under gevent's monkey patching (Locust patches at import):
HTTP with `geventhttpclient` (Locust's own fast client: keep-alive connections, one pool for
the operations and one for CometD's held connects), WebSocket with `websocket-client`; each
blocking read yields to the other users. One greenlet per session keeps a CometD connect
held (or reads the socket); delivered data messages go to `on_message`, in order. The Bayeux
messages and the reading of replies are `gwsproxy.bayeux`'s, the GWS rules `gwsproxy.gws`'s
(the same as the asyncio client of `replay` and `load`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Iterable
from http.client import HTTPException
from typing import Any

import gevent
import websocket
from gevent.event import AsyncResult
from geventhttpclient import HTTPClient
from geventhttpclient.url import URL

from gwsproxy import bayeux, gws
from gwsproxy.errors import one_line
from gwsproxy.gws.session import SUBSCRIPTION, csrf_of, refuses_csrf
from gwsproxy.lenient import Unreadable

log = logging.getLogger(__name__)

Message = dict[str, Any]


class SessionError(Exception):
    """Logging in or CometD failed, in one line."""


class HttpError(Exception):
    """An HTTP exchange broke (no connection, reset, timeout, an unreadable answer)."""


class _Rehandshake(Exception):
    pass


class Http:
    """HTTP/1.1 to one GWS: a pool of keep-alive connections, sharing the session's cookies
    (JSESSIONID, a load balancer's stickiness cookie) and headers."""

    def __init__(
        self, base: str, session: Session, timeout: float, read_timeout: float, concurrency: int
    ) -> None:
        url = URL(base)
        self.prefix = url.path.rstrip("/")
        self.session = session
        options: dict[str, Any] = {}
        tls = session.tls
        if url.scheme == "https" and tls is not None:  # else geventhttpclient's own checks
            options["ssl_context_factory"] = lambda *args, **kwargs: tls
            options["insecure"] = not tls.check_hostname
        self.client = HTTPClient.from_url(
            url,
            concurrency=concurrency,
            connection_timeout=timeout,
            network_timeout=read_timeout,
            **options,
        )

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, str, Any, bytes]:
        """Status, reason, the answer's headers and its body; HttpError if the exchange broke."""
        session = self.session
        sent = {**session.headers, **(headers or {})}
        if session.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
        try:
            response = self.client.request(method, self.prefix + path, body, sent)
            try:
                data = response.read()
            finally:
                response.release()
        except (OSError, ValueError, HTTPException) as exc:  # (a socket timeout is an OSError)
            raise HttpError(one_line(exc)) from None
        cookies = response.get("set-cookie")
        for cookie in [cookies] if isinstance(cookies, str) else cookies or ():
            name, sep, value = cookie.split(";", 1)[0].strip().partition("=")
            if sep and name:
                session.cookies[name] = value
        return response.status_code, response.status_message or "", response, data

    def close(self) -> None:
        self.client.close()


class Session:
    """An agent's HTTP session (cookies, Authorization, CSRF header) and its CometD client."""

    def __init__(
        self,
        base: str,
        user: str,
        authorization: str,
        *,
        transport: str,
        timeout: float,
        tls: ssl.SSLContext | None = None,
        headers: Iterable[tuple[str, str]] = (),
        on_message: Callable[[Message], None] = lambda m: None,
    ) -> None:
        if transport not in bayeux.TRANSPORTS:
            raise SessionError(f"unknown transport {transport!r}")
        self.base = base.rstrip("/")
        self.user = user
        self.timeout = timeout
        self.transport = transport
        self.on_message = on_message
        self.tls = tls  # gws.options.access_of's: --cacert, --insecure
        self.headers = {"Authorization": authorization, **dict(headers)}
        self.cookies: dict[str, str] = {}
        self.csrf: dict[str, str] = {}
        self.http = Http(self.base, self, timeout, timeout, concurrency=2)
        self.cometd: Cometd | None = None

    # ---- REST ------------------------------------------------------------------------------

    def login(self) -> None:
        path = "/api/v2/me"
        try:
            status, reason, headers, raw = self.http.request("GET", path)
        except HttpError as e:
            raise SessionError(f"{self.user}: {self.base}{path} failed: {e}") from None
        doc = _document(raw)
        if status >= 400 or not isinstance(doc, dict) or doc.get("statusCode") not in (0, None):
            message = doc.get("statusMessage") if isinstance(doc, dict) else None
            raise SessionError(f"{self.user}: {status} {message or reason} at {self.base}{path}")
        found = csrf_of(headers)
        if found is not None:
            self.csrf.clear()
            self.csrf[found[0]] = found[1]

    def get(self, path: str) -> tuple[int, Any]:
        """The status and the parsed GWS document (None if unreadable); HttpError."""
        status, _, _, raw = self.http.request("GET", path)
        return status, _document(raw)

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        """POST with the CSRF header (fetched again once on a 403 refusing it, as
        `GwsSession.post`); HttpError if the exchange broke."""
        status, raw = self._post(path, body, content_type)
        if status == 403 and refuses_csrf(raw, bool(self.csrf)):
            try:
                self.login()
            except SessionError as e:
                log.info("%s", e)
                return status, raw
            status, raw = self._post(path, body, content_type)
        return status, raw

    def _post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type, **self.csrf}
        status, _, _, raw = self.http.request("POST", path, body, headers)
        return status, raw

    # ---- CometD ----------------------------------------------------------------------------

    def listen(self, subscribe: str = SUBSCRIPTION) -> None:
        self.cometd = Cometd(self, self.base + bayeux.NOTIFICATIONS_PATH)
        try:
            self.cometd.start([subscribe])
        except HttpError as e:
            raise SessionError(f"{self.user}: CometD at {self.base} failed: {e}") from None

    def close(self) -> None:
        if self.cometd is not None:
            self.cometd.close()
            self.cometd = None
        self.http.close()


class Cometd:
    """A Bayeux client on the session's cookies and headers; a greenlet keeps it connected."""

    def __init__(self, session: Session, url: str) -> None:
        self.session = session
        self.url = url
        self.transport = session.transport
        self.client_id: str | None = None
        self.subscriptions: list[str] = []
        self.error: str | None = None
        self._server_timeout = bayeux.DEFAULT_SERVER_TIMEOUT
        self._interval = 0.0
        self._next_id = 0
        self._fresh = False
        self._closing = False
        self._ws: websocket.WebSocket | None = None
        self._reader: gevent.Greenlet | None = None
        self._loop: gevent.Greenlet | None = None
        self._pending: dict[tuple[str, str], AsyncResult] = {}
        self._http: Http | None = None  # long polling: its own pool, for connects held long
        self._read_timeout = 0.0

    def start(self, channels: list[str]) -> None:
        self.subscriptions = list(channels)
        self._handshake()
        self._subscribe()
        self._connect()
        self._loop = gevent.spawn(self._keep_connected)

    def close(self) -> None:
        self._closing = True
        if self.client_id is not None:
            try:
                self._exchange([bayeux.disconnect_message(self.client_id)], 2.0)
            except Exception as exc:  # noqa: BLE001 - a disconnect is a courtesy
                log.debug("cometd disconnect: %s", exc)
        if self._loop is not None:
            self._loop.join(timeout=1.0)
            self._loop.kill(block=False)
        self._close_socket()
        if self._http is not None:
            self._http.close()
        self.client_id = None

    # ---- protocol -------------------------------------------------------------------------

    def _handshake(self) -> None:
        if self.transport == "websocket":
            self._open_socket()
        (reply,) = self._exchange([bayeux.handshake_message(self.transport)], bayeux.MARGIN + 5)
        if not reply.get("successful"):
            raise SessionError(f"handshake refused by {self.url}: {bayeux.failure_reason(reply)}")
        client_id = reply.get("clientId")
        if not isinstance(client_id, str):
            raise SessionError(f"handshake answer from {self.url} carries no clientId")
        self.client_id = client_id
        self._fresh = True
        self._take_advice(reply)

    def _subscribe(self) -> None:
        messages = bayeux.subscribe_messages(self.client_id, self.subscriptions)
        for reply in self._exchange(messages, bayeux.MARGIN + 5):
            self._check(reply)

    def _connect(self) -> None:
        message = bayeux.connect_message(self.client_id, self.transport, self._fresh)
        self._fresh = False
        (reply,) = self._exchange([message], self._server_timeout + bayeux.MARGIN)
        self._take_advice(reply)
        self._check(reply)

    def _check(self, reply: Message) -> None:
        if reply.get("successful"):
            return
        if bayeux.wants_handshake(reply):
            raise _Rehandshake(bayeux.failure_reason(reply))
        raise SessionError(
            f"{reply.get('channel')} refused by {self.url}: {bayeux.failure_reason(reply)}"
        )

    def _take_advice(self, reply: Message) -> None:
        self._server_timeout, self._interval = bayeux.timing(
            reply, self._server_timeout, self._interval
        )

    def _keep_connected(self) -> None:
        backoff = 0.0
        while not self._closing:
            try:
                if self._interval > 0:
                    gevent.sleep(self._interval)
                if self.transport == "websocket" and self._ws is None:
                    self._open_socket()
                self._connect()
                backoff = 0.0
            except _Rehandshake:
                try:
                    self._handshake()
                    self._subscribe()
                except Exception as exc:  # noqa: BLE001 - retried with backoff below
                    if self._closing:
                        return
                    self.error = str(exc)
                    backoff = self._back_off(backoff)
            except Exception as exc:  # noqa: BLE001 - a background greenlet: record, retry
                if self._closing:
                    return
                self.error = f"{type(exc).__name__}: {exc}"
                log.debug("cometd connect to %s failed: %s", self.url, exc)
                backoff = self._back_off(backoff)

    def _back_off(self, backoff: float) -> float:
        backoff = min(bayeux.MAX_BACKOFF, backoff * 2 if backoff else 0.1)
        gevent.sleep(backoff)
        return backoff

    # ---- exchanges --------------------------------------------------------------------------

    def _exchange(self, messages: list[Message], timeout: float) -> list[Message]:
        batch = bayeux.with_ids(messages, self._next_id + 1)
        self._next_id += len(batch)
        if self.transport == "websocket":
            return self._exchange_ws(batch, timeout)
        return self._exchange_http(batch, timeout)

    def _exchange_http(self, batch: list[Message], timeout: float) -> list[Message]:
        s = self.session
        if self._http is None or self._read_timeout < timeout:
            if self._http is not None:
                self._http.close()
            # (a held connect lasts the server's timeout: sockets time out only beyond it)
            self._read_timeout = max(timeout, bayeux.DEFAULT_SERVER_TIMEOUT + bayeux.MARGIN)
            self._http = Http(s.base, s, s.timeout, self._read_timeout, concurrency=2)
        headers = {"Content-Type": "application/json", **s.csrf}
        status, _, answer, raw = self._http.request(
            "POST", bayeux.NOTIFICATIONS_PATH, json.dumps(batch).encode(), headers
        )
        content_type = answer.get("content-type")
        parsed = bayeux.parse_batch(raw, content_type if isinstance(content_type, str) else None)
        if isinstance(parsed, Unreadable):
            raise SessionError(f"{status} from {self.url}: {parsed.reason}")
        data, replies = bayeux.sort_replies(batch, parsed.messages)
        for m in data:
            self.session.on_message(m)
        if isinstance(replies, str):
            raise SessionError(f"{status} from {self.url}: {replies}")
        return replies

    def _exchange_ws(self, batch: list[Message], timeout: float) -> list[Message]:
        ws = self._ws
        if ws is None:
            raise SessionError(f"the WebSocket to {self.url} is closed")
        keys = [(m["channel"], m["id"]) for m in batch]
        waiting = [AsyncResult() for _ in keys]
        self._pending.update(zip(keys, waiting, strict=True))
        try:
            ws.send(json.dumps(batch))
            replies = []
            late = SessionError(f"no answer from {self.url} in {timeout:g} s")
            with gevent.Timeout(timeout, late):
                for result in waiting:
                    replies.append(result.get())
            return replies
        finally:
            for key in keys:
                self._pending.pop(key, None)

    # ---- the WebSocket ------------------------------------------------------------------------

    def _open_socket(self) -> None:
        self._close_socket()
        s = self.session
        url = "ws" + self.url.removeprefix("http")
        cookies = "; ".join(f"{k}={v}" for k, v in s.cookies.items())
        header = [f"{k}: {v}" for k, v in {**s.headers, **s.csrf}.items()]
        sslopt: dict[str, Any] = {"context": s.tls} if s.tls is not None else {}
        try:
            ws = websocket.create_connection(
                url, header=header, cookie=cookies or None, sslopt=sslopt, timeout=s.timeout
            )
        except (websocket.WebSocketException, OSError) as exc:
            raise SessionError(f"WebSocket to {self.url}: {exc}") from None
        ws.settimeout(None)  # opened: a read waits as long as the server holds a connect
        self._ws = ws
        self._reader = gevent.spawn(self._read, ws)

    def _close_socket(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(websocket.WebSocketException, OSError):
                ws.close(timeout=1)
        if self._reader is not None:
            self._reader.kill(block=False)
            self._reader = None

    def _read(self, ws: websocket.WebSocket) -> None:
        try:
            while True:
                frame = ws.recv()
                if not frame:
                    break
                parsed = bayeux.parse_batch(frame)
                if isinstance(parsed, Unreadable):
                    log.warning("unreadable frame from %s: %s", self.url, parsed.reason)
                    continue
                for m in parsed.messages:
                    self._dispatch(m)
        except (websocket.WebSocketException, OSError) as exc:
            log.debug("WebSocket to %s closed: %s", self.url, exc)
        finally:
            if self._ws is ws:
                self._ws = None
            for result in self._pending.values():
                if not result.ready():
                    result.set_exception(SessionError(f"the WebSocket to {self.url} closed"))

    def _dispatch(self, message: Message) -> None:
        if bayeux.is_data(message):
            self.session.on_message(message)
            return
        result = self._pending.get((message.get("channel"), message.get("id")))  # type: ignore[arg-type]
        if result is not None and not result.ready():
            result.set(message)


def _document(raw: bytes) -> Any:
    parsed = gws.parse_answer(raw)
    return None if isinstance(parsed, Unreadable) else parsed.value
