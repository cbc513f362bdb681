"""`gwsproxy serve`: a mock GWS that answers a client under test from a capture.

REST and CometD (long polling and WebSocket, the simulator's BayeuxServer). Each user-data
request is answered with the recorded answer of the matching pair (media, interaction,
operation, JSON body; then order among equals), and the pair's recorded notification follows
after the recorded delay divided by `--speed`, on the requesting agent's CometD clients.
Unsolicited notifications are replayed on their timeline. A request no pair matches gets a
GWS-shaped 404 naming the closest recorded request, the closest pair's recording, or the answer
of a GWS it is forwarded to.

    python -m gwsproxy.replay.mock CAPTURE [-p PORT] [--speed X] [--unmatched ...] [--match ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from yarl import URL

from gwsproxy import gws
from gwsproxy.capture.format import CaptureError, Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.cometd import BayeuxServer
from gwsproxy.lenient import Parsed, loads
from gwsproxy.sim import logged_in

log = logging.getLogger(__name__)

EXIT_USAGE = 2
# Headers that describe one hop, not the request: never forwarded as they came.
_HOP_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "proxy-connection",
        "te",
        "trailer",
        "accept-encoding",
    }
)
_MAX_DIFFS = 6
_OPERATIONS = frozenset(op.lower() for op in gws.OPERATIONS)


@dataclass(frozen=True, slots=True)
class MockConfig:
    capture: str
    host: str = "127.0.0.1"
    port: int = 8090
    speed: float = 1.0  # recorded delays are divided by it; 0: no delay at all
    unmatched: str = "404"  # "404", "closest" or "forward:URL"
    match: str = "first"  # among equal unused recorded requests: "first" or "last"
    cometd_timeout: float = 30.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> MockConfig:
        """From the options `gwsproxy.replay.add_serve_arguments` defines."""
        return cls(
            capture=args.file,
            host=args.host,
            port=args.port,
            speed=args.speed,
            unmatched=args.unmatched,
            match=args.match,
        )


@dataclass(slots=True)
class MockStats:
    """What the mock did so far."""

    requests: int = 0  # user-data requests (POST /api/v2/me/...)
    matched: int = 0  # answered from their recorded pair
    unmatched: int = 0  # no unused recorded pair was equal (whatever the policy did then)
    closest: int = 0  # unmatched, answered with the closest pair (--unmatched closest)
    forwarded: int = 0  # unmatched, answered by the forward URL
    notifications: int = 0  # pair notifications pushed to at least one client
    unsolicited: int = 0  # unsolicited notifications pushed to at least one client
    undelivered: int = 0  # notifications no subscribed client of their agent was there for
    gets: int = 0  # GETs answered from the capture's knowledge

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


# ---- what the capture holds ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asked:
    """A request reduced to what matching compares."""

    method: str
    path: str
    media: str
    interaction_id: str
    operation: str | None
    body: Any  # the parsed JSON body; _UNREADABLE when it is not JSON
    body_key: str | bytes  # canonical JSON text (types kept: 1, 1.0, "1" and true differ)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.method, self.media, self.interaction_id, self.operation, self.body_key)


class _Unreadable:
    def __repr__(self) -> str:
        return "<unreadable body>"


_UNREADABLE = _Unreadable()


def describe_request(method: str, path: str, body: bytes) -> Asked:
    target = gws.parse_target(path)
    media = gws.UNKNOWN
    interaction = ""
    if target is not None:
        interaction = target.interaction_id
        media = target.media
        if media == gws.UNKNOWN:  # two unknown collections are still told apart
            media = f"{gws.UNKNOWN}:{target.collection}"
    parsed = loads(body) if body else None
    if isinstance(parsed, Parsed):
        value = parsed.value
        try:
            key: str | bytes = json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
        except (TypeError, ValueError):
            key = bytes(body)
    else:
        value, key = _UNREADABLE, bytes(body)
    operation = value.get("operationName") if isinstance(value, dict) else None
    operation = operation.strip() if isinstance(operation, str) else None
    return Asked(method.upper(), path, media, interaction, operation, value, key)


class _DuplicateKeys(dict):
    """A JSON object with a repeated key (voice AttachUserData): reads as a dict (last value
    wins) and serialises every pair again, so the notification goes out as it was recorded."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def items(self):  # type: ignore[override]
        return list(self.pairs)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else _DuplicateKeys(pairs)


