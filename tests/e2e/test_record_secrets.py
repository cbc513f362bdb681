"""What a deployment's clients send (a bearer token, an API key, stickiness cookies, a CSRF token
under the header name GWS announced, an access token in the URL) and what GWS answers (a
stickiness Set-Cookie, the CSRF token) never reach the real `gwsproxy record`'s capture in
clear; the capture is private (0600)."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from gwsproxy.capture.reader import CaptureReader

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

BEARER = "eyJhbGciOi.LIVE-BEARER-SECRET.sig"
API_KEY = "LIVE-APIKEY-SECRET"
AWSELB = "LIVE-AWSELB-SECRET"
JSESSION = "LIVE-JSESSION-SECRET"
CSRF = "LIVE-CSRF-SECRET"
SET_COOKIE = "LIVE-AWSALB-SECRET"
ACCESS_TOKEN = "LIVE-QUERY-SECRET"
SECRETS = (BEARER, API_KEY, AWSELB, JSESSION, CSRF, SET_COOKIE, ACCESS_TOKEN)


async def _gws(request: web.Request) -> web.Response:
    """A GWS stand-in: it announces its CSRF header and hands out a stickiness cookie."""
    headers = {"X-CSRF-HEADER": "X-Gws-Check", "X-CSRF-TOKEN": CSRF}
    headers["Set-Cookie"] = f"AWSALB={SET_COOKIE}; Path=/"
    return web.json_response({"statusCode": 0}, headers=headers)


@pytest_asyncio.fixture
async def gws() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _gws)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_deployment_secrets_never_reach_a_live_capture_in_clear(
    procs, tmp_path: Path, gws: str
) -> None:
    capture = tmp_path / "live.gwscap"
    record, port = procs.record(gws, capture)
    base = f"http://127.0.0.1:{port}/api/v2"
    sent = {
        "Authorization": f"Bearer {BEARER}",
        "x-api-key": API_KEY,
        "Cookie": f"AWSELB={AWSELB}; JSESSIONID={JSESSION}",
    }
    update = {"operationName": "UpdateUserData", "userData": {"K": "1"}}
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{base}/me", headers=sent) as answer:
            assert answer.status == 200
            token = answer.headers["X-CSRF-TOKEN"]
        url = f"{base}/me/chats/CH1?access_token={ACCESS_TOKEN}"
        async with client.post(url, json=update, headers={**sent, "X-Gws-Check": token}) as a:
            assert a.status == 200
    assert record.signal() == 0, record.describe()

    assert stat.S_IMODE(os.stat(capture).st_mode) == 0o600
    with CaptureReader(str(capture)) as reader:
        records = [(e.summary, reader.body(e)) for e in reader.index()]
    (pair,) = [body for s, body in records if s.get("interaction_id") == "CH1"]
    request, answered = pair["request"], dict(pair["response"]["headers"])
    headers = dict(request["headers"])
    for name in ("Authorization", "x-api-key", "Cookie", "X-Gws-Check"):
        assert headers[name].startswith("<redacted "), name
    for name in ("Set-Cookie", "X-CSRF-TOKEN"):
        assert answered[name].startswith("<redacted "), name
    assert answered["X-CSRF-HEADER"] == "X-Gws-Check"  # a header's name, kept
    assert request["path"].startswith("/api/v2/me/chats/CH1?access_token=redacted-")
    for blob in (capture.read_bytes(), repr(records).encode()):  # as grep sees it, decompressed
        for secret in SECRETS:
            assert secret.encode() not in blob, f"{secret} reached the capture in clear"
