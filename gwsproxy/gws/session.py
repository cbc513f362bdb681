"""A GWS client session for one agent: Basic or bearer auth, its cookies (JSESSIONID and any
load balancer's stickiness cookie), the CSRF token, and its CometD client.

Shared by the simulated agents and the regression replayer; failures are one-line GwsErrors.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gwsproxy import gws
from gwsproxy.bayeux.client import CometdClient, CometdError
from gwsproxy.errors import GwsProxyError, one_line
from gwsproxy.lenient import Unreadable

SUBSCRIPTION = "/v2/me/**"
CSRF_REFUSED = "csrf token"  # in GWS's 403 "Missing or invalid Csrf token" (any case)

log = logging.getLogger(__name__)


class GwsError(GwsProxyError):
    """Why talking to a GWS failed, in one line."""


@dataclass(frozen=True, slots=True)
class Access:
    """How our clients reach a GWS beyond the user's password: a bearer token (one for every
    user, or one per user), extra headers (e.g. x-api-key) and the TLS context (None: aiohttp's
    default checks)."""

    bearer: str | None = None
    bearers: Mapping[str, str] = field(default_factory=dict)  # user -> token
    headers: tuple[tuple[str, str], ...] = ()
    tls: ssl.SSLContext | None = None

    def authorization(self, user: str, password: str) -> str:
        if self.bearers:
            token = self.bearers.get(user)
            if token is None:
                raise GwsError(f"{user}: the bearer file has no token for this user")
            return f"Bearer {token}"
        if self.bearer is not None:
            return f"Bearer {self.bearer}"
        return gws.basic_authorization(user, password)


def csrf_of(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The CSRF header GWS hands out at login (GET /api/v2/me): (its name, the token)."""
    name = headers.get("X-CSRF-HEADER")
    token = (headers.get(name) if name else None) or headers.get("X-CSRF-TOKEN")
    return (name, token) if name and token else None


def refuses_csrf(raw: bytes, has_token: bool) -> bool:
    """Whether a 403 answer refuses the CSRF token: GWS's "Missing or invalid Csrf token", or
    any refusal (or an unreadable one) while a token is in use."""
    parsed = gws.parse_answer(raw)
    doc = None if isinstance(parsed, Unreadable) else parsed.value
    if not isinstance(doc, dict):
        return has_token
    if CSRF_REFUSED in str(doc.get("statusMessage", "")).lower():
        return True
    return has_token and doc.get("statusCode") != 0


class GwsSession:
    """Log in, keep the cookies and the CSRF token, open CometD; `async with` closes it all."""

    def __init__(
        self,
        base: str,
        user: str,
        password: str,
        *,
        transport: str,
        timeout: float,
        access: Access | None = None,
    ) -> None:
        access = access or Access()
        self.base = base.rstrip("/")
        self.user = user
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.csrf: dict[str, str] = {}
        self.cometd: CometdClient | None = None
        self._transport = transport
        headers = {"Authorization": access.authorization(user, password), **dict(access.headers)}
        self.http = aiohttp.ClientSession(
            headers=headers,
            # unsafe: keep cookies (JSESSIONID, AWSELB) from IP-address hosts such as 127.0.0.1.
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(ssl=access.tls if access.tls is not None else True),
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
        except aiohttp.ClientConnectorCertificateError as exc:
            why = one_line(getattr(exc.certificate_error, "verify_message", None) or exc)
            raise GwsError(
                f"{self.base}: certificate not trusted ({why}): give its CA with --cacert FILE "
                "(or --insecure)"
            ) from None
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
        found = csrf_of(headers)
        if found is not None:
            name, token = found
            if self.cometd is not None:  # its POSTs carry the token too
                for old in self.csrf:
                    self.cometd.headers.pop(old, None)
                self.cometd.headers[name] = token
            self.csrf.clear()
            self.csrf[name] = token

    async def post(
        self, url: str, body: bytes, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        """POST with the CSRF header; the status and the body of the answer. A 403 refusing the
        CSRF token (GWS's "Missing or invalid Csrf token", or any refusal while a token is in
        use) fetches the token again (GET /api/v2/me) and retries once; a second 403 is the
        answer. aiohttp errors are the caller's (see `errors`)."""
        status, raw = await self._post(url, body, content_type)
        if status == 403 and self._refuses_csrf(raw):
            log.info("%s: 403 for the CSRF token at %s: fetching it again", self.user, url)
            try:
                await self.login()
            except GwsError as e:  # the first refusal is the answer
                log.info("%s", e)
                return status, raw
            status, raw = await self._post(url, body, content_type)
        return status, raw

    async def _post(self, url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type, **self.csrf}
        async with self.http.post(
            url, data=body, headers=headers, timeout=self.timeout
        ) as response:
            return response.status, await response.read()

    def _refuses_csrf(self, raw: bytes) -> bool:
        return refuses_csrf(raw, bool(self.csrf))

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
