"""Our own Bayeux (CometD) client on aiohttp, over long polling or WebSocket.

The simulated agents listen with it: every delivered data message lands in one queue, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import aiohttp

from gwsproxy import bayeux
from gwsproxy.lenient import Unreadable

log = logging.getLogger(__name__)

FALLBACK_AFTER = 3  # WebSocket openings failed in a row before falling back to long polling

Message = dict[str, Any]


class CometdError(Exception):
    """A Bayeux exchange failed; `retry` is False when the server said not to reconnect."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class _Rehandshake(Exception):
    """The server no longer knows our clientId (advice reconnect=handshake)."""


class CometdClient:
    """One Bayeux client: handshake, subscriptions, a background connect loop, a message queue.

    `session` carries the credentials (Authorization header, cookies); `headers` are added to
    every request (e.g. the CSRF token GWS hands out at login; change them in place when it
    hands out a new one). With `fallback`, a WebSocket that
    cannot be opened (at the handshake, or FALLBACK_AFTER times in a row later) gives way to long
    polling and a new handshake, as CometD's own clients do.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        transport: str = "long-polling",
        headers: Mapping[str, str] | None = None,
        fallback: bool = False,
    ) -> None:
        if transport not in bayeux.TRANSPORTS:
            choose = " or ".join(bayeux.TRANSPORTS)
            raise ValueError(f"unknown transport {transport!r}: choose {choose}")
        self.url = url
        self.transport = transport
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.client_id: str | None = None
        self.subscriptions: list[str] = []
        self.error: str | None = None  # why the connect loop gave up, if it did
        self.handshakes = 0
        self.fallback = fallback
        self.fell_back = False  # the WebSocket gave way to long polling
        self._ws_failures = 0  # openings failed in a row
        self._session = session
        self.headers = dict(headers or {})
        self._server_timeout = bayeux.DEFAULT_SERVER_TIMEOUT
        self._interval = 0.0
        self._next_id = 0
        self._fresh = False  # the next connect is the first after a handshake
        self._loop_task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[tuple[str, str], asyncio.Future[Message]] = {}
        self._rehandshaking: asyncio.Lock = asyncio.Lock()
        self._closing = False
        self._stopped = asyncio.Event()

    async def __aenter__(self) -> CometdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- public API ----------------------------------------------------------------------------

    async def handshake(self) -> str:
        """Handshake (over the socket itself on WebSocket); returns the new clientId."""
        if self.transport == "websocket" and (self._ws is None or self._ws.closed):
            try:
                await self._open_socket()
            except (CometdError, aiohttp.ClientError, OSError) as exc:
                if not (self.fallback and self._retry_after(exc)):
                    raise
                await self._fall_back(exc)
        message = bayeux.handshake_message(self.transport)
        reply = await self._call(message, timeout=bayeux.MARGIN + 5)
        if not reply.get("successful"):
            why = bayeux.failure_reason(reply)
            retry = bayeux.may_retry(reply)
            raise CometdError(f"handshake refused by {self.url}: {why}", retry=retry)
        client_id = reply.get("clientId")
        if not isinstance(client_id, str):
            raise CometdError(f"handshake answer from {self.url} carries no clientId")
        self.client_id = client_id
        self.handshakes += 1
        self._fresh = True
        self._take_advice(reply)
        return client_id

    async def subscribe(self, *channels: str) -> None:
        """Subscribe (remembered, so a re-handshake subscribes again); waits for the answers."""
        for channel in channels:
            if channel not in self.subscriptions:
                self.subscriptions.append(channel)
        if self.client_id is None:
            await self.handshake()
        try:
            await self._subscribe(channels)
        except _Rehandshake:
            await self._rehandshake()

    async def start(self) -> None:
        """Send the first connect (answered at once) and keep one connect held from then on."""
        if self._loop_task is not None:
            return
        if self.client_id is None:
            await self.handshake()
        try:
            await self._connect()
        except _Rehandshake:
            await self._rehandshake()
        self._loop_task = asyncio.create_task(self._connect_loop(), name=f"cometd {self.url}")

    async def messages(self) -> AsyncIterator[Message]:
        """Delivered data messages in order; ends once the client is closed and drained."""
        while True:
            if not self.queue.empty():
                yield self.queue.get_nowait()
                continue
            if self._stopped.is_set():
                return
            getter = asyncio.ensure_future(self.queue.get())
            stopper = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                getter.cancel()
                stopper.cancel()
            # A getter can complete after wait() returned; its item must not be lost.
            if getter.done() and not getter.cancelled():
                yield getter.result()

    async def close(self) -> None:
        """Disconnect politely (this also releases a held connect), then stop every task."""
        if self._closing:
            return
        self._closing = True
        if self.client_id is not None and (self.transport == "long-polling" or self._ws_open()):
            with contextlib.suppress(CometdError, aiohttp.ClientError, TimeoutError, _Rehandshake):
                await self._call(bayeux.disconnect_message(self.client_id), 2.0)
        if self._loop_task is not None:
            if self.transport == "long-polling":
                # The disconnect released the held POST: let it end rather than drop the socket.
                await asyncio.wait({self._loop_task}, timeout=1.0)
            await _cancel(self._loop_task)
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await _cancel(self._reader)
        self._fail_pending("the client is closed")
        self.client_id = None
        self._stopped.set()

    # ---- protocol --------------------------------------------------------------------------------

    async def _subscribe(self, channels: Iterable[str]) -> None:
        messages = bayeux.subscribe_messages(self.client_id, channels)
        for reply in await self._exchange(messages, timeout=bayeux.MARGIN + 5):
            if not reply.get("successful"):
                self._raise_for(reply)

    async def _connect(self) -> None:
        message = bayeux.connect_message(self.client_id, self.transport, self._fresh)
        self._fresh = False
        reply = await self._call(message, timeout=self._server_timeout + bayeux.MARGIN)
        self._take_advice(reply)
        if not reply.get("successful"):
            self._raise_for(reply)

    async def _connect_loop(self) -> None:
        try:
            await self._keep_connected()
        except Exception as exc:  # a background task has nobody to raise to: record and stop
            log.exception("cometd client for %s stopped", self.url)
            self.error = f"{type(exc).__name__}: {exc}"

    async def _keep_connected(self) -> None:
        backoff = 0.0
        while not self._closing:
            try:
                if self._interval > 0:
                    await asyncio.sleep(self._interval)
                if self.transport == "websocket" and not self._ws_open():
                    if self.fallback and self._ws_failures >= FALLBACK_AFTER:
                        await self._fall_back(self.error or "the WebSocket cannot be opened")
                        raise _Rehandshake("a new handshake for long polling")
                    # The server may still know our clientId: reconnect before re-handshaking.
                    await self._open_socket()
                await self._connect()
                backoff = 0.0
            except _Rehandshake:
                try:
                    await self._rehandshake()
                except (CometdError, aiohttp.ClientError, OSError) as exc:
                    if self._closing or not self._retry_after(exc):
                        return
                    backoff = await self._back_off(backoff)
            # OSError: also a write to a socket the peer has just reset (TimeoutError is one).
            except (CometdError, aiohttp.ClientError, OSError) as exc:
                if self._closing or not self._retry_after(exc):
                    return
                log.debug("cometd connect to %s failed: %s", self.url, exc)
                backoff = await self._back_off(backoff)

    async def _fall_back(self, why: object) -> None:
        log.info("cometd %s: WebSocket unusable (%s), falling back to long polling", self.url, why)
        self.transport = "long-polling"
        self.fell_back = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await _cancel(self._reader)

    def _retry_after(self, exc: Exception) -> bool:
        if isinstance(exc, CometdError) and not exc.retry:
            self.error = str(exc)
            return False
        return True

    async def _back_off(self, backoff: float) -> float:
        backoff = min(bayeux.MAX_BACKOFF, backoff * 2 if backoff else 0.1)
        await asyncio.sleep(backoff)
        return backoff

    async def _rehandshake(self) -> None:
        # Two requests in flight may both learn that the clientId is gone: handshake once.
        stale = self.client_id
        async with self._rehandshaking:
            if self.client_id != stale:
                return
            self.client_id = None
            await self.handshake()
            if self.subscriptions:
                try:
                    await self._subscribe(self.subscriptions)
                except _Rehandshake as exc:
                    raise CometdError(
                        f"{self.url} forgot the client right after handshake"
                    ) from exc

    def _take_advice(self, reply: Message) -> None:
        self._server_timeout, self._interval = bayeux.timing(
            reply, self._server_timeout, self._interval
        )

    def _raise_for(self, reply: Message) -> None:
        if bayeux.wants_handshake(reply):
            raise _Rehandshake(bayeux.failure_reason(reply))
        raise CometdError(
            f"{reply.get('channel')} refused by {self.url}: {bayeux.failure_reason(reply)}",
            retry=bayeux.may_retry(reply),
        )

    # ---- exchanges: one request or frame, replies matched by channel and id --------------------

    async def _call(self, message: Message, timeout: float) -> Message:
        return (await self._exchange([message], timeout))[0]

    async def _exchange(self, messages: list[Message], timeout: float) -> list[Message]:
        """Send a batch; return its meta replies in batch order, delivering data on the way."""
        batch = bayeux.with_ids(messages, self._next_id + 1)
        self._next_id += len(batch)
        if self.transport == "websocket":
            return await self._exchange_ws(batch, timeout)
        return await self._exchange_http(batch, timeout)

    async def _exchange_http(self, batch: list[Message], timeout: float) -> list[Message]:
        async with self._session.post(
            self.url,
            data=json.dumps(batch),
            headers={"Content-Type": "application/json", **self.headers},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            body = await response.read()
            status, reason, content_type = response.status, response.reason, response.content_type
        parsed = bayeux.parse_batch(body, content_type)
        if isinstance(parsed, Unreadable):
            raise CometdError(
                f"{status} {reason} from {self.url}: {parsed.reason}",
                retry=status not in (401, 403),
            )
        data, replies = bayeux.sort_replies(batch, parsed.messages)
        for m in data:
            self.queue.put_nowait(m)
        if isinstance(replies, str):
            raise CometdError(f"{status} {reason} from {self.url}: {replies}")
        return replies

    async def _exchange_ws(self, batch: list[Message], timeout: float) -> list[Message]:
        ws = self._ws
        if ws is None or ws.closed:
            raise CometdError(f"the WebSocket to {self.url} is closed")
        loop = asyncio.get_running_loop()
        keys = [(m["channel"], m["id"]) for m in batch]
        futures = [loop.create_future() for _ in keys]
        self._pending.update(zip(keys, futures, strict=True))
        try:
            await ws.send_str(json.dumps(batch))
            async with asyncio.timeout(timeout):
                return list(await asyncio.gather(*futures))
        except TimeoutError as exc:
            raise CometdError(f"no answer from {self.url} in {timeout:g} s") from exc
        finally:
            for key in keys:
                self._pending.pop(key, None)
            for future in futures:
                future.cancel()

    # ---- the WebSocket ---------------------------------------------------------------------------

    def _ws_open(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def _open_socket(self) -> None:
        if self._reader is not None:
            await _cancel(self._reader)
        try:
            self._ws = await self._session.ws_connect(
                self.url, headers=self.headers, autoping=True, heartbeat=None
            )
        except aiohttp.WSServerHandshakeError as exc:
            self._ws_failures += 1
            retry = exc.status not in (401, 403, 404)
            raise CometdError(
                f"WebSocket to {self.url}: {exc.status} {exc.message}", retry=retry
            ) from exc
        except (aiohttp.ClientError, OSError):
            self._ws_failures += 1
            raise
        self._ws_failures = 0
        self._reader = asyncio.create_task(self._read(self._ws), name=f"cometd ws {self.url}")

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                parsed = bayeux.parse_batch(frame.data)
                if isinstance(parsed, Unreadable):
                    log.warning("unreadable frame from %s: %s", self.url, parsed.reason)
                    continue
                for m in parsed.messages:
                    self._dispatch(m)
        finally:
            self._fail_pending(f"the WebSocket to {self.url} closed")

    def _dispatch(self, message: Message) -> None:
        if bayeux.is_data(message):
            self.queue.put_nowait(message)
            return
        # Data messages may reuse a meta id: only channel + id names the request answered.
        key = (message.get("channel"), message.get("id"))
        future = self._pending.get(key)  # type: ignore[arg-type]
        if future is not None and not future.done():
            future.set_result(message)
        else:
            log.debug("unexpected message from %s: %s", self.url, message)

    def _fail_pending(self, why: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CometdError(why))
        self._pending.clear()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
