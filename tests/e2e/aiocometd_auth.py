"""An extension for the third-party CometD client (aiocometd-ng) that logs in to a GWS."""

import base64
from typing import Any

from aiocometd_ng.extensions import Extension


class BasicAuth(Extension):
    """Basic credentials on every long-poll POST and the WebSocket upgrade; an immediate answer
    to the first /meta/connect (as the CometD JavaScript client asks), or the server would hold
    it for its whole timeout before `Client.open()` returns."""

    def __init__(self, user: str, password: str = "password") -> None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.authorization = f"Basic {token}"
        self.first_connect_sent = False

    async def outgoing(self, payload: list[dict[str, Any]], headers: dict[str, str]) -> None:
        headers["Authorization"] = self.authorization
        for message in payload:
            if message.get("channel") == "/meta/connect" and not self.first_connect_sent:
                message["advice"] = {"timeout": 0}
                self.first_connect_sent = True

    async def incoming(
        self, payload: list[dict[str, Any]], headers: dict[str, str] | None = None
    ) -> None:
        pass