@dataclass(slots=True, eq=False)
class RecordedPair:
    id: int
    scope: str
    t: float
    asked: Asked
    status: int | None  # HTTP status of the recorded answer; None: no answer was recorded
    answer: bytes
    content_type: str | None
    channel: str | None  # the recorded notification; None: it had none
    data: Any
    delay: float  # recorded seconds from the answer (else the request) to the notification
    note_first: bool  # the notification passed before the HTTP answer
    record_status: str | None  # matched, error, rejected, timeout, incomplete
    state: tuple[str, dict[str, Any]] | None  # (interaction, user data after) for GETs
    used: bool = False

    def where(self) -> str:
        return f"{self.asked.method} {self.asked.path}"


@dataclass(slots=True, eq=False)
class RecordedNote:
    """An unsolicited notification."""

    t: float
    scope: str
    channel: str
    data: Any
    state: tuple[str, dict[str, Any]] | None


@dataclass(slots=True, eq=False)
class Known:
    """An interaction as the capture knows it, for GET answers."""

    id: str
    media: str
    key: str  # its key in GET answers and notifications: "chat", "smssession", ...
    owners: set[str] = field(default_factory=set)
    fields: dict[str, Any] | None = None  # state, uri, participants... from a notification
    user_data: dict[str, Any] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"id": self.id, **(self.fields or {})}
        if self.user_data or self.media != "voice":  # voice omits emptied user data
            obj["userData"] = dict(self.user_data)
        return obj


@dataclass(slots=True)
class Capture:
    path: str
    pairs: list[RecordedPair]  # in request order
    notes: list[RecordedNote]  # unsolicited, in time order
    interactions: dict[str, Known]
    scopes: list[str]  # every scope, in order of first appearance
    notices: list[str]

    @property
    def t0(self) -> float | None:
        """Capture time of the first request (else the first notification): timeline zero."""
        if self.pairs:
            return self.pairs[0].t
        return self.notes[0].t if self.notes else None


def load_capture(path: str) -> Capture:
    """Read a capture's pairs and unsolicited notifications; CaptureError if it is unusable."""
    pairs: list[RecordedPair] = []
    notes: list[RecordedNote] = []
    befores: dict[int, tuple[str, str, dict[str, Any] | None]] = {}
    skipped = 0
    with CaptureReader(path) as reader:
        for entry, body in reader.records():
            if body is None or entry.kind not in (Kind.PAIR, Kind.NOTIFICATION):
                continue
            summary = entry.summary
            if entry.kind == Kind.PAIR:
                pair = _pair(summary, body)
                if pair is None:
                    skipped += 1
                    continue
                pairs.append(pair)
                before = body.get("before")
                befores[id(pair)] = (
                    pair.asked.interaction_id,
                    pair.asked.media,
                    before if isinstance(before, dict) else None,
                )
            else:
                note = _note(summary, body)
                if note is not None:
                    notes.append(note)
        notices = list(reader.notices)
        notices += [f"damaged record at offset {d.offset}: {d.reason}" for d in reader.damage]
    if skipped:
        notices.append(f"{skipped} pair records without a readable request were left out")
    pairs.sort(key=lambda p: (p.t, p.id))
    notes.sort(key=lambda n: n.t)
    scopes: dict[str, None] = {}
    for item in sorted([*pairs, *notes], key=lambda x: x.t):
        scopes[item.scope] = None
    interactions = _knowledge(pairs, notes, befores)
    return Capture(str(path), pairs, notes, interactions, list(scopes), notices)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _pair(summary: dict[str, Any], body: dict[str, Any]) -> RecordedPair | None:
    request = body.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("path"), str):
        return None
    raw = request.get("body") or b""
    raw = raw.encode() if isinstance(raw, str) else bytes(raw)
    asked = describe_request(str(request.get("method") or "POST"), request["path"], raw)
    response = body.get("response") if isinstance(body.get("response"), dict) else None
    status = response.get("status") if response else None
    answer = response.get("body") if response else None
    answer = answer.encode() if isinstance(answer, str) else bytes(answer or b"")
    content_type = _header(response.get("headers") if response else None, "content-type")
    channel, data, note = _message(body.get("notification"), summary.get("media"))
    t = _float(summary.get("t")) or 0.0
    t_answer = _float(summary.get("t_answer"))
    t_note = _float(summary.get("t_note"))
    delay = (t_note - (t_answer if t_answer is not None else t)) if t_note is not None else 0.0
    pair_id = summary.get("id")
    return RecordedPair(
        id=pair_id if isinstance(pair_id, int) else 0,
        scope=str(summary.get("scope") or "client:unknown"),
        t=t,
        asked=asked,
        status=status if isinstance(status, int) else None,
        answer=answer,
        content_type=content_type,
        channel=channel,
        data=data,
        delay=delay,
        note_first=t_note is not None and t_answer is not None and t_note < t_answer,
        record_status=summary.get("status"),
        state=_state(note),
    )


