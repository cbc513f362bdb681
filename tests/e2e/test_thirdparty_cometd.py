"""A third-party CometD client (aiocometd-ng from PyPI, not our code) against the simulator.

It handshakes, subscribes and receives the notifications that UpdateUserData requests cause,
over long polling and over WebSocket, so our Bayeux server is checked by code nobody here wrote.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import aiohttp
import pytest
from aiocometd_auth import BasicAuth
from aiocometd_ng import Client, ConnectionType

from gwsproxy import gws

PASSWORD = "password"
RECEIVE_TIMEOUT = 5.0
USER_DATA = {
    "UserData1": 987654321,
    "UserData2": "DATAUPDATE-@123",
    "Flag": True,
    "Ratio": 0.5,
    "Nothing": None,
    "List": ["a", 1],
}


class SimProcess(Protocol):
    """The `sim` fixture of tests/conftest.py: a running simulator subprocess."""

    url: str


def basic(user: str) -> str:
    return gws.basic_authorization(user, PASSWORD)


async def update(
    http: aiohttp.ClientSession, sim: SimProcess, user: str, path: str, user_data: dict[str, Any]
) -> dict[str, Any]:
    body = json.dumps({"operationName": "UpdateUserData", "userData": user_data})
    headers = {"Authorization": basic(user), "Content-Type": "application/json"}
    async with http.post(sim.url + path, data=body, headers=headers) as r:
        answer = await r.json()
        assert r.status == 200, answer
    return answer


async def first(http: aiohttp.ClientSession, sim: SimProcess, user: str, collection: str) -> str:
    async with http.get(
        f"{sim.url}/api/v2/me/{collection}", headers={"Authorization": basic(user)}
    ) as r:
        doc = await r.json()
        assert r.status == 200, doc
    return doc[collection][0]["id"]


TRANSPORTS = [
    pytest.param(ConnectionType.LONG_POLLING, "agent1", id="long-polling"),
    pytest.param(ConnectionType.WEBSOCKET, "agent2", id="websocket"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("transport", "user"), TRANSPORTS)
async def test_aiocometd_receives_a_workitem_update(
    sim: SimProcess, transport: ConnectionType, user: str
) -> None:
    async with aiohttp.ClientSession() as http:
        workitem = await first(http, sim, user, "workitems")
        # Built inside the running loop: aiocometd-ng takes asyncio.get_event_loop() here.
        client = Client(
            f"{sim.url}/api/v2/notifications", [transport], extensions=[BasicAuth(user)]
        )
        async with client:
            assert client.connection_type == transport, "no silent fallback to another transport"
            await client.subscribe("/v2/me/**")
            answer = await update(http, sim, user, f"/api/v2/me/workitems/{workitem}", USER_DATA)
            assert answer["statusCode"] == 0
            message = await asyncio.wait_for(client.receive(), RECEIVE_TIMEOUT)
    assert message["channel"] == "/v2/me/workitems"
    data = message["data"]
    assert data["messageType"] == "WorkitemStateChangeMessage"
    assert data["notificationType"] == "PropertiesUpdated"
    assert data["referenceId"] == answer["referenceId"]
    assert data["workitem"]["id"] == workitem
    user_data = data["workitem"]["userData"]
    for key, value in USER_DATA.items():
        assert user_data[key] == value, key
        assert type(user_data[key]) is type(value), key


@pytest.mark.asyncio
@pytest.mark.parametrize(("transport", "user"), TRANSPORTS)
async def test_aiocometd_gets_only_its_subscribed_channel(
    sim: SimProcess, transport: ConnectionType, user: str
) -> None:
    async with aiohttp.ClientSession() as http:
        email = await first(http, sim, user, "emails")
        chat = await first(http, sim, user, "chats")
        client = Client(
            f"{sim.url}/api/v2/notifications", [transport], extensions=[BasicAuth(user)]
        )
        async with client:
            await client.subscribe("/v2/me/chats")
            await update(http, sim, user, f"/api/v2/me/emails/{email}", {"Order": 1})
            await update(http, sim, user, f"/api/v2/me/chats/{chat}", {"Order": 2})
            message = await asyncio.wait_for(client.receive(), RECEIVE_TIMEOUT)
            assert message["channel"] == "/v2/me/chats", "the e-mail notification is not ours"
            assert message["data"]["chat"]["id"] == chat
            assert message["data"]["chat"]["userData"]["Order"] == 2
            assert isinstance(message["data"]["referenceId"], int)
            # several notifications in a row all arrive (their order is the simulator's jitter)
            for n in range(3, 6):
                await update(http, sim, user, f"/api/v2/me/chats/{chat}", {"Order": n})
            received = [
                (await asyncio.wait_for(client.receive(), RECEIVE_TIMEOUT))["data"]
                for _ in range(3)
            ]
    assert sorted(d["chat"]["userData"]["Order"] for d in received) == [3, 4, 5]
    assert len({d["referenceId"] for d in received}) == 3
