"""The GWS API v2 vocabulary: user-data operations, their effect, HTTP answers and notifications.

Pure functions over bytes and dicts that never raise: what cannot be read comes back as a value
that says why. They accept every spelling and quirk of the public GWS documentation and its
samples (singular and plural collection names, misspelt object keys, a messageType with a trailing
space, Python literals in the JSON), since fixtures copied from the docs carry them too.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gwsproxy.lenient import Unreadable, loads

UPDATE = "UpdateUserData"
ATTACH = "AttachUserData"
DELETE = "DeleteUserData"
DELETE_PAIR = "DeleteUserDataPair"
OPERATIONS = (UPDATE, ATTACH, DELETE, DELETE_PAIR)
_OPERATION_BY_LOWER = {op.lower(): op for op in OPERATIONS}

# Notification types that report a user-data change or its failure: the only ones that can answer
# a request (docs/correlation.md).
CHANGE_TYPES = frozenset({"PropertiesUpdated", "AttachedDataChanged", "Error"})
VOICE_ERROR = "ErrorMessage"


@dataclass(frozen=True, slots=True)
class Media:
    """One GWS media: how its URLs, CometD topic and notification objects are spelled."""

    name: str
    collections: tuple[str, ...]  # every spelling accepted in URLs; the first is canonical
    channel: str
    message_type: str
    object_key: str
    reference_in_answer: bool  # the docs show referenceId in the HTTP answer
    aliases: tuple[str, ...] = ()  # other message-type stems and object keys seen in docs


MEDIA = (
    Media("voice", ("calls",), "/v2/me/calls", "CallStateChangeMessage", "call", False),
    Media("chat", ("chats",), "/v2/me/chats", "ChatStateChangeMessage", "chat", False),
    Media(
        "sms",
        ("smssessions", "smsessions"),
        "/v2/me/smssessions",
        "SMSsessionStateChangeMessage",
        "smssession",
        False,
        ("smsession",),
    ),
    Media(
        "facebook",
        ("facebooksessions", "facebooksession"),
        "/v2/me/facebooksession",
        "FacebooksessionStateChangeMessage",
        "facebooksession",
        False,
    ),
    Media("email", ("emails",), "/v2/me/emails", "EmailStateChangeMessage", "email", False),
    Media(
        "workitem",
        ("workitems",),
        "/v2/me/workitems",
        "WorkitemStateChangeMessage",
        "workitem",
        True,
    ),
    Media(
        "openmedia",
        ("openmedia",),
        "/v2/me/openmedia",
        "OpenmediaStateChangeMessage",
        "openmedia",
        True,
    ),
    Media(
        "twitter",
        ("twitter", "tweets"),
        "/v2/me/twitter",
        "TwitterStateChangeMessage",
        "twitter",
        True,
        ("tweet",),
    ),
    Media(
        "im",
        ("im-sessions",),
        "/v2/me/im-sessions",
        "IMSessionStateChangeMessage",
        "imSession",
        False,
    ),
)
MEDIA_BY_NAME = {m.name: m for m in MEDIA}
UNKNOWN = "unknown"
_INTEGER = re.compile(r"\s*-?[0-9]+\s*")  # ASCII digits only: str.isdigit() accepts "²"


def _word(text: str) -> str:
    return text.strip().lower().replace("-", "").replace("_", "")


def _media_words() -> dict[str, str]:
    words: dict[str, str] = {}
    for m in MEDIA:
        stems = (m.message_type.removesuffix("StateChangeMessage"), m.object_key, *m.aliases)
        for w in (*m.collections, m.channel.rsplit("/", 1)[1], *stems):
            words[_word(w)] = m.name
            words[_word(w) + "s"] = m.name
    return words


_MEDIA_BY_WORD = _media_words()


@functools.lru_cache(maxsize=1024)  # a handful of distinct words in real traffic
def media_of(word: str | None) -> str:
    """The media a collection, channel tail, object key or messageType stem names."""
    if not word:
        return UNKNOWN
    w = _word(word)
    return _MEDIA_BY_WORD.get(w) or _MEDIA_BY_WORD.get(
        _word(w.removesuffix("statechangemessage")), UNKNOWN
    )


def basic_authorization(user: str, password: str) -> str:
    """The HTTP Basic `Authorization` value of a user and password (UTF-8, as GWS reads it)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, password) of an HTTP Basic `Authorization` value; None if it is not one."""
    if authorization[:6].lower() != "basic ":
        return None
    try:
        text = base64.b64decode(authorization[6:].strip()).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    user, _, password = text.partition(":")
    return (user, password) if user else None


# ---- requests ---------------------------------------------------------------------------------

_PATH = re.compile(r"(?:^|/)api/v2/me/(?P<collection>(?:[^/?#]+/)*?[^/?#]+)/(?P<id>[^/?#]+)/?$")


@dataclass(frozen=True, slots=True)
class Target:
    """An interaction named by a request path."""

    media: str
    collection: str  # as spelled, e.g. "smsessions" or "openmedia/promotion"
    interaction_id: str


@dataclass(slots=True)  # not frozen: cheaper to build on the hot path; treat as read-only
class UserDataRequest:
    """A user-data operation as the client asked for it."""

    target: Target
    operation: str
    user_data: dict[str, Any] | None = None  # Update / Attach
    keys: tuple[str, ...] | None = None  # DeleteUserData on multimedia
    key: str | None = None  # DeleteUserDataPair, and DeleteUserData on IM
    repairs: tuple[str, ...] = ()

    @property
    def media(self) -> str:
        return self.target.media

    @property
    def interaction_id(self) -> str:
        return self.target.interaction_id

    @property
    def requested(self) -> dict[str, Any] | list[str] | None:
        """What the request names: the user data to write, or the keys to delete (None: all)."""
        if self.operation in (UPDATE, ATTACH):
            return self.user_data
        if self.keys is not None:
            return list(self.keys)
        return [self.key] if self.key is not None else None


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A POST to an interaction whose body could not be read: kept raw with the reason."""

    target: Target
    reason: str


