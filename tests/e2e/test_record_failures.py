"""A request the real `gwsproxy record` could not forward to GWS (a closed port, a certificate it
does not trust, a name that does not resolve) closes as `failed` with mitmproxy's reason: in
`export`, `info`, `check` and on the recorder's live line. The 502 mitmproxy answers the client
itself is not GWS's answer and is not recorded as one."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from gwsproxy import tls

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

UPDATE = {"operationName": "UpdateUserData", "userData": {"Disposition": "sale"}}


async def _answer(_: web.Request) -> web.Response:
    return web.json_response({"statusCode": 0})


@pytest_asyncio.fixture
async def https_gws(tmp_path: Path) -> AsyncIterator[str]:
    """A GWS stand-in over HTTPS with a throwaway CA the recorder was not told to trust."""
    cert = tls.throwaway(tmp_path / "tls")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_context(cert))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("upstream", "reason"),
    [
        ("closed port", "Connect call failed"),
        ("untrusted certificate", "Certificate verify failed: self-signed certificate"),
        ("unresolvable name", "name"),
    ],
)
async def test_a_request_that_never_reached_gws_is_failed_with_why(
    procs, tmp_path: Path, https_gws: str, upstream: str, reason: str
) -> None:
    url = {
        "closed port": f"http://127.0.0.1:{procs.free_port()}",
        "untrusted certificate": https_gws,
        "unresolvable name": "http://gws.no-such-host.invalid:8090",
    }[upstream]
    capture = tmp_path / "refused.gwscap"
    record, port = procs.record(url, capture)
    async with (
        aiohttp.ClientSession() as client,
        client.post(f"http://127.0.0.1:{port}/api/v2/me/chats/CH1", json=UPDATE) as answer,
    ):
        assert answer.status == 502  # mitmproxy's own answer, not GWS's
        assert reason.lower() in (await answer.text()).lower()
    assert record.signal() == 0, record.describe()
    # The recorder's summary (its live line, on a terminal): pairs 1 ... failed 1
    assert "pairs 1  open 0  unmatched 0  failed 1" in record.stderr(), record.describe()

    exported = procs.run(procs.cli("export", str(capture)))
    assert exported.returncode == 0, exported.stderr
    (pair,) = [json.loads(line) for line in exported.stdout.splitlines()]
    assert (pair["status"], pair["verdict"], pair["http_status"]) == ("failed", "failed", None)
    assert reason.lower() in pair["error"].lower()

    info = procs.run(procs.cli("info", str(capture)), env={**os.environ, "COLUMNS": "200"})
    assert info.returncode == 0, info.stderr
    (row,) = [line for line in info.stdout.splitlines() if "never reached GWS" in line]
    assert "│ 1: " in row and reason.lower() in row.lower()

    check = procs.run(procs.cli("check", str(capture)))
    assert check.returncode == 1
    assert check.stdout.startswith("FAIL pair 1 UpdateUserData on chat CH1: failed (")
