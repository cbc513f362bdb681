"""Recording end to end: real clients, the real `mitmdump` with our addon, real servers.

Every test starts its own processes on 127.0.0.1 (see conftest.py) and checks what a user of
the capture would notice: the pairs, their statuses, before/after, what was kept raw and why,
what survives a crash, and that secrets stay out of the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from gwsproxy import bayeux, gws
from gwsproxy.bayeux.client import CometdClient
from gwsproxy.bayeux.server import BayeuxServer
from gwsproxy.capture.format import Damage, Kind
from gwsproxy.capture.reader import CaptureReader, Entry
from gwsproxy.record.addon import GwsRecorder
from gwsproxy.report import export_pairs
from gwsproxy.sim.agents import Agent, LoadConfig, LoadReport, run_load

if TYPE_CHECKING:
    from conftest import Mitm, Procs

HOST = "127.0.0.1"
WAIT = 30.0  # seconds any single condition may take on a loaded machine
EXACT_MEDIA = {"workitem", "openmedia", "twitter"}  # their HTTP answers carry referenceId
EXPORT_FIELDS = {
    "schema",
    "id",
    "scope",
    "media",
    "collection",
    "interaction_id",
    "operation",
    "requested",
    "reference_id",
    "correlation",
    "status",
    "http_status",
    "status_code",
    "error",
    "notification_type",
    "before",
    "after",
    "timings",
}


# ---- reading captures ---------------------------------------------------------------------------


@dataclass
class Capture:
    """Everything in a capture file, bodies decoded, and what the reader said about it."""

    path: Path
    records: list[tuple[Entry, dict | None]]
    damage: list[Damage]
    ended: bool

    def of(self, kind: Kind) -> list[tuple[dict, dict | None]]:
        return [(e.summary, b) for e, b in self.records if e.kind == kind]

    @property
    def pairs(self) -> list[dict]:
        return [s for s, _ in self.of(Kind.PAIR)]

    @property
    def raws(self) -> list[tuple[dict, dict | None]]:
        return self.of(Kind.RAW)

    @property
    def unsolicited(self) -> list[dict]:
        return [s for s, _ in self.of(Kind.NOTIFICATION)]

    def pairs_of(self, interaction_id: str) -> list[dict]:
        return sorted(
            (p for p in self.pairs if p["interaction_id"] == interaction_id), key=lambda p: p["id"]
        )

    def exported(self) -> dict[int, dict]:
        """`gwsproxy export`'s objects by pair id."""
        return {p["id"]: p for p in export_pairs(str(self.path))}


def read_capture(path: Path) -> Capture:
    with CaptureReader(path) as reader:
        records = list(reader.records())
        return Capture(path, records, list(reader.damage), reader.ended)


def strings_in(value: Any) -> Iterator[str | bytes]:
    """Every str and bytes inside a decoded record, keys included."""
    if isinstance(value, str | bytes):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings_in(v)


def leaks(capture: Capture, secrets: set[str]) -> set[str]:
    """The secrets found in the file's bytes or in any decoded (decompressed) value."""
    raw = capture.path.read_bytes()
    found = {s for s in secrets if s.encode() in raw}
    for entry, body in capture.records:
        for text in strings_in([entry.summary, body]):
            data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
            found |= {s for s in secrets if s.encode() in data}
    return found


def by_interaction(items: list[dict], key: str = "interaction_id") -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        grouped[item[key]].append(item)
    return grouped


# ---- clients ------------------------------------------------------------------------------------


def run_agents(target: str, **kwargs: Any) -> LoadReport:
    config = LoadConfig(target=target, timeout=WAIT, **kwargs)
    return asyncio.run(run_load(config))


def basic(user: str, password: str = "password") -> str:
    return gws.basic_authorization(user, password)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def update(user_data: dict[str, Any]) -> dict[str, Any]:
    return {"operationName": "UpdateUserData", "userData": user_data}


def check_against_sim_log(capture: Capture, log: list[dict], *, complete: bool = True) -> int:
    """Each interaction's pairs, in request order, against the simulator's own record of the
    operations it carried out: operation, referenceId, before and after. Returns how many
    pairs were compared. With complete=False the capture may lack each interaction's latest
    operations (a crash), but what it has must be right."""
    exported = capture.exported()
    compared = 0
    ops_of = by_interaction(log)
    for ix, pairs in by_interaction(capture.pairs).items():
        assert len(pairs) <= len(ops_of[ix]), f"{ix}: more pairs than operations"
    for ix, ops in ops_of.items():
        pairs = capture.pairs_of(ix)
        while not complete and pairs and pairs[-1]["status"] == "incomplete":
            pairs = pairs[:-1]  # in flight when the proxy died: written as incomplete
        if complete:
            assert len(pairs) == len(ops), f"{ix}: {len(pairs)} pairs for {len(ops)} operations"
        for op, pair in zip(ops, pairs, strict=False):
            what = f"{ix} pair {pair['id']}"
            assert pair["status"] == "matched", what
            assert pair["media"] == op["media"], what
            assert pair["operation"] == op["operation"], what
            # Voice notifications carry no referenceId and neither does the answer [doc].
            expected_ref = None if op["media"] == "voice" else op["reference_id"]
            assert pair["reference_id"] == expected_ref, what
            assert pair["correlation"] == ("exact" if op["media"] in EXACT_MEDIA else "inferred"), (
                what
            )
            out = exported[pair["id"]]
            assert out["before"] == op["before"], what
            assert out["after"] == op["after"], what
            compared += 1
    return compared


# ---- 1. agents through mitmdump -----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
def test_every_agent_operation_is_recorded_as_the_simulator_did_it(
    procs: Procs, tmp_path: Path, transport: str
) -> None:
    sim = procs.sim()
    path = tmp_path / "agents.gwscap"
    mitm = procs.mitmdump(sim.url, path, options={"gws_timeout": "30"})

    report = run_agents(mitm.url, agents=10, ops=50, transport=transport)
    assert mitm.signal(signal.SIGINT) == 0, mitm.describe()

    assert (report.sent, report.notified) == (500, 500), report.as_dict()
    log = sim.log()
    assert len(log) == 500
    capture = read_capture(path)
    assert capture.ended, "no END record after SIGINT"
    assert capture.damage == []
    assert capture.raws == [], [s for s, _ in capture.raws]
    assert len(capture.pairs) == len(log)
    assert Counter(p["status"] for p in capture.pairs) == {"matched": 500}
    assert {p["media"] for p in capture.pairs} == {
        "voice",
        "chat",
        "sms",
        "facebook",
        "email",
        "workitem",
        "openmedia",
        "twitter",
        "im",
    }
    assert check_against_sim_log(capture, log) == 500
    # Every agent is its own scope, named by its Basic-auth user.
    assert {p["scope"] for p in capture.pairs} == {f"user:agent{n}" for n in range(1, 11)}


