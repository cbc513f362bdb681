"""`gwsproxy serve`: the mock GWS answers a client under test from a real capture.

The capture is recorded once per module through the real `mitmdump -s addons/gws_recorder.py`
in front of the simulator (three agents, every media, a chat shared by two agents, and one
request sent twice). A third-party CometD client (aiocometd-ng) plus aiohttp then replays the
recorded requests against the mock, over long polling and WebSocket, and must see the recorded
answers and notifications. The capture is read with CaptureReader here, not with the mock's
own loader, so the two are checked against each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiocometd_auth import BasicAuth
from aiocometd_ng import Client, ConnectionType
from aiohttp import web

from gwsproxy import gws
from gwsproxy.bayeux.client import CometdClient
from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.processes import gwsproxy_command
from gwsproxy.replay.mock import MockConfig, RunningMock, start_mock
from gwsproxy.sim.agents import LoadConfig, run_load
from gwsproxy.sim.server import SimConfig, start_simulator

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addons" / "gws_recorder.py"
MITMDUMP = Path(sys.executable).with_name("mitmdump")
HOST = "127.0.0.1"
AGENTS = ("agent1", "agent2", "agent3")
SIM_DELAY = 0.1  # recorded answer-to-notification delay: long enough to measure --speed
RECEIVE_TIMEOUT = 5.0
SHARED_MARK = {"SharedNote": "from agent1 to both"}
TWICE = {"operationName": "UpdateUserData", "userData": {"Twice": "same request"}}
_BANNER = re.compile(
    r"mock GWS on (http://127\.0\.0\.1:(\d+)) from (.+) \((\d+) pairs, (\d+) agents\)"
)

TRANSPORTS = [
    pytest.param(ConnectionType.LONG_POLLING, id="long-polling"),
    pytest.param(ConnectionType.WEBSOCKET, id="websocket"),
]


# ---- the recording ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def basic(user: str, password: str = "password") -> str:
    return gws.basic_authorization(user, password)


async def _wait_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mitmdump exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    pytest.fail("mitmdump did not listen")


async def _note_with(client: CometdClient, pred: Callable[[dict[str, Any]], bool]) -> dict:
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while True:
            message = await client.queue.get()
            if pred(message.get("data") or {}):
                return message


def _user_data(data: dict[str, Any]) -> dict[str, Any]:
    note = gws.parse_notification({"channel": "/v2/me/x", "data": data})
    return (note.user_data or {}) if note else {}


async def _scripted(base: str) -> None:
    """A change on the shared chat (unsolicited for agent2) and one request sent twice."""
    sessions = {
        a: aiohttp.ClientSession(
            headers={"Authorization": basic(a)}, cookie_jar=aiohttp.CookieJar(unsafe=True)
        )
        for a in AGENTS
    }
    clients: dict[str, CometdClient] = {}
    try:
        for agent, http in sessions.items():
            async with http.get(base + "/api/v2/me") as r:
                assert r.status == 200
            client = CometdClient(http, base + "/api/v2/notifications", transport="websocket")
            await client.handshake()
            await client.start()
            await client.subscribe("/v2/me/**")
            clients[agent] = client
        async with sessions["agent1"].get(base + "/api/v2/me/chats") as r:
            chats = (await r.json())["chats"]
        shared = next(c for c in chats if len(c["participants"]) == 2)
        assert [p["nickname"] for p in shared["participants"]] == ["agent1", "agent2"]
        body = {"operationName": "UpdateUserData", "userData": SHARED_MARK}
        async with sessions["agent1"].post(
            f"{base}/api/v2/me/chats/{shared['id']}", json=body
        ) as r:
            assert r.status == 200
        for agent in ("agent1", "agent2"):
            await _note_with(clients[agent], lambda d: _user_data(d).get("SharedNote"))
        async with sessions["agent3"].get(base + "/api/v2/me/workitems") as r:
            workitem = (await r.json())["workitems"][0]["id"]
        for _ in range(2):
            async with sessions["agent3"].post(
                f"{base}/api/v2/me/workitems/{workitem}", json=TWICE
            ) as r:
                reference = (await r.json())["referenceId"]
            await _note_with(clients["agent3"], lambda d, ref=reference: d["referenceId"] == ref)
    finally:
        for client in clients.values():
            await client.close()
        for http in sessions.values():
            await http.close()


async def _record(capture: Path, log: Path) -> None:
    sim = await start_simulator(
        SimConfig(port=0, agents=len(AGENTS), shared=1, delay=SIM_DELAY, jitter=0.0, seed=11)
    )
    port = free_port()
    command = [str(MITMDUMP), "-q", "--listen-host", HOST, "-p", str(port)]
    command += ["--mode", f"reverse:{sim.url}", "-s", str(ADDON)]
    command += ["--set", f"gws_capture={capture}"]
    with log.open("wb") as out:
        mitm = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        await _wait_port(port, mitm, log)
        base = f"http://{HOST}:{port}"
        report = await run_load(LoadConfig(base, agents=len(AGENTS), ops=30, seed=3))
        assert report.timeouts == 0 and report.failed == 0, report.as_dict()
        await _scripted(base)
    finally:
        if mitm.poll() is None:
            mitm.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(mitm.wait, 30)
        except subprocess.TimeoutExpired:
            mitm.kill()
        await sim.stop()


@dataclass(frozen=True)
class Pair:
    id: int
    scope: str
    t: float
    t_answer: float | None
    t_note: float | None
    media: str
    method: str
    path: str
    body: bytes
    content_type: str | None
    status: int
    answer: bytes
    answer_type: str | None
    note: dict[str, Any] | None  # the recorded Bayeux message

    @property
    def agent(self) -> str:
        return self.scope.removeprefix("user:")


@dataclass(frozen=True)
class Recording:
    path: Path
    pairs: list[Pair]  # in request order
    unsolicited: list[tuple[float, str, dict[str, Any]]]  # (t, scope, message)

    def twice(self) -> list[Pair]:
        return [p for p in self.pairs if json.loads(p.body) == TWICE]


def _header(headers: list[list[str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def read_recording(path: Path) -> Recording:
    pairs, unsolicited = [], []
    with CaptureReader(path) as reader:
        for entry in reader.index():
            s = entry.summary
            if entry.kind == Kind.PAIR:
                b = reader.body(entry)
                raw = (b.get("notification") or {}).get("raw")
                pairs.append(
                    Pair(
                        s["id"],
                        s["scope"],
                        s["t"],
                        s.get("t_answer"),
                        s.get("t_note"),
                        s["media"],
                        b["request"]["method"],
                        b["request"]["path"],
                        b["request"]["body"],
                        _header(b["request"]["headers"], "content-type"),
                        b["response"]["status"],
                        b["response"]["body"],
                        _header(b["response"]["headers"], "content-type"),
                        json.loads(raw) if raw is not None else None,
                    )
                )
            elif entry.kind == Kind.NOTIFICATION:
                raw = reader.body(entry)["notification"]["raw"]
                unsolicited.append((s["t"], s["scope"], json.loads(raw)))
    pairs.sort(key=lambda p: (p.t, p.id))
    return Recording(path, pairs, sorted(unsolicited, key=lambda u: u[0]))


@pytest.fixture(scope="module")
def recording() -> Iterator[Recording]:
    with tempfile.TemporaryDirectory(prefix="gwsproxy-serve-") as d:
        capture = Path(d) / "serve.gwscap"
        asyncio.run(_record(capture, Path(d) / "mitmdump.log"))
        yield read_recording(capture)


# ---- the client under test: aiocometd-ng + aiohttp ----------------------------------------------


class Inbox:
    """Every message one agent's aiocometd client receives, with arrival times."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.claimed: set[int] = set()
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            message = await self.client.receive()
            self.messages.append((time.monotonic(), message))
            self._arrived.set()

    async def take(
        self, expected: dict[str, Any], timeout: float = RECEIVE_TIMEOUT
    ) -> tuple[float, dict[str, Any]]:
        """Wait for an unclaimed message equal to `expected` (channel and data, types too);
        returns its arrival time and the message."""
        async with asyncio.timeout(timeout):
            while True:
                for i, (arrived, message) in enumerate(self.messages):
                    if i in self.claimed:
                        continue
                    if message.get("channel") == expected["channel"] and _strict(
                        message.get("data")
                    ) == _strict(expected["data"]):
                        self.claimed.add(i)
                        return arrived, message
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