def parse_target(path: str) -> Target | None:
    """The interaction an `/api/v2/me/<collection>/<id>` path names, or None."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    m = _PATH.search(path)
    if m is None:
        return None
    collection = m["collection"]
    return Target(media_of(collection.split("/", 1)[0]), collection, m["id"])


def classify_request(
    method: str, path: str, body: bytes | str
) -> UserDataRequest | BadRequest | None:
    """A user-data operation, a damaged POST to an interaction, or None for any other request."""
    if method.upper() != "POST":
        return None
    target = parse_target(path)
    if target is None:
        return None
    parsed = loads(body)
    if isinstance(parsed, Unreadable):
        return BadRequest(target, parsed.reason)
    doc = parsed.value
    if not isinstance(doc, dict):
        return BadRequest(target, f"body is a JSON {type(doc).__name__}, not an object")
    name = doc.get("operationName")
    operation = _OPERATION_BY_LOWER.get(name.strip().lower()) if isinstance(name, str) else None
    if operation is None:
        return None
    user_data = doc.get("userData")
    keys = doc.get("keys")
    key = doc.get("key")
    return UserDataRequest(
        target=target,
        operation=operation,
        user_data=user_data if isinstance(user_data, dict) else None,
        keys=tuple(str(k) for k in keys) if isinstance(keys, list) else None,
        key=str(key) if isinstance(key, str | int) and not isinstance(key, bool) else None,
        repairs=parsed.repairs,
    )


# ---- user data ----------------------------------------------------------------------------------


class KVList(dict[Any, Any]):
    """User data in which a key repeats, as voice AttachUserData leaves it: reads as a dict (the
    last value wins) and serialises every pair, in order.

    The json encoder takes a dict subclass's items(), so the repeated keys reach the wire as GWS
    sends them.
    """

    def __init__(self, pairs: list[tuple[Any, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        return list(self.pairs)


def json_object(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A JSON object from its (key, value) pairs: a dict, or a KVList where a key repeats.

    As `json.loads(..., object_pairs_hook=json_object)` it keeps repeated keys for the wire.
    """
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else KVList(pairs)


def with_user_data(
    interaction: dict[str, Any], pairs: Iterable[tuple[Any, Any]], media: str
) -> dict[str, Any]:
    """The interaction object as GWS shows it holding these (key, value) pairs: `userData` (with
    repeated keys kept), except that voice leaves out user data it has emptied."""
    items = list(pairs)
    if items or media != "voice":
        interaction["userData"] = json_object(items)
    return interaction