# ---- 2. statuses, with a GWS stand-in whose every move the test controls -----------------------


class RecordingBayeux(BayeuxServer):
    """Our Bayeux server, remembering the data messages of every long-poll answer it sent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batches: list[list[dict]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await super().handle(request)
        if isinstance(response, web.Response) and response.text:
            sent = json.loads(response.text)
            data = [m for m in sent if bayeux.is_data(m)]
            if data:
                self.batches.append(data)
        return response


Handler = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


class StandIn:
    """A GWS stand-in on 127.0.0.1: CometD from gwsproxy.bayeux.server, user-data answers by
    hand."""

    def __init__(self) -> None:
        self.bayeux = RecordingBayeux(timeout=30.0)
        self.handlers: dict[str, Handler] = {}
        self.arrived: dict[str, list[bytes]] = defaultdict(list)  # interaction -> bodies
        self.routes: list[tuple[str, str, Handler]] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for method, path, handler in self.routes:
            app.router.add_route(method, path, handler)
        self.bayeux.add_routes(app)
        app.router.add_post("/api/v2/me/{collection:.+}/{id}", self._post)
        # A long poll may still be held when the test ends: do not wait for it.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, 0).start()
        return f"http://{HOST}:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _post(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        ix = request.match_info["id"]
        self.arrived[ix].append(body)
        handler = self.handlers.get(ix)
        if handler is None:
            return web.json_response({"statusCode": 0})
        return await handler(request, body)


def gws_note(
    channel: str,
    message_type: str,
    key: str,
    ix: str,
    user_data: dict[str, Any] | None,
    notification_type: str | None = "PropertiesUpdated",
    **extra: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": ix}
    if user_data is not None:
        obj["userData"] = user_data
    data: dict[str, Any] = {"messageType": message_type}
    if notification_type is not None:
        data["notificationType"] = notification_type
    return {**data, **extra, key: obj}


def chat_note(ix: str, user_data: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    return gws_note("/v2/me/chats", "ChatStateChangeMessage", "chat", ix, user_data, **kw)


class Inbox:
    """What a CometD client received, polled by interaction id."""

    def __init__(self, client: CometdClient) -> None:
        self.messages: list[dict] = []
        self._task = asyncio.create_task(self._read(client))

    async def _read(self, client: CometdClient) -> None:
        async for message in client.messages():
            self.messages.append(message)

    def about(self, ix: str) -> list[dict]:
        found = []
        for m in self.messages:
            data = m.get("data") or {}
            if any(isinstance(v, dict) and v.get("id") == ix for v in data.values()):
                found.append(data)
        return found

    async def wait(self, ix: str, n: int = 1) -> list[dict]:
        await asyncio.wait_for(self._until(ix, n), WAIT)
        return self.about(ix)

    async def _until(self, ix: str, n: int) -> None:
        while len(self.about(ix)) < n:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def post_json(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body, timeout=aiohttp.ClientTimeout(total=WAIT)) as r:
        return r.status, json.loads(await r.read())


def _ix_of(message: dict) -> str | None:
    data = message.get("data") or {}
    for v in data.values():
        if isinstance(v, dict) and "id" in v:
            return v["id"]
    return None


def _has_pair(path: Path, ix: str) -> bool:
    with CaptureReader(path) as reader:
        return any(
            e.kind == Kind.PAIR and e.summary["interaction_id"] == ix for e in reader.index()
        )


@dataclass
class Recorded:
    """A GWS stand-in, a recording mitmdump in front of it, and a CometD client through the
    proxy that is subscribed to everything."""

    server: StandIn
    proxy: Mitm
    http: aiohttp.ClientSession
    inbox: Inbox

    def publish(self, channel: str, data: dict[str, Any]) -> None:
        self.server.bayeux.publish(channel, data)

    async def post(self, path: str, user_data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """An UpdateUserData through the proxy to /api/v2/me/PATH: (HTTP status, answer)."""
        return await post_json(self.http, f"{self.proxy.url}/api/v2/me/{path}", update(user_data))

    async def capture(self) -> Capture:
        """Stop the proxy (SIGINT) and read its capture, which must be whole and clean."""
        code = await asyncio.to_thread(self.proxy.signal, signal.SIGINT)
        assert code == 0, self.proxy.describe()
        assert self.proxy.capture is not None
        capture = read_capture(self.proxy.capture)
        assert capture.ended and capture.damage == [], capture.damage
        assert capture.raws == [], [s for s, _ in capture.raws]
        return capture


@pytest.fixture
def gws_timeout() -> str:
    """The recorder's gws_timeout, long enough for any scenario (a test may parametrize it)."""
    return "60"


@pytest_asyncio.fixture
async def recorded(procs: Procs, tmp_path: Path, gws_timeout: str) -> AsyncIterator[Recorded]:
    server = StandIn()
    url = await server.start()
    try:
        proxy = await asyncio.to_thread(
            procs.mitmdump, url, tmp_path / "statuses.gwscap", options={"gws_timeout": gws_timeout}
        )
        async with aiohttp.ClientSession(headers={"Authorization": basic("tester")}) as http:
            cometd = CometdClient(http, proxy.url + bayeux.NOTIFICATIONS_PATH)
            await cometd.handshake()
            await cometd.start()
            await cometd.subscribe("/v2/me/**")
            inbox = Inbox(cometd)
            try:
                yield Recorded(server, proxy, http, inbox)
            finally:
                await cometd.close()
                await inbox.close()
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_a_notification_that_overtakes_its_answer_is_matched(recorded: Recorded) -> None:
    """The stand-in publishes, waits until the client has the notification, and only then
    answers: inferred for a chat, exact for a workitem whose answer names the referenceId."""

    async def note_first(request: web.Request, body: bytes) -> web.Response:
        recorded.publish("/v2/me/chats", chat_note("NOTE-FIRST", {"K": "1"}))
        await recorded.inbox.wait("NOTE-FIRST")
        return web.json_response({"statusCode": 0})

    async def note_first_ref(request: web.Request, body: bytes) -> web.Response:
        note = gws_note(
            "/v2/me/workitems",
            "WorkitemStateChangeMessage",
            "workitem",
            "NOTE-FIRST-REF",
            {"K": "2"},
            referenceId=7001,
        )
        recorded.publish("/v2/me/workitems", note)
        await recorded.inbox.wait("NOTE-FIRST-REF")
        return web.json_response({"statusCode": 0, "referenceId": 7001})

    recorded.server.handlers["NOTE-FIRST"] = note_first
    recorded.server.handlers["NOTE-FIRST-REF"] = note_first_ref
    status, _ = await recorded.post("chats/NOTE-FIRST", {"K": "1"})
    assert status == 200
    status, _ = await recorded.post("workitems/NOTE-FIRST-REF", {"K": "2"})
    assert status == 200
    capture = await recorded.capture()

    [p] = capture.pairs_of("NOTE-FIRST")
    assert (p["status"], p["correlation"]) == ("matched", "inferred")
    assert p["t_note"] <= p["t_answer"], "the notification came first"
    assert capture.exported()[p["id"]]["after"] == {"K": "1"}
    [p] = capture.pairs_of("NOTE-FIRST-REF")
    assert (p["status"], p["correlation"], p["reference_id"]) == ("matched", "exact", 7001)
    assert p["t_note"] <= p["t_answer"]


