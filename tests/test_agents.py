"""The CometD client and the simulated agents against a small GWS built on the real BayeuxServer.

The mini GWS implements only what the agents use: login, two interactions per agent, user-data
POSTs validated per media, and notifications published a little after the answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gwsproxy import bayeux, gws
from gwsproxy.bayeux.client import CometdClient
from gwsproxy.bayeux.server import BayeuxServer
from gwsproxy.gws.session import GwsError
from gwsproxy.sim.agents import LoadConfig, run_load

TRANSPORTS = ["long-polling", "websocket"]
CSRF = "X-CSRF-TOKEN"


@dataclass
class MiniGws:
    """Options change how it answers: `reference` puts referenceId in the answer, `early`
    publishes before answering, `silent` never publishes, `ghost` adds a stray notification,
    `refuse` rejects every request (HTTP 503, statusCode 4) and changes nothing."""

    agents: int = 2
    delay: float = 0.01
    reference: bool = False
    early: bool = False
    silent: bool = False
    ghost: bool = False
    refuse: bool = False
    bayeux: BayeuxServer = field(init=False)
    interactions: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    posts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    references: int = 0

    def __post_init__(self) -> None:
        self.bayeux = BayeuxServer(timeout=5.0, authenticate=self.agent_of)
        for n in range(1, self.agents + 1):
            agent = f"agent{n}"
            self.interactions[f"chat-{agent}"] = (agent, "chat", {"Subject": "hello"})
            self.interactions[f"call-{agent}"] = (agent, "voice", {"Priority": 1})

    def agent_of(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            known = user.removeprefix("agent").isdigit() and 1 <= int(user[5:]) <= self.agents
            return user if known and password == "password" else None
        return self.cookies.get(request.cookies.get("JSESSIONID", ""))

    def app(self) -> web.Application:
        app = web.Application()
        self.bayeux.add_routes(app)
        app.router.add_get("/api/v2/me", self.me)
        app.router.add_get("/api/v2/me/{collection}", self.collection)
        app.router.add_post("/api/v2/me/{collection}/{id}", self.post)
        return app

    async def me(self, request: web.Request) -> web.Response:
        agent = self.agent_of(request)
        if agent is None:
            body = {"statusCode": 20, "statusMessage": "Not authenticated"}
            return web.json_response(body, status=401)
        response = web.json_response({"statusCode": 0, "user": {"userName": agent}})
        cookie = secrets.token_hex(8)
        self.cookies[cookie] = agent
        response.set_cookie("JSESSIONID", cookie)
        response.headers["X-CSRF-HEADER"] = CSRF
        response.headers[CSRF] = self.tokens.setdefault(agent, secrets.token_hex(8))
        return response

    async def collection(self, request: web.Request) -> web.Response:
        agent = self.agent_of(request)
        name = request.match_info["collection"]
        media = {"chats": "chat", "calls": "voice"}.get(name)
        if agent is None or media is None:
            return web.json_response({"statusCode": 6, "statusMessage": "not here"}, status=404)
        found = [
            self.snapshot(ident)
            for ident, (owner, m, _) in self.interactions.items()
            if owner == agent and m == media
        ]
        return web.json_response({"statusCode": 0, name: found})

    def snapshot(self, ident: str) -> dict[str, Any]:
        _, media, user_data = self.interactions[ident]
        obj: dict[str, Any] = {"id": ident, "state": "Chatting"}
        if user_data or media != "voice":  # voice omits emptied user data
            obj["userData"] = dict(user_data)
        return obj

    async def post(self, request: web.Request) -> web.Response:
        agent = self.agent_of(request)
        ident = request.match_info["id"]
        if agent is None or request.headers.get(CSRF) != self.tokens.get(agent):
            return web.json_response({"statusCode": 3, "statusMessage": "forbidden"}, status=403)
        if ident not in self.interactions or self.interactions[ident][0] != agent:
            return web.json_response({"statusCode": 6, "statusMessage": "unknown"}, status=404)
        _, media, user_data = self.interactions[ident]
        body = await request.json()
        self.posts.append((agent, request.match_info["collection"], body))
        if self.refuse:
            refused = {"statusCode": 4, "statusMessage": "Voice service is not available"}
            return web.json_response(refused, status=503)
        if not apply(media, user_data, body):
            return web.json_response({"statusCode": 2, "statusMessage": "invalid"}, status=400)
        self.references += 1
        if self.early:
            self.notify(agent, ident, self.references)
        elif not self.silent:
            loop = asyncio.get_running_loop()
            loop.call_later(self.delay, self.notify, agent, ident, self.references)
        if self.ghost:
            self.bayeux.publish(
                "/v2/me/chats",
                {"notificationType": "PropertiesUpdated", "chat": {"id": "ghost", "userData": {}}},
            )
        answer: dict[str, Any] = {"statusCode": 0}
        if self.reference:
            answer["referenceId"] = self.references
        return web.json_response(answer)

    def notify(self, agent: str, ident: str, reference: int) -> None:
        media = self.interactions[ident][1]
        if media == "voice":
            data = {
                "messageType": "CallStateChangeMessage",
                "notificationType": "AttachedDataChanged",
                "call": self.snapshot(ident),
            }
            self.bayeux.publish("/v2/me/calls", data, [agent])
        else:
            data = {
                "messageType": "ChatStateChangeMessage",
                "notificationType": "PropertiesUpdated",
                "referenceId": reference,
                "chat": self.snapshot(ident),
            }
            self.bayeux.publish("/v2/me/chats", data, [agent])


def apply(media: str, user_data: dict[str, Any], body: dict[str, Any]) -> bool:
    """GWS semantics, strict about which body fits which media; False: invalid request."""
    op = body.get("operationName")
    if op in ("UpdateUserData", "AttachUserData") and isinstance(body.get("userData"), dict):
        user_data.update(body["userData"])
        return bool(body["userData"])
    if op == "DeleteUserData" and media == "voice" and set(body) == {"operationName"}:
        user_data.clear()
        return True
    if op == "DeleteUserData" and media == "chat" and isinstance(body.get("keys"), list):
        for key in body["keys"]:
            user_data.pop(key, None)
        return bool(body["keys"])
    if op == "DeleteUserDataPair" and media == "voice" and isinstance(body.get("key"), str):
        user_data.pop(body["key"], None)
        return True
    return False


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def agent_session(agent: str = "agent1") -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": gws.basic_authorization(agent, "password")},
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    )


async def take(client: CometdClient, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(3):
        return [await client.queue.get() for _ in range(count)]


def note(n: int) -> dict[str, Any]:
    return {"notificationType": "PropertiesUpdated", "chat": {"id": "c", "userData": {"n": n}}}


# ---- the CometD client ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_receives_notifications_in_order(transport: str) -> None:
    gws = MiniGws()
    async with serving(gws.app()) as url, agent_session() as session:
        client = CometdClient(session, url + bayeux.NOTIFICATIONS_PATH, transport=transport)
        await client.handshake()
        await client.start()
        await client.subscribe("/v2/me/**")
        gws.bayeux.publish("/elsewhere", note(0))  # not subscribed: never delivered
        for n in range(1, 4):
            gws.bayeux.publish("/v2/me/chats", note(n), ["agent1"])
        got = await take(client, 3)
        assert [m["data"]["chat"]["userData"]["n"] for m in got] == [1, 2, 3]
        assert {m["channel"] for m in got} == {"/v2/me/chats"}
        await client.close()
        assert gws.bayeux.sessions == {}, "close() should disconnect"
        assert client.queue.empty()


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_handshakes_again_when_the_server_forgets_it(transport: str) -> None:
    gws = MiniGws()
    endpoint = "/api/v2/notifications"
    async with (
        serving(gws.app()) as url,
        agent_session() as session,
        CometdClient(session, url + endpoint, transport=transport) as c,
    ):
        await c.handshake()
        await c.start()
        await c.subscribe("/v2/me/**")
        for s in list(gws.bayeux.sessions.values()):  # what the server does on expiry
            s.closed = True
            s.release()
        gws.bayeux.sessions.clear()
        async with asyncio.timeout(3):
            while c.handshakes < 2 or not gws.bayeux.sessions:
                await asyncio.sleep(0.02)
        gws.bayeux.publish("/v2/me/chats", note(7))
        (got,) = await take(c, 1)
        assert got["data"]["chat"]["userData"] == {"n": 7}


def echoing_bayeux(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A hostile but legal server: before each meta reply, a data message with the same id."""
    out: list[dict[str, Any]] = []
    for m in reversed(batch):  # answers in another order than asked, too
        out.append({"channel": "/v2/me/chats", "id": m["id"], "data": note(int(m["id"]))})
        reply = {"channel": m["channel"], "id": m["id"], "successful": True, "clientId": "c1"}
        out.append(reply)
    return out


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_matches_replies_by_channel_and_id(transport: str) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for frame in ws:
                await ws.send_str(json.dumps(echoing_bayeux(json.loads(frame.data))))
            return ws
        return web.json_response(echoing_bayeux(await request.json()))

    app = web.Application()
    app.router.add_route("*", "/cometd", handle)
    async with (
        serving(app) as url,
        aiohttp.ClientSession() as session,
        CometdClient(session, url + "/cometd", transport=transport) as client,
    ):
        assert await client.handshake() == "c1"
        await client.subscribe("/a", "/b")
        got = await take(client, 3)
        # Every data message is delivered, none is taken for a reply.
        assert sorted(m["id"] for m in got) == ["1", "2", "3"]


