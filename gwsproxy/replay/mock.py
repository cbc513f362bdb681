"""`gwsproxy serve`: a mock GWS that answers a client under test from a capture.

REST and CometD (long polling and WebSocket, the simulator's BayeuxServer). Each user-data
request is answered with the recorded answer of the matching pair (media, interaction,
operation, JSON body; then order among equals), and the pair's recorded notification follows
after the recorded delay divided by `--speed`, on the requesting agent's CometD clients.
Unsolicited notifications are replayed on their timeline. A request no pair matches gets a
GWS-shaped 404 naming the closest recorded request, the closest pair's recording, or the answer
of a GWS it is forwarded to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from yarl import URL

from gwsproxy import gws
from gwsproxy.bayeux.server import BayeuxServer
from gwsproxy.errors import GwsProxyError, listen_problem, one_line
from gwsproxy.gws.server import error_answer, known_session, logged_in, serve
from gwsproxy.replay.book import Asked, Book, Capture, RecordedPair, describe_request, load_capture
from gwsproxy.tls import ServerCert, told

log = logging.getLogger(__name__)

# Headers that describe one hop, not the request: never forwarded as they came.
_HOP_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "proxy-connection",
        "te",
        "trailer",
        "accept-encoding",
    }
)
_OPERATIONS = frozenset(op.lower() for op in gws.OPERATIONS)


@dataclass(frozen=True, slots=True)
class MockConfig:
    capture: str
    host: str = "127.0.0.1"
    port: int = 8090
    speed: float = 1.0  # recorded delays are divided by it; 0: no delay at all
    unmatched: str = "404"  # "404", "closest" or "forward:URL"
    match: str = "first"  # among equal unused recorded requests: "first" or "last"
    cometd_timeout: float = 30.0
    tls: ServerCert | None = None  # serve HTTPS (and wss: CometD) with this certificate


@dataclass(slots=True)
class MockStats:
    """What the mock did so far."""

    requests: int = 0  # user-data requests (POST /api/v2/me/...)
    matched: int = 0  # answered from their recorded pair
    unmatched: int = 0  # no unused recorded pair was equal (whatever the policy did then)
    closest: int = 0  # unmatched, answered with the closest pair (--unmatched closest)
    forwarded: int = 0  # unmatched, answered by the forward URL
    notifications: int = 0  # pair notifications pushed to at least one client
    unsolicited: int = 0  # unsolicited notifications pushed to at least one client
    undelivered: int = 0  # notifications no subscribed client of their agent was there for
    gets: int = 0  # GETs answered from the capture's knowledge

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


# ---- the server ---------------------------------------------------------------------------------


def _basic_user(authorization: str) -> str | None:
    found = gws.basic_credentials(authorization)
    return found[0] if found else None


class Mock:
    """The mock GWS: the capture, what is left of it, who is who, and the HTTP handlers."""

    def __init__(self, config: MockConfig, capture: Capture) -> None:
        if config.speed < 0:
            raise ValueError("speed must not be negative")
        self.config = config
        self.capture = capture
        self.stats = MockStats()
        self.book = Book(capture.pairs, config.match)
        self.bayeux = BayeuxServer(timeout=config.cometd_timeout, authenticate=self.owner_of)
        self.sessions: dict[str, str] = {}  # JSESSIONID -> scope
        self.claims: dict[str, str] = {}  # identity (user:NAME, cookie:..., client:ADDR) -> scope
        self.names: dict[str, str] = {}  # scope -> the name /api/v2/me reports
        self.csrf: dict[str, str] = {}  # JSESSIONID -> its CSRF token
        self._scopes = set(capture.scopes)
        # Scopes that name no user (session:HASH, client:ADDR) go to unknown users in turn.
        self._unclaimed = [s for s in capture.scopes if not s.startswith("user:")]
        self._timeline_started = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._client: aiohttp.ClientSession | None = None
        self._forward = (
            config.unmatched.removeprefix("forward:")
            if config.unmatched.startswith("forward:")
            else None
        )

    # ---- who is who --------------------------------------------------------------------------

    def owner_of(self, request: web.Request) -> str:
        """The scope a request (REST or CometD) plays: Basic user, else cookie, else address.

        Any password is accepted (captures hold none). A user the capture names plays its own
        scope; an unknown one plays a recorded scope that names no user, else a scope of its own.
        """
        user = _basic_user(request.headers.get("Authorization", ""))
        if user is not None:
            scope = self._claim("user:" + user)
            self.names.setdefault(scope, user)
            return scope
        cookie = request.cookies.get("JSESSIONID")
        if cookie:
            return self.sessions.get(cookie) or self._claim("cookie:" + cookie)
        return self._claim("client:" + (request.remote or "unknown"))

    def _claim(self, identity: str) -> str:
        scope = self.claims.get(identity)
        if scope is None:
            if identity in self._scopes:
                scope = identity
            elif self._unclaimed:
                scope = self._unclaimed.pop(0)
                log.info("%s plays the recorded %s", identity, scope)
            else:
                scope = identity
            self.claims[identity] = scope
        return scope

    def _owns_anything(self, scope: str) -> bool:
        return scope in self._scopes

    # ---- HTTP ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.bayeux.add_routes(app)
        app.router.add_get("/api/v2/me", self.me)
        app.router.add_get("/api/v2/me/{tail:.+}", self.get)
        app.router.add_post("/api/v2/me/{tail:.+}", self.post)
        app.router.add_route("*", "/{tail:.*}", self.other)
        return app

    async def me(self, request: web.Request) -> web.Response:
        self._start_without_pairs()
        has_user = _basic_user(request.headers.get("Authorization", "")) is not None
        cookie = request.cookies.get("JSESSIONID", "")
        if not has_user and cookie not in self.sessions:
            return error_answer(401, 20, "Not authenticated: log in with Basic auth (any password)")
        scope = self.owner_of(request)
        name = self.names.get(scope) or scope.partition(":")[2] or scope
        session = known_session(request, self.sessions)
        return logged_in(request, name, scope, self.sessions, self.csrf, session)[0]

    async def get(self, request: web.Request) -> web.StreamResponse:
        self._start_without_pairs()
        owner = self.owner_of(request)
        tail = request.match_info["tail"].strip("/")
        parts = tail.split("/")
        known = self.capture.interactions.get(parts[-1]) if len(parts) > 1 else None
        if known is not None:
            self.stats.gets += 1
            return web.json_response({"statusCode": 0, known.key: known.snapshot()})
        media = gws.media_of(parts[0])
        listing = len(parts) == 1 or (len(parts) == 2 and media == "openmedia")
        if media == gws.UNKNOWN or not listing:
            return await self._not_recorded(request, "GET")
        items = [k for k in self.capture.interactions.values() if k.media == media]
        if self._owns_anything(owner):
            items = [k for k in items if owner in k.owners]
        if len(parts) == 2:  # openmedia/<mediaType>
            items = [k for k in items if (k.fields or {}).get("mediaType", parts[1]) == parts[1]]
        self.stats.gets += 1
        return web.json_response({"statusCode": 0, tail: [k.snapshot() for k in items]})

    async def post(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        owner = self.owner_of(request)
        self.stats.requests += 1
        self._start_timeline()
        asked = describe_request(request.method, request.path, body)
        pair = self.book.take(asked, owner)
        if pair is not None:
            self.stats.matched += 1
            return self._replay(pair, owner)
        return await self._unmatched(request, asked, owner, body)

    async def other(self, request: web.Request) -> web.StreamResponse:
        self._start_without_pairs()
        return await self._not_recorded(request, request.method)

    async def _not_recorded(self, request: web.Request, method: str) -> web.StreamResponse:
        if self._forward is not None:
            return await self._forward_request(request, await request.read())
        return error_answer(404, 6, f"not in the capture: {method} {request.path}")

    # ---- answering -----------------------------------------------------------------------------

    def _replay(self, pair: RecordedPair, owner: str) -> web.Response:
        if pair.channel is not None:
            speed = self.config.speed
            delay = pair.delay / speed if speed > 0 else 0.0
            if pair.note_first:
                self._push(pair.channel, pair.data, owner, pair.state, unsolicited=False)
            else:
                self._later(delay, self._push, pair.channel, pair.data, owner, pair.state, False)
        if pair.status is None:
            return error_answer(
                502, 4, f"pair {pair.id} has no recorded answer (it was {pair.record_status})"
            )
        headers = {"Content-Type": pair.content_type} if pair.content_type else None
        return web.Response(status=pair.status, body=pair.answer, headers=headers)

    async def _unmatched(
        self, request: web.Request, asked: Asked, owner: str, body: bytes
    ) -> web.StreamResponse:
        self.stats.unmatched += 1
        found = self.book.closest(asked, owner)
        where = f"{asked.method} {request.path}"
        if found is not None:
            pair, diff = found
            hint = f"closest: pair {pair.id}: {'; '.join(diff)}"
            log.warning(
                "no recorded pair for %s from %s; closest: pair %d (%s from %s): %s",
                where,
                owner,
                pair.id,
                pair.where(),
                pair.scope,
                "; ".join(diff),
            )
        else:
            pair, hint = None, "the capture holds no pairs"
            log.warning("no recorded pair for %s from %s (%s)", where, owner, hint)
        # Only a user-data operation gets a user-data recording (not, say, a chat Complete).
        user_data_op = (asked.operation or "").lower() in _OPERATIONS
        if self.config.unmatched == "closest" and pair is not None and user_data_op:
            self.stats.closest += 1
            self.book.use(pair)
            return self._replay(pair, owner)
        if self._forward is not None:
            return await self._forward_request(request, body)
        return error_answer(404, 6, f"no recorded pair for {where} ({hint})")

    async def _forward_request(self, request: web.Request, body: bytes) -> web.Response:
        assert self._forward is not None
        if self._client is None:
            self._client = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        url = URL(self._forward + request.raw_path, encoded=True)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS]
        try:
            async with self._client.request(
                request.method,
                url,
                data=body if body else None,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                content = await response.read()
                content_type = response.headers.get("Content-Type")
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = one_line(exc)
            log.warning("forwarding %s %s failed: %s", request.method, request.path, reason)
            return error_answer(502, 4, f"forwarding to {self._forward} failed: {reason}")
        self.stats.forwarded += 1
        headers_out = {"Content-Type": content_type} if content_type else None
        return web.Response(status=status, body=content, headers=headers_out)

    # ---- notifications ---------------------------------------------------------------------------

    def _later(self, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:  # only ever called after `handle` is set below
            self._timers.discard(handle)
            callback(*args)

        handle = loop.call_later(max(0.0, delay), fire)
        self._timers.add(handle)

    def _push(
        self,
        channel: str,
        data: Any,
        owner: str,
        state: tuple[str, dict[str, Any]] | None,
        unsolicited: bool,
    ) -> None:
        if state is not None:
            known = self.capture.interactions.get(state[0])
            if known is not None:
                known.user_data = dict(state[1])
        if self.bayeux.publish(channel, data, (owner,)):
            if unsolicited:
                self.stats.unsolicited += 1
            else:
                self.stats.notifications += 1
        else:
            self.stats.undelivered += 1
            log.info(
                "no CometD client of %s subscribed to %s: notification dropped", owner, channel
            )

    def _start_timeline(self) -> None:
        """Unsolicited notifications, at their recorded offsets from the first request."""
        if self._timeline_started:
            return
        self._timeline_started = True
        t0 = self.capture.t0
        speed = self.config.speed
        for note in self.capture.notes:
            offset = (note.t - t0) if t0 is not None else 0.0
            delay = max(0.0, offset / speed) if speed > 0 else 0.0
            self._later(delay, self._push, note.channel, note.data, note.scope, note.state, True)

    def _start_without_pairs(self) -> None:
        # Without pairs there is no first user-data request: the first request of any kind.
        if not self.capture.pairs:
            self._start_timeline()

    async def close(self) -> None:
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None


# ---- running it ---------------------------------------------------------------------------------


@dataclass(slots=True)
class RunningMock:
    mock: Mock
    runner: web.AppRunner
    url: str

    @property
    def stats(self) -> MockStats:
        return self.mock.stats

    @property
    def capture(self) -> Capture:
        return self.mock.capture

    @property
    def port(self) -> int:
        return int(URL(self.url).port or 0)

    async def stop(self) -> None:
        await self.mock.close()
        # Release held long-poll connects so that the runner does not wait for them.
        for session in list(self.mock.bayeux.sessions.values()):
            session.closed = True
            session.release()
        await self.runner.cleanup()


async def start_mock(config: MockConfig, capture: Capture | None = None) -> RunningMock:
    """Load the capture (unless given) and listen on config.host:port (0: any free port).

    Raises CaptureError for an unusable capture and OSError when the address is taken."""
    if capture is None:
        capture = load_capture(config.capture)
    mock = Mock(config, capture)
    runner, url = await serve(mock.app(), config.host, config.port, config.tls)
    return RunningMock(mock, runner, url)


def serve_main(config: MockConfig, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`gwsproxy serve`: run until Ctrl-C (or SIGTERM). A GwsProxyError when it cannot start
    (a CaptureError for the capture, or the address is taken)."""
    out = out or sys.stdout
    err = err or sys.stderr
    _log_to(err)
    capture = load_capture(config.capture)
    for notice in capture.notices:
        print(f"gwsproxy serve: note: {notice}", file=err)

    async def main() -> int:
        try:
            running = await start_mock(config, capture)
        except OSError as e:
            raise GwsProxyError(listen_problem(e, config.host, config.port)) from None
        stop = asyncio.Event()
        # Both signals take the same orderly path: a KeyboardInterrupt would instead cancel this
        # task mid-await and leave the shutdown to race the loop's own teardown.
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        agents = len(capture.scopes)
        print(
            f"mock GWS on {running.url} from {config.capture} "
            f"({len(capture.pairs)} pairs, {agents} agents)"
            + (f"\n{told(config.tls)}" if config.tls else ""),
            file=out,
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            s = running.stats
            print(
                f"gwsproxy serve: {s.requests} requests, {s.matched} matched, "
                f"{s.unmatched} unmatched, {s.notifications + s.unsolicited} notifications "
                f"pushed ({s.undelivered} undelivered), {running.mock.book.unused} pairs unused",
                file=err,
                flush=True,
            )
            await running.stop()
        return 0

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0


def _log_to(stream: TextIO) -> None:
    logger = logging.getLogger("gwsproxy.replay")
    if not logger.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("gwsproxy serve: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if logger.level == logging.NOTSET else logger.level)
        handler.setLevel(logging.WARNING)