@pytest.mark.asyncio
async def test_two_open_requests_on_one_interaction_get_their_own_notifications(
    recorded: Recorded, procs: Procs
) -> None:
    """Their notifications come in the opposite order, before either answer."""
    second_in, notes_out = asyncio.Event(), asyncio.Event()

    async def two(request: web.Request, body: bytes) -> web.Response:
        if len(recorded.server.arrived["TWO"]) == 1:
            await second_in.wait()
        else:
            second_in.set()
            recorded.publish("/v2/me/chats", chat_note("TWO", {"K": "b"}))
            await recorded.inbox.wait("TWO", 1)
            recorded.publish("/v2/me/chats", chat_note("TWO", {"K": "a"}))
            await recorded.inbox.wait("TWO", 2)
            notes_out.set()
        await notes_out.wait()
        return web.json_response({"statusCode": 0})

    recorded.server.handlers["TWO"] = two
    first = asyncio.create_task(recorded.post("chats/TWO", {"K": "a"}))
    await procs.await_until(
        lambda: len(recorded.server.arrived["TWO"]) == 1, WAIT, "the first request at GWS"
    )
    second = recorded.post("chats/TWO", {"K": "b"})
    assert [s for s, _ in await asyncio.gather(first, second)] == [200, 200]
    capture = await recorded.capture()

    exported = capture.exported()
    pa, pb = capture.pairs_of("TWO")
    assert [exported[pa["id"]]["requested"], exported[pb["id"]]["requested"]] == [
        {"K": "a"},
        {"K": "b"},
    ]
    assert exported[pa["id"]]["after"] == {"K": "a"}, "each request gets its own notification"
    assert exported[pb["id"]]["after"] == {"K": "b"}
    assert {pa["status"], pb["status"]} == {"matched"}


@pytest.mark.asyncio
async def test_a_notification_batched_with_other_interactions_is_matched_and_theirs_kept(
    recorded: Recorded,
) -> None:
    """The notification shares one long-poll answer with two about other interactions."""

    def three() -> None:
        recorded.publish(
            "/v2/me/chats", chat_note("OTHER-1", None, notification_type="StatusChange")
        )
        recorded.publish(
            "/v2/me/emails",
            gws_note("/v2/me/emails", "EmailStateChangeMessage", "email", "OTHER-2", {"X": 1}),
        )
        recorded.publish("/v2/me/chats", chat_note("BATCH", {"K": "3"}))

    async def batch(request: web.Request, body: bytes) -> web.Response:
        asyncio.get_running_loop().call_later(0.05, three)  # GWS notifies after it answered
        return web.json_response({"statusCode": 0})

    recorded.server.handlers["BATCH"] = batch
    await recorded.post("chats/BATCH", {"K": "3"})
    await recorded.inbox.wait("BATCH")
    capture = await recorded.capture()
    assert any(
        {"OTHER-1", "OTHER-2", "BATCH"} <= {_ix_of(m) for m in b}
        for b in recorded.server.bayeux.batches
    ), "the stand-in never sent the three notifications in one long-poll answer"

    [p] = capture.pairs_of("BATCH")
    assert (p["status"], p["correlation"]) == ("matched", "inferred")
    assert capture.exported()[p["id"]]["after"] == {"K": "3"}
    unsolicited = {u["interaction_id"]: u for u in capture.unsolicited}
    assert set(unsolicited) == {"OTHER-1", "OTHER-2"}, "nothing is lost"
    assert unsolicited["OTHER-1"]["note_type"] == "StatusChange"


@pytest.mark.asyncio
async def test_error_notifications_make_error_pairs(recorded: Recorded) -> None:
    """Multimedia's `Error` notification, and voice's ErrorMessage."""

    async def error(request: web.Request, body: bytes) -> web.Response:
        note = gws_note(
            "/v2/me/facebooksession",
            "FacebooksessionStateChangeMessage",
            "facebooksession",
            "ERROR",
            None,
            notification_type="Error",
            errorMessage="Simulated interaction server error",
        )
        asyncio.get_running_loop().call_later(
            0.05, recorded.publish, "/v2/me/facebooksession", note
        )
        return web.json_response({"statusCode": 0})

    async def voice_error(request: web.Request, body: bytes) -> web.Response:
        note = {
            "messageType": "ErrorMessage",
            "errorMessage": "T-Server error",
            "call": {"id": "VOICE-ERROR"},
        }
        asyncio.get_running_loop().call_later(0.05, recorded.publish, "/v2/me/calls", note)
        return web.json_response({"statusCode": 0})

    recorded.server.handlers["ERROR"] = error
    recorded.server.handlers["VOICE-ERROR"] = voice_error
    await recorded.post("facebooksessions/ERROR", {"K": "4"})
    await recorded.post("calls/VOICE-ERROR", {"K": 5})
    await recorded.inbox.wait("ERROR")
    await recorded.inbox.wait("VOICE-ERROR")
    capture = await recorded.capture()

    exported = capture.exported()
    for ix, note_type in (("ERROR", "Error"), ("VOICE-ERROR", "ErrorMessage")):
        [p] = capture.pairs_of(ix)
        assert (p["status"], p["note_type"]) == ("error", note_type), ix
        assert exported[p["id"]]["after"] is None


@pytest.mark.asyncio
async def test_a_refused_request_is_rejected(recorded: Recorded) -> None:
    """HTTP 503 with a non-zero statusCode."""

    async def reject(request: web.Request, body: bytes) -> web.Response:
        message = "Voice service is not available at this time"
        return web.json_response({"statusCode": 4, "statusMessage": message}, status=503)

    recorded.server.handlers["REJECT"] = reject
    status, answer = await recorded.post("calls/REJECT", {"K": 6})
    assert (status, answer["statusCode"]) == (503, 4)
    capture = await recorded.capture()

    [p] = capture.pairs_of("REJECT")
    assert (p["status"], p["http_status"], p["status_code"]) == ("rejected", 503, 4)