# ---- the agents -------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_run_load_every_op_is_notified(transport: str) -> None:
    gws = MiniGws(agents=2)
    ticks: list[int] = []
    async with serving(gws.app()) as url:
        config = LoadConfig(url, agents=2, ops=5, transport=transport, timeout=3)
        report = await run_load(config, progress=ticks.append)
    counts = {k: v for k, v in report.as_dict().items() if isinstance(v, int)}
    assert counts == {
        "agents": 2,
        "sent": 10,
        "answered": 10,
        "rejected": 0,  # the mini GWS rejects a body that does not fit the media
        "notified": 10,
        "errors": 0,
        "timeouts": 0,
        "unsolicited": 0,
        "failed": 0,
    }
    assert len(report.latencies) == 10 and report.max_latency is not None
    assert ticks == list(range(1, 11))
    assert gws.bayeux.sessions == {}, "agents should disconnect"


@pytest.mark.asyncio
async def test_ops_fit_their_media_and_are_reproducible() -> None:
    async def bodies() -> dict[str, list[Any]]:
        gws = MiniGws(agents=2)
        async with serving(gws.app()) as url:
            report = await run_load(LoadConfig(url, agents=2, ops=30, seed=3, timeout=3))
        assert report.notified == 60 and report.rejected == 0
        by_agent: dict[str, list[Any]] = {}
        for agent, collection, body in gws.posts:
            by_agent.setdefault(agent, []).append((collection, body))
        return by_agent

    first, second = await bodies(), await bodies()
    assert first == second
    operations = {body["operationName"] for posts in first.values() for _, body in posts}
    assert {"UpdateUserData", "AttachUserData", "DeleteUserData"} <= operations


