"""Secrets out of captures: headers, Bayeux clientIds and masked user-data values."""

from __future__ import annotations

import json

from gwsproxy import gws
from gwsproxy.redact import DEFAULT_HEADERS, Redactor

SALT = b"0123456789abcdef"

HEADERS = [
    ("Host", "gws.example:8090"),
    ("Authorization", "Basic YWdlbnQxOnBhc3N3b3Jk"),
    ("Cookie", "JSESSIONID=node01abc; BAYEUX_BROWSER=xyz"),
    ("Set-Cookie", "JSESSIONID=node01abc; Path=/; HttpOnly"),
    ("X-CSRF-TOKEN", "6f1e-csrf-token"),
    ("X-CSRF-HEADER", "X-My-Csrf"),
    ("x-my-csrf", "6f1e-csrf-token"),
    ("Content-Type", "application/json"),
]


def _as_dict(fields: list[list[str]]) -> dict[str, str]:
    return {name: value for name, value in fields}


def test_secret_headers_are_replaced() -> None:
    r = Redactor(salt=SALT)
    out = r.header_fields(HEADERS, announced=["X-My-Csrf"])
    assert [name for name, _ in out] == [name for name, _ in HEADERS]  # order and names kept
    got = _as_dict(out)
    for name in ("Authorization", "Cookie", "Set-Cookie", "X-CSRF-TOKEN", "x-my-csrf"):
        assert got[name].startswith("<redacted ") and got[name].endswith(">"), name
    # Not secrets: kept as they are (the X-CSRF-HEADER value is a header name, not a token).
    assert got["Host"] == "gws.example:8090"
    assert got["Content-Type"] == "application/json"
    assert got["X-CSRF-HEADER"] == "X-My-Csrf"
    text = json.dumps(out)
    for secret in ("YWdlbnQxOnBhc3N3b3Jk", "node01abc", "6f1e-csrf-token", "xyz"):
        assert secret not in text


def test_announced_header_only_when_announced() -> None:
    r = Redactor(salt=SALT)
    fields = [("X-Gws-Check", "6f1e-csrf-token")]  # a CSRF header named with no secret word
    assert _as_dict(r.header_fields(fields))["X-Gws-Check"] == "6f1e-csrf-token"
    assert _as_dict(r.header_fields(fields, ["x-gws-check"]))["X-Gws-Check"].startswith("<red")