@dataclass(frozen=True, slots=True)
class Effect:
    """What a user-data operation does: the keys it writes, the keys it deletes, or every key."""

    writes: dict[Any, Any]
    deletes: tuple[Any, ...] = ()
    everything: bool = False  # voice DeleteUserData without keys
    repeats: bool = False  # voice AttachUserData: a key that exists is added again

    @property
    def named(self) -> tuple[Any, ...]:
        """The keys the operation names, in its order (deleting everything names none)."""
        return tuple(dict.fromkeys((*self.writes, *self.deletes)))

    def apply(self, pairs: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        """The (key, value) pairs after the operation; see `apply_user_data`."""
        if self.everything:
            return []
        doomed = set(self.deletes)
        out = [p for p in pairs if p[0] not in doomed]
        writes = self.writes
        if not writes:
            return out
        if self.repeats:
            return out + list(writes.items())
        written: set[Any] = set()
        merged: list[tuple[Any, Any]] = []
        for key, value in out:
            if key not in writes:
                merged.append((key, value))
            elif key not in written:  # overwritten in place; its repeats go
                written.add(key)
                merged.append((key, writes[key]))
        merged.extend(item for item in writes.items() if item[0] not in written)
        return merged


_NOTHING = Effect({})


def effect_of(operation: Any, requested: Any, media: Any) -> Effect:
    """What an operation does, from its name, what it names (`UserDataRequest.requested`: the
    user data to write, the keys to delete, None for no keys) and its media.

    Never raises on what a capture may hold: a `requested` of the wrong shape does nothing, a
    single key reads as a list of one, an operation we do not know is read by its shape.
    """
    op = operation.strip() if isinstance(operation, str) else ""
    if op in (UPDATE, ATTACH):
        if not isinstance(requested, dict):
            return _NOTHING
        return Effect(dict(requested), repeats=op == ATTACH and media == "voice")
    if op in (DELETE, DELETE_PAIR):
        if requested is None:
            return Effect({}, everything=op == DELETE and media == "voice")
        keys = requested if isinstance(requested, dict | list | tuple) else [requested]
        return Effect({}, _key_list(keys))
    if isinstance(requested, dict):
        return Effect(dict(requested))
    if isinstance(requested, list | tuple):
        return Effect({}, _key_list(requested))
    return _NOTHING


def _key_list(keys: Iterable[Any]) -> tuple[Any, ...]:
    out: dict[Any, None] = {}
    for k in keys:
        try:
            hash(k)
        except TypeError:
            k = repr(k)
        out[k] = None
    return tuple(out)


def apply_user_data(
    pairs: Iterable[tuple[Any, Any]], operation: Any, requested: Any, media: Any
) -> list[tuple[Any, Any]]:
    """The user data after an operation, as (key, value) pairs, the way GWS applies it.

    Update, and Attach on multimedia, overwrite the given keys in place (a repeated key keeps its
    first place only) and add new ones last; voice Attach adds a key that exists again (GWS keeps
    a key-value list). DeleteUserData removes the listed keys, or every key on voice when it
    lists none; DeleteUserDataPair removes its key. `dict()` of the result is the user data as
    a notification reads. Whether GWS accepts the request at all is not asked here.
    """
    return effect_of(operation, requested, media).apply(pairs)


# ---- HTTP answers -------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: cheaper to build on the hot path; treat as read-only
class Answer:
    """The GWS fields of an HTTP answer body."""

    status_code: int | None
    status_message: str | None = None
    reference_id: int | str | None = None
    value: Any = None
    repairs: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status_code in (0, None)


def parse_answer(body: bytes | str) -> Answer | Unreadable:
    parsed = loads(body)
    if isinstance(parsed, Unreadable):
        return parsed
    doc = parsed.value
    if not isinstance(doc, dict):
        return Answer(None, value=doc, repairs=parsed.repairs)
    code = doc.get("statusCode")
    message = doc.get("statusMessage")
    return Answer(
        status_code=_int_or_none(code),
        status_message=message if isinstance(message, str) else None,
        reference_id=reference_of(doc.get("referenceId")),
        value=doc,
        repairs=parsed.repairs,
    )


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        try:
            return int(value)
        except ValueError:  # longer than Python's int-from-text limit
            return None
    return None


def reference_of(value: Any) -> int | str | None:
    """A referenceId as an int where it reads as one (docs show ints; "85" equals 85)."""
    if type(value) is int:  # the common case (bool is a subclass of int: not this branch)
        return value
    if value is None or isinstance(value, bool):
        return None
    as_int = _int_or_none(value)
    if as_int is not None:
        return as_int
    return value if isinstance(value, str) else str(value)


def interactions_in(value: Any, depth: int = 3) -> list[dict[str, Any]]:
    """Interaction objects (dicts with an `id` and `userData`) in a GET answer, shallow search."""
    found: list[dict[str, Any]] = []
    if depth < 0:
        return found
    if isinstance(value, dict):
        if "id" in value and isinstance(value.get("userData"), dict):
            found.append(value)
            return found
        for v in value.values():
            if isinstance(v, dict | list):
                found.extend(interactions_in(v, depth - 1))
    elif isinstance(value, list):
        for v in value:
            found.extend(interactions_in(v, depth - 1))
    return found


# ---- notifications -------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: cheaper to build on the hot path; treat as read-only
class Notification:
    """A GWS notification, from a Bayeux message (channel + data) or a bare `data` object."""

    channel: str | None
    message_type: str | None
    notification_type: str | None
    reference_id: int | str | None
    media: str
    interaction_id: str | None
    interaction_key: str | None
    interaction: dict[str, Any] | None
    user_data: dict[str, Any] | None  # None: the notification carries no userData
    error_message: str | None
    data: dict[str, Any]

    @property
    def is_error(self) -> bool:
        return self.notification_type == "Error" or (self.message_type or "").strip() == VOICE_ERROR

    @property
    def reports_change(self) -> bool:
        """Whether this type may answer a user-data request (the inferred-match rule)."""
        return self.is_error or self.notification_type in CHANGE_TYPES


def parse_notification(message: Any) -> Notification | None:
    """A Notification from a decoded message; None when it is not a GWS notification at all."""
    # Hot path (every CometD message): plain isinstance checks and positional construction.
    if not isinstance(message, dict):
        return None
    data = message.get("data")
    if isinstance(data, dict) and ("channel" in message or "messageType" not in message):
        channel = message.get("channel")
        if not isinstance(channel, str):
            channel = None
    else:
        channel, data = None, message
    message_type = data.get("messageType")
    if not isinstance(message_type, str):
        message_type = None
    notification_type = data.get("notificationType")
    if not isinstance(notification_type, str):
        notification_type = None
    key, obj = _interaction_object(data)
    if message_type is None and notification_type is None and obj is None:
        return None
    media = _channel_media(channel) if channel else UNKNOWN
    if media == UNKNOWN:
        for word in (message_type, key):
            media = media_of(word)
            if media != UNKNOWN:
                break
    if obj is not None:
        user_data = obj.get("userData")
        ident = obj.get("id")
        error = data.get("errorMessage", obj.get("errorMessage"))
    else:
        user_data = ident = None
        error = data.get("errorMessage")
    return Notification(
        channel,
        message_type,
        notification_type.strip() if notification_type else None,
        reference_of(data.get("referenceId")),
        media,
        str(ident) if isinstance(ident, str | int) else None,
        key,
        obj,
        user_data if isinstance(user_data, dict) else None,
        error if isinstance(error, str) else None,
        data,
    )


@functools.lru_cache(maxsize=1024)
def _channel_media(channel: str) -> str:
    return media_of(_channel_tail(channel))


def _channel_tail(channel: str | None) -> str | None:
    if not channel:
        return None
    parts = channel.split("/")
    return parts[3] if len(parts) > 3 and parts[1:3] == ["v2", "me"] else parts[-1]


def _interaction_object(data: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    # The rule for every media, known or not: the value that is an object holding an `id`;
    # failing that, one holding `userData` (a damaged sample may lose its id).
    fallback: tuple[str | None, dict[str, Any] | None] = (None, None)
    for key, value in data.items():
        if isinstance(value, dict):
            if "id" in value:
                return key, value
            if fallback[1] is None and "userData" in value:
                fallback = (key, value)
    return fallback