def _note(summary: dict[str, Any], body: dict[str, Any]) -> RecordedNote | None:
    channel, data, note = _message(body.get("notification"), summary.get("media"))
    if channel is None:
        return None
    return RecordedNote(
        t=_float(summary.get("t")) or 0.0,
        scope=str(summary.get("scope") or "client:unknown"),
        channel=channel,
        data=data,
        state=_state(note),
    )


def _header(headers: Any, name: str) -> str | None:
    if isinstance(headers, list):
        for item in headers:
            if isinstance(item, list | tuple) and len(item) == 2 and str(item[0]).lower() == name:
                return str(item[1])
    return None


def _message(recorded: Any, media: Any) -> tuple[str | None, Any, gws.Notification | None]:
    """The channel and `data` of a recorded notification, as the raw message had them."""
    if not isinstance(recorded, dict) or recorded.get("raw") is None:
        return None, None, None
    raw = recorded["raw"]
    try:
        message = json.loads(raw, object_pairs_hook=_object)
    except (ValueError, TypeError, RecursionError):
        parsed = loads(raw)
        if not isinstance(parsed, Parsed):
            return None, None, None
        message = parsed.value
    if not isinstance(message, dict):
        return None, None, None
    if isinstance(message.get("data"), dict) and "messageType" not in message:
        channel, data = message.get("channel"), message["data"]
    else:  # a bare `data` object
        channel, data = None, message
    if not isinstance(channel, str):
        channel = recorded.get("channel")
    if not isinstance(channel, str):
        known = gws.MEDIA_BY_NAME.get(media) if isinstance(media, str) else None
        channel = known.channel if known else None
    if channel is None:
        return None, None, None
    return channel, data, gws.parse_notification({"channel": channel, "data": data})


def _state(note: gws.Notification | None) -> tuple[str, dict[str, Any]] | None:
    if note is None or note.interaction_id is None or note.is_error or not note.reports_change:
        return None
    return note.interaction_id, dict(note.user_data or {})


def _knowledge(
    pairs: list[RecordedPair],
    notes: list[RecordedNote],
    befores: dict[int, tuple[str, str, dict[str, Any] | None]],
) -> dict[str, Known]:
    known: dict[str, Known] = {}

    def learn(ident: str, media: str, scope: str) -> Known:
        item = known.get(ident)
        if item is None:
            found = gws.MEDIA_BY_NAME.get(media)
            item = known[ident] = Known(ident, media, found.object_key if found else media)
        item.owners.add(scope)
        return item

    def template(item: Known, data: Any) -> None:
        if item.fields is not None:
            return
        note = gws.parse_notification({"channel": "", "data": data})
        if note is not None and note.interaction is not None and note.interaction_id == item.id:
            item.fields = {k: v for k, v in note.interaction.items() if k not in ("id", "userData")}
            item.key = note.interaction_key or item.key

    # The before-state of each interaction's first pair; interactions seen only in unsolicited
    # notifications start with the user data of the first of those.
    for pair in pairs:
        ident, media, before = befores[id(pair)]
        if not ident:
            continue
        first = ident not in known
        item = learn(ident, media, pair.scope)
        if first and before is not None:
            item.user_data = dict(before)
        if pair.data is not None:
            template(item, pair.data)
    for note in notes:
        parsed = gws.parse_notification({"channel": note.channel, "data": note.data})
        if parsed is None or parsed.interaction_id is None:
            continue
        first = parsed.interaction_id not in known
        item = learn(parsed.interaction_id, parsed.media, note.scope)
        if first and parsed.user_data is not None:
            item.user_data = dict(parsed.user_data)
        template(item, note.data)
    return known


# ---- matching -----------------------------------------------------------------------------------