@pytest.mark.parametrize("gws_timeout", ["1"])
@pytest.mark.asyncio
async def test_no_notification_within_gws_timeout_is_a_timeout(
    recorded: Recorded, procs: Procs
) -> None:
    sent = time.monotonic()
    status, _ = await recorded.post("chats/TIMEOUT", {"K": "7"})
    assert status == 200
    assert recorded.proxy.capture is not None
    path = recorded.proxy.capture
    await procs.await_until(lambda: _has_pair(path, "TIMEOUT"), WAIT, "the pair to be closed")
    waited = time.monotonic() - sent
    capture = await recorded.capture()

    [p] = capture.pairs_of("TIMEOUT")
    assert p["status"] == "timeout" and p["http_status"] == 200
    assert waited >= 0.9, f"closed as timed out after {waited:.2f} s, before gws_timeout=1"


@pytest.mark.asyncio
async def test_a_request_still_open_at_shutdown_is_incomplete(
    recorded: Recorded, procs: Procs
) -> None:
    release = asyncio.Event()

    async def hold(request: web.Request, body: bytes) -> web.Response:
        await release.wait()
        return web.json_response({"statusCode": 0})

    recorded.server.handlers["INCOMPLETE"] = hold
    pending = asyncio.create_task(recorded.post("emails/INCOMPLETE", {"K": 8}))
    try:
        await procs.await_until(
            lambda: bool(recorded.server.arrived["INCOMPLETE"]), WAIT, "the request at GWS"
        )
        capture = await recorded.capture()  # the proxy stops while the request waits
    finally:
        release.set()
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            await pending

    [p] = capture.pairs_of("INCOMPLETE")
    assert p["status"] == "incomplete"
    assert p["http_status"] is None


# ---- 3. crash safety ----------------------------------------------------------------------------


def test_kill_9_mid_recording_keeps_every_finished_pair(procs: Procs, tmp_path: Path) -> None:
    sim = procs.sim()
    path = tmp_path / "killed.gwscap"
    mitm = procs.mitmdump(sim.url, path, options={"gws_timeout": "30"})
    done: dict[str, list[float]] = defaultdict(list)  # agent -> wall time each op finished
    age = 1.0  # seconds: what the agents had finished this long before the kill is recorded

    def finished(agent: str, before: float) -> int:
        return sum(t < before for t in done[agent])

    async def scenario() -> tuple[float, list[int]]:
        config = LoadConfig(target=mitm.url, agents=5, ops=10_000, timeout=5.0)
        names = [f"agent{n}" for n in range(1, config.agents + 1)]
        agents = [
            Agent(
                config,
                n,
                on_done=functools.partial(lambda a: done[a].append(time.time()), f"agent{n}"),
            )
            for n in range(1, config.agents + 1)
        ]
        try:
            await asyncio.gather(*(a.start() for a in agents))
            work = asyncio.gather(*(a.run(config.ops) for a in agents))
            # The agents keep working: kill -9 lands in the middle of everything, once each
            # has 40 operations finished long enough ago.
            await procs.await_until(
                lambda: min(finished(a, time.time() - age) for a in names) >= 40,
                WAIT * 2,
                f"40 operations per agent finished {age:g} s ago",
            )
            workers = procs.children(mitm.popen.pid)
            assert workers, "the recording worker process is missing"
            killed = time.time()
            mitm.kill()
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            return killed, workers
        finally:
            await asyncio.gather(*(a.close() for a in agents), return_exceptions=True)

    killed, workers = asyncio.run(scenario())
    assert mitm.popen.returncode == -signal.SIGKILL
    # The worker sees the pipe close, writes what was in flight as incomplete, and exits.
    procs.wait_until(
        lambda: not any(procs.running(pid) for pid in workers),
        WAIT,
        "the recording worker to exit after the proxy",
    )
    log = sim.log()
    capture = read_capture(path)
    assert not capture.ended, "a killed recording has no END record"
    assert all("torn tail" in d.reason for d in capture.damage), capture.damage
    assert all(d.offset + d.length == path.stat().st_size for d in capture.damage)
    # Ops the agents had finished (notification received) `age` seconds before the kill: each
    # agent's first k operations in the simulator's log.
    must: dict[str, int] = {}
    for agent, ops in by_interaction(log, "agent").items():
        k = finished(agent, killed - age)
        assert k > 0, f"{agent} finished nothing before the kill"
        for op in ops[:k]:
            must[op["interaction_id"]] = must.get(op["interaction_id"], 0) + 1
    assert sum(must.values()) >= 100
    compared = check_against_sim_log(capture, log, complete=False)
    for ix, n in must.items():
        assert len(capture.pairs_of(ix)) >= n, f"{ix}: a pair finished before the kill is lost"
    assert compared >= sum(must.values())


def test_a_dead_worker_hands_the_recording_back_to_the_proxy(procs: Procs, tmp_path: Path) -> None:
    sim = procs.sim("--agents", "3")
    path = tmp_path / "handover.gwscap"
    mitm = procs.mitmdump(sim.url, path)
    run_agents(mitm.url, agents=3, ops=10)
    # The worker records in the background: let it catch up.
    procs.wait_until(lambda: len(read_capture(path).pairs) >= 30, WAIT, "the first 30 pairs")
    (worker,) = procs.children(mitm.pid)
    os.kill(worker, signal.SIGKILL)
    report = run_agents(mitm.url, agents=3, ops=10)
    assert report.failed == 0 and report.timeouts == 0, "the traffic itself must not notice"
    assert mitm.signal(signal.SIGINT) == 0, mitm.describe()
    assert "recording in the proxy's process from now on" in mitm.stdout() + mitm.stderr()
    capture = read_capture(path)
    # The first 30 pairs from the worker; a new session in the same file has the other 30,
    # every one matched against what the simulator did; the file ends cleanly.
    assert capture.ended and not capture.damage
    assert len(capture.of(Kind.HEADER)) == 2
    assert len({p["id"] for p in capture.pairs}) == 60, "pair ids are unique in the file"
    assert check_against_sim_log(capture, sim.log()) == 60


