"""Bayeux (CometD) batches out of long-poll bodies and WebSocket frames (gwsproxy.bayeux)."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwsproxy.bayeux import (
    Batch,
    channel_matches,
    handshake_client_id,
    is_data,
    is_meta,
    is_notifications_path,
    parse_batch,
)
from gwsproxy.lenient import Unreadable

FORM = "application/x-www-form-urlencoded"

HANDSHAKE_REPLY = {
    "channel": "/meta/handshake",
    "id": "1",
    "successful": True,
    "clientId": "3ok3e1gtq8l4ej1ap4zqcrkq7ig",
    "version": "1.0",
    "supportedConnectionTypes": ["websocket", "long-polling"],
}
CONNECT = {
    "channel": "/meta/connect",
    "clientId": "c1",
    "connectionType": "long-polling",
    "id": "2",
}
NOTE = {
    "channel": "/v2/me/chats",
    "data": {"messageType": "ChatStateChangeMessage", "referenceId": 85, "chat": {"id": "C"}},
}


# ---- parse_batch -----------------------------------------------------------------------------


def test_array_keeps_wire_order() -> None:
    batch = parse_batch(json.dumps([CONNECT, NOTE, HANDSHAKE_REPLY]).encode(), "application/json")
    assert isinstance(batch, Batch), batch
    assert batch.messages == (CONNECT, NOTE, HANDSHAKE_REPLY)
    assert batch.repairs == ()


def test_single_object_is_a_batch_of_one() -> None:
    batch = parse_batch(json.dumps(NOTE).encode())
    assert isinstance(batch, Batch), batch
    assert batch.messages == (NOTE,)


def test_text_frame() -> None:
    batch = parse_batch(json.dumps([CONNECT]))  # WebSocket text frames arrive as str
    assert isinstance(batch, Batch)
    assert batch.messages == (CONNECT,)


def test_empty_array_is_an_empty_batch() -> None:
    batch = parse_batch(b"[]")
    assert isinstance(batch, Batch)
    assert batch.messages == ()


@pytest.mark.parametrize(
    "content_type",
    [FORM, "application/x-www-form-urlencoded; charset=UTF-8", "APPLICATION/X-WWW-FORM-URLENCODED"],
)
def test_form_encoded_message_field(content_type: str) -> None:
    raw = urlencode({"message": json.dumps([CONNECT, NOTE])}).encode()
    batch = parse_batch(raw, content_type)
    assert isinstance(batch, Batch), batch
    assert batch.messages == (CONNECT, NOTE)


def test_form_encoded_single_object_as_text() -> None:
    raw = "message=" + quote(json.dumps(CONNECT))
    batch = parse_batch(raw, FORM)
    assert isinstance(batch, Batch), batch
    assert batch.messages == (CONNECT,)


def test_form_without_message_field_is_unreadable() -> None:
    result = parse_batch(b"foo=bar&baz=1", FORM)
    assert isinstance(result, Unreadable)
    assert "message" in result.reason


def test_form_with_unreadable_message_is_unreadable() -> None:
    result = parse_batch(b"message=%7Bnot%20json", FORM)
    assert isinstance(result, Unreadable)
    assert result.reason


def test_json_body_is_not_taken_for_a_form_without_the_form_content_type() -> None:
    raw = urlencode({"message": json.dumps([CONNECT])}).encode()
    assert isinstance(parse_batch(raw, "application/json"), Unreadable)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[",
        b"\xff\xfe\x00",
        b"<html>502</html>",
        b"[1, 2]",
        b'["/meta/connect"]',
        b"null",
        b"5",
        b'[{"channel": "/meta/connect"}, 3]',
    ],
)
def test_unreadable_batches(raw: bytes) -> None:
    result = parse_batch(raw, "application/json")
    assert isinstance(result, Unreadable), result
    assert result.reason.strip()


def test_quirky_batch_is_repaired_and_reported() -> None:
    raw = b'[{"channel": "/v2/me/chats", "data": {"referenceId": 1389261492035L, "x": None,},},]'
    batch = parse_batch(raw)
    assert isinstance(batch, Batch), batch
    assert batch.messages == (
        {"channel": "/v2/me/chats", "data": {"referenceId": 1389261492035, "x": None}},
    )
    assert {"python long literal", "python None/True/False", "trailing comma"} <= set(batch.repairs)


# ---- message kinds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "meta", "data"),
    [
        (HANDSHAKE_REPLY, True, False),
        (CONNECT, True, False),
        ({"channel": "/meta/subscribe", "subscription": "/v2/me/**"}, True, False),
        (NOTE, False, True),
        ({"channel": "/v2/me/chats", "id": "5", "successful": True}, False, False),  # a publish ack
        ({"channel": "/service/echo", "data": {"a": 1}}, False, False),
        ({"data": {"a": 1}}, False, False),  # no channel
        ({"channel": 5, "data": {}}, False, False),
    ],
)
def test_is_meta_and_is_data(message: dict, meta: bool, data: bool) -> None:
    assert (is_meta(message), is_data(message)) == (meta, data)


def test_handshake_client_id() -> None:
    assert handshake_client_id([CONNECT, HANDSHAKE_REPLY]) == HANDSHAKE_REPLY["clientId"]
    assert handshake_client_id((HANDSHAKE_REPLY,)) == HANDSHAKE_REPLY["clientId"]


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [CONNECT, NOTE],
        [{**HANDSHAKE_REPLY, "successful": False}],
        [{k: v for k, v in HANDSHAKE_REPLY.items() if k != "clientId"}],
        [{**HANDSHAKE_REPLY, "clientId": 12}],
        [{**CONNECT, "clientId": "c1", "successful": True}],  # a connect names a clientId too
    ],
)
def test_no_handshake_client_id(messages: list[dict]) -> None:
    assert handshake_client_id(messages) is None


# ---- channels ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "channel", "expected"),
    [
        ("/v2/me/chats", "/v2/me/chats", True),
        ("/v2/me/chats", "/v2/me/calls", False),
        ("/v2/me/*", "/v2/me/chats", True),
        ("/v2/me/*", "/v2/me/openmedia/promotion", False),
        ("/v2/me/*", "/v2/me", False),
        ("/v2/me/*", "/v2/mex/chats", False),
        ("/v2/me/**", "/v2/me/chats", True),
        ("/v2/me/**", "/v2/me/openmedia/promotion", True),
        ("/v2/me/**", "/v2/me", False),
        ("/v2/me/**", "/v2/mex/chats", False),
        ("/v2/*", "/v2/me/chats", False),
        ("/v2/**", "/v2/me/chats", True),
        ("/**", "/v2/me/chats", True),
        ("/*", "/v2", True),
    ],
)
def test_channel_matches(pattern: str, channel: str, expected: bool) -> None:
    assert channel_matches(pattern, channel) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v2/notifications", True),
        ("/api/v2/notifications/", True),
        ("/api/v2/notifications/handshake", True),
        ("/api/v2/notifications/connect", True),
        ("/api/v2/notifications?x=1", True),
        ("/gws/api/v2/notifications/connect", True),
        ("/api/v2/notificationsX", False),
        ("/api/v2/notifications-old", False),
        ("/api/v2/me/chats", False),
        ("/api/v2/notification", False),
        ("/", False),
        ("", False),
    ],
)
def test_is_notifications_path(path: str, expected: bool) -> None:
    assert is_notifications_path(path) is expected


# ---- never raise -------------------------------------------------------------------------------


@settings(max_examples=2 * settings.default.max_examples, deadline=None)
@given(
    raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
    content_type=st.none()
    | st.sampled_from(["application/json", FORM, "text/plain; charset=utf-8"])
    | st.text(max_size=40),
)
def test_parse_batch_never_raises(raw: bytes, content_type: str | None) -> None:
    result = parse_batch(raw, content_type)
    assert isinstance(result, Batch | Unreadable)
    if isinstance(result, Batch):
        assert all(isinstance(m, dict) for m in result.messages)


@settings(max_examples=2 * settings.default.max_examples, deadline=None)
@given(raw=st.binary(max_size=300))
def test_parse_form_batch_never_raises(raw: bytes) -> None:
    for body in (raw, b"message=" + raw, b"message=" + quote(raw).encode()):
        result = parse_batch(body, FORM)
        assert isinstance(result, Batch | Unreadable)


@settings(max_examples=2 * settings.default.max_examples, deadline=None)
@given(path=st.text(max_size=60), tail=st.text(max_size=20))
def test_path_and_channel_helpers_never_raise(path: str, tail: str) -> None:
    assert isinstance(is_notifications_path(path), bool)
    assert isinstance(is_notifications_path("/api/v2/notifications" + tail), bool)
    assert isinstance(channel_matches(path, tail), bool)
