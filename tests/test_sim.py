"""The built-in GWS simulator, run as a real `gwsproxy sim` subprocess and driven over HTTP.

REST with aiohttp; CometD with raw long-poll POSTs to /api/v2/notifications, so that what the
simulator puts on the wire is what the tests see.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest

from gwsproxy import gws
from gwsproxy.cli import build_parser
from gwsproxy.lenient import Parsed, loads

PASSWORD = "password"
NOTIFICATIONS = "/api/v2/notifications"
SEED_SMS_ID = "0000Wa9CAM6W00J"
SEED_FACEBOOK_ID = "0002DaAVKJ0V0095"
SEED_REQUEST = {
    "operationName": "UpdateUserData",
    "userData": {"UserData1": 987654321, "UserData2": "DATAUPDATE-@123"},
}
# Canonical collection of every media, and the key of its interaction object in answers.
COLLECTIONS = {
    "voice": ("calls", "call"),
    "chat": ("chats", "chat"),
    "sms": ("smssessions", "smssession"),
    "facebook": ("facebooksessions", "facebooksession"),
    "email": ("emails", "email"),
    "workitem": ("workitems", "workitem"),
    "openmedia": ("openmedia", "openmedia"),
    "twitter": ("twitter", "twitter"),
    "im": ("im-sessions", "imSession"),
}
# The media whose documented HTTP answers carry a referenceId.
REFERENCE_IN_ANSWER = {"workitem", "openmedia", "twitter"}
WAIT = 5.0  # seconds any notification may take to arrive


class SimProcess(Protocol):
    """The `sim` fixture of tests/conftest.py: a running simulator subprocess."""

    url: str
    host: str
    port: int


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": gws.basic_authorization(user, password)}


class Agent:
    """One agent's REST calls against the simulator."""

    def __init__(self, http: aiohttp.ClientSession, sim: SimProcess, name: str) -> None:
        self.http, self.url, self.name, self.headers = http, sim.url, name, basic(name)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path, headers=self.headers) as r:
            return r.status, await r.json(content_type=None)

    async def post(self, path: str, doc: Any) -> tuple[int, Any]:
        raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        headers = {**self.headers, "Content-Type": "application/json"}
        async with self.http.post(self.url + path, data=raw, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def interactions(self, media: str) -> list[dict[str, Any]]:
        collection = COLLECTIONS[media][0]
        status, doc = await self.get(f"/api/v2/me/{collection}")
        assert status == 200, doc
        return doc[collection]

    async def first(self, media: str) -> tuple[str, dict[str, Any]]:
        """The user-data path and the state of this agent's first interaction of a media."""
        ixn = (await self.interactions(media))[0]
        collection = COLLECTIONS[media][0]
        if media == "openmedia":
            collection += "/" + ixn["mediaType"]
        return f"/api/v2/me/{collection}/{ixn['id']}", ixn

    async def user_data(self, path: str, media: str) -> dict[str, Any] | None:
        status, doc = await self.get(path.replace("/openmedia/promotion/", "/openmedia/"))
        assert status == 200, doc
        return doc[COLLECTIONS[media][1]].get("userData")


class LongPoll:
    """A CometD client made of raw long-poll POSTs: what the wire says, nothing hidden."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.client_id: str | None = None
        self.next_id = 0
        self.data: list[tuple[dict[str, Any], str]] = []  # undelivered data messages, raw text

    async def send(self, *messages: dict[str, Any], path: str = NOTIFICATIONS) -> tuple[list, str]:
        batch = []
        for m in messages:
            self.next_id += 1
            batch.append({"id": str(self.next_id), **m})
        headers = {**self.agent.headers, "Content-Type": "application/json"}
        async with self.agent.http.post(
            self.agent.url + path, data=json.dumps(batch), headers=headers
        ) as r:
            text = await r.text()
            assert r.status == 200, text
        replies = json.loads(text)
        assert isinstance(replies, list), text
        return replies, text

    async def handshake(self) -> dict[str, Any]:
        replies, _ = await self.send(
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
            },
            path=NOTIFICATIONS + "/handshake",
        )
        reply = meta(replies, "/meta/handshake")
        assert reply["successful"] is True, reply
        self.client_id = reply["clientId"]
        return reply

    async def subscribe(self, channel: str = "/v2/me/**") -> None:
        replies, text = await self.send(
            {"channel": "/meta/subscribe", "clientId": self.client_id, "subscription": channel}
        )
        assert meta(replies, "/meta/subscribe")["successful"] is True, replies
        self._keep(replies, text)

    async def connect(self, timeout_ms: int | None) -> tuple[list[dict[str, Any]], str, float]:
        """One /meta/connect: the whole answer, its raw text and how long it took."""
        message: dict[str, Any] = {
            "channel": "/meta/connect",
            "clientId": self.client_id,
            "connectionType": "long-polling",
        }
        if timeout_ms is not None:
            message["advice"] = {"timeout": timeout_ms}
        start = time.monotonic()
        replies, text = await self.send(message, path=NOTIFICATIONS + "/connect")
        return replies, text, time.monotonic() - start

    @classmethod
    async def start(cls, agent: Agent, channel: str = "/v2/me/**") -> LongPoll:
        client = cls(agent)
        await client.handshake()
        await client.subscribe(channel)
        return client

    def _keep(self, replies: list[dict[str, Any]], text: str) -> None:
        self.data.extend((m, text) for m in replies if not m["channel"].startswith("/meta/"))

    async def notification(
        self, interaction_id: str, within: float = WAIT
    ) -> tuple[dict[str, Any], str]:
        """The next data message about an interaction, and the raw answer that carried it."""
        deadline = time.monotonic() + within
        while True:
            for i, (m, text) in enumerate(self.data):
                if interaction_of(m["data"]) == interaction_id:
                    del self.data[i]
                    return m, text
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [interaction_of(m["data"]) for m, _ in self.data]
                pytest.fail(
                    f"{self.agent.name}: no notification about {interaction_id} in {within} s "
                    f"(saw {seen})"
                )
            replies, text, _ = await self.connect(int(min(remaining, 1.0) * 1000))
            assert meta(replies, "/meta/connect")["successful"] is True, replies
            self._keep(replies, text)


def meta(replies: list[dict[str, Any]], channel: str) -> dict[str, Any]:
    found = [r for r in replies if r.get("channel") == channel]
    assert len(found) == 1, f"expected one {channel} reply in {replies}"
    return found[0]


def interaction_of(data: dict[str, Any]) -> str | None:
    for value in data.values():
        if isinstance(value, dict) and "id" in value:
            return value["id"]
    return None


def ixn_object(data: dict[str, Any], media: str) -> dict[str, Any]:
    key = COLLECTIONS[media][1]
    assert key in data, f"no {key!r} object in {data}"
    return data[key]


def seed_user_data(seed_dir: Path, name: str, key: str) -> dict[str, Any]:
    parsed = loads((seed_dir / name).read_bytes())
    assert isinstance(parsed, Parsed), parsed
    return parsed.value[key]["userData"]


async def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))


# ---- authentication ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_login_with_basic_returns_session_cookie_and_csrf_token(sim: SimProcess) -> None:
    async with await session() as http:
        async with http.get(sim.url + "/api/v2/me", headers=basic("agent1")) as r:
            assert r.status == 200
            doc = await r.json()
            cookies = r.cookies
            csrf_header = r.headers.get("X-CSRF-HEADER")
            csrf_token = r.headers.get(csrf_header or "X-CSRF-TOKEN")
        assert doc["statusCode"] == 0
        assert doc["user"]["userName"] == "agent1"
        assert "JSESSIONID" in cookies and cookies["JSESSIONID"].value
        assert "BAYEUX_BROWSER" in cookies
        assert csrf_header, "the server must announce its CSRF header name"
        assert csrf_token, f"no {csrf_header} header"
        # The session cookie alone identifies the agent afterwards.
        jar = {"JSESSIONID": cookies["JSESSIONID"].value}
        async with http.get(sim.url + "/api/v2/me/chats", cookies=jar) as r:
            assert r.status == 200, await r.text()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [basic("agent1", "wrong"), basic("nobody"), {"Authorization": "Basic !!!"}, {}],
    ids=["bad-password", "unknown-user", "garbage", "none"],
)
async def test_unauthenticated_requests_get_401_status_20(
    sim: SimProcess, headers: dict[str, str]
) -> None:
    async with await session() as http:
        for method, path in [("GET", "/api/v2/me"), ("GET", "/api/v2/me/chats")]:
            async with http.request(method, sim.url + path, headers=headers) as r:
                assert r.status == 401, (path, await r.text())
                assert (await r.json())["statusCode"] == 20
        async with http.post(
            sim.url + f"/api/v2/me/smssessions/{SEED_SMS_ID}", json=SEED_REQUEST, headers=headers
        ) as r:
            assert r.status == 401
            assert (await r.json())["statusCode"] == 20


@pytest.mark.asyncio
async def test_handshake_with_a_bad_password_is_refused(sim: SimProcess) -> None:
    async with await session() as http:
        client = LongPoll(Agent(http, sim, "agent1"))
        client.agent.headers = basic("agent1", "wrong")
        replies, _ = await client.send(
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
            }
        )
        reply = meta(replies, "/meta/handshake")
        assert reply["successful"] is False
        assert "clientId" not in reply


# ---- reading interactions -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_get_lists_every_media_of_the_agent(sim: SimProcess) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent1")
        for media, (collection, _) in COLLECTIONS.items():
            status, doc = await agent.get(f"/api/v2/me/{collection}")
            assert status == 200, doc
            assert doc["statusCode"] == 0
            listed = doc[collection]
            # one generated interaction per media, plus the seeded SMS and Facebook sessions
            expected = 2 if media in ("sms", "facebook") else 1
            assert len(listed) == expected, (media, listed)
            for ixn in listed:
                assert isinstance(ixn["id"], str) and ixn["id"]
                assert isinstance(ixn["userData"], dict)
        other = Agent(http, sim, "agent2")
        mine = {i["id"] for i in await agent.interactions("chat")}
        theirs = {i["id"] for i in await other.interactions("chat")}
        assert mine and theirs and not mine & theirs, "an agent sees only its own interactions"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("spelling", "media"),
    [("smsessions", "sms"), ("facebooksession", "facebook"), ("tweets", "twitter")],
)
async def test_get_list_accepts_other_spellings(sim: SimProcess, spelling: str, media: str) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent1")
        status, doc = await agent.get(f"/api/v2/me/{spelling}")
        assert status == 200, doc
        assert {i["id"] for i in doc[spelling]} == {
            i["id"] for i in await agent.interactions(media)
        }


@pytest.mark.asyncio
async def test_get_one_interaction(sim: SimProcess) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent1")
        for media, (collection, key) in COLLECTIONS.items():
            listed = (await agent.interactions(media))[-1]
            status, doc = await agent.get(f"/api/v2/me/{collection}/{listed['id']}")
            assert status == 200, doc
            assert doc["statusCode"] == 0
            assert doc[key] == listed, media


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/api/v2/me/videosessions", "/api/v2/me/chats-old/X1"])
async def test_get_of_an_unknown_collection_is_404_status_6(sim: SimProcess, path: str) -> None:
    async with await session() as http:
        status, doc = await Agent(http, sim, "agent1").get(path)
        assert (status, doc["statusCode"]) == (404, 6), doc


@pytest.mark.asyncio
async def test_get_of_an_unknown_or_foreign_interaction_is_404_status_6(sim: SimProcess) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent1")
        foreign = (await Agent(http, sim, "agent2").interactions("chat"))[0]["id"]
        for ixn_id in ["NOSUCHID", foreign]:
            status, doc = await agent.get(f"/api/v2/me/chats/{ixn_id}")
            assert (status, doc.get("statusCode")) == (404, 6), (ixn_id, doc)


@pytest.mark.asyncio
async def test_interaction_uri_points_at_the_simulator(sim: SimProcess) -> None:
    async with await session() as http:
        listed = await Agent(http, sim, "agent1").interactions("chat")
        uris = [i["uri"] for i in listed]
        assert all(u.startswith(sim.url + "/api/v2/") for u in uris), (sim.url, uris)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("media", "ixn_id", "name", "key"),
    [
        ("sms", SEED_SMS_ID, "seed_000_sms.txt", "smsession"),
        ("facebook", SEED_FACEBOOK_ID, "seed_003_facebook.txt", "facebooksession"),
    ],
)
async def test_seeded_interactions_hold_the_seed_user_data_before_the_update(
    sim: SimProcess, seed_dir: Path, media: str, ixn_id: str, name: str, key: str
) -> None:
    expected = seed_user_data(seed_dir, name, key)
    del expected["UserData1"], expected["UserData2"]
    async with await session() as http:
        agent = Agent(http, sim, "agent1")
        collection, object_key = COLLECTIONS[media]
        status, doc = await agent.get(f"/api/v2/me/{collection}/{ixn_id}")
        assert status == 200, doc
        assert doc[object_key]["userData"] == expected
        assert ixn_id in {i["id"] for i in await agent.interactions(media)}


# ---- user-data operations and their notifications --------------------------------------------


@pytest.mark.asyncio
async def test_seed_update_yields_the_documented_notification(
    sim_factory: Callable[..., SimProcess], seed_dir: Path
) -> None:
    fresh = sim_factory("--agents", "2")  # its own simulator: this test changes the seed
    documented = seed_user_data(seed_dir, "seed_000_sms.txt", "smsession")
    async with await session() as http:
        agent = Agent(http, fresh, "agent1")
        cometd = await LongPoll.start(agent, "/v2/me/smssessions")
        status, answer = await agent.post(f"/api/v2/me/smsessions/{SEED_SMS_ID}", SEED_REQUEST)
        assert (status, answer) == (200, {"statusCode": 0})
        message, _ = await cometd.notification(SEED_SMS_ID)
    assert message["channel"] == "/v2/me/smssessions"
    data = message["data"]
    assert data["messageType"] == "SMSsessionStateChangeMessage"
    assert data["notificationType"] == "PropertiesUpdated"
    assert isinstance(data["referenceId"], int)
    user_data = data["smssession"]["userData"]
    assert user_data["UserData1"] == 987654321 and type(user_data["UserData1"]) is int
    assert user_data["UserData2"] == "DATAUPDATE-@123"
    assert len(user_data) == 32
    assert user_data == documented


@pytest.mark.asyncio
async def test_voice_attach_of_an_existing_key_duplicates_it(sim: SimProcess) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent2")
        path, ixn = await agent.first("voice")
        assert ixn["userData"]["Subject"] != "Attached twice"
        cometd = await LongPoll.start(agent)
        doc = {"operationName": "AttachUserData", "userData": {"Subject": "Attached twice"}}
        status, answer = await agent.post(path, doc)
        assert (status, answer) == (200, {"statusCode": 0})
        message, raw = await cometd.notification(ixn["id"])
    assert raw.count('"Subject"') == 2, raw
    assert message["data"]["notificationType"] == "AttachedDataChanged"
    assert "referenceId" not in message["data"], "voice notifications carry no referenceId"
    # the duplicated pair is on the wire: read the answer as pairs, in order
    answer = json.loads(raw, object_pairs_hook=lambda kv: kv)
    call = next(
        dict(dict(m)["data"])["call"] for m in answer if dict(m).get("channel") == "/v2/me/calls"
    )
    user_pairs = dict(call)["userData"]
    subject_values = [v for k, v in user_pairs if k == "Subject"]
    assert subject_values == [ixn["userData"]["Subject"], "Attached twice"]


@pytest.mark.asyncio
async def test_voice_delete_user_data_without_keys_removes_the_user_data_field(
    sim: SimProcess,
) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent3")
        path, ixn = await agent.first("voice")
        assert ixn["userData"], "the generated call starts with user data"
        cometd = await LongPoll.start(agent)
        status, answer = await agent.post(path, {"operationName": "DeleteUserData"})
        assert (status, answer) == (200, {"statusCode": 0})
        message, _ = await cometd.notification(ixn["id"])
        assert message["data"]["notificationType"] == "AttachedDataChanged"
        assert "userData" not in message["data"]["call"], message
        assert await agent.user_data(path, "voice") is None


@pytest.mark.asyncio
async def test_voice_delete_user_data_pair(sim: SimProcess) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent4")
        path, ixn = await agent.first("voice")
        before = ixn["userData"]
        assert "ServiceType" in before
        cometd = await LongPoll.start(agent)
        doc = {"operationName": "DeleteUserDataPair", "key": "ServiceType"}
        status, answer = await agent.post(path, doc)
        assert (status, answer) == (200, {"statusCode": 0})
        message, _ = await cometd.notification(ixn["id"])
    expected = {k: v for k, v in before.items() if k != "ServiceType"}
    assert message["data"]["call"]["userData"] == expected


@pytest.mark.asyncio
async def test_chat_delete_user_data_with_keys(sim: SimProcess) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent5")
        path, ixn = await agent.first("chat")
        before = ixn["userData"]
        cometd = await LongPoll.start(agent)
        doc = {"operationName": "DeleteUserData", "keys": ["Subject", "ServiceType", "Absent"]}
        status, answer = await agent.post(path, doc)
        assert (status, answer) == (200, {"statusCode": 0})
        message, _ = await cometd.notification(ixn["id"])
        after = {k: v for k, v in before.items() if k not in ("Subject", "ServiceType")}
        assert message["channel"] == "/v2/me/chats"
        assert message["data"]["notificationType"] == "PropertiesUpdated"
        assert message["data"]["chat"]["userData"] == after
        assert await agent.user_data(path, "chat") == after


@pytest.mark.asyncio
async def test_im_delete_user_data_with_one_key(sim: SimProcess) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent6")
        path, ixn = await agent.first("im")
        before = ixn["userData"]
        cometd = await LongPoll.start(agent)
        status, answer = await agent.post(
            path, {"operationName": "DeleteUserData", "key": "Subject"}
        )
        assert (status, answer) == (200, {"statusCode": 0})
        message, _ = await cometd.notification(ixn["id"])
    assert message["channel"] == "/v2/me/im-sessions"
    assert message["data"]["messageType"] == "IMSessionStateChangeMessage"
    assert message["data"]["notificationType"] == "AttachedDataChanged"
    assert message["data"]["imSession"]["userData"] == {
        k: v for k, v in before.items() if k != "Subject"
    }


@pytest.mark.asyncio
async def test_update_overwrites_and_adds_with_types_kept(sim: SimProcess) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent6")
        path, ixn = await agent.first("email")
        cometd = await LongPoll.start(agent)
        written = {"ServiceObjective": "30", "Flag": True, "Ratio": 0.25, "None": None, "L": [1]}
        status, _ = await agent.post(path, {"operationName": "UpdateUserData", "userData": written})
        assert status == 200
        message, _ = await cometd.notification(ixn["id"])
    user_data = message["data"]["email"]["userData"]
    assert user_data == {**ixn["userData"], **written}
    assert type(user_data["ServiceObjective"]) is str  # "30" stays text
    assert list(user_data)[: len(ixn["userData"])] == list(ixn["userData"])


@pytest.mark.asyncio
async def test_reference_id_in_the_answer_exactly_for_workitem_openmedia_and_twitter(
    sim: SimProcess,
) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent7")
        cometd = await LongPoll.start(agent)
        for media, (_, key) in COLLECTIONS.items():
            path, ixn = await agent.first(media)
            doc = {"operationName": "UpdateUserData", "userData": {"Probe": media}}
            status, answer = await agent.post(path, doc)
            assert status == 200 and answer["statusCode"] == 0, (media, answer)
            assert ("referenceId" in answer) == (media in REFERENCE_IN_ANSWER), (media, answer)
            message, _ = await cometd.notification(ixn["id"])
            data = message["data"]
            assert data[key]["userData"]["Probe"] == media
            if media in REFERENCE_IN_ANSWER:
                assert isinstance(answer["referenceId"], int)
                assert data["referenceId"] == answer["referenceId"], media
            elif media == "voice":
                assert "referenceId" not in data
            else:
                assert isinstance(data["referenceId"], int), media


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("spelling", "media"),
    [("smsessions", "sms"), ("facebooksession", "facebook"), ("tweets", "twitter")],
)
async def test_operations_accept_every_collection_spelling(
    sim: SimProcess, spelling: str, media: str
) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent8")
        _, ixn = await agent.first(media)
        cometd = await LongPoll.start(agent)
        doc = {"operationName": "UpdateUserData", "userData": {"Spelling": spelling}}
        status, answer = await agent.post(f"/api/v2/me/{spelling}/{ixn['id']}", doc)
        assert (status, answer["statusCode"]) == (200, 0), answer
        message, _ = await cometd.notification(ixn["id"])
        assert message["data"][COLLECTIONS[media][1]]["userData"]["Spelling"] == spelling


@pytest.mark.asyncio
async def test_notifications_of_one_interaction_arrive_in_request_order(
    sim_factory: Callable[..., SimProcess],
) -> None:
    jittery = sim_factory("--jitter", "0.3")  # later options win over the fixture's defaults
    async with await session() as http:
        agent = Agent(http, jittery, "agent2")
        path, ixn = await agent.first("chat")
        cometd = await LongPoll.start(agent)
        for n in range(8):
            doc = {"operationName": "UpdateUserData", "userData": {"Step": n}}
            assert (await agent.post(path, doc))[0] == 200
        received = [(await cometd.notification(ixn["id"]))[0]["data"] for _ in range(8)]
        current = await agent.user_data(path, "chat")
    steps = [d["chat"]["userData"]["Step"] for d in received]
    assert current is not None and current["Step"] == 7
    assert received[-1]["chat"]["userData"] == current, f"arrival order of steps: {steps}"
    assert steps == list(range(8))


# ---- errors --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_errors_have_gws_status_codes_and_change_nothing(sim: SimProcess) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent8")
        path, ixn = await agent.first("chat")
        update = {"operationName": "UpdateUserData", "userData": {"a": 1}}
        cases = [
            ("/api/v2/me/chats/NOSUCHID", update, 404, 6),
            (path, {"operationName": "UpdateUserData"}, 400, 1),  # userData missing
            (path, {"operationName": "AttachUserData", "userData": "not an object"}, 400, 1),
            (path, b'{"operationName": "UpdateUserData", "userData": {', 400, 1),  # unreadable
            (path, b"\xff\xfe not json", 400, 1),
            (path, {"operationName": "DeleteUserData"}, 400, 1),  # multimedia needs keys
        ]
        for target, doc, http_status, code in cases:
            status, answer = await agent.post(target, doc)
            assert (status, answer.get("statusCode")) == (http_status, code), (doc, answer)
            assert isinstance(answer.get("statusMessage"), str) and answer["statusMessage"]
            assert "referenceId" not in answer
        assert await agent.user_data(path, "chat") == ixn["userData"]


@pytest.mark.asyncio
async def test_interaction_of_another_agent_is_not_found(sim: SimProcess) -> None:
    async with await session() as http:
        path, ixn = await Agent(http, sim, "agent9").first("workitem")
        status, answer = await Agent(http, sim, "agent8").post(
            path, {"operationName": "UpdateUserData", "userData": {"x": 1}}
        )
        assert (status, answer["statusCode"]) == (404, 6)


# ---- faults and shared interactions -------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("media", ["chat", "workitem", "voice", "im"])
async def test_faults_send_error_notifications_and_change_nothing(
    sim_factory: Callable[..., SimProcess], media: str
) -> None:
    faulty = sim_factory("--faults", "1")
    async with await session() as http:
        agent = Agent(http, faulty, "agent1")
        path, ixn = await agent.first(media)
        cometd = await LongPoll.start(agent)
        doc = {"operationName": "UpdateUserData", "userData": {"Subject": "never stored"}}
        status, answer = await agent.post(path, doc)
        assert (status, answer["statusCode"]) == (200, 0), answer
        message, _ = await cometd.notification(ixn["id"])
        data = message["data"]
        if media == "voice":
            assert data["messageType"] == "ErrorMessage", data
        else:
            assert data["notificationType"] == "Error", data
            obj = data[COLLECTIONS[media][1]]
            assert obj["userData"] == ixn["userData"]
        assert isinstance(data.get("errorMessage"), str) and data["errorMessage"]
        if media in REFERENCE_IN_ANSWER:
            assert data["referenceId"] == answer["referenceId"]
        assert await agent.user_data(path, media) == ixn["userData"]


@pytest.mark.asyncio
async def test_shared_chat_notifies_both_agents(sim_factory: Callable[..., SimProcess]) -> None:
    shared_sim = sim_factory("--shared", "1")
    async with await session() as http:
        owner = Agent(http, shared_sim, "agent1")
        shared = [
            i for i in await owner.interactions("chat") if len(i.get("participants", [])) == 2
        ]
        assert len(shared) == 1, "--shared 1 makes one chat shared by two agents"
        ixn = shared[0]
        names = [p["nickname"] for p in ixn["participants"]]
        assert "agent1" in names
        partner = Agent(http, shared_sim, next(n for n in names if n != "agent1"))
        assert ixn["id"] in {i["id"] for i in await partner.interactions("chat")}
        bystander = Agent(http, shared_sim, next(a for a in ("agent2", "agent3") if a not in names))
        clients = [await LongPoll.start(a) for a in (owner, partner, bystander)]
        doc = {"operationName": "UpdateUserData", "userData": {"Shared": "yes"}}
        status, _ = await owner.post(f"/api/v2/me/chats/{ixn['id']}", doc)
        assert status == 200
        got = [await c.notification(ixn["id"]) for c in clients[:2]]
        for message, _ in got:
            assert message["data"]["chat"]["userData"]["Shared"] == "yes"
        assert got[0][0]["data"]["referenceId"] == got[1][0]["data"]["referenceId"]
        replies, _, _ = await clients[2].connect(300)
        assert [r for r in replies if r["channel"] == "/v2/me/chats"] == [], "not the bystander's"


# ---- CometD ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unknown_client_id_is_told_to_handshake(sim: SimProcess) -> None:
    async with await session() as http:
        client = LongPoll(Agent(http, sim, "agent10"))
        client.client_id = "not-a-client-id"
        replies, _, took = await client.connect(5000)
        reply = meta(replies, "/meta/connect")
        assert reply["successful"] is False
        assert reply["advice"]["reconnect"] == "handshake"
        assert reply["id"] == str(client.next_id), "meta answers echo the request id"
        assert took < 2.0, "an unknown client is answered at once"


@pytest.mark.asyncio
async def test_handshake_answer(sim: SimProcess) -> None:
    async with await session() as http:
        client = LongPoll(Agent(http, sim, "agent10"))
        reply = await client.handshake()
        assert reply["id"] == "1"
        assert isinstance(reply["clientId"], str) and reply["clientId"]
        assert {"long-polling", "websocket"} <= set(reply["supportedConnectionTypes"])
        assert reply["advice"]["reconnect"] == "retry"
        second = LongPoll(client.agent)
        assert (await second.handshake())["clientId"] != reply["clientId"]


@pytest.mark.asyncio
async def test_connect_with_timeout_zero_returns_at_once(sim: SimProcess) -> None:
    async with await session() as http:
        client = await LongPoll.start(Agent(http, sim, "agent10"))
        replies, _, took = await client.connect(0)
        assert meta(replies, "/meta/connect")["successful"] is True
        assert took < 1.0, f"connect with advice timeout 0 took {took:.2f} s"
        # without data to deliver, a connect is held for the timeout it asked for
        replies, _, took = await client.connect(800)
        assert meta(replies, "/meta/connect")["successful"] is True
        assert took >= 0.7, f"connect with advice timeout 800 ms came back after {took:.2f} s"


@pytest.mark.asyncio
async def test_several_notifications_come_batched_in_one_connect_answer(sim: SimProcess) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent9")
        client = await LongPoll.start(agent)
        probe = await LongPoll.start(agent)  # the same agent's other client gets them all too
        targets = {
            media: await agent.first(media) for media in ("chat", "email", "workitem", "sms")
        }
        for n, (path, _) in enumerate(targets.values()):
            doc = {"operationName": "UpdateUserData", "userData": {"Batch": n}}
            status, _ = await agent.post(path, doc)
            assert status == 200
        for _, ixn in targets.values():  # once the probe has one, it waits for `client` too
            await probe.notification(ixn["id"])
        replies, raw, took = await client.connect(10_000)
        assert meta(replies, "/meta/connect")["successful"] is True
        delivered = [interaction_of(r["data"]) for r in replies if "data" in r]
        assert sorted(delivered) == sorted(ixn["id"] for _, ixn in targets.values()), raw
        assert took < 2.0, f"queued messages must release the held connect ({took:.2f} s)"


@pytest.mark.asyncio
async def test_notification_only_reaches_matching_subscriptions(sim: SimProcess) -> None:
    async with await session() as http:
        agent = Agent(http, sim, "agent10")
        chats_only = await LongPoll.start(agent, "/v2/me/chats")
        everything = await LongPoll.start(agent, "/v2/me/*")
        path, ixn = await agent.first("email")
        status, _ = await agent.post(
            path, {"operationName": "UpdateUserData", "userData": {"a": 1}}
        )
        assert status == 200
        message, _ = await everything.notification(ixn["id"])
        assert message["channel"] == "/v2/me/emails"
        replies, _, _ = await chats_only.connect(300)
        assert [r for r in replies if "data" in r] == []


# ---- where it listens --------------------------------------------------------------------------


def _listening(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(raw)))
    return found


def test_simulator_binds_only_to_loopback(sim: SimProcess) -> None:
    assert sim.host == "127.0.0.1"
    assert _listening(sim.port) == {"127.0.0.1"}


def test_simulator_binds_to_loopback_by_default() -> None:
    assert build_parser().parse_args(["sim"]).host == "127.0.0.1"
