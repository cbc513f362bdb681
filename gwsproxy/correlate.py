"""The Correlator: pairs each user-data request with the CometD notification it caused.

Pure state driven by explicit timestamps (no clock inside), following PRODUCT.md's rules: scopes,
before-snapshots, exact then inferred matching in either arrival order, and closing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gwsproxy import gws
from gwsproxy.lenient import Unreadable

EXACT = "exact"
INFERRED = "inferred"
MATCHED = "matched"
ERROR = "error"
REJECTED = "rejected"
TIMEOUT = "timeout"
INCOMPLETE = "incomplete"


class Scopes:
    """Whose traffic this is: the Basic-auth user, else the JSESSIONID cookie, else the client."""

    def __init__(self) -> None:
        self._user_of_session: dict[str, str] = {}
        self._key = secrets.token_bytes(16)

    def redacted(self, secret: str) -> str:
        """A stand-in for a session cookie: a keyed hash, stable within this recording only."""
        data = secret.encode("utf-8", "replace")
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:12]

    def learn(self, session: str, user: str) -> None:
        """A session cookie handed to (or sent by) a Basic-auth user is that user's scope."""
        self._user_of_session[session] = user

    def scope(self, user: str | None, session: str | None, client: str | None) -> str:
        if user:
            if session:
                self.learn(session, user)
            return f"user:{user}"
        if session:
            known = self._user_of_session.get(session)
            return f"user:{known}" if known else f"session:{self.redacted(session)}"
        return f"client:{client or 'unknown'}"


@dataclass(slots=True, eq=False)
class Pair:
    """A request and what answered it. `raw_*` are opaque to the core: the edges fill them."""

    id: int
    key: Any  # the edge's handle for the HTTP exchange (a flow id)
    scope: str
    request: gws.UserDataRequest
    t_request: float
    before: dict[str, Any] | None  # None: the interaction was never seen
    raw_request: Any = None
    answer: gws.Answer | Unreadable | None = None
    http_status: int | None = None
    t_answer: float | None = None
    raw_answer: Any = None
    note: gws.Notification | None = None
    t_note: float | None = None
    raw_note: Any = None
    correlation: str | None = None
    status: str | None = None  # matched, error, rejected, timeout, incomplete
    error: str | None = None  # a transport failure seen on the way

    @property
    def answer_reference(self) -> int | str | None:
        return self.answer.reference_id if isinstance(self.answer, gws.Answer) else None

    @property
    def after(self) -> dict[str, Any] | None:
        """The interaction's user data after the request: absent in a change means empty."""
        if self.note is None or self.note.is_error:
            return None
        return self.note.user_data if self.note.user_data is not None else {}


@dataclass(frozen=True, slots=True)
class Unsolicited:
    """A notification that answered no request."""

    scope: str
    note: gws.Notification
    t: float
    raw: Any = None


Closed = Pair | Unsolicited


@dataclass(slots=True)
class Counts:
    pairs: int = 0
    unsolicited: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def consistent(request: gws.UserDataRequest, note: gws.Notification) -> bool:
    """Whether a notification shows the effect the request asked for (equal-looking values)."""
    if note.is_error:
        return True
    after = note.user_data or {}
    op = request.operation
    if op in (gws.UPDATE, gws.ATTACH):
        wanted = request.user_data or {}
        return all(k in after and _looks_equal(after[k], v) for k, v in wanted.items())
    if op == gws.DELETE and request.keys is None and request.key is None:
        return not after
    doomed = set(request.keys or ()) | ({request.key} if request.key is not None else set())
    return not (doomed & after.keys())