class Book:
    """The recorded pairs not used yet, by what matching compares; each is used at most once."""

    def __init__(self, pairs: list[RecordedPair], order: str = "first") -> None:
        if order not in ("first", "last"):
            raise ValueError(f"match order {order!r}: choose first or last")
        self.pairs = pairs
        self.last = order == "last"
        self._buckets: dict[tuple[Any, ...], list[RecordedPair]] = {}
        self._by_interaction: dict[str, list[RecordedPair]] = {}
        self._by_media: dict[str, list[RecordedPair]] = {}
        for pair in pairs:
            self._buckets.setdefault(pair.asked.key, []).append(pair)
            self._by_interaction.setdefault(pair.asked.interaction_id, []).append(pair)
            self._by_media.setdefault(pair.asked.media, []).append(pair)
        self._flat: dict[int, dict[str, str]] = {}

    @property
    def unused(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def take(self, asked: Asked, scope: str) -> RecordedPair | None:
        """The first (or last) unused equal pair, preferring the agent's own; marks it used."""
        bucket = self._buckets.get(asked.key)
        if not bucket:
            return None
        mine = [p for p in bucket if p.scope == scope]
        candidates = mine or bucket
        pair = candidates[-1] if self.last else candidates[0]
        self.use(pair)
        return pair

    def use(self, pair: RecordedPair) -> None:
        if not pair.used:
            pair.used = True
            bucket = self._buckets.get(pair.asked.key)
            if bucket is not None:
                bucket.remove(pair)

    def closest(self, asked: Asked, scope: str) -> tuple[RecordedPair, list[str]] | None:
        """The recorded request nearest to this one, and how it differs field by field."""
        # A different media outweighs everything else, a different interaction outweighs the
        # operation and the body: look no further than the pairs that share the most.
        pool = (
            self._by_interaction.get(asked.interaction_id)
            or self._by_media.get(asked.media)
            or self.pairs
        )
        if not pool:
            return None
        flat = _flatten(asked.body)
        best = min(pool, key=lambda p: (self._distance(p, asked, flat, scope), p.t))
        return best, self._diff(best, asked, flat)

    def _distance(self, p: RecordedPair, asked: Asked, flat: dict[str, str], scope: str) -> float:
        d = 0.0
        if p.asked.method != asked.method:
            d += 16
        if p.asked.media != asked.media:
            d += 8
        if p.asked.interaction_id != asked.interaction_id:
            d += 4
        if p.asked.operation != asked.operation:
            d += 2
        if p.asked.body_key != asked.body_key:
            theirs = self._flat_of(p)
            keys = theirs.keys() | flat.keys()
            differ = sum(1 for k in keys if theirs.get(k) != flat.get(k))
            d += 1 + 0.9 * differ / max(1, len(keys))
        if p.used:
            d += 0.05
        if p.scope != scope:
            d += 0.01
        return d

    def _flat_of(self, p: RecordedPair) -> dict[str, str]:
        flat = self._flat.get(id(p))
        if flat is None:
            flat = self._flat[id(p)] = _flatten(p.asked.body)
        return flat

    def _diff(self, p: RecordedPair, asked: Asked, flat: dict[str, str]) -> list[str]:
        out: list[str] = []
        r = p.asked
        for name, ours, theirs in (
            ("method", asked.method, r.method),
            ("media", asked.media, r.media),
            ("interaction", asked.interaction_id, r.interaction_id),
            ("operation", asked.operation, r.operation),
        ):
            if ours != theirs:
                out.append(f"{name} {ours} (recorded {theirs})")
        if r.body_key != asked.body_key:
            theirs = self._flat_of(p)
            changes = []
            for k in sorted(theirs.keys() | flat.keys()):
                if k not in flat:
                    changes.append(f"body {k or 'value'} missing (recorded {_short(theirs[k])})")
                elif k not in theirs:
                    changes.append(f"body {k or 'value'} {_short(flat[k])} not recorded")
                elif flat[k] != theirs[k]:
                    changes.append(
                        f"body {k or 'value'} {_short(flat[k])} (recorded {_short(theirs[k])})"
                    )
            if len(changes) > _MAX_DIFFS:
                changes[_MAX_DIFFS:] = [f"{len(changes) - _MAX_DIFFS} more body differences"]
            out += changes or ["body differs in key order or spacing only"]
        if not out:
            out.append("the same request, already used" if p.used else "the same request")
        elif p.used:
            out.append("already used")
        return out


def _flatten(value: Any, prefix: str = "", depth: int = 0) -> dict[str, str]:
    """Leaves of a JSON body by dotted path, each as canonical JSON text (types kept)."""
    if isinstance(value, dict) and depth < 4 and value:
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
        return out
    if value is _UNREADABLE:
        return {prefix: "<unreadable>"}
    try:
        return {prefix: json.dumps(value, sort_keys=True, ensure_ascii=False)}
    except (TypeError, ValueError):
        return {prefix: repr(value)}


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- the server ---------------------------------------------------------------------------------


def _basic_user(authorization: str) -> str | None:
    found = gws.basic_credentials(authorization)
    return found[0] if found else None


def _gws_error(http: int, code: int, message: str) -> web.Response:
    return web.json_response({"statusCode": code, "statusMessage": message}, status=http)


class Mock:
    """The mock GWS: the capture, what is left of it, who is who, and the HTTP handlers."""

    def __init__(self, config: MockConfig, capture: Capture) -> None:
        if config.speed < 0:
            raise ValueError("speed must not be negative")
        self.config = config
        self.capture = capture
        self.stats = MockStats()
        self.book = Book(capture.pairs, config.match)
        self.bayeux = BayeuxServer(timeout=config.cometd_timeout, authenticate=self.owner_of)
        self.sessions: dict[str, str] = {}  # JSESSIONID -> scope
        self.claims: dict[str, str] = {}  # identity (user:NAME, cookie:..., client:ADDR) -> scope
        self.names: dict[str, str] = {}  # scope -> the name /api/v2/me reports
        self.csrf: dict[str, str] = {}  # scope -> token
        self._scopes = set(capture.scopes)
        # Scopes that name no user (session:HASH, client:ADDR) go to unknown users in turn.
        self._unclaimed = [s for s in capture.scopes if not s.startswith("user:")]
        self._timeline_started = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._client: aiohttp.ClientSession | None = None
        self._forward = (
            config.unmatched.removeprefix("forward:")
            if config.unmatched.startswith("forward:")
            else None
        )

    # ---- who is who --------------------------------------------------------------------------

    def owner_of(self, request: web.Request) -> str:
        """The scope a request (REST or CometD) plays: Basic user, else cookie, else address.

        Any password is accepted (captures hold none). A user the capture names plays its own
        scope; an unknown one plays a recorded scope that names no user, else a scope of its own.
        """
        user = _basic_user(request.headers.get("Authorization", ""))
        if user is not None:
            scope = self._claim("user:" + user)
            self.names.setdefault(scope, user)
            return scope
        cookie = request.cookies.get("JSESSIONID")
        if cookie:
            return self.sessions.get(cookie) or self._claim("cookie:" + cookie)
        return self._claim("client:" + (request.remote or "unknown"))

    def _claim(self, identity: str) -> str:
        scope = self.claims.get(identity)
        if scope is None:
            if identity in self._scopes:
                scope = identity
            elif self._unclaimed:
                scope = self._unclaimed.pop(0)
                log.info("%s plays the recorded %s", identity, scope)
            else:
                scope = identity
            self.claims[identity] = scope
        return scope

    def _owns_anything(self, scope: str) -> bool:
        return scope in self._scopes

    # ---- HTTP ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.bayeux.add_routes(app)
        app.router.add_get("/api/v2/me", self.me)
        app.router.add_get("/api/v2/me/{tail:.+}", self.get)
        app.router.add_post("/api/v2/me/{tail:.+}", self.post)
        app.router.add_route("*", "/{tail:.*}", self.other)
        return app

    async def me(self, request: web.Request) -> web.Response:
        self._start_without_pairs()
        has_user = _basic_user(request.headers.get("Authorization", "")) is not None
        cookie = request.cookies.get("JSESSIONID", "")
        if not has_user and cookie not in self.sessions:
            return _gws_error(401, 20, "Not authenticated: log in with Basic auth (any password)")
        scope = self.owner_of(request)
        name = self.names.get(scope) or scope.partition(":")[2] or scope
        return logged_in(request, name, scope, self.sessions, self.csrf)

    async def get(self, request: web.Request) -> web.StreamResponse:
        self._start_without_pairs()
        owner = self.owner_of(request)
        tail = request.match_info["tail"].strip("/")
        parts = tail.split("/")
        known = self.capture.interactions.get(parts[-1]) if len(parts) > 1 else None
        if known is not None:
            self.stats.gets += 1
            return web.json_response({"statusCode": 0, known.key: known.snapshot()})
        media = gws.media_of(parts[0])
        listing = len(parts) == 1 or (len(parts) == 2 and media == "openmedia")
        if media == gws.UNKNOWN or not listing:
            return await self._not_recorded(request, "GET")
        items = [k for k in self.capture.interactions.values() if k.media == media]
        if self._owns_anything(owner):
            items = [k for k in items if owner in k.owners]
        if len(parts) == 2:  # openmedia/<mediaType>
            items = [k for k in items if (k.fields or {}).get("mediaType", parts[1]) == parts[1]]
        self.stats.gets += 1
        return web.json_response({"statusCode": 0, tail: [k.snapshot() for k in items]})

    async def post(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        owner = self.owner_of(request)
        self.stats.requests += 1
        self._start_timeline()
        asked = describe_request(request.method, request.path, body)
        pair = self.book.take(asked, owner)
        if pair is not None:
            self.stats.matched += 1
            return self._replay(pair, owner)
        return await self._unmatched(request, asked, owner, body)

    async def other(self, request: web.Request) -> web.StreamResponse:
        self._start_without_pairs()
        return await self._not_recorded(request, request.method)

    async def _not_recorded(self, request: web.Request, method: str) -> web.StreamResponse:
        if self._forward is not None:
            return await self._forward_request(request, await request.read())
        return _gws_error(404, 6, f"not in the capture: {method} {request.path}")

    # ---- answering -----------------------------------------------------------------------------

    def _replay(self, pair: RecordedPair, owner: str) -> web.Response:
        if pair.channel is not None:
            speed = self.config.speed
            delay = pair.delay / speed if speed > 0 else 0.0
            if pair.note_first:
                self._push(pair.channel, pair.data, owner, pair.state, unsolicited=False)
            else:
                self._later(delay, self._push, pair.channel, pair.data, owner, pair.state, False)
        if pair.status is None:
            return _gws_error(
                502, 4, f"pair {pair.id} has no recorded answer (it was {pair.record_status})"
            )
        headers = {"Content-Type": pair.content_type} if pair.content_type else None
        return web.Response(status=pair.status, body=pair.answer, headers=headers)

    async def _unmatched(
        self, request: web.Request, asked: Asked, owner: str, body: bytes
    ) -> web.StreamResponse:
        self.stats.unmatched += 1
        found = self.book.closest(asked, owner)
        where = f"{asked.method} {request.path}"
        if found is not None:
            pair, diff = found
            hint = f"closest: pair {pair.id}: {'; '.join(diff)}"
            log.warning(
                "no recorded pair for %s from %s; closest: pair %d (%s from %s): %s",
                where,
                owner,
                pair.id,
                pair.where(),
                pair.scope,
                "; ".join(diff),
            )
        else:
            pair, hint = None, "the capture holds no pairs"
            log.warning("no recorded pair for %s from %s (%s)", where, owner, hint)
        # Only a user-data operation gets a user-data recording (not, say, a chat Complete).
        user_data_op = (asked.operation or "").lower() in _OPERATIONS
        if self.config.unmatched == "closest" and pair is not None and user_data_op:
            self.stats.closest += 1
            self.book.use(pair)
            return self._replay(pair, owner)
        if self._forward is not None:
            return await self._forward_request(request, body)
        return _gws_error(404, 6, f"no recorded pair for {where} ({hint})")

    async def _forward_request(self, request: web.Request, body: bytes) -> web.Response:
        assert self._forward is not None
        if self._client is None:
            self._client = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        url = URL(self._forward + request.raw_path, encoded=True)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS]
        try:
            async with self._client.request(
                request.method,
                url,
                data=body if body else None,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                content = await response.read()
                content_type = response.headers.get("Content-Type")
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            log.warning("forwarding %s %s failed: %s", request.method, request.path, reason)
            return _gws_error(502, 4, f"forwarding to {self._forward} failed: {reason}")
        self.stats.forwarded += 1
        headers_out = {"Content-Type": content_type} if content_type else None
        return web.Response(status=status, body=content, headers=headers_out)

    # ---- notifications ---------------------------------------------------------------------------

    def _later(self, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            self._timers.discard(handle)  # type: ignore[arg-type]
            callback(*args)

        handle = loop.call_later(max(0.0, delay), fire)
        self._timers.add(handle)

    def _push(
        self,
        channel: str,
        data: Any,
        owner: str,
        state: tuple[str, dict[str, Any]] | None,
        unsolicited: bool,
    ) -> None:
        if state is not None:
            known = self.capture.interactions.get(state[0])
            if known is not None:
                known.user_data = dict(state[1])
        if self.bayeux.publish(channel, data, (owner,)):
            if unsolicited:
                self.stats.unsolicited += 1
            else:
                self.stats.notifications += 1
        else:
            self.stats.undelivered += 1
            log.info(
                "no CometD client of %s subscribed to %s: notification dropped", owner, channel
            )

    def _start_timeline(self) -> None:
        """Unsolicited notifications, at their recorded offsets from the first request."""
        if self._timeline_started:
            return
        self._timeline_started = True
        t0 = self.capture.t0
        speed = self.config.speed
        for note in self.capture.notes:
            offset = (note.t - t0) if t0 is not None else 0.0
            delay = max(0.0, offset / speed) if speed > 0 else 0.0
            self._later(delay, self._push, note.channel, note.data, note.scope, note.state, True)

    def _start_without_pairs(self) -> None:
        # Without pairs there is no first user-data request: the first request of any kind.
        if not self.capture.pairs:
            self._start_timeline()

    async def close(self) -> None:
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None


# ---- running it ---------------------------------------------------------------------------------


@dataclass(slots=True)
class RunningMock:
    mock: Mock
    runner: web.AppRunner
    url: str

    @property
    def stats(self) -> MockStats:
        return self.mock.stats

    @property
    def capture(self) -> Capture:
        return self.mock.capture

    @property
    def port(self) -> int:
        return int(URL(self.url).port or 0)

    async def stop(self) -> None:
        await self.mock.close()
        # Release held long-poll connects so that the runner does not wait for them.
        for session in list(self.mock.bayeux.sessions.values()):
            session.closed = True
            session.release()
        await self.runner.cleanup()


async def start_mock(config: MockConfig, capture: Capture | None = None) -> RunningMock:
    """Load the capture (unless given) and listen on config.host:port (0: any free port).

    Raises CaptureError for an unusable capture and OSError when the address is taken."""
    if capture is None:
        capture = load_capture(config.capture)
    mock = Mock(config, capture)
    runner = web.AppRunner(mock.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = runner.addresses[0][1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    return RunningMock(mock, runner, f"http://{host}:{port}")


def serve_main(config: MockConfig, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`gwsproxy serve`: run until Ctrl-C (or SIGTERM). Bad input: one line on err, exit 2."""
    out = out or sys.stdout
    err = err or sys.stderr
    _log_to(err)
    try:
        capture = load_capture(config.capture)
    except CaptureError as e:
        print(f"gwsproxy serve: {e}", file=err)
        return EXIT_USAGE
    for notice in capture.notices:
        print(f"gwsproxy serve: note: {notice}", file=err)

    async def main() -> int:
        try:
            running = await start_mock(config, capture)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                print(
                    f"gwsproxy serve: port {config.port} is in use on {config.host}: "
                    "pick another with -p",
                    file=err,
                )
            else:
                print(
                    f"gwsproxy serve: cannot listen on {config.host}:{config.port}: "
                    f"{e.strerror or e}",
                    file=err,
                )
            return EXIT_USAGE
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        agents = len(capture.scopes)
        print(
            f"mock GWS on {running.url} from {config.capture} "
            f"({len(capture.pairs)} pairs, {agents} agents)",
            file=out,
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            s = running.stats
            print(
                f"gwsproxy serve: {s.requests} requests, {s.matched} matched, "
                f"{s.unmatched} unmatched, {s.notifications + s.unsolicited} notifications "
                f"pushed ({s.undelivered} undelivered), {running.mock.book.unused} pairs unused",
                file=err,
                flush=True,
            )
            await running.stop()
        return 0

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0


def _log_to(stream: TextIO) -> None:
    logger = logging.getLogger("gwsproxy.replay")
    if not logger.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("gwsproxy serve: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if logger.level == logging.NOTSET else logger.level)
        handler.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    from gwsproxy.replay import add_serve_arguments

    parser = argparse.ArgumentParser(
        prog="gwsproxy serve", description="A mock GWS answering from a capture."
    )
    add_serve_arguments(parser)
    return serve_main(MockConfig.from_args(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