@contextlib.asynccontextmanager
async def clients(
    url: str, transport: ConnectionType, agents=AGENTS, password: str = "not-the-recorded-one"
):
    """One aiocometd-ng client per agent, subscribed to /v2/me/**, plus an aiohttp session."""
    inboxes: dict[str, Inbox] = {}
    opened: list[Client] = []
    async with aiohttp.ClientSession() as http:
        try:
            for agent in agents:
                client = Client(
                    f"{url}/api/v2/notifications",
                    [transport],
                    extensions=[BasicAuth(agent, password)],
                )
                await client.open()
                opened.append(client)
                assert client.connection_type == transport
                await client.subscribe("/v2/me/**")
                inboxes[agent] = Inbox(client)
            yield http, inboxes
        finally:
            for inbox in inboxes.values():
                await inbox.close()
            for client in opened:
                with contextlib.suppress(Exception):
                    await client.close()


async def send(
    http: aiohttp.ClientSession, url: str, pair: Pair, body: bytes | None = None, agent=None
) -> tuple[int, bytes, str | None]:
    headers = {"Authorization": basic(agent or pair.agent, "anything")}
    if pair.content_type:
        headers["Content-Type"] = pair.content_type
    async with http.request(
        pair.method, url + pair.path, data=pair.body if body is None else body, headers=headers
    ) as r:
        return r.status, await r.read(), r.headers.get("Content-Type")