def test_flipped_bytes_damage_one_record_and_the_rest_is_read(procs: Procs, tmp_path: Path) -> None:
    sim = procs.sim("--agents", "3")
    path = tmp_path / "finished.gwscap"
    mitm = procs.mitmdump(sim.url, path)
    run_agents(mitm.url, agents=3, ops=20)
    assert mitm.signal(signal.SIGINT) == 0, mitm.describe()
    with CaptureReader(path) as reader:
        entries = reader.index()
    pairs = [e for e in entries if e.kind == Kind.PAIR]
    assert len(pairs) == 60
    victim = pairs[len(pairs) // 2]
    damaged = tmp_path / "damaged.gwscap"
    shutil.copyfile(path, damaged)
    with open(damaged, "r+b") as f:
        f.seek(victim.offset + 20)  # inside the record's summary
        chunk = f.read(8)
        f.seek(victim.offset + 20)
        f.write(bytes(b ^ 0xFF for b in chunk))

    capture = read_capture(damaged)
    assert [d.offset for d in capture.damage] == [victim.offset]
    after = [e for e, _ in capture.records if e.offset > victim.offset]
    assert [e.offset for e in after] == [e.offset for e in entries if e.offset > victim.offset]
    assert len(capture.records) == len(entries) - 1
    assert capture.ended, "the END record after the damage is still read"
    info = procs.run(procs.cli("info", str(damaged)), env={**os.environ, "COLUMNS": "200"})
    assert info.returncode == 0, info.stderr
    assert str(victim.offset) in info.stdout, info.stdout


# ---- 4. bad traffic ------------------------------------------------------------------------------

QUIRKS = {
    # interaction id: (text inside the notification's userData, the repair, value afterwards)
    "Q-NONE": ('"Extra": None', "python None/True/False", ("Extra", None)),
    "Q-LONG": ('"Big": 1389261492035L', "python long literal", ("Big", 1389261492035)),
    "Q-COMMA": ('"Tail": "t",', "trailing comma", ("Tail", "t")),
    "Q-NEWLINE": ('"Note": "line1\nline2"', "raw newline in string", ("Note", "line1\nline2")),
    "Q-DOUBLED": ('"Quoted": ""DATA""', "doubled quotes", ("Quoted", "DATA")),
    "Q-LATIN1": ('"Name": "caf\xe9"', "invalid UTF-8 replaced", ("Name", "caf\ufffd")),
}
DEPTH = 10_000


def quirk_batch(ix: str, inner: str) -> bytes:
    text = (
        '[{"channel": "/v2/me/chats", "data": {"messageType": "ChatStateChangeMessage", '
        f'"notificationType": "PropertiesUpdated", "chat": {{"id": "{ix}", '
        f'"userData": {{"K": "v", {inner}}}}}}}}}]'
    )
    return text.encode("latin-1")  # Q-LATIN1's é becomes one byte that is not UTF-8


class BadServer(StandIn):
    """Answers long polls with whatever bytes a case names (`?case=`), and records what the
    requests brought, byte for byte."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: dict[str, bytes] = {}
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.routes.append(("POST", bayeux.NOTIFICATIONS_PATH + "/connect", self._poll))
        self.routes.append(("POST", "/upload", self._upload))
        self.routes.append(("GET", bayeux.NOTIFICATIONS_PATH + "/ws", self._websocket))
        self.uploads: list[str] = []
        self.frames: list[str | bytes] = []  # what the WebSocket sends, in order

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for frame in self.frames:
            if isinstance(frame, str):
                await ws.send_str(frame)
            else:
                await ws.send_bytes(frame)
        async for _ in ws:  # until the client closes
            pass
        return ws

    async def _upload(self, request: web.Request) -> web.Response:
        self.uploads.append(sha(await request.read()))
        return web.json_response({"ok": True})

    async def _poll(self, request: web.Request) -> web.Response:
        await request.read()
        body = self.notes[request.query["case"]]
        return web.Response(body=body, content_type="application/json")

    async def _post(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        ix = request.match_info["id"]
        self.arrived[ix].append(body)
        status, answer = self.answers.get(ix, (200, b'{"statusCode": 0}'))
        return web.Response(status=status, body=answer, content_type="application/json")


class BadClient:
    """Sends bodies as given and keeps every answer's bytes."""

    def __init__(self, http: aiohttp.ClientSession, base: str, server: BadServer) -> None:
        self.http, self.base, self.server = http, base, server
        self.sent: dict[str, bytes] = {}
        self.got: dict[str, bytes] = {}

    async def request(self, path: str, body: bytes) -> int:
        ix = path.rsplit("/", 1)[1]
        self.sent[ix] = body
        async with self.http.post(
            self.base + path,
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=WAIT),
        ) as r:
            self.got["answer:" + ix] = await r.read()
            return r.status

    async def poll(self, case: str, note: bytes) -> None:
        self.server.notes[case] = note
        connect = json.dumps([{"channel": "/meta/connect", "clientId": "c1", "id": "1"}])
        async with self.http.post(
            f"{self.base}{bayeux.NOTIFICATIONS_PATH}/connect?case={case}",
            data=connect,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=WAIT),
        ) as r:
            self.got["note:" + case] = await r.read()

    async def websocket(self, frames: list[str | bytes]) -> None:
        """Open a CometD WebSocket; the server sends `frames`; each must arrive unchanged."""
        self.server.frames = frames
        async with self.http.ws_connect(self.base + bayeux.NOTIFICATIONS_PATH + "/ws") as ws:
            for sent in frames:
                got = await ws.receive(timeout=WAIT)
                assert got.data == sent, f"frame {frames.index(sent)} changed on the way"

    def check_bytes(self) -> None:
        """The server got exactly what the client sent, and the client what the server sent."""
        for ix, body in self.sent.items():
            assert [sha(b) for b in self.server.arrived[ix]] == [sha(body)], ix
            status, answer = self.server.answers.get(ix, (200, b'{"statusCode": 0}'))
            assert sha(self.got["answer:" + ix]) == sha(answer), ix
        for case, note in self.server.notes.items():
            assert sha(self.got["note:" + case]) == sha(note), case


def check_clean_output(mitm: Mitm, capture: Capture) -> None:
    """No traceback from our addon: mitmdump's termlog writes errors to stdout, so both
    streams are searched."""
    out = mitm.stdout() + mitm.stderr()
    assert "Traceback" not in out and "gwsproxy" not in out, out[-4000:]
    internal = [s for s, _ in capture.raws if s["reason"].startswith("internal error")]
    assert internal == []


