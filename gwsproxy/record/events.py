"""The events that the mitmproxy addon hands to the recording core (`gwsproxy.record.core`).

One NamedTuple per kind, its first field the kind. The rest is str, bytes, numbers, lists or
None, so that an event crosses the worker's msgpack pipe (`gwsproxy.record.worker`) as a plain
array, [kind, field, ...], and `decode` makes the event again of what msgpack unpacks (a list,
in which the tuples inside have become lists too).

`identity` is (Basic-auth user, JSESSIONID, client address); `headers` are the raw
(name, value) byte pairs of the message; `t` and `now` are seconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

REQUEST, RESPONSE, FRAME, FAILED, RAW, ADVANCE, CONFIGURE, CLOSE, KNOWN = range(9)

Identity = tuple[str | None, str | None, str | None]
Headers = Sequence[tuple[bytes, bytes]]


class Request(NamedTuple):
    """A request that may carry a user-data operation, as it went to GWS."""

    kind: int  # REQUEST
    flow_id: Any
    identity: Identity
    method: str
    path: str
    headers: Headers
    body: bytes
    t: float


class Response(NamedTuple):
    """A GWS answer: to a request above, to a GET, or a long-poll batch of notifications."""

    kind: int  # RESPONSE
    flow_id: Any
    identity: Identity
    method: str
    path: str
    status: int
    headers: Headers
    body: bytes
    t: float


class Frame(NamedTuple):
    """A server-to-client message on a CometD WebSocket."""

    kind: int  # FRAME
    identity: Identity
    path: str
    content: bytes
    t: float


class Failed(NamedTuple):
    """The flow broke off (mitmproxy's error hook); reached=False: it never got to GWS."""

    kind: int  # FAILED
    flow_id: Any
    message: str
    t: float
    reached: bool = True


class Raw(NamedTuple):
    """Traffic already judged unreadable (`where` it was met), to be kept as it is with why.
    `size` is the original's when `data` is only its beginning."""

    kind: int  # RAW
    t: float
    reason: str
    where: str
    data: bytes
    identity: Identity | None = None
    path: str | None = None
    size: int | None = None


class Advance(NamedTuple):
    """The clock moved on: close the overdue pairs as timed out."""

    kind: int  # ADVANCE
    now: float


class Configure(NamedTuple):
    """New settings: timeout, mask_keys, redact_headers (any of them)."""

    kind: int  # CONFIGURE
    settings: dict[str, Any]


class Close(NamedTuple):
    """Open pairs as incomplete, then the END record if clean."""

    kind: int  # CLOSE
    now: float
    clean: bool = True


class Known(NamedTuple):
    """User data an interaction was known to hold, from a source other than traffic (a HAR that
    gwsproxy exported carries each request's `before`)."""

    kind: int  # KNOWN
    interaction_id: str
    user_data: dict[str, Any]
    t: float


Event = Request | Response | Frame | Failed | Raw | Advance | Configure | Close | Known
# Indexed by kind.
TYPES: tuple[type[Event], ...] = (
    Request,
    Response,
    Frame,
    Failed,
    Raw,
    Advance,
    Configure,
    Close,
    Known,
)


def decode(item: Sequence[Any]) -> Event:
    """The event of its wire form (or of a plain tuple); raises on what is none."""
    kind = item[0]
    if kind not in range(len(TYPES)):
        raise ValueError(f"not an event kind: {kind!r}")
    return TYPES[kind](*item)


def name(kind: Any) -> str:
    """`request`, `response`, ...: for messages."""
    return TYPES[kind].__name__.lower() if kind in range(len(TYPES)) else "event"