@contextlib.asynccontextmanager
async def mock(recording: Recording, **options: Any):
    running: RunningMock = await start_mock(MockConfig(str(recording.path), port=0, **options))
    try:
        yield running
    finally:
        await running.stop()


def check_answer(pair: Pair, answer: tuple[int, bytes, str | None]) -> None:
    status, body, content_type = answer
    assert (status, body, content_type) == (pair.status, pair.answer, pair.answer_type), pair.id


def _strict(value: Any) -> str:
    """JSON text with sorted keys: equal only if the types are equal too (1, 1.0, true)."""
    return json.dumps(value, sort_keys=True)


def check_note(pair: Pair, received: dict[str, Any]) -> None:
    assert pair.note is not None
    ours, theirs = received["data"], pair.note["data"]
    assert _strict(ours.get("referenceId")) == _strict(theirs.get("referenceId"))
    assert _strict(_user_data(ours)) == _strict(_user_data(theirs))


# ---- the tests ----------------------------------------------------------------------------------


def test_the_recording_covers_what_the_tests_need(recording: Recording) -> None:
    assert {p.media for p in recording.pairs} == set(gws.MEDIA_BY_NAME)
    assert {p.scope for p in recording.pairs} == {f"user:{a}" for a in AGENTS}
    assert all(p.note is not None for p in recording.pairs), "every pair got its notification"
    assert len(recording.twice()) == 2
    a, b = recording.twice()
    assert a.answer != b.answer and a.note["data"]["referenceId"] != b.note["data"]["referenceId"]
    assert any(
        scope == "user:agent2" and _user_data(m["data"]).get("SharedNote")
        for _, scope, m in recording.unsolicited
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_replay_gives_the_recorded_answers_and_notifications(
    recording: Recording, transport: ConnectionType
) -> None:
    async with (
        mock(recording, speed=0) as running,
        clients(running.url, transport) as (
            http,
            inboxes,
        ),
    ):
        for pair in recording.pairs:
            check_answer(pair, await send(http, running.url, pair))
            _, message = await inboxes[pair.agent].take(pair.note)
            check_note(pair, message)
        # Unsolicited notifications reach their own agent, the shared chat's too.
        for _, scope, message in recording.unsolicited:
            await inboxes[scope.removeprefix("user:")].take(message)
        stats = running.stats
        assert stats.matched == len(recording.pairs) and stats.unmatched == 0
        assert stats.notifications == len(recording.pairs)
        assert stats.unsolicited == len(recording.unsolicited) and stats.undelivered == 0
        assert running.mock.book.unused == 0


@pytest.mark.asyncio
async def test_unmatched_request_gets_404_naming_the_closest_pair(
    recording: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    def shape(p: Pair) -> tuple[str, str, frozenset[str]]:
        doc = json.loads(p.body)
        ident = gws.parse_target(p.path).interaction_id
        return ident, doc["operationName"], frozenset(doc.get("userData") or ())

    shapes = [shape(p) for p in recording.pairs]
    # A chat update no other recorded request resembles as much: its closest is itself.
    pair = next(
        p
        for p in recording.pairs
        if p.media == "chat" and b'"UpdateUserData"' in p.body and shapes.count(shape(p)) == 1
    )
    body = json.loads(pair.body)
    key = next(iter(body["userData"]))
    body["userData"][key] = str(body["userData"][key]) + "-changed"
    async with mock(recording) as running, aiohttp.ClientSession() as http:
        with caplog.at_level(logging.WARNING, logger="gwsproxy.replay.mock"):
            status, raw, _ = await send(http, running.url, pair, json.dumps(body).encode())
        answer = json.loads(raw)
        assert status == 404 and answer["statusCode"] == 6
        message = answer["statusMessage"]
        assert message.startswith(f"no recorded pair for POST {pair.path.split('?')[0]}")
        assert f"closest: pair {pair.id}: body userData.{key} " in message
        assert "(recorded " in message
        logged = next(
            r.getMessage() for r in caplog.records if "no recorded pair" in r.getMessage()
        )
        assert f"closest: pair {pair.id} (POST {pair.path} from {pair.scope}): " in logged
        assert f"body userData.{key} " in logged
        # Another interaction: the closest names the difference in the interaction id.
        other = pair.path.rsplit("/", 1)[0] + "/NOSUCHINTERACTION"
        async with http.post(
            running.url + other, data=pair.body, headers={"Authorization": basic(pair.agent)}
        ) as r:
            answer = await r.json()
        assert r.status == 404 and answer["statusCode"] == 6
        assert "interaction NOSUCHINTERACTION (recorded " in answer["statusMessage"]
        assert running.stats.unmatched == 2 and running.stats.matched == 0


@pytest.mark.asyncio
async def test_unmatched_closest_answers_with_the_closest_recording(recording: Recording) -> None:
    pair = next(p for p in recording.pairs if b'"UpdateUserData"' in p.body and p.media == "sms")
    body = json.loads(pair.body)
    body["userData"]["NotRecorded"] = 1
    async with (
        mock(recording, unmatched="closest", speed=0) as running,
        clients(running.url, ConnectionType.WEBSOCKET, agents=[pair.agent]) as (http, inboxes),
    ):
        check_answer(pair, await send(http, running.url, pair, json.dumps(body).encode()))
        await inboxes[pair.agent].take(pair.note)
        # The pair is used now: the exact request is unmatched too and gets the closest again.
        status, _, _ = await send(http, running.url, pair)
        assert status == pair.status
        assert running.stats.closest == 2 and running.stats.matched == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("order", ["first", "last"])
async def test_first_and_last_among_identical_recorded_requests(
    recording: Recording, order: str
) -> None:
    a, b = recording.twice()
    expected = [a, b] if order == "first" else [b, a]
    async with (
        mock(recording, match=order, speed=0) as running,
        clients(running.url, ConnectionType.LONG_POLLING, agents=[a.agent]) as (http, inboxes),
    ):
        for pair in expected:
            check_answer(pair, await send(http, running.url, a))
            await inboxes[a.agent].take(pair.note)
        status, raw, _ = await send(http, running.url, a)  # both are used now
        answer = json.loads(raw)
        assert status == 404 and answer["statusCode"] == 6
        assert "the same request, already used" in answer["statusMessage"]


@pytest.mark.asyncio
async def test_speed_divides_the_recorded_delays(recording: Recording) -> None:
    agent = "agent3"
    pairs = [
        p for p in recording.pairs if p.agent == agent and p.t_note - p.t_answer > SIM_DELAY * 0.8
    ][:6]
    assert len(pairs) == 6
    recorded = sum(p.t_note - p.t_answer for p in pairs)
    waited = {}
    for speed in (1.0, 10.0):
        total = 0.0
        async with (
            mock(recording, speed=speed) as running,
            clients(running.url, ConnectionType.WEBSOCKET, agents=[agent]) as (http, inboxes),
        ):
            for pair in pairs:
                check_answer(pair, await send(http, running.url, pair))
                answered = time.monotonic()
                arrived, _ = await inboxes[agent].take(pair.note)
                total += arrived - answered
        waited[speed] = total
    assert waited[1.0] >= 0.8 * recorded, (waited, recorded)
    assert waited[1.0] <= recorded + 1.0, (waited, recorded)
    assert waited[10.0] <= waited[1.0] / 3, (waited, recorded)


@pytest.mark.asyncio
async def test_unsolicited_notifications_follow_their_timeline(recording: Recording) -> None:
    t0 = recording.pairs[0].t
    t, _, message = next(
        u
        for u in recording.unsolicited
        if u[1] == "user:agent2" and _user_data(u[2]["data"]).get("SharedNote")
    )
    expected = (t - t0) / 10
    assert expected > 0.05
    first = recording.pairs[0]
    async with (
        mock(recording, speed=10) as running,
        clients(running.url, ConnectionType.LONG_POLLING, agents=["agent2"]) as (http, inboxes),
    ):
        # The timeline starts with the first request, whoever sends it.
        await send(http, running.url, first)
        started = time.monotonic()
        arrived, _ = await inboxes["agent2"].take(message, timeout=expected + 5)
    assert 0.5 * expected <= arrived - started <= expected + 1.5


@pytest.mark.asyncio
async def test_gets_cookies_and_unknown_users(recording: Recording) -> None:
    pair = next(p for p in recording.pairs if p.media == "email")
    with CaptureReader(recording.path) as reader:
        before = next(
            reader.body(e)["before"]
            for e in reader.index()
            if e.kind == Kind.PAIR and e.summary["id"] == pair.id
        )
    ident = gws.parse_target(pair.path).interaction_id
    async with mock(recording, speed=0) as running:
        jar = aiohttp.CookieJar(unsafe=True)
        auth = {"Authorization": basic(pair.agent, "whatever")}
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(running.url + "/api/v2/me", headers=auth) as r:
                me = await r.json()
                assert r.status == 200 and me["user"]["userName"] == pair.agent
                assert r.headers["X-CSRF-HEADER"] == "X-CSRF-TOKEN"
            assert "JSESSIONID" in {c.key for c in jar}
            # From here on the cookie alone says who this is, for REST and for CometD.
            async with http.get(running.url + "/api/v2/me/emails") as r:
                listing = (await r.json())["emails"]
            assert ident in {e["id"] for e in listing}
            async with http.get(f"{running.url}/api/v2/me/emails/{ident}") as r:
                item = (await r.json())["email"]
            # `pair` is the first on its interaction: the GET shows the state before it.
            assert item["id"] == ident and item["userData"] == before
            assert item["state"] == pair.note["data"]["email"]["state"]
            cometd = CometdClient(http, running.url + "/api/v2/notifications")
            await cometd.handshake()
            await cometd.start()
            await cometd.subscribe("/v2/me/**")
            async with http.post(
                running.url + pair.path,
                data=pair.body,
                headers={"Content-Type": pair.content_type or "application/json"},
            ) as r:
                assert (r.status, await r.read()) == (pair.status, pair.answer)
            message = await asyncio.wait_for(cometd.queue.get(), RECEIVE_TIMEOUT)
            await cometd.close()
        assert _strict(message["data"]) == _strict(pair.note["data"])
        # An unknown user is accepted with any password, and sees every recorded interaction.
        async with aiohttp.ClientSession() as http:
            nobody = {"Authorization": basic("nobody", "x")}
            async with http.get(running.url + "/api/v2/me", headers=nobody) as r:
                assert r.status == 200
            async with http.get(running.url + "/api/v2/me/emails", headers=nobody) as r:
                emails = {e["id"] for e in (await r.json())["emails"]}
            assert emails == {
                gws.parse_target(p.path).interaction_id
                for p in recording.pairs
                if p.media == "email"
            }
            async with http.get(running.url + "/api/v2/me") as r:
                assert r.status == 401 and (await r.json())["statusCode"] == 20


@pytest.mark.asyncio
async def test_unmatched_forward_to_a_url(recording: Recording) -> None:
    seen: list[tuple[str, str, bytes, str | None]] = []

    async def upstream(request: web.Request) -> web.Response:
        seen.append(
            (request.method, request.path_qs, await request.read(), request.headers.get("X-Mine"))
        )
        return web.json_response({"statusCode": 0, "from": "upstream"}, status=202)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    target = f"http://{HOST}:{runner.addresses[0][1]}"
    try:
        pair = recording.pairs[0]
        async with (
            mock(recording, unmatched=f"forward:{target}") as running,
            aiohttp.ClientSession() as http,
        ):
            body = b'{"operationName": "UpdateUserData", "userData": {"New": 1}}'
            async with http.post(
                running.url + pair.path + "?x=1",
                data=body,
                headers={"Authorization": basic(pair.agent), "X-Mine": "kept"},
            ) as r:
                assert r.status == 202 and (await r.json())["from"] == "upstream"
            async with http.get(running.url + "/api/v2/me/skills") as r:
                assert r.status == 202
            assert running.stats.forwarded == 2
    finally:
        await runner.cleanup()
    assert seen[0] == ("POST", pair.path.split("?")[0] + "?x=1", body, "kept")
    assert seen[1][:2] == ("GET", "/api/v2/me/skills")


# ---- the real process ---------------------------------------------------------------------------


def _mock_command(*args: str) -> list[str]:
    return gwsproxy_command("serve", *args)


@pytest.mark.asyncio
async def test_serve_subprocess_replays_over_long_polling(
    recording: Recording, tmp_path: Path
) -> None:
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as o, err.open("wb") as e:
        process = subprocess.Popen(
            _mock_command(str(recording.path), "-p", "0", "--speed", "max"),
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := _BANNER.search(out.read_text())):
            assert process.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "no banner"
            await asyncio.sleep(0.05)
        url = found[1]
        assert found[3] == str(recording.path)
        assert int(found[4]) == len(recording.pairs) and int(found[5]) == len(AGENTS)
        mine = [p for p in recording.pairs if p.agent == "agent1"][:5]
        async with clients(url, ConnectionType.LONG_POLLING, agents=["agent1"]) as (http, inbox):
            for pair in mine:
                check_answer(pair, await send(http, url, pair))
                await inbox["agent1"].take(pair.note)
        process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(process.wait, 30) == 0
        assert f"{len(mine)} matched" in err.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_bad_capture_path_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        _mock_command(str(tmp_path / "missing.gwscap"), "-p", "0"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such capture file" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_serve_busy_port_is_one_line(recording: Recording) -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            _mock_command(str(recording.path), "-p", str(port)),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port} is in use" in lines[0], done.stderr