def test_bad_traffic_is_forwarded_unchanged_and_recorded_raw_with_reasons(
    procs: Procs, tmp_path: Path
) -> None:
    path = tmp_path / "bad.gwscap"
    deep_request = (
        b'{"operationName": "UpdateUserData", "userData": {"Deep": '
        + b"[" * DEPTH
        + b"]" * DEPTH
        + b"}}"
    )
    deep_note = quirk_batch("D-NOTE", '"Deep": ' + "[" * DEPTH + "]" * DEPTH)
    garbage = b"\xff\xfe\x00\x80not json at all \xc3\x28"

    async def scenario() -> Mitm:
        server = BadServer()
        url = await server.start()
        mitm = await asyncio.to_thread(procs.mitmdump, url, path, options={"gws_timeout": "60"})
        auth = {"Authorization": basic("tester")}
        async with aiohttp.ClientSession(headers=auth) as http:
            client = BadClient(http, mitm.url, server)
            try:
                # The quirks of the public GWS samples in notifications: repaired, still paired.
                for ix, (inner, _, _) in QUIRKS.items():
                    assert (
                        await client.request(
                            f"/api/v2/me/chats/{ix}", json.dumps(update({"K": "v"})).encode()
                        )
                        == 200
                    )
                    await client.poll(ix, quirk_batch(ix, inner))
                # Unreadable: not JSON, not UTF-8; too deep; malformed.
                server.answers["N-REQ"] = (400, b'{"statusCode": 1, "statusMessage": "bad"}')
                assert await client.request("/api/v2/me/chats/N-REQ", garbage) == 400
                await client.poll("N-NOTE", garbage)
                assert await client.request("/api/v2/me/chats/D-REQ", deep_request) == 200
                await client.poll("D-NOTE", deep_note)
                await client.poll("M-NOTE", b'[{"channel": "/v2/me/chats", "data": {')
                # An answer the client cannot read either: passed on as it is.
                server.answers["N-ANSWER"] = (200, b"\x00\xff<html>oops</html>")
                await client.request(
                    "/api/v2/me/chats/N-ANSWER", json.dumps(update({"K": 1})).encode()
                )
                # Unknown media and message type: parsed generically and paired.
                assert (
                    await client.request(
                        "/api/v2/me/holograms/H1", json.dumps(update({"Beam": "on"})).encode()
                    )
                    == 200
                )
                hologram = {
                    "channel": "/v2/me/holograms",
                    "data": {
                        "messageType": "HologramStateChangeMessage",
                        "notificationType": "PropertiesUpdated",
                        "hologram": {"id": "H1", "userData": {"Beam": "on"}},
                    },
                }
                await client.poll("HOLO", json.dumps([hologram]).encode())
                # The same over a WebSocket: a repaired quirk, non-UTF-8, too deep.
                assert (
                    await client.request(
                        "/api/v2/me/chats/WS-Q", json.dumps(update({"K": "v"})).encode()
                    )
                    == 200
                )
                await client.websocket(
                    [
                        quirk_batch("WS-Q", '"Tail": "t",').decode(),
                        garbage,
                        quirk_batch("WS-DEEP", '"Deep": ' + "{" * DEPTH).decode(),
                    ]
                )
                client.check_bytes()
            finally:
                await server.stop()
        return mitm

    mitm = asyncio.run(scenario())
    assert mitm.signal(signal.SIGINT) == 0, mitm.describe()
    capture = read_capture(path)
    check_clean_output(mitm, capture)
    assert capture.ended and capture.damage == []
    exported = capture.exported()

    for ix, (_, repair, (key, value)) in QUIRKS.items():
        [p] = capture.pairs_of(ix)
        assert (p["status"], p["correlation"]) == ("matched", "inferred"), ix
        out = exported[p["id"]]
        assert out["after"]["K"] == "v" and out["after"][key] == value, (ix, out["after"])
        [(_, body)] = [(s, b) for s, b in capture.of(Kind.PAIR) if s["id"] == p["id"]]
        assert repair in body["notification"]["repairs"], (ix, body["notification"]["repairs"])

    raws = defaultdict(list)
    for summary, body in capture.raws:
        raws[summary["where"]].append((summary, body))
    requests = {s["path"].rsplit("/", 1)[1]: (s, b) for s, b in raws["request"]}
    assert set(requests) == {"N-REQ", "D-REQ"}
    s, b = requests["N-REQ"]
    assert s["reason"].startswith("not JSON") and b["bytes"] == garbage, s
    s, b = requests["D-REQ"]
    assert "nesting" in s["reason"] and b["bytes"] == deep_request, s
    ws = {s["reason"].split(":")[0]: b["bytes"] for s, b in raws["websocket"]}
    assert len(raws["websocket"]) == 2, raws["websocket"]
    assert ws["not JSON"] == garbage and b"{" * DEPTH in ws["nesting deeper than 1000"]
    [p] = capture.pairs_of("WS-Q")
    assert (p["status"], p["correlation"]) == ("matched", "inferred")
    assert exported[p["id"]]["after"] == {"K": "v", "Tail": "t"}
    notes = sorted(s["reason"] for s, _ in raws["long-polling"])
    assert len(notes) == 3, notes  # garbage, too deep, cut short
    assert any("nesting" in r for r in notes), notes
    assert sum(r.startswith("not JSON") for r in notes) == 2, notes
    assert {b["bytes"] for _, b in raws["long-polling"]} == {
        garbage,
        deep_note,
        b'[{"channel": "/v2/me/chats", "data": {',
    }
    assert capture.pairs_of("D-REQ") == [] and capture.pairs_of("N-REQ") == []

    [p] = capture.pairs_of("H1")
    assert (p["media"], p["collection"], p["status"]) == ("unknown", "holograms", "matched")
    assert exported[p["id"]]["after"] == {"Beam": "on"}
    assert p["note_type"] == "PropertiesUpdated"

    [p] = capture.pairs_of("N-ANSWER")
    assert p["status"] == "incomplete" and p["http_status"] == 200


MiB = 1024 * 1024


@pytest.mark.parametrize("max_body", [None, MiB], ids=["default-4MiB", "gws_max_body=1MiB"])
def test_big_bodies_pass_unchanged_and_are_kept_raw_over_the_limit(
    procs: Procs, tmp_path: Path, max_body: int | None
) -> None:
    path = tmp_path / "big.gwscap"
    options = {"gws_timeout": "60"}
    if max_body is not None:
        options["gws_max_body"] = str(max_body)
    sizes = {"BIG-2": 2 * MiB, "BIG-5": 5 * MiB}
    limit = max_body or 4 * MiB

    async def scenario() -> Mitm:
        server = BadServer()
        url = await server.start()
        mitm = await asyncio.to_thread(procs.mitmdump, url, path, options=options)
        async with aiohttp.ClientSession(headers={"Authorization": basic("tester")}) as http:
            client = BadClient(http, mitm.url, server)
            try:
                for ix, size in sizes.items():
                    blob = "x" * size
                    body = json.dumps(update({"Blob": blob})).encode()
                    assert await client.request(f"/api/v2/me/chats/{ix}", body) == 200
                    note = quirk_batch(ix, f'"Blob": "{blob}"')
                    await client.poll(ix, note)
                client.check_bytes()
                # A big body that is not GWS user-data traffic: passed on, not recorded.
                upload = os.urandom(2 * MiB)
                async with http.post(mitm.url + "/upload", data=upload) as r:
                    assert r.status == 200
                assert server.uploads == [sha(upload)]
            finally:
                await server.stop()
        return mitm

    mitm = asyncio.run(scenario())
    assert mitm.signal(signal.SIGINT) == 0, mitm.describe()
    capture = read_capture(path)
    check_clean_output(mitm, capture)
    raws = capture.raws
    assert all(f"exceeds gws_max_body ({limit})" in s["reason"] for s, _ in raws), raws
    exported = capture.exported()
    for ix, size in sizes.items():
        mine = [(s, b) for s, b in raws if size < s["size"] < size + 1000]
        if size > limit:
            # The request and its notification are both too big to parse: kept raw, with
            # their full size and (at most gws_max_body of) their bytes.
            assert sorted(s["where"] for s, _ in mine) == ["request", "response"], ix
            for _, b in mine:
                assert len(b["bytes"]) == limit and b"x" * 1000 in b["bytes"]
            assert capture.pairs_of(ix) == []
        else:
            assert mine == []
            [p] = capture.pairs_of(ix)
            assert p["status"] == "matched", ix
            assert len(exported[p["id"]]["after"]["Blob"]) == size
    assert len(raws) == 2 * sum(size > limit for size in sizes.values())


