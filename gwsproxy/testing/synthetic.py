"""Synthetic captures for the inspector's tests, benchmark and screenshots.

Scripted GWS traffic goes, as the events the mitmproxy addon hands over, through the recording
core (`gwsproxy.record.core.Recording`), so every record on disk is one the recorder could have
written: applied, coerced, not applied, side effects, rejected, error, timeout, plus unsolicited
notifications and raw (unreadable) messages.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gwsproxy import bayeux, gws
from gwsproxy.capture.writer import CaptureWriter
from gwsproxy.record.core import Recording
from gwsproxy.record.events import (
    ADVANCE,
    CLOSE,
    REQUEST,
    RESPONSE,
    Advance,
    Close,
    Headers,
    Identity,
    Request,
    Response,
)
from gwsproxy.redact import Redactor
from gwsproxy.verdict import VerdictName

START = 1_700_000_000.0
MEDIA = ("chat", "sms", "facebook", "voice", "email", "workitem")
KEYS = ("UserData1", "UserData2", "CustomerSegment", "Priority", "CaseId", "Language", "Topic")
# Outcome weights: mostly applied, a few of everything else.
OUTCOMES = (
    (VerdictName.APPLIED, 70),
    (VerdictName.COERCED, 6),
    (VerdictName.NOT_APPLIED, 4),
    (VerdictName.SIDE_EFFECTS, 6),
    (VerdictName.REJECTED, 4),
    (VerdictName.ERROR, 3),
    (VerdictName.TIMEOUT, 4),
)
CLIENT = "127.0.0.1"
JSON: Headers = [(b"Content-Type", b"application/json")]
PASSWORD = "password"

Record = tuple[int, dict[str, Any], dict[str, Any] | None]


def request_headers(user: str, password: str, body: bytes) -> Headers:
    """A JSON POST's header fields, with Basic credentials."""
    return [
        (b"Host", b"127.0.0.1:8090"),
        (b"Authorization", gws.basic_authorization(user, password).encode()),
        *JSON,
        (b"Content-Length", str(len(body)).encode()),
    ]


def get_answer(
    flow_id: Any, identity: Identity, media: gws.Media, interaction: dict, t: float
) -> Response:
    """The answer to a GET of `interaction` ({"id": ..., "userData": ...}): the recorder takes
    its user data as the interaction's state before the next request."""
    body = json.dumps({"statusCode": 0, media.object_key: interaction}).encode()
    path = f"/api/v2/me/{media.collections[0]}/{interaction['id']}"
    return Response(RESPONSE, flow_id, identity, "GET", path, 200, JSON, body, t)


def long_poll(
    flow_id: Any, identity: Identity, batch: bytes, t: float, status: int = 200
) -> Response:
    """The answer to a long poll: a Bayeux batch of messages, as GWS sends them."""
    path = bayeux.NOTIFICATIONS_PATH
    return Response(RESPONSE, flow_id, identity, "POST", path, status, JSON, batch, t)


