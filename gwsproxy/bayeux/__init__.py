"""Bayeux (CometD) messages out of long-poll bodies and WebSocket frames.

Pure: takes bytes and returns message dicts; a batch that cannot be read comes back as Unreadable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from gwsproxy.lenient import Unreadable, loads

NOTIFICATIONS_PATH = "/api/v2/notifications"
HANDSHAKE = "/meta/handshake"
CONNECT = "/meta/connect"
SUBSCRIBE = "/meta/subscribe"
UNSUBSCRIBE = "/meta/unsubscribe"
DISCONNECT = "/meta/disconnect"


@dataclass(slots=True)  # not frozen: cheaper to build on the hot path; treat as read-only
class Batch:
    """The messages of one long-poll body or WebSocket frame, in wire order."""

    messages: tuple[dict[str, Any], ...]
    repairs: tuple[str, ...] = ()
    # Each message's exact JSON text, when the body was strict JSON: what a capture keeps, so
    # that even duplicate keys survive. None when the body needed repairs.
    texts: tuple[str, ...] | None = None


# The C scanner behind JSONDecoder.raw_decode, called directly: it raises StopIteration (not
# JSONDecodeError) where no value starts, and like raw_decode it accepts no leading whitespace.
# Typeshed does not declare it: it is an implementation attribute of the decoder.
_SCAN: Callable[[str, int], tuple[Any, int]]
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_SPACE = re.compile(r"[ \t\n\r]*")
_WHITESPACE = " \t\n\r"


def _skip(text: str, i: int) -> int:
    if i < len(text) and text[i] not in _WHITESPACE:
        return i  # the common case, compact JSON: no regex call
    return _SPACE.match(text, i).end()  # type: ignore[union-attr]  # `*` always matches


def _split(text: str) -> tuple[list[Any], list[str]] | None:
    """The items of a JSON array (or one value) with their exact texts; None if not strict."""
    items: list[Any] = []
    texts: list[str] = []
    try:
        i = _skip(text, 0)
        if not text.startswith("[", i):
            value, end = _SCAN(text, i)
            return ([value], [text[i:end]]) if _skip(text, end) == len(text) else None
        i = _skip(text, i + 1)
        while not text.startswith("]", i):
            value, end = _SCAN(text, i)
            items.append(value)
            texts.append(text[i:end])
            i = _skip(text, end)
            if text.startswith(",", i):
                i = _skip(text, i + 1)
                if text.startswith("]", i):
                    return None  # a trailing comma: the lenient path reports it
            elif not text.startswith("]", i):
                return None
        return (items, texts) if _skip(text, i + 1) == len(text) else None
    except (ValueError, RecursionError, StopIteration):
        return None


def is_notifications_path(path: str) -> bool:
    """The CometD endpoint and its sub-paths (`.../handshake`, `.../connect`)."""
    path = path.split("?", 1)[0]
    i = path.find(NOTIFICATIONS_PATH)
    if i < 0:
        return False
    rest = path[i + len(NOTIFICATIONS_PATH) :]
    return rest == "" or rest.startswith("/")


def parse_batch(body: bytes | str, content_type: str | None = None) -> Batch | Unreadable:
    """Messages from a JSON array or object, or a form-encoded `message=` body."""
    if content_type and "x-www-form-urlencoded" in content_type.lower():
        form = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body
        fields = parse_qs(form, keep_blank_values=True)
        if "message" not in fields:
            return Unreadable("form body without a `message` field")
        body = fields["message"][0]
    text: str | None
    try:
        text = body if isinstance(body, str) else bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        text = None
    split = _split(text) if text is not None else None
    if split is not None:
        items, texts = split
        for m in items:
            if not isinstance(m, dict):
                break
        else:
            return Batch(tuple(items), (), tuple(texts))
    parsed = loads(body)
    if isinstance(parsed, Unreadable):
        return parsed
    value = parsed.value
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(m, dict) for m in items):
        return Unreadable("a Bayeux batch holds something that is not a message object")
    return Batch(tuple(items), parsed.repairs)


def is_meta(message: dict[str, Any]) -> bool:
    channel = message.get("channel")
    return isinstance(channel, str) and channel.startswith("/meta/")


def is_data(message: dict[str, Any]) -> bool:
    """A message delivered on an application channel (not meta, not service)."""
    channel = message.get("channel")
    return (
        isinstance(channel, str)
        and not channel.startswith(("/meta/", "/service/"))
        and "data" in message
    )


def advice_of(message: dict[str, Any]) -> dict[str, Any]:
    """The message's `advice` object; {} when it has none or it is not an object."""
    advice = message.get("advice")
    return advice if isinstance(advice, dict) else {}