# ---- 5. secrets ---------------------------------------------------------------------------------


SECRET_VALUES = ["alice@example.com", "bob@example.com", "alice@example.com"]
# A fourth update, with the quirks of the public GWS samples: repaired, and masked all the same.
QUIRKY_UPDATE = (
    b'{"operationName": "UpdateUserData", '
    b'"userData": {"UserData1": "carol@example.com", "Step": 4, "Gone": None,},}'
)


@pytest.mark.parametrize("mask", [False, True], ids=["default", "gws_mask_keys=UserData1"])
def test_no_secret_reaches_the_capture(procs: Procs, tmp_path: Path, mask: bool) -> None:
    sim = procs.sim("--agents", "2")
    path = tmp_path / "secrets.gwscap"
    options: dict[str, Any] = {"gws_timeout": "30"}
    if mask:
        options["gws_mask_keys"] = ["UserData1"]  # one `--set gws_mask_keys=...` per key
    mitm = procs.mitmdump(sim.url, path, options=options)
    secrets: set[str] = {basic("agent1")[6:], basic("agent2")[6:]}

    async def agent(user: str, transport: str, basic_every_time: bool) -> str:
        """Log in with Basic auth, then work over cookies (and Basic too, if told) + CSRF."""
        jar = aiohttp.CookieJar(unsafe=True)
        headers = {"Authorization": basic(user)} if basic_every_time else {}
        async with aiohttp.ClientSession(cookie_jar=jar, headers=headers) as http:
            async with http.get(
                mitm.url + "/api/v2/me", headers={"Authorization": basic(user)}
            ) as r:
                assert r.status == 200
                csrf_name = r.headers["X-CSRF-HEADER"]
                csrf = {csrf_name: r.headers[csrf_name]}
            secrets.add(csrf[csrf_name])
            cookies = {c.key: c.value for c in jar}
            assert {"JSESSIONID", "BAYEUX_BROWSER"} <= set(cookies)
            secrets.update(cookies.values())
            async with http.get(mitm.url + "/api/v2/me/chats", headers=csrf) as r:
                chat = (await r.json())["chats"][0]["id"]
            cometd = CometdClient(
                http, mitm.url + bayeux.NOTIFICATIONS_PATH, transport=transport, headers=csrf
            )
            secrets.add(await cometd.handshake())
            await cometd.start()
            await cometd.subscribe("/v2/me/**")
            inbox = Inbox(cometd)
            try:
                for n, value in enumerate(SECRET_VALUES, 1):
                    body = update({"UserData1": value, "Step": n})
                    async with http.post(
                        f"{mitm.url}/api/v2/me/chats/{chat}", json=body, headers=csrf
                    ) as r:
                        assert r.status == 200, await r.text()
                    await inbox.wait(chat, n)
                async with http.post(
                    f"{mitm.url}/api/v2/me/chats/{chat}",
                    data=QUIRKY_UPDATE,
                    headers={**csrf, "Content-Type": "application/json"},
                ) as r:
                    assert r.status == 200, await r.text()
                await inbox.wait(chat, 4)
                assert cometd.client_id is not None
                secrets.add(cometd.client_id)
            finally:
                await cometd.close()
                await inbox.close()
        return chat

    async def both() -> list[str]:
        return list(
            await asyncio.gather(
                agent("agent1", "long-polling", True), agent("agent2", "websocket", False)
            )
        )

    chats = asyncio.run(both())
    assert mitm.signal(signal.SIGINT) == 0, mitm.describe()
    capture = read_capture(path)
    assert capture.ended
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(capture.pairs) == 8 and {p["status"] for p in capture.pairs} == {"matched"}
    # The cookie-only agent is still known by name: its JSESSIONID was handed to agent2.
    assert {p["scope"] for p in capture.pairs} == {"user:agent1", "user:agent2"}
    assert len(secrets) >= 10
    assert leaks(capture, secrets) == set()
    # The secret headers were recorded, as stand-ins.
    for summary, body in capture.of(Kind.PAIR):
        assert body is not None
        headers = {k.lower(): v for k, v in body["request"]["headers"]}
        assert headers["cookie"].startswith("<redacted "), headers
        assert headers["x-csrf-token"].startswith("<redacted "), headers
        if summary["scope"] == "user:agent1":
            assert headers["authorization"].startswith("<redacted "), headers

    personal = {*SECRET_VALUES, "carol@example.com"}
    if not mask:
        # Without masking the values are in the capture (which makes the check above fair).
        assert leaks(capture, personal) == personal
        return
    assert leaks(capture, personal) == set()
    exported = capture.exported()
    for chat in chats:
        steps = [exported[p["id"]] for p in capture.pairs_of(chat)]
        masks = [s["after"]["UserData1"] for s in steps]
        assert all(m.startswith("masked:") for m in masks), masks
        assert masks[0] == masks[2] != masks[1], "equal values, equal masks"
        assert len(set(masks)) == 3
        assert [s["after"]["Step"] for s in steps] == [1, 2, 3, 4], "other keys stay readable"
        assert steps[3]["requested"]["UserData1"] == masks[3]
        assert steps[1]["before"]["UserData1"] == masks[0]
        assert steps[1]["before"] != steps[1]["after"]
        assert steps[2]["before"]["UserData1"] != steps[2]["after"]["UserData1"]
        assert steps[0]["requested"]["UserData1"] == masks[0]


# ---- 6. memory of a long-lived CometD WebSocket -------------------------------------------------


@pytest.mark.parametrize("trim", [None, False])
def test_trimmed_websocket_keeps_one_message_and_records_all(
    tmp_path: Path, trim: bool | None
) -> None:
    """Trimming is the default wherever the addon runs (mitmdump -s too); false keeps all."""
    recorder = GwsRecorder()
    path = tmp_path / "ws.gwscap"
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, gws_capture=str(path))
        if trim is not None:
            tctx.configure(recorder, gws_trim_websocket=trim)
        flow = tflow.twebsocketflow()
        flow.request.path = bayeux.NOTIFICATIONS_PATH
        assert flow.websocket is not None
        flow.websocket.messages.clear()
        for n in range(1000):
            note = {"channel": "/v2/me/chats", "data": chat_note(f"C{n}", {"N": n})}
            content = json.dumps([note]).encode()
            flow.websocket.messages.append(WebSocketMessage(Opcode.TEXT, False, content))
            recorder.websocket_message(flow)
            assert len(flow.websocket.messages) == (n + 1 if trim is False else 1)
        recorder.done()
    capture = read_capture(path)
    assert capture.ended
    assert len(capture.unsolicited) == 1000
    assert {u["interaction_id"] for u in capture.unsolicited} == {f"C{n}" for n in range(1000)}


