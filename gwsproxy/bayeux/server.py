"""A Bayeux (CometD) server on aiohttp: long polling with a held connect, and WebSocket.

The simulator and the mock GWS both publish through it; it knows nothing of GWS itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from gwsproxy import bayeux
from gwsproxy.lenient import Unreadable

log = logging.getLogger(__name__)

Authenticate = Callable[[web.Request], str | None]


@dataclass(slots=True, eq=False)
class Session:
    """One CometD client: its owner (the agent), subscriptions and undelivered messages."""

    id: str
    owner: str | None
    subscriptions: set[str] = field(default_factory=set)
    queue: list[dict[str, Any]] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    last_seen: float = field(default_factory=time.monotonic)
    connects: int = 0  # a newer connect releases the one held before it
    released: asyncio.Event = field(default_factory=asyncio.Event)  # set when that happens
    closed: bool = False

    def release(self) -> None:
        """End the wait of the connect held so far (a newer one came, or the client left)."""
        self.connects += 1
        self.released.set()
        self.released = asyncio.Event()
        self.wakeup.set()

    def put_back(self, messages: list[dict[str, Any]]) -> None:
        """Messages that could not be sent go first next time."""
        if messages:
            self.queue[:0] = messages
            self.wakeup.set()

    def wants(self, channel: str) -> bool:
        return any(bayeux.channel_matches(p, channel) for p in self.subscriptions)

    def take(self) -> list[dict[str, Any]]:
        messages, self.queue = self.queue, []
        self.wakeup.clear()
        return messages


class BayeuxServer:
    """Handshake, connect, subscribe, unsubscribe, disconnect; batches; a queue per client."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        authenticate: Authenticate | None = None,
        max_queue: int = 10_000,
    ) -> None:
        self.timeout = timeout
        self.max_queue = max_queue
        self._authenticate = authenticate
        self.sessions: dict[str, Session] = {}
        self.delivered = 0
        self._sockets: set[web.WebSocketResponse] = set()

    def add_routes(self, app: web.Application, path: str = bayeux.NOTIFICATIONS_PATH) -> None:
        app.router.add_route("*", path, self.handle)
        app.router.add_route("*", path + "/{tail:.*}", self.handle)
        app.on_shutdown.append(self._shutdown)

    async def _shutdown(self, app: web.Application) -> None:
        """The server stops: answer the held connects and close the WebSockets, so that it
        need not wait out its shutdown timeout for them."""
        for session in self.sessions.values():
            session.release()
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), 0.5)

    # ---- publishing --------------------------------------------------------------------------

    def publish(self, channel: str, data: Any, owners: Iterable[str] | None = None) -> int:
        """Queue a data message for every subscribed session (of these owners); returns how many."""
        wanted = set(owners) if owners is not None else None
        count = 0
        for s in list(self.sessions.values()):
            if (wanted is None or s.owner in wanted) and s.wants(channel):
                if len(s.queue) >= self.max_queue:
                    log.warning("client %s is not reading: dropping its oldest message", s.id[:6])
                    s.queue.pop(0)
                s.queue.append({"channel": channel, "data": data})
                s.wakeup.set()
                count += 1
        self.delivered += count
        return count

    # ---- HTTP and WebSocket edges ------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        if request.method != "POST":
            return web.json_response([{"successful": False, "error": "405::POST only"}], status=405)
        batch = bayeux.parse_batch(await request.read(), request.content_type)
        if isinstance(batch, Unreadable):
            error = f"400::{batch.reason}"
            return web.json_response([{"successful": False, "error": error}], status=400)
        replies, held = self._answer(batch.messages, self._owner(request))
        if held is not None:
            session, reply, timeout = held
            await self._hold(session, timeout)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # the client gave up: keep its messages queued
            replies.extend(session.take() if not session.closed else [])
            replies.append(reply)
        return web.Response(body=json.dumps(replies), content_type="application/json")

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, compress=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        owner = self._owner(request)
        pushers: dict[str, asyncio.Task[None]] = {}
        replies_later: set[asyncio.Task[None]] = set()
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                batch = bayeux.parse_batch(frame.data)
                if isinstance(batch, Unreadable):
                    await ws.send_str(json.dumps([{"successful": False, "error": batch.reason}]))
                    continue
                replies, held = self._answer(batch.messages, owner)
                if replies:
                    await ws.send_str(json.dumps(replies))
                if held is not None:
                    session, reply, timeout = held
                    old = pushers.get(session.id)
                    if old is None or old.done():
                        pushers[session.id] = asyncio.create_task(self._push(ws, session))
                    task = asyncio.create_task(
                        self._answer_connect_later(ws, session, reply, timeout)
                    )
                    replies_later.add(task)
                    task.add_done_callback(replies_later.discard)
        finally:
            self._sockets.discard(ws)
            for task in (*pushers.values(), *replies_later):
                task.cancel()
        return ws

    async def _push(self, ws: web.WebSocketResponse, session: Session) -> None:
        # Over WebSocket, data goes out as soon as it is queued; only connect replies are held.
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not ws.closed and not session.closed:
                await session.wakeup.wait()
                messages = session.take()
                if messages:
                    try:
                        await ws.send_str(json.dumps(messages))
                    except (ConnectionError, RuntimeError):
                        session.put_back(messages)
                        raise

    async def _answer_connect_later(
        self, ws: web.WebSocketResponse, session: Session, reply: dict[str, Any], timeout: float
    ) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.released.wait(), timeout)
        with contextlib.suppress(ConnectionError, RuntimeError):
            if not ws.closed:
                await ws.send_str(json.dumps([reply]))

    async def _hold(self, session: Session, timeout: float) -> None:
        generation = session.connects
        deadline = time.monotonic() + timeout
        while not session.queue and not session.closed and session.connects == generation:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.wakeup.wait(), remaining)
            if session.connects != generation:
                return
            if not session.queue:
                session.wakeup.clear()

    def _owner(self, request: web.Request) -> str | None:
        return self._authenticate(request) if self._authenticate else None

    # ---- the protocol ------------------------------------------------------------------------

    def _answer(
        self, messages: Iterable[dict[str, Any]], owner: str | None
    ) -> tuple[list[dict[str, Any]], tuple[Session, dict[str, Any], float] | None]:
        """Replies to a batch, and the connect to hold (session, reply, seconds) if any."""
        replies: list[dict[str, Any]] = []
        held = None
        touched: list[Session] = []
        for m in messages:
            channel = m.get("channel")
            reply: dict[str, Any] = {"channel": channel}
            if "id" in m:
                reply["id"] = m["id"]
            if channel == bayeux.HANDSHAKE:
                replies.append(self._handshake(reply, owner))
                continue
            session = self.sessions.get(m.get("clientId"))  # type: ignore[arg-type]
            if session is None:
                reply.update(
                    successful=False,
                    error="402::Unknown client",
                    advice={"reconnect": "handshake", "interval": 0},
                )
                replies.append(reply)
                continue
            if self._authenticate is not None and session.owner != owner:
                reply.update(successful=False, error="403::not your client")
                replies.append(reply)
                continue
            session.last_seen = time.monotonic()
            reply["clientId"] = session.id
            touched.append(session)
            if channel == bayeux.CONNECT:
                session.release()  # a connect held before this one ends now
                reply.update(successful=True, advice={"reconnect": "retry", "interval": 0})
                advice = bayeux.advice_of(m)
                ms = advice.get("timeout", self.timeout * 1000)
                timeout = ms / 1000 if isinstance(ms, int | float) else self.timeout
                held = (session, reply, min(max(timeout, 0.0), self.timeout))
                continue
            if channel in (bayeux.SUBSCRIBE, bayeux.UNSUBSCRIBE):
                subs = m.get("subscription")
                names = [
                    s for s in (subs if isinstance(subs, list) else [subs]) if isinstance(s, str)
                ]
                if not names:
                    reply.update(successful=False, error="403::no subscription")
                else:
                    if channel == bayeux.SUBSCRIBE:
                        session.subscriptions.update(names)
                    else:
                        session.subscriptions.difference_update(names)
                    reply.update(successful=True, subscription=subs)
            elif channel == bayeux.DISCONNECT:
                session.closed = True
                session.release()
                self.sessions.pop(session.id, None)
                reply["successful"] = True
            elif isinstance(channel, str) and channel.startswith("/meta/"):
                reply.update(successful=False, error="400::unknown meta channel")
            else:
                reply["successful"] = True  # client publishes are acknowledged, not routed
            replies.append(reply)
        # Any answer may carry queued data messages: real servers batch them freely.
        if held is None:
            for session in dict.fromkeys(touched):
                if not session.closed:
                    replies.extend(session.take())
        return replies, held

    def _handshake(self, reply: dict[str, Any], owner: str | None) -> dict[str, Any]:
        if self._authenticate is not None and owner is None:
            reply.update(
                successful=False, error="401::Not authenticated", advice={"reconnect": "none"}
            )
            return reply
        self._expire()
        session = Session(secrets.token_hex(16), owner)
        self.sessions[session.id] = session
        reply.update(
            successful=True,
            clientId=session.id,
            version="1.0",
            supportedConnectionTypes=["websocket", "long-polling"],
            advice={"reconnect": "retry", "interval": 0, "timeout": int(self.timeout * 1000)},
        )
        return reply

    def _expire(self) -> None:
        # A client that has not been seen for two connect timeouts is gone.
        limit = time.monotonic() - 2 * self.timeout - 10
        for sid, s in list(self.sessions.items()):
            if s.last_seen < limit:
                s.closed = True
                s.release()
                del self.sessions[sid]