def handshake_client_id(messages: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> str | None:
    """The clientId a successful handshake answer hands out, if this batch holds one."""
    for m in messages:
        client_id = m.get("clientId")
        if m.get("channel") == HANDSHAKE and m.get("successful") and isinstance(client_id, str):
            return client_id
    return None


def channel_matches(pattern: str, channel: str) -> bool:
    """Bayeux channel globbing: `/a/*` matches one segment, `/a/**` any number."""
    if pattern == channel:
        return True
    if pattern.endswith("/**"):
        return channel.startswith(pattern[:-2])
    if pattern.endswith("/*"):
        prefix = pattern[:-1]
        return channel.startswith(prefix) and "/" not in channel[len(prefix) :]
    return False


# ---- a client's side of the exchange: the messages it sends, what it makes of the replies --------
# Shared by the asyncio client (`bayeux.client`) and the gevent one of `gwsproxy swarm`.

TRANSPORTS = ("long-polling", "websocket")
MARGIN = 10.0  # seconds a held connect may take beyond the server's announced timeout
DEFAULT_SERVER_TIMEOUT = 30.0  # CometD's default, until the handshake advice says otherwise
MAX_BACKOFF = 5.0


def handshake_message(transport: str) -> dict[str, Any]:
    types = ["websocket"] if transport == "websocket" else ["long-polling"]
    return {
        "channel": HANDSHAKE,
        "version": "1.0",
        "minimumVersion": "1.0",
        "supportedConnectionTypes": types,
    }


def connect_message(client_id: str | None, transport: str, fresh: bool) -> dict[str, Any]:
    """A /meta/connect; the first after a handshake (`fresh`) asks to be answered at once
    (without that advice the server holds it for its whole timeout)."""
    message: dict[str, Any] = {
        "channel": CONNECT,
        "clientId": client_id,
        "connectionType": transport,
    }
    if fresh:
        message["advice"] = {"timeout": 0}
    return message


def subscribe_messages(client_id: str | None, channels: Iterable[str]) -> list[dict[str, Any]]:
    return [{"channel": SUBSCRIBE, "clientId": client_id, "subscription": c} for c in channels]


def disconnect_message(client_id: str | None) -> dict[str, Any]:
    return {"channel": DISCONNECT, "clientId": client_id}


def timing(reply: dict[str, Any], timeout: float, interval: float) -> tuple[float, float]:
    """The server's timeout (how long it holds a connect) and interval (how long to wait before
    the next), in seconds, after the advice of `reply`; the interval at most MAX_BACKOFF."""
    advice = advice_of(reply)
    t = advice.get("timeout")
    if isinstance(t, int | float) and not isinstance(t, bool) and t >= 0:
        timeout = t / 1000
    i = advice.get("interval")
    if isinstance(i, int | float) and not isinstance(i, bool) and i >= 0:
        interval = min(i / 1000, MAX_BACKOFF)
    return timeout, interval


def failure_reason(reply: dict[str, Any]) -> str:
    error = reply.get("error")
    return error if isinstance(error, str) and error else "no reason given"


def wants_handshake(reply: dict[str, Any]) -> bool:
    """An unsuccessful reply that means: the server forgot our clientId, handshake again."""
    error = reply.get("error")
    return advice_of(reply).get("reconnect") == "handshake" or (
        isinstance(error, str) and error.startswith("402")
    )


def may_retry(reply: dict[str, Any]) -> bool:
    """Whether the server lets the client try again after this refusal."""
    return advice_of(reply).get("reconnect") != "none"


def with_ids(messages: Iterable[dict[str, Any]], first: int) -> list[dict[str, Any]]:
    """The batch to send: each message with its id (`first`, `first + 1`, ... as text)."""
    return [{**m, "id": str(n)} for n, m in enumerate(messages, first)]


def sort_replies(
    batch: list[dict[str, Any]], messages: Iterable[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | str]:
    """What came back for a sent batch: (the data messages in order, the reply to each message
    of the batch in batch order), or instead of the replies why one is missing (a server that
    refuses the whole body answers without channel or id)."""
    data: list[dict[str, Any]] = []
    replies: dict[tuple[str, str], dict[str, Any]] = {}
    anonymous: list[dict[str, Any]] = []
    for m in messages:
        if is_data(m):
            data.append(m)
        elif isinstance(m.get("id"), str) and isinstance(m.get("channel"), str):
            replies[(m["channel"], m["id"])] = m
        else:
            anonymous.append(m)
    out = []
    for sent in batch:
        reply = replies.get((sent["channel"], sent["id"]))
        if reply is None:
            return data, failure_reason(anonymous[0]) if anonymous else (
                f"no answer to {sent['channel']}"
            )
        out.append(reply)
    return data, out