# ---- 7. the command line -----------------------------------------------------------------------


def test_gwsproxy_record_works_like_mitmdump(procs: Procs, tmp_path: Path) -> None:
    sim = procs.sim("--agents", "3")
    path = tmp_path / "cli.gwscap"
    record, port = procs.record(sim.url, path)
    report = run_agents(f"http://{HOST}:{port}", agents=3, ops=10, transport="websocket")
    assert report.notified == 30, report.as_dict()
    assert record.signal(signal.SIGINT) == 0, record.describe()
    assert "Traceback" not in record.stderr(), record.stderr()

    info = procs.run(procs.cli("info", str(path)))
    assert info.returncode == 0, info.stderr
    assert "pairs" in info.stdout and "30" in info.stdout
    export = procs.run(procs.cli("export", str(path)))
    assert export.returncode == 0, export.stderr
    lines = [json.loads(line) for line in export.stdout.splitlines()]
    assert len(lines) == len(sim.log()) == 30
    for line in lines:
        assert set(line) >= EXPORT_FIELDS, set(line) ^ EXPORT_FIELDS
        assert line["status"] == "matched" and isinstance(line["after"], dict)
        assert set(line["timings"]) >= {"request", "answer", "notification", "latency_ms"}
    assert {line["reference_id"] for line in lines if line["media"] != "voice"} <= {
        op["reference_id"] for op in sim.log()
    }


def test_gwsproxy_record_keeps_requests_made_while_gws_is_down(
    procs: Procs, tmp_path: Path
) -> None:
    """Nothing listens upstream: the client gets mitmproxy's 502, the capture a failed pair."""
    down = procs.free_port()
    path = tmp_path / "down.gwscap"
    record, port = procs.record(f"http://{HOST}:{down}", path)
    body = json.dumps(update({"Disposition": "Sale"})).encode()
    request = urllib.request.Request(
        f"http://{HOST}:{port}/api/v2/me/chats/CH1",
        data=body,
        headers={"Authorization": basic("agent1"), "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=WAIT)
    assert answer.value.code == 502
    assert record.signal(signal.SIGINT) == 0, record.describe()
    (pair,) = read_capture(path).pairs
    assert (pair["status"], pair["scope"], pair["interaction_id"]) == (
        "failed",
        "user:agent1",
        "CH1",
    )
    assert pair["error"], pair


def one_line_error(process: Any) -> str:
    """Wait for a failing `gwsproxy` run: exit 2, one line on stderr, no traceback."""
    code = process.popen.wait(WAIT * 2)
    err = process.stderr()
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err + process.stdout()
    return lines[0]


def test_gwsproxy_record_refuses_bad_input_in_one_line(procs: Procs, tmp_path: Path) -> None:
    upstream = "http://127.0.0.1:9"  # never contacted: each case fails before listening
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    free = procs.free_port()
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        cases = {
            "unwritable": (upstream, free, f"{blocker}/sub/c.gwscap"),
            "busy": (upstream, taken, str(tmp_path / "x.gwscap")),
            "ftp": ("ftp://x", procs.free_port(), str(tmp_path / "y.gwscap")),
        }
        # All at once: each one imports mitmproxy, which is slow on a loaded machine.
        running = {
            name: procs.spawn(
                procs.cli("record", "--upstream", url, "-p", str(port), "-o", out), name
            )
            for name, (url, port, out) in cases.items()
        }
        lines = {name: one_line_error(p) for name, p in running.items()}

    assert "a-file/sub" in lines["unwritable"], lines
    assert not procs.accepts(free), "nothing listens after an unwritable capture path"
    assert not (tmp_path / "sub").exists()
    assert str(taken) in lines["busy"] and "in use" in lines["busy"], lines
    assert "ftp://x" in lines["ftp"], lines
    assert not (tmp_path / "x.gwscap").exists() and not (tmp_path / "y.gwscap").exists()


# ---- 8. gwsproxy import -------------------------------------------------------------------------


def test_import_of_a_mitmdump_flow_file_pairs_like_the_live_recording(
    procs: Procs, tmp_path: Path
) -> None:
    """Agent runs over both transports through two proxies: mitmdump with the addon in front
    of a plain `mitmdump -w`; the imported flow file pairs like the live capture."""
    sim = procs.sim("--agents", "3")
    flows, live_path, imported = (
        tmp_path / "flows.mitm",
        tmp_path / "live.gwscap",
        tmp_path / "imported.gwscap",
    )
    plain = procs.mitmdump(sim.url, addon=False, args=["-w", str(flows)])
    live = procs.mitmdump(plain.url, live_path, options={"gws_timeout": "30"})
    for transport in ("long-polling", "websocket"):
        report = run_agents(live.url, agents=3, ops=20, transport=transport)
        assert report.notified == 60, (transport, report.as_dict())
    assert live.signal(signal.SIGINT) == 0, live.describe()
    assert plain.signal(signal.SIGINT) == 0, plain.describe()

    result = procs.run(procs.cli("import", str(flows), "-o", str(imported)))
    assert result.returncode == 0, result.stderr
    assert "120 pairs" in result.stdout, result.stdout
    log = sim.log()
    capture = read_capture(imported)
    assert capture.ended and capture.damage == [] and capture.raws == []
    assert len(capture.pairs) == len(log) == 120
    assert check_against_sim_log(capture, log) == 120
    live_capture = read_capture(live_path)

    def key(p: dict) -> tuple:
        return (p["interaction_id"], p["operation"], p["reference_id"], p["status"], p["scope"])

    assert sorted(map(key, capture.pairs)) == sorted(map(key, live_capture.pairs))
    # An import writes a new capture: it neither appends to nor clobbers an existing one.
    again = procs.run(procs.cli("import", str(flows), "-o", str(imported)))
    assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr
    assert "exists" in again.stderr and read_capture(imported).pairs == capture.pairs
    # The same dump cut in half (a disk that filled up, a copy cut short): the first half is
    # imported, and the import says where and why it stopped reading.
    half = tmp_path / "half.mitm"
    half.write_bytes(flows.read_bytes()[: flows.stat().st_size // 2])
    cut = procs.run(procs.cli("import", str(half), "-o", str(tmp_path / "half.gwscap")))
    assert cut.returncode == 0, cut.stderr
    assert f"stopped reading {half} at byte" in cut.stderr and "cut short" in cut.stderr
    kept = read_capture(tmp_path / "half.gwscap")
    assert 0 < len(kept.pairs) < 120 and f"{len(kept.pairs)} pairs" in cut.stdout