@pytest.mark.asyncio
async def test_notification_before_the_answer_is_matched_by_reference() -> None:
    # Voice notifications carry no referenceId even here: those match by interaction.
    gws = MiniGws(agents=1, reference=True, early=True)
    async with serving(gws.app()) as url:
        report = await run_load(LoadConfig(url, agents=1, ops=6, timeout=3, in_flight=2))
    assert (report.notified, report.timeouts, report.unsolicited) == (6, 0, 0)


@pytest.mark.asyncio
async def test_silence_counts_timeouts_and_strays_count_unsolicited() -> None:
    gws = MiniGws(agents=1, silent=True, ghost=True)
    async with serving(gws.app()) as url:
        report = await run_load(LoadConfig(url, agents=1, ops=2, timeout=0.3))
    assert (report.answered, report.notified, report.timeouts) == (2, 0, 2)
    assert report.unsolicited == 2
    assert report.p50_latency is None


@pytest.mark.asyncio
async def test_rejected_ops_are_counted_at_once() -> None:
    gws = MiniGws(agents=1, refuse=True)
    async with serving(gws.app()) as url:
        report = await run_load(LoadConfig(url, agents=1, ops=3, timeout=30))
    assert (report.rejected, report.answered, report.timeouts, report.failed) == (3, 0, 0, 0)
    assert report.elapsed < 5, "a rejected op waits for no notification"


@pytest.mark.asyncio
async def test_bad_password_is_one_clear_line() -> None:
    async with serving(MiniGws().app()) as url:
        with pytest.raises(GwsError) as caught:
            await run_load(LoadConfig(url, agents=2, ops=1, password="wrong"))
    assert str(caught.value) == f"agent1: 401 Not authenticated at {url}/api/v2/me"


@pytest.mark.asyncio
async def test_unreachable_target_is_one_clear_line() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(GwsError, match=f"^cannot reach {url}: connection refused$"):
        await run_load(LoadConfig(url, agents=1, ops=1))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": "localhost:8090"}, "bad target"),
        ({"transport": "carrier-pigeon"}, "unknown transport"),
        ({"media": ("chat", "fax")}, "unknown media fax"),
    ],
)
async def test_bad_config_is_refused_before_anything_starts(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(GwsError, match=message):
        await run_load(LoadConfig(**{"target": "http://127.0.0.1:9", **change}))
