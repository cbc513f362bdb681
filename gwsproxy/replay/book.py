"""What a capture holds for a mock GWS, and the book that matches requests to recordings.

Pure: reads a capture into recorded pairs and notifications; matching compares requests as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gwsproxy import gws
from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.lenient import Parsed, loads

_MAX_DIFFS = 6


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
        return gws.with_user_data(obj, self.user_data.items(), self.media)


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
    items: list[RecordedPair | RecordedNote] = [*pairs, *notes]
    for item in sorted(items, key=lambda x: x.t):
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
        # A repeated key (voice AttachUserData) goes out again as it was recorded.
        message = json.loads(raw, object_pairs_hook=gws.json_object)
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
            recorded = self._flat_of(p)
            changes = []
            for k in sorted(recorded.keys() | flat.keys()):
                if k not in flat:
                    changes.append(f"body {k or 'value'} missing (recorded {_short(recorded[k])})")
                elif k not in recorded:
                    changes.append(f"body {k or 'value'} {_short(flat[k])} not recorded")
                elif flat[k] != recorded[k]:
                    changes.append(
                        f"body {k or 'value'} {_short(flat[k])} (recorded {_short(recorded[k])})"
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