class _Kept:
    """Where the recording core writes (in place of a CaptureWriter): records kept until taken."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def write(self, kind: int, summary: dict, body: dict | None = None) -> int:
        self.records.append((kind, summary, body))
        return 0

    def close(self, end: bool = True) -> None:
        pass

    def take(self) -> list[Record]:
        taken, self.records = self.records, []
        return taken


@dataclass(slots=True)
class _Interaction:
    id: str
    media: gws.Media
    agent: str
    user_data: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> Identity:
        return (self.agent, None, CLIENT)


class Traffic:
    """An endless, deterministic stream of capture records (kind, summary, body)."""

    def __init__(
        self,
        seed: int = 0,
        *,
        agents: int = 4,
        per_agent: int = 3,
        start: float = START,
        unsolicited_every: int = 15,
        raw_every: int = 60,
    ) -> None:
        self.random = random.Random(seed)
        self.recording = Recording(timeout=10.0)
        self.recording.redactor = Redactor(salt=b"synthetic")
        self._kept = _Kept()
        self.recording.writer = self._kept
        self.t = start
        self.unsolicited_every = unsolicited_every
        self.raw_every = raw_every
        self.steps = 0
        self._ref = 100
        self.interactions: list[_Interaction] = []
        names = [f"agent{a + 1}" for a in range(agents)]
        for a, name in enumerate(names):
            for k in range(per_agent):
                media = gws.MEDIA_BY_NAME[MEDIA[(a * per_agent + k) % len(MEDIA)]]
                iid = f"{media.name[:2].upper()}{a + 1:02d}{k + 1:02d}-{seed:04x}"
                ix = _Interaction(iid, media, name, {"CustomerSegment": "default"})
                self.interactions.append(ix)
                if (a + k) % 5:  # most interactions were seen (a GET) before they were changed
                    shown = {"id": iid, "userData": ix.user_data}
                    self.recording.handle(
                        get_answer(f"get-{iid}", ix.identity, media, shown, start)
                    )

    def records(self, n: int, *, big_value: int = 0) -> Iterator[Record]:
        """The records of n more requests (timeouts close later; some records are extra)."""
        for _ in range(n):
            yield from self.step(big_value=big_value if self.steps == 3 else 0)

    def step(self, *, big_value: int = 0) -> Iterator[Record]:
        self.steps += 1
        rnd = self.random
        self.t += rnd.uniform(0.05, 1.5)
        self.recording.handle(Advance(ADVANCE, self.t))
        ix = rnd.choice(self.interactions)
        outcome = _pick(rnd)
        operation, requested = self._request(ix, big_value)
        self._exchange(ix, operation, requested, outcome)
        if self.unsolicited_every and self.steps % self.unsolicited_every == 0:
            other = rnd.choice(self.interactions)
            self.t += 0.01
            self._notify(other, "StatusChanged", None)
        if self.raw_every and self.steps % self.raw_every == 0:
            page = b"<html>502 Bad Gateway</html>\xff"  # from a proxy on the way: unreadable
            identity = self.interactions[0].identity
            self.recording.handle(long_poll(f"poll-{self.steps}-raw", identity, page, self.t, 502))
        yield from self._kept.take()

    def close(self) -> Iterator[Record]:
        """What a recorder writes at shutdown: the still open requests as incomplete."""
        self.recording.handle(Close(CLOSE, self.t + 0.5))
        yield from self._kept.take()

    # ---- one exchange ----------------------------------------------------------------------

    def _request(self, ix: _Interaction, big_value: int) -> tuple[str, Any]:
        rnd = self.random
        roll = rnd.random()
        if big_value:
            return gws.UPDATE, {"Transcript": "x" * big_value}
        if roll < 0.7 or not ix.user_data:
            keys = rnd.sample(KEYS, rnd.randint(1, 3))
            data = {k: _value(rnd, k) for k in keys}
            return (gws.UPDATE if roll < 0.55 else gws.ATTACH), data
        if roll < 0.85:
            return gws.DELETE_PAIR, rnd.choice(sorted(ix.user_data))
        keys = rnd.sample(sorted(ix.user_data), min(2, len(ix.user_data)))
        return gws.DELETE, keys

    def _exchange(self, ix: _Interaction, operation: str, requested: Any, outcome: str) -> None:
        rnd = self.random
        flow = f"flow-{self.steps}"
        doc: dict[str, Any] = {"operationName": operation}
        if operation in (gws.UPDATE, gws.ATTACH):
            doc["userData"] = requested
        elif operation == gws.DELETE_PAIR:
            doc["key"] = requested
        else:
            doc["keys"] = requested
        body = json.dumps(doc).encode()
        path = f"/api/v2/me/{ix.media.collections[0]}/{ix.id}"
        headers = request_headers(ix.agent, PASSWORD, body)
        t0 = self.t
        self.recording.handle(Request(REQUEST, flow, ix.identity, "POST", path, headers, body, t0))
        self._ref += 1
        ref = self._ref
        if outcome == VerdictName.REJECTED:
            answer = {"statusCode": 2, "statusMessage": "Interaction not found"}
        else:
            answer = {"statusCode": 0}
            if ix.media.reference_in_answer:
                answer["referenceId"] = ref
        abody = json.dumps(answer).encode()
        t1 = t0 + rnd.uniform(0.002, 0.02)
        self.recording.handle(
            Response(RESPONSE, flow, ix.identity, "POST", path, 200, JSON, abody, t1)
        )
        if outcome in (VerdictName.REJECTED, VerdictName.TIMEOUT):
            return
        self.t = t1 + rnd.uniform(0.01, 0.3)
        if outcome == VerdictName.ERROR:
            self._notify(ix, "Error", ref)
            return
        after = dict(gws.apply_user_data(ix.user_data.items(), operation, requested, ix.media.name))
        if outcome == VerdictName.COERCED and isinstance(requested, dict):
            k = next(iter(requested))
            v = requested[k]
            after[k] = str(v) if not isinstance(v, str) else (int(v) if v.isdigit() else v + " ")
        elif outcome == VerdictName.NOT_APPLIED and isinstance(requested, dict):
            k = next(iter(requested))
            after[k] = ix.user_data.get(k, "old")
        elif outcome == VerdictName.NOT_APPLIED:
            after[rnd.choice(KEYS)] = "kept"
            if isinstance(requested, str):
                after[requested] = ix.user_data.get(requested, "kept")
        elif outcome == VerdictName.SIDE_EFFECTS:
            after["LastChangedBy"] = ix.agent
            after["ChangeCount"] = after.get("ChangeCount", 0) + 1
        ix.user_data = after
        changed = "AttachedDataChanged" if ix.media.name == "voice" else "PropertiesUpdated"
        self._notify(ix, changed, ref)

    def _notify(self, ix: _Interaction, note_type: str, ref: int | None) -> None:
        media = ix.media
        data: dict[str, Any] = {"messageType": media.message_type}
        if media.name == "voice" and note_type == "Error":
            data = {"messageType": gws.VOICE_ERROR, "errorMessage": "Attach failed"}
        else:
            data["notificationType"] = note_type
            if ref is not None and media.name != "voice":
                data["referenceId"] = ref
            obj: dict[str, Any] = {"id": ix.id, "state": "Processing"}
            if note_type != "Error":
                obj["userData"] = ix.user_data
            else:
                data["errorMessage"] = "Cannot update user data"
            data[media.object_key] = obj
        message = json.dumps({"channel": media.channel, "data": data}).encode()
        self.recording.handle(
            long_poll(f"poll-{self.steps}", ix.identity, b"[" + message + b"]", self.t)
        )


def write_capture(
    path: str | Path,
    pairs: int = 200,
    *,
    seed: int = 0,
    close: bool = True,
    big_value: int = 0,
    version: int | None = None,
    **traffic: Any,
) -> Traffic:
    """Write a capture of about `pairs` requests and return the traffic (to append more).
    `version`: the capture format (default: the current one)."""
    source = Traffic(seed, **traffic)
    header = {"tool_version": "synthetic", "upstream": "http://gws.test"}
    writer = CaptureWriter(path, header, version=version)
    for kind, summary, body in source.records(pairs, big_value=big_value):
        writer.write(kind, summary, body)
    if close:
        for kind, summary, body in source.close():
            writer.write(kind, summary, body)
        writer.close()
    else:
        del writer  # releases the descriptor without an END record, as a crash would
    return source


def _pick(rnd: random.Random) -> str:
    return rnd.choices([o for o, _ in OUTCOMES], weights=[w for _, w in OUTCOMES])[0]


def _value(rnd: random.Random, key: str) -> Any:
    if key == "Priority":
        return rnd.randint(1, 9)
    if key == "UserData1":
        return rnd.choice([987654321, "987654321", 42])
    if key == "CaseId":
        return f"CASE-{rnd.randint(1000, 9999)}"
    if key == "Language":
        return rnd.choice(["en", "fr", "de", "nl"])
    return rnd.choice(["default", "gold", "silver", "DATAUPDATE-@123", "vip"])