def test_deployment_headers_are_secrets_by_name_or_by_their_words() -> None:
    """Bearer tokens, API keys, stickiness cookies, CSRF headers named as a deployment likes,
    even before GWS announced them; what only names a header (X-CSRF-HEADER) is kept."""
    r = Redactor(salt=SALT)
    fields = [
        ("Authorization", "Bearer eyJ-bearer-secret"),
        ("x-api-key", "api-key-secret"),
        ("Cookie", "AWSELB=elb-secret; AWSALB=alb-secret; JSESSIONID=js-secret"),
        ("Set-Cookie", "AWSALBCORS=cors-secret; Path=/"),
        ("X-My-Csrf", "csrf-secret-1"),
        ("X_XSRF_TOKEN", "csrf-secret-2"),
        ("X-Auth-Token", "auth-secret"),
        ("X-CSRF-HEADER", "X-My-Csrf"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Accept", "application/json"),
    ]
    got = _as_dict(r.header_fields(fields))
    kept = {"X-CSRF-HEADER", "Sec-WebSocket-Key", "Accept"}
    assert {name for name, value in got.items() if not value.startswith("<redacted ")} == kept
    assert "secret" not in json.dumps(got)
    assert {"x-api-key", "authorization", "cookie", "set-cookie"} <= set(DEFAULT_HEADERS)


def test_secret_url_parameters_are_replaced_the_rest_kept() -> None:
    r = Redactor(salt=SALT)
    assert r.url("/api/v2/me/chats/C1") == "/api/v2/me/chats/C1"
    out = r.url("/api/v2/me;jsessionid=js-secret/chats?access_token=tok-secret&fields=*&api_key=k")
    assert "secret" not in out and "api_key=k" not in out
    assert out.startswith("/api/v2/me;jsessionid=redacted-") and "&fields=*&" in out
    assert r.url("/x?access_token=a") == r.url("/x?access_token=a")  # stable within a recording
    assert r.url("/x?token=&q=1") == "/x?token=&q=1"  # nothing to hide


def test_header_names_match_in_any_case() -> None:
    r = Redactor(headers=["AUTHORIZATION"], salt=SALT)
    out = _as_dict(r.header_fields([("authorization", "Basic x"), ("AuThOrIzAtIoN", "Basic x")]))
    assert all(v.startswith("<redacted") for v in out.values())
    assert set(DEFAULT_HEADERS) >= {"authorization", "cookie", "set-cookie", "x-csrf-token"}


def test_same_secret_same_stand_in_other_salt_other_stand_in() -> None:
    r = Redactor(salt=SALT)
    a = _as_dict(r.header_fields([("Cookie", "JSESSIONID=1")]))["Cookie"]
    b = _as_dict(r.header_fields([("Set-Cookie", "JSESSIONID=1")]))["Set-Cookie"]
    c = _as_dict(r.header_fields([("Cookie", "JSESSIONID=2")]))["Cookie"]
    assert a == b  # the same secret can be followed through a recording
    assert a != c
    assert r.stand_in("secret") == r.stand_in(b"secret")
    other = Redactor(salt=b"another salt....")
    assert other.stand_in("secret") != r.stand_in("secret")
    # Without a salt, each Redactor draws its own: two recordings cannot be joined on hashes.
    assert Redactor().stand_in("secret") != Redactor().stand_in("secret")


def test_scrub_removes_client_ids_from_raw_bytes() -> None:
    r = Redactor(salt=SALT)
    client_id = "31a9xk2b7c0lq5d"
    raw = json.dumps(
        [
            {"channel": "/meta/connect", "clientId": client_id, "successful": True},
            {"channel": "/v2/me/chats", "data": {"note": f"echo {client_id}"}},
        ]
    ).encode()
    out = r.scrub(raw, [client_id, ""])
    assert client_id.encode() not in out
    assert f"redacted-{r.stand_in(client_id)}".encode() in out
    assert json.loads(out)[0]["channel"] == "/meta/connect"  # still JSON
    assert r.scrub(raw, []) == raw


def test_mask_replaces_only_the_chosen_keys_consistently() -> None:
    r = Redactor(mask_keys=["Name", "Phone"], salt=SALT)
    masked = r.mask({"Name": "Ann", "Phone": "+3312345678", "Topic": "billing", "N": 1})
    assert masked is not None
    assert masked["Topic"] == "billing" and masked["N"] == 1
    assert masked["Name"].startswith("masked:") and "Ann" not in masked["Name"]
    assert masked["Phone"].startswith("masked:")
    again = r.mask({"Name": "Ann", "Phone": "+3399999999"})
    assert again is not None
    assert again["Name"] == masked["Name"]  # equal values, equal masks: diffs still work
    assert again["Phone"] != masked["Phone"]  # different values, different masks
    # Types are part of the value: 1 and "1" stay distinguishable after masking.
    typed = r.mask({"Name": 1}), r.mask({"Name": "1"})
    assert typed[0] != typed[1]
    assert r.mask(None) is None
    assert Redactor(salt=SALT).mask({"Name": "Ann"}) == {"Name": "Ann"}  # nothing chosen


def test_mask_document_masks_user_data_inside_a_notification() -> None:
    r = Redactor(mask_keys=["Email"], salt=SALT)
    message = {
        "channel": "/v2/me/chats",
        "data": {
            "messageType": "ChatStateChangeMessage",
            "notificationType": "PropertiesUpdated",
            "referenceId": 85,
            "chat": {
                "id": "0000Wa9CAM6W00J",
                "Email": "not user data: kept",
                "userData": {"Email": "ann@example.com", "Topic": "billing"},
                "participants": [{"userData": {"Email": "bob@example.com"}}],
            },
        },
    }
    out = r.mask_document(message)
    chat = out["data"]["chat"]
    assert chat["userData"]["Topic"] == "billing"
    assert chat["userData"]["Email"] == r.mask({"Email": "ann@example.com"})["Email"]
    assert chat["participants"][0]["userData"]["Email"].startswith("masked:")
    assert chat["Email"] == "not user data: kept"
    assert "ann@example.com" not in json.dumps(out) and "bob@example.com" not in json.dumps(out)
    assert message["data"]["chat"]["userData"]["Email"] == "ann@example.com"  # input untouched
    # The masked document is still a notification the parser reads, with the masked value.
    parsed = gws.parse_notification(out)
    assert parsed is not None and parsed.reference_id == 85
    assert parsed.user_data == {"Email": chat["userData"]["Email"], "Topic": "billing"}
    assert Redactor(salt=SALT).mask_document(message) is message


def test_a_url_in_a_header_keeps_no_secret_parameter() -> None:
    r = Redactor(salt=SALT)
    page = "https://gws/desktop/agent.html?user=agent1&password=pw-secret&access_token=tok-secret"
    out = _as_dict(
        r.header_fields([("Referer", page), ("Location", page), ("Origin", "https://gws")])
    )
    for name in ("Referer", "Location"):
        assert "secret" not in out[name] and "user=agent1&password=redacted-" in out[name]
    assert out["Origin"] == "https://gws"
