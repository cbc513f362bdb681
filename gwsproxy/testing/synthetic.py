"""Synthetic captures for the inspector's tests, benchmark and screenshots.

Scripted GWS traffic goes through the real Correlator and record schema, so every pair on disk is
one the recorder could have written: applied, coerced, not applied, side effects, rejected, error,
timeout, plus unsolicited notifications and raw (unreadable) messages.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gwsproxy import gws
from gwsproxy.capture.format import Kind
from gwsproxy.capture.writer import CaptureWriter
from gwsproxy.correlate import Correlator, Pair
from gwsproxy.record.records import pair_record, raw_record, unsolicited_record
from gwsproxy.redact import Redactor

START = 1_700_000_000.0
MEDIA = ("chat", "sms", "facebook", "voice", "email", "workitem")
KEYS = ("UserData1", "UserData2", "CustomerSegment", "Priority", "CaseId", "Language", "Topic")
# Outcome weights: mostly applied, a few of everything else.
OUTCOMES = (
    ("applied", 70),
    ("coerced", 6),
    ("not applied", 4),
    ("side effects", 6),
    ("rejected", 4),
    ("error", 3),
    ("timeout", 4),
)

Record = tuple[int, dict[str, Any], dict[str, Any] | None]


@dataclass(slots=True)
class _Interaction:
    id: str
    media: gws.Media
    scope: str
    user_data: dict[str, Any] = field(default_factory=dict)


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
        self.correlator = Correlator(timeout=10.0)
        self.redactor = Redactor(salt=b"synthetic")
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
                ix = _Interaction(iid, media, f"user:{name}", {"CustomerSegment": "default"})
                self.interactions.append(ix)
                if (a + k) % 5:  # most interactions were seen (a GET) before they were changed
                    self.correlator.observe(iid, dict(ix.user_data))

    def records(self, n: int, *, big_value: int = 0) -> Iterator[Record]:
        """The records of n more requests (timeouts close later; some records are extra)."""
        for _ in range(n):
            yield from self.step(big_value=big_value if self.steps == 3 else 0)

    def step(self, *, big_value: int = 0) -> Iterator[Record]:
        self.steps += 1
        rnd = self.random
        self.t += rnd.uniform(0.05, 1.5)
        yield from self._closed(self.correlator.expire(self.t))
        ix = rnd.choice(self.interactions)
        outcome = _pick(rnd)
        operation, requested = self._request(ix, big_value)
        yield from self._exchange(ix, operation, requested, outcome)
        if self.unsolicited_every and self.steps % self.unsolicited_every == 0:
            other = rnd.choice(self.interactions)
            self.t += 0.01
            yield from self._notify(other, "StatusChanged", None)
        if self.raw_every and self.steps % self.raw_every == 0:
            yield (
                Kind.RAW,
                *raw_record(
                    self.t,
                    "not JSON: Expecting value: line 1 column 1 (char 0)",
                    "long-polling",
                    b"<html>502 Bad Gateway</html>\xff",
                    "user:agent1",
                    path="/api/v2/notifications",
                ),
            )

    def close(self) -> Iterator[Record]:
        """What a recorder writes at shutdown: the still open requests as incomplete."""
        yield from self._closed(self.correlator.close(self.t + 0.5))

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

    def _exchange(self, ix: _Interaction, operation: str, requested: Any, outcome: str):
        rnd = self.random
        key = f"flow-{self.steps}"
        doc: dict[str, Any] = {"operationName": operation}
        if operation in (gws.UPDATE, gws.ATTACH):
            doc["userData"] = requested
        elif operation == gws.DELETE_PAIR:
            doc["key"] = requested
        else:
            doc["keys"] = requested
        body = json.dumps(doc).encode()
        path = f"/api/v2/me/{ix.media.collections[0]}/{ix.id}"
        req = gws.classify_request("POST", path, body)
        assert isinstance(req, gws.UserDataRequest)
        raw_req = {
            "method": "POST",
            "path": path,
            "headers": [["Content-Type", "application/json"], ["Authorization", "<redacted>"]],
            "body": body,
            "repairs": [],
        }
        t0 = self.t
        out = list(self.correlator.request(key, ix.scope, req, t0, raw_req))
        self._ref += 1
        ref = self._ref
        if outcome == "rejected":
            answer = {"statusCode": 2, "statusMessage": "Interaction not found"}
        else:
            answer = {"statusCode": 0}
            if ix.media.reference_in_answer:
                answer["referenceId"] = ref
        abody = json.dumps(answer).encode()
        raw_ans = {"status": 200, "headers": [["Content-Type", "application/json"]], "body": abody}
        t1 = t0 + rnd.uniform(0.002, 0.02)
        out += self.correlator.answer(key, gws.parse_answer(abody), 200, t1, raw_ans)
        yield from self._closed(out)
        if outcome in ("rejected", "timeout"):
            return
        self.t = t1 + rnd.uniform(0.01, 0.3)
        if outcome == "error":
            yield from self._notify(ix, "Error", ref)
            return
        after = _apply(ix.user_data, operation, requested)
        if outcome == "coerced" and isinstance(requested, dict):
            k = next(iter(requested))
            v = requested[k]
            after[k] = str(v) if not isinstance(v, str) else (int(v) if v.isdigit() else v + " ")
        elif outcome == "not applied" and isinstance(requested, dict):
            k = next(iter(requested))
            after[k] = ix.user_data.get(k, "old")
        elif outcome == "not applied":
            after[rnd.choice(KEYS)] = "kept"
            if isinstance(requested, str):
                after[requested] = ix.user_data.get(requested, "kept")
        elif outcome == "side effects":
            after["LastChangedBy"] = ix.scope.removeprefix("user:")
            after["ChangeCount"] = after.get("ChangeCount", 0) + 1
        ix.user_data = after
        changed = "AttachedDataChanged" if ix.media.name == "voice" else "PropertiesUpdated"
        yield from self._notify(ix, changed, ref)

    def _notify(self, ix: _Interaction, note_type: str, ref: int | None) -> Iterator[Record]:
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
        message = {"channel": media.channel, "data": data}
        note = gws.parse_notification(message)
        assert note is not None
        raw = {"transport": "long-polling", "raw": json.dumps(message).encode(), "repairs": []}
        yield from self._closed(self.correlator.notification(ix.scope, note, self.t, raw))

    def _closed(self, closed: list) -> Iterator[Record]:
        for item in closed:
            if isinstance(item, Pair):
                yield (Kind.PAIR, *pair_record(item, self.redactor))
            else:
                yield (Kind.NOTIFICATION, *unsolicited_record(item))


def write_capture(
    path: str | Path,
    pairs: int = 200,
    *,
    seed: int = 0,
    close: bool = True,
    big_value: int = 0,
    **traffic: Any,
) -> Traffic:
    """Write a capture of about `pairs` requests and return the traffic (to append more)."""
    source = Traffic(seed, **traffic)
    writer = CaptureWriter(path, {"tool_version": "synthetic", "upstream": "http://gws.test"})
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


def _apply(before: dict[str, Any], operation: str, requested: Any) -> dict[str, Any]:
    after = dict(before)
    if operation in (gws.UPDATE, gws.ATTACH):
        after.update(requested)
    elif operation == gws.DELETE_PAIR:
        after.pop(requested, None)
    else:
        for k in requested:
            after.pop(k, None)
    return after
