"""`gwsproxy sim` and `gwsproxy serve` over HTTPS (`--tls`, `--certfile`), in this process:
a client that trusts the printed CA logs in, reads `uri` fields that say https, and gets its
notification over CometD on both transports (wss: for the WebSocket); one that does not trust it
is refused."""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from pathlib import Path

import aiohttp
import pytest

from gwsproxy import gws, tls
from gwsproxy.bayeux.client import CometdClient
from gwsproxy.cli import _private_folder, _served_cert, build_parser
from gwsproxy.errors import GwsProxyError
from gwsproxy.sim.server import SimConfig, start_simulator

AGENT = {"Authorization": gws.basic_authorization("agent1", "password")}


def _http(ca: Path | None) -> aiohttp.ClientSession:
    context = tls.client_context([str(ca)] if ca else [])
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        timeout=aiohttp.ClientTimeout(total=10),
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_the_simulator_over_https_notifies_over_cometd(
    tmp_path: Path, transport: str
) -> None:
    cert = tls.throwaway(tmp_path)
    running = await start_simulator(SimConfig(port=0, agents=1, delay=0.0, jitter=0.0, tls=cert))
    try:
        assert running.url.startswith("https://127.0.0.1:")
        async with _http(cert.ca) as http:
            async with http.get(running.url + "/api/v2/me/chats", headers=AGENT) as r:
                assert r.status == 200, await r.text()
                chat = (await r.json())["chats"][0]
            assert chat["uri"].startswith(running.url + "/api/v2/"), chat["uri"]
            url = running.url + "/api/v2/notifications"
            async with CometdClient(http, url, transport=transport, headers=AGENT) as cometd:
                await cometd.handshake()
                await cometd.subscribe("/v2/me/**")
                await cometd.start()
                body = {"operationName": "UpdateUserData", "userData": {"Tls": "yes"}}
                path = f"/api/v2/me/chats/{chat['id']}"
                async with http.post(running.url + path, json=body, headers=AGENT) as r:
                    assert r.status == 200, await r.text()

                async def note() -> dict:
                    async for message in cometd.messages():
                        if message.get("channel", "").startswith("/v2/me/"):
                            return message
                    raise AssertionError("CometD ended")

                message = await asyncio.wait_for(note(), 10)
        assert "Tls" in json.dumps(message)
    finally:
        await running.stop()


@pytest.mark.asyncio
async def test_a_client_that_does_not_trust_the_ca_is_refused(tmp_path: Path) -> None:
    cert = tls.throwaway(tmp_path)
    running = await start_simulator(SimConfig(port=0, agents=1, tls=cert))
    try:
        async with _http(None) as http:
            with pytest.raises(aiohttp.ClientConnectorCertificateError) as refused:
                await http.get(running.url + "/api/v2/me", headers=AGENT)
        assert isinstance(refused.value.certificate_error, ssl.SSLCertVerificationError)
    finally:
        await running.stop()


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_tls_makes_a_throwaway_certificate_in_a_private_folder_removed_afterwards() -> None:
    with _private_folder("sim") as private:
        cert = _served_cert(_args("sim", "--tls"), private)
        assert cert is not None and cert.ca is not None
        folder = cert.ca.parent
        assert folder == private
        assert cert.ca.exists() and cert.keyfile.stat().st_mode & 0o077 == 0
        assert folder.stat().st_mode & 0o077 == 0  # a fresh private folder
        told = tls.told(cert)
        assert f"trust its CA: {cert.ca}" in told and cert.sha256 in told
        assert "--upstream-ca" in told and "--cacert" in told
    assert not folder.exists()
    assert _served_cert(_args("serve", "x.gwscap"), folder) is None


def test_the_throwaway_certificate_names_the_host_served_on(tmp_path: Path) -> None:
    from cryptography import x509

    cert = _served_cert(_args("sim", "--tls", "--host", "gws.test"), tmp_path)
    assert cert is not None
    made = x509.load_pem_x509_certificate(cert.certfile.read_bytes())
    alt = made.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"gws.test", "localhost"} <= set(alt.get_values_for_type(x509.DNSName))


def test_certfile_uses_the_given_certificate_and_keyfile(tmp_path: Path) -> None:
    made = tls.throwaway(tmp_path)
    args = _args(
        "serve", "x.gwscap", "--certfile", str(made.certfile), "--keyfile", str(made.keyfile)
    )
    cert = _served_cert(args, tmp_path)
    assert cert is not None and cert.ca is None
    assert cert.sha256 == made.sha256
    assert tls.told(cert) == f"TLS: certificate {made.certfile}  SHA-256 {made.sha256}"


def test_keyfile_alone_or_a_key_that_is_missing_is_a_one_line_error(tmp_path: Path) -> None:
    alone = _args("sim", "--keyfile", "k.pem")
    with pytest.raises(GwsProxyError, match="--keyfile goes with --certfile"):
        _served_cert(alone, tmp_path)
    made = tls.throwaway(tmp_path)
    args = _args("sim", "--certfile", str(made.certfile), "--keyfile", str(tmp_path / "no.pem"))
    with pytest.raises(GwsProxyError, match="cannot serve HTTPS"):
        _served_cert(args, tmp_path)


def test_tls_and_certfile_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _args("sim", "--tls", "--certfile", "c.pem")
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_the_mock_serves_https_and_says_what_to_trust(tmp_path: Path) -> None:
    from gwsproxy.replay.mock import MockConfig, start_mock
    from gwsproxy.testing import examples

    capture = tmp_path / "seed.gwscap"
    examples.seed_capture(examples.SEEDS[0], capture)
    cert = tls.throwaway(tmp_path / "tls")
    running = await start_mock(MockConfig(str(capture), port=0, tls=cert))
    try:
        assert running.url.startswith("https://127.0.0.1:")
        agent = {"Authorization": gws.basic_authorization(examples.AGENT, examples.PASSWORD)}
        async with _http(cert.ca) as http, http.get(running.url + "/api/v2/me", headers=agent) as r:
            assert r.status == 200, await r.text()
    finally:
        await running.stop()