class Correlator:
    """Open requests, interaction snapshots and matching; every call returns what it closed."""

    def __init__(self, timeout: float = 10.0, first_id: int = 1) -> None:
        self.timeout = timeout
        self.scopes = Scopes()
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.counts = Counts()
        self._next_id = first_id
        self._open: dict[Any, Pair] = {}  # by edge key, oldest first
        self._awaiting_ref: dict[tuple[str, Any], Pair] = {}  # answer gave a referenceId
        self._inferred_ref: dict[tuple[str, Any], Pair] = {}  # note ref -> pair it was guessed for

    @property
    def open_count(self) -> int:
        return len(self._open)

    def is_open(self, key: Any) -> bool:
        return key in self._open

    # ---- events ---------------------------------------------------------------------------

    def observe(self, interaction_id: str, user_data: dict[str, Any]) -> None:
        """A GET answer showed an interaction's user data."""
        self.snapshots[interaction_id] = user_data

    def request(
        self, key: Any, scope: str, request: gws.UserDataRequest, t: float, raw: Any = None
    ) -> list[Closed]:
        # A key still open is a handle the edge reused: what it held is closed, not dropped.
        closed: list[Closed] = []
        stale = self._open.get(key)
        if stale is not None:
            closed += self._close(stale, INCOMPLETE if stale.note is None else _note_status(stale))
        pair = Pair(
            id=self._next_id,
            key=key,
            scope=scope,
            request=request,
            t_request=t,
            before=self.snapshots.get(request.interaction_id),
            raw_request=raw,
        )
        self._next_id += 1
        self._open[key] = pair
        return closed

    def answer(
        self,
        key: Any,
        answer: gws.Answer | Unreadable,
        http_status: int | None,
        t: float,
        raw: Any = None,
    ) -> list[Closed]:
        pair = self._open.get(key)
        if pair is None:
            return []
        pair.answer, pair.http_status, pair.t_answer, pair.raw_answer = answer, http_status, t, raw
        if _rejected(answer, http_status):
            # A rejected request changed nothing: a notification guessed for it is someone else's.
            loose = self._take_note(pair) if pair.note is not None else None
            return self._close(pair, REJECTED) + self._place(pair.scope, loose)
        ref = pair.answer_reference
        loose = None
        if ref is not None:
            if pair.note is not None and pair.note.reference_id not in (ref, None):
                loose = self._take_note(pair)  # that guess was wrong: the answer names another
            if pair.note is None:
                self._steal(pair, ref)
                if pair.note is None:
                    self._awaiting_ref[(pair.scope, ref)] = pair
            elif pair.note.reference_id == ref:
                pair.correlation = EXACT
        closed: list[Closed] = []
        if pair.note is not None:
            closed += self._close(pair, _note_status(pair))
        # Placed only now, so that a pair whose note was just stolen is a candidate again.
        return closed + self._place(pair.scope, loose)

    def failed(self, key: Any, reason: str, t: float) -> list[Closed]:
        """The HTTP exchange broke; the notification may still come, so the pair stays open."""
        pair = self._open.get(key)
        if pair is None:
            return []
        pair.error = reason
        if pair.note is not None:
            return self._close(pair, ERROR if pair.note.is_error else MATCHED)
        return []

    def notification(
        self, scope: str, note: gws.Notification, t: float, raw: Any = None
    ) -> list[Closed]:
        closed = self._match(scope, note, t, raw)
        self._remember(note)
        return closed

    def expire(self, now: float) -> list[Closed]:
        """Close the requests whose notification did not come within the timeout."""
        closed: list[Closed] = []
        for pair in list(self._open.values()):
            if pair.t_request + self.timeout > now:
                break
            closed += self._close(pair, TIMEOUT if pair.note is None else _note_status(pair))
        return closed

    def close(self, now: float) -> list[Closed]:
        """Shutdown: what is still open is written as incomplete."""
        closed: list[Closed] = []
        for pair in list(self._open.values()):
            closed += self._close(pair, INCOMPLETE if pair.note is None else _note_status(pair))
        return closed

    # ---- matching -------------------------------------------------------------------------

    def _match(self, scope: str, note: gws.Notification, t: float, raw: Any) -> list[Closed]:
        ref = note.reference_id
        if ref is not None:
            pair = self._awaiting_ref.pop((scope, ref), None)
            if pair is not None and self._open.get(pair.key) is pair:
                pair.note, pair.t_note, pair.raw_note, pair.correlation = note, t, raw, EXACT
                return self._close(pair, _note_status(pair))
        pair = self._infer(scope, note) if note.reports_change else None
        if pair is None:
            self.counts.unsolicited += 1
            return [Unsolicited(scope, note, t, raw)]
        pair.note, pair.t_note, pair.raw_note, pair.correlation = note, t, raw, INFERRED
        if ref is not None:
            self._inferred_ref[(scope, ref)] = pair
        if pair.answer is None and pair.error is None:
            return []  # the notification overtook the HTTP answer: wait for it
        return self._close(pair, _note_status(pair))

    def _infer(self, scope: str, note: gws.Notification) -> Pair | None:
        candidates = [
            p
            for p in self._candidates(scope, note.interaction_id)
            if note.reference_id is None or p.answer_reference in (None, note.reference_id)
        ]
        for p in candidates:
            if consistent(p.request, note):
                return p
        return candidates[0] if candidates else None

    def _candidates(self, scope: str, interaction_id: str | None) -> Iterator[Pair]:
        for p in self._open.values():
            if p.scope == scope and p.note is None and p.request.interaction_id == interaction_id:
                yield p

    def _take_note(self, pair: Pair) -> tuple[gws.Notification, float, Any]:
        """Take back a notification that was wrongly guessed for this pair."""
        note, t, raw = pair.note, pair.t_note, pair.raw_note
        assert note is not None and t is not None
        if note.reference_id is not None and (
            self._inferred_ref.get((pair.scope, note.reference_id)) is pair
        ):
            del self._inferred_ref[(pair.scope, note.reference_id)]
        pair.note = pair.t_note = pair.raw_note = pair.correlation = None
        return note, t, raw

    def _place(self, scope: str, loose: tuple[gws.Notification, float, Any] | None) -> list[Closed]:
        """Look for the owner of a notification taken back from another pair."""
        return [] if loose is None else self._match(scope, *loose)

    def _steal(self, pair: Pair, ref: Any) -> None:
        """The answer names a referenceId whose notification was guessed for another open pair."""
        thief = self._inferred_ref.get((pair.scope, ref))
        if thief is None or thief is pair or self._open.get(thief.key) is not thief:
            return
        if thief.note is None or thief.note.reference_id != ref:
            return
        pair.note, pair.t_note, pair.raw_note = self._take_note(thief)
        pair.correlation = EXACT

    def _remember(self, note: gws.Notification) -> None:
        if note.interaction_id is None or note.is_error:
            return
        if note.user_data is not None:
            self.snapshots[note.interaction_id] = note.user_data
        elif note.reports_change:
            self.snapshots[note.interaction_id] = {}  # voice: no userData after deleting all

    def _close(self, pair: Pair, status: str) -> list[Closed]:
        self._open.pop(pair.key, None)
        ref = pair.answer_reference
        if ref is not None and self._awaiting_ref.get((pair.scope, ref)) is pair:
            del self._awaiting_ref[(pair.scope, ref)]
        note_ref = pair.note.reference_id if pair.note is not None else None
        if note_ref is not None and self._inferred_ref.get((pair.scope, note_ref)) is pair:
            del self._inferred_ref[(pair.scope, note_ref)]
        pair.status = status
        self.counts.pairs += 1
        self.counts.by_status[status] = self.counts.by_status.get(status, 0) + 1
        return [pair]


def _looks_equal(a: Any, b: Any) -> bool:
    """Equal, or equal once written out: 987654321 looks like "987654321", true like "true"."""
    return a == b or _text(a) == _text(b)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):  # mixed key types that cannot be sorted
        return str(value)


def _rejected(answer: gws.Answer | Unreadable, http_status: int | None) -> bool:
    if isinstance(answer, gws.Answer) and answer.status_code is not None:
        return answer.status_code != 0
    return http_status is not None and http_status >= 400


def _note_status(pair: Pair) -> str:
    return ERROR if pair.note is not None and pair.note.is_error else MATCHED
