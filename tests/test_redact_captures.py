"""Deployment secrets (bearer tokens, API keys, stickiness cookies, CSRF tokens under any header
name, an access token in a URL) never reach a capture in clear, whether the traffic comes from
a mitmproxy dump or a HAR file (mitmproxy's, or a browser's with cookie lists and initiators);
the capture is private (0600). The live recorder: tests/e2e/test_record_failures.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from flow_builders import gws_flow
from mitmproxy import io
from mitmproxy.addons.savehar import SaveHar

from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.record.command import import_file

T0 = 1_790_000_000.0
BEARER = "eyJhbGciOi.BEARER-SECRET.sig"
API_KEY = "APIKEY-SECRET-2"
JSESSION = "JSESS-SECRET-3"
AWSELB = "AWSELB-SECRET-4"
AWSALB = "AWSALB-SECRET-5"
CSRF = "CSRF-SECRET-6"
ANNOUNCED = "ANNOUNCED-SECRET-7"  # under the header name GWS announced in X-CSRF-HEADER
SET_COOKIE = "SETCOOKIE-SECRET-8"
ACCESS_TOKEN = "QUERY-SECRET-9"
SECRETS = (BEARER, API_KEY, JSESSION, AWSELB, AWSALB, CSRF, ANNOUNCED, SET_COOKIE, ACCESS_TOKEN)
CHAT = f"/api/v2/me/chats/C1?access_token={ACCESS_TOKEN}"


def _flow(method: str, path: str, body: bytes, answer: bytes, t: float, *headers: tuple[str, str]):
    return gws_flow(
        method,
        path,
        body,
        answer,
        sent=t,
        answered=t + 0.003,
        headers=[
            (b"Authorization", f"Bearer {BEARER}".encode()),
            (b"x-api-key", API_KEY.encode()),
            (b"Cookie", f"JSESSIONID={JSESSION}; AWSELB={AWSELB}; AWSALB={AWSALB}".encode()),
            (b"X-CSRF-TOKEN", CSRF.encode()),
            (b"Content-Type", b"application/json"),
            *((k.encode(), v.encode()) for k, v in headers),
        ],
        answer_headers=[
            (b"Content-Type", b"application/json"),
            (b"Set-Cookie", f"AWSALB={SET_COOKIE}; Path=/".encode()),
            (b"X-CSRF-HEADER", b"X-Gws-Check"),
            (b"X-CSRF-TOKEN", CSRF.encode()),
        ],
    )


def _flows() -> list:
    note = {
        "channel": "/v2/me/chats",
        "data": {
            "messageType": "ChatStateChangeMessage",
            "notificationType": "PropertiesUpdated",
            "chat": {"id": "C1", "userData": {"K": 1}},
        },
    }
    update = json.dumps({"operationName": "UpdateUserData", "userData": {"K": 1}}).encode()
    return [
        _flow("GET", "/api/v2/me", b"", b'{"statusCode": 0}', T0),  # announces X-Gws-Check
        _flow("POST", CHAT, update, b'{"statusCode": 0}', T0 + 1, ("X-Gws-Check", ANNOUNCED)),
        _flow(
            "POST",
            f"/api/v2/notifications?access_token={ACCESS_TOKEN}",
            b"[]",
            json.dumps([note]).encode(),
            T0 + 1.01,
        ),
    ]


def _assert_private_and_clean(capture: Path) -> None:
    assert stat.S_IMODE(os.stat(capture).st_mode) == 0o600
    decoded = []
    with CaptureReader(str(capture)) as reader:
        kinds = [entry.kind for entry in reader.index()]
        for entry in reader.index():
            decoded.append(repr((entry.summary, reader.body(entry))))
        decoded.append(repr(reader.header))
    assert Kind.PAIR in kinds  # the traffic was recorded, not dropped
    records = "".join(decoded).encode()
    assert b"<redacted " in records and b"access_token=redacted-" in records
    for blob in (capture.read_bytes(), records):  # the file as grep sees it, and decompressed
        for secret in SECRETS:
            assert secret.encode() not in blob, f"{secret} reached the capture in clear"


def test_a_mitmproxy_dump_leaves_no_deployment_secret_in_clear(tmp_path: Path) -> None:
    dump = tmp_path / "flows.mitm"
    with open(dump, "wb") as f:
        writer = io.FlowWriter(f)
        for flow in _flows():
            writer.add(flow)
    capture = tmp_path / "dump.gwscap"
    import_file(str(dump), str(capture))
    _assert_private_and_clean(capture)


@pytest.mark.parametrize("shape", ["mitmproxy", "browser"])
def test_a_har_leaves_no_deployment_secret_in_clear(tmp_path: Path, shape: str) -> None:
    doc = SaveHar().make_har(_flows())
    if shape == "browser":  # what browsers add: cookie lists, query lists, the initiator
        doc["log"]["creator"] = {"name": "WebInspector", "version": "537.36"}
        for entry in doc["log"]["entries"]:
            url = entry["request"]["url"]
            # Milliseconds, as a browser measures them: the announcing GET ends before the POST
            # that uses its token starts (a client cannot send a token it has not got yet).
            entry["time"], entry["timings"] = 3, {"send": 1, "wait": 1, "receive": 1}
            entry["_initiator"] = {"type": "script", "url": url}
            entry["request"]["cookies"] = [
                {"name": "JSESSIONID", "value": JSESSION},
                {"name": "AWSELB", "value": AWSELB},
            ]
            entry["request"]["queryString"] = [{"name": "access_token", "value": ACCESS_TOKEN}]
            entry["response"]["cookies"] = [{"name": "AWSALB", "value": SET_COOKIE}]
    har = tmp_path / "secrets.har"
    har.write_text(json.dumps(doc))
    capture = tmp_path / "har.gwscap"
    import_file(str(har), str(capture))
    _assert_private_and_clean(capture)
