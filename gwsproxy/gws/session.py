"""A GWS client session for one agent: Basic auth, JSESSIONID, CSRF token, and its CometD client.

Shared by the simulated agents and the regression replayer; failures are one-line GwsErrors.
"""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp

from gwsproxy import gws
from gwsproxy.bayeux.client import CometdClient, CometdError
from gwsproxy.errors import GwsProxyError
from gwsproxy.lenient import Unreadable

SUBSCRIPTION = "/v2/me/**"


class GwsError(GwsProxyError):
    """Why talking to a GWS failed, in one line."""


class GwsSession:
    """Log in, keep the cookies and the CSRF token, open CometD; `async with` closes it all."""

    def __init__(
        self, base: str, user: str, password: str, *, transport: str, timeout: float
    ) -> None:
        self.base = base.rstrip("/")
        self.user = user
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.csrf: dict[str, str] = {}
        self.cometd: CometdClient | None = None
        self._transport = transport
        self.http = aiohttp.ClientSession(
            headers={"Authorization": gws.basic_authorization(user, password)},
            # unsafe: keep cookies (JSESSIONID) from IP-address hosts such as 127.0.0.1 too.
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )

    async def __aenter__(self) -> GwsSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self, subscribe: str = SUBSCRIPTION) -> None:
        """Log in and start CometD; GwsError when the GWS is unreachable or refuses the user."""
        with self.errors():
            await self.login()
        await self.listen(subscribe)

    async def listen(self, subscribe: str = SUBSCRIPTION) -> None:
        """Start CometD (after login, so the CSRF token and cookie go along)."""
        with self.errors():
            url = self.base + "/api/v2/notifications"
            self.cometd = CometdClient(self.http, url, transport=self._transport, headers=self.csrf)
            await self.cometd.handshake()
            await self.cometd.start()
            await self.cometd.subscribe(subscribe)

    @contextlib.contextmanager
    def errors(self):
        """aiohttp and CometD failures as one-line GwsErrors naming the user and the GWS."""
        try:
            yield
        except aiohttp.ClientConnectorError as exc:
            raise GwsError(f"cannot reach {self.base}: {_reason(exc)}") from None
        except TimeoutError:
            wait = f"{self.timeout.total:g} s"
            raise GwsError(f"{self.user}: no answer from {self.base} in {wait}") from None
        except aiohttp.ClientError as exc:
            raise GwsError(f"{self.user}: {self.base} failed: {one_line(exc)}") from None
        except CometdError as exc:
            raise GwsError(f"{self.user}: CometD: {exc}") from None

    async def login(self) -> None:
        url = self.base + "/api/v2/me"
        status, reason, doc, headers = await self.get(url)
        if status >= 400 or not isinstance(doc, dict) or doc.get("statusCode") not in (0, None):
            message = doc.get("statusMessage") if isinstance(doc, dict) else None
            raise GwsError(f"{self.user}: {status} {message or reason} at {url}")
        name = headers.get("X-CSRF-HEADER")
        token = (headers.get(name) if name else None) or headers.get("X-CSRF-TOKEN")
        if name and token:
            self.csrf = {name: token}

    async def get(self, url: str) -> tuple[int, str, Any, Any]:
        """Status, reason, the parsed GWS document (None if unreadable) and the headers."""
        async with self.http.get(url, timeout=self.timeout) as response:
            parsed = gws.parse_answer(await response.read())
            doc = None if isinstance(parsed, Unreadable) else parsed.value
            return response.status, response.reason or "", doc, response.headers

    async def close(self) -> None:
        if self.cometd is not None:
            await self.cometd.close()
            self.cometd = None
        if not self.http.closed:
            await self.http.close()


def _reason(exc: aiohttp.ClientConnectorError) -> str:
    error = exc.os_error
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return one_line(error.strerror or error) if isinstance(error, OSError) else one_line(exc)


def one_line(value: object) -> str:
    text = str(value).strip() or type(value).__name__
    return " ".join(text.split())
