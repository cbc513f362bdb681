"""The Correlator: pairs each user-data request with the CometD notification it caused.

Pure state driven by explicit timestamps (no clock inside): scopes, before-snapshots, exact then
inferred matching in either arrival order, and closing. The rules, with an example of every
closing status, are in docs/correlation.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gwsproxy import gws
from gwsproxy.lenient import Unreadable

EXACT = "exact"
INFERRED = "inferred"


class Status(StrEnum):
    """How a pair closed: the `status` of its capture record, export object and CLI line (each
    with an example in docs/correlation.md)."""

    MATCHED = "matched"
    ERROR = "error"  # its notification is an Error (or voice ErrorMessage)
    REJECTED = "rejected"  # the answer's statusCode is not 0 (or HTTP >= 400 without one)
    TIMEOUT = "timeout"  # no notification within the timeout
    LOST = "lost"  # its effect showed in a later operation's notification; its own never came
    AMBIGUOUS = "ambiguous"  # a notification showed its effect and another request's alike
    FAILED = "failed"  # never reached GWS (the upstream refused the connection, TLS failed)
    INCOMPLETE = "incomplete"  # still open when the recording stopped


_SEEN_REFS = 65536  # referenceIds remembered per recording, to know a duplicate notification


class Scopes:
    """Whose traffic this is: the Basic-auth user, else the JSESSIONID cookie, else the client."""

    def __init__(self) -> None:
        self._scope_of_session: dict[str, str] = {}
        self._key = secrets.token_bytes(16)

    def redacted(self, secret: str) -> str:
        """A stand-in for a session cookie: a keyed hash, stable within this recording only."""
        data = secret.encode("utf-8", "replace")
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:12]

    def learn(self, session: str, user: str) -> None:
        """A session cookie handed to (or sent by) a Basic-auth user is that user's scope."""
        self._scope_of_session[session] = f"user:{user}"

    def renew(self, old: str, new: str) -> None:
        """GWS handed a session a new cookie (it restarted, or renewed the session): the agent
        behind it stays who it was, with its open requests and snapshots."""
        if new != old:
            self._scope_of_session[new] = self.scope(None, old, None)

    def scope(self, user: str | None, session: str | None, client: str | None) -> str:
        if user:
            if session:
                self.learn(session, user)
            return f"user:{user}"
        if session:
            return self._scope_of_session.get(session) or f"session:{self.redacted(session)}"
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
    status: Status | None = None
    error: str | None = None  # a transport failure seen on the way, or why the pair closed so
    lost_in: int | None = None  # the pair whose notification showed this one's effect
    evidence: Any = None  # how the Correlator decided on `note` (its own business)
    before_of: int = 0  # the pair whose notification `before` is, once one replaced the snapshot

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
    reason: str | None = None  # why it answered no request, where the Correlator knows more


Closed = Pair | Unsolicited


@dataclass(slots=True)
class Counts:
    pairs: int = 0
    unsolicited: int = 0
    by_status: dict[Status, int] = field(default_factory=dict)


# ---- what a request asks for, and what a notification shows of it ------------------------------

_ABSENT = object()  # the value of a key that a request deletes
Effect = dict[str, Any] | None  # key -> value written (or _ABSENT); None: every key deleted


def effect(request: gws.UserDataRequest) -> Effect:
    """What the request does to the interaction's user data, key by key (`gws.effect_of`)."""
    done = gws.effect_of(request.operation, request.requested, request.media)
    if done.everything:
        return None
    return {**done.writes, **dict.fromkeys(done.deletes, _ABSENT)}


def consistent(request: gws.UserDataRequest, note: gws.Notification) -> bool:
    """Whether a notification shows the effect the request asked for (equal-looking values)."""
    if note.is_error:
        return True
    after = note.user_data or {}
    wanted = effect(request)
    if wanted is None:
        return not after
    return all(_shows(after, k, v) for k, v in wanted.items())


def evidenced(
    request: gws.UserDataRequest,
    before: dict[str, Any] | None,
    others: Sequence[gws.UserDataRequest],
) -> bool:
    """Whether a state that shows the request's effect shows it *because of* this request: some
    part of the effect was not so `before` and none of `others` asked for it. Where `before` is
    unknown, nothing is evidence: the key may have held that value all along."""
    if before is None:
        return False
    wanted = effect(request)
    theirs = [effect(o) for o in others]
    if wanted is None:  # everything deleted: a key that was there and nobody else deletes
        return any(not any(_asks(e, k, _ABSENT) for e in theirs) for k in before)
    for k, v in wanted.items():
        if _shows(before, k, v):
            continue
        if any(_asks(e, k, v) for e in theirs):
            continue
        return True
    return False


def _shows(state: dict[str, Any], key: str, value: Any) -> bool:
    if value is _ABSENT:
        return key not in state
    return key in state and _written_alike(state[key], value)


def _asks(other: Effect, key: str, value: Any) -> bool:
    if other is None:
        return value is _ABSENT
    if key not in other:
        return False
    theirs = other[key]
    if value is _ABSENT or theirs is _ABSENT:
        return value is theirs
    return _written_alike(theirs, value)


# ---- the Correlator -----------------------------------------------------------------------------

Lane = tuple[str, str | None]  # (scope, interaction id): where inferred matching looks
Unconfirmed = tuple[int, gws.UserDataRequest]  # a pair closed without its notification
_UNCONFIRMED = 100_000  # at most this many remembered, the oldest forgotten first


@dataclass(slots=True, eq=False)
class _Held:
    """A notification on its way to a pair, with the evidence it arrived with."""

    scope: str
    note: gws.Notification
    t: float
    raw: Any
    before: dict[str, Any] | None = None  # the interaction's user data just before it
    # Tuples until there is something to hold: one of these is made per notification.
    unconfirmed: Sequence[Unconfirmed] = ()  # closed without their own: may show in it, late
    last_id: int = 0  # only requests seen before it can have caused it
    group: Sequence[Pair] = ()  # whose it may be, when undecided
    lost: Sequence[Pair] = ()  # older requests it shows were lost

    @property
    def lane(self) -> Lane:
        return (self.scope, self.note.interaction_id)


class Correlator:
    """Open requests, interaction snapshots and matching; every call returns what it closed."""

    def __init__(self, timeout: float = 10.0, first_id: int = 1) -> None:
        self.timeout = timeout
        self.scopes = Scopes()
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.counts = Counts()
        self._next_id = first_id
        self._open: dict[Any, Pair] = {}  # by edge key, oldest first
        self._last_request: dict[str, int] = {}  # interaction -> its newest request's pair id
        self._awaiting_ref: dict[tuple[str, Any], Pair] = {}  # answer gave a referenceId
        self._inferred_ref: dict[tuple[str, Any], Pair] = {}  # note ref -> pair it was guessed for
        self._held: dict[Lane, list[_Held]] = {}  # undecided notifications, in arrival order
        self._seen: OrderedDict[tuple[str, Any], int] = OrderedDict()  # ref -> pair it went to
        self._unconfirmed: dict[Lane, list[Unconfirmed]] = {}  # until a newer one is matched
        self._unconfirmed_order: deque[tuple[Lane, Unconfirmed]] = deque()

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
            closed += self._close(
                stale, Status.INCOMPLETE if stale.note is None else _note_status(stale)
            )
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
        self._last_request[request.interaction_id] = pair.id
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
        loose = None
        closed: list[Closed] = []
        if _rejected(answer, http_status):
            # A rejected request changed nothing: a notification guessed for it is someone else's.
            loose = self._take_note(pair) if pair.note is not None else None
            closed += self._close(pair, Status.REJECTED)
        else:
            ref = pair.answer_reference
            if ref is not None:
                if pair.note is not None and pair.note.reference_id not in (ref, None):
                    loose = self._take_note(pair)  # that guess was wrong: the answer names another
                if pair.note is None:
                    self._steal(pair, ref)
                    if pair.note is None:
                        self._awaiting_ref[(pair.scope, ref)] = pair
                elif pair.note.reference_id == ref:
                    pair.correlation = EXACT
            if pair.note is not None:
                closed += self._close(pair, _note_status(pair))
            elif pair.lost_in is not None and ref is None:
                closed += self._close(pair, Status.LOST)  # nothing more can come for it
        # Placed only now, so that a pair whose note was just stolen is a candidate again.
        if loose is not None:
            self._hold(loose)
        return closed + self._resolve((pair.scope, pair.request.interaction_id))

    def failed(self, key: Any, reason: str, t: float, reached: bool = True) -> list[Closed]:
        """The HTTP exchange broke. If the request may have reached GWS, its notification may
        still come, so the pair stays open; if it never did, the pair closes as failed."""
        pair = self._open.get(key)
        if pair is None:
            return []
        pair.error = reason
        if pair.note is not None:
            return self._close(pair, _note_status(pair))
        if not reached:
            return self._close(pair, Status.FAILED) + self._resolve(
                (pair.scope, pair.request.interaction_id)
            )
        return []

    def notification(
        self, scope: str, note: gws.Notification, t: float, raw: Any = None
    ) -> list[Closed]:
        held = _Held(scope, note, t, raw, self.snapshots.get(note.interaction_id or ""))
        closed = self._match(held)
        self._remember(note)
        return closed

    def carry_over(self, pair_id: int, scope: str, request: gws.UserDataRequest) -> None:
        """A request closed without its notification (timed out, ambiguous, or left open by an
        earlier recorder of the capture): its notification may still come, and must then pair
        with nothing, until a newer request of its interaction is matched."""
        lane = (scope, request.interaction_id)
        entry = (pair_id, request)
        self._unconfirmed.setdefault(lane, []).append(entry)
        self._unconfirmed_order.append((lane, entry))
        if len(self._unconfirmed_order) > _UNCONFIRMED:
            self._forget_oldest_unconfirmed()

    def placed_before(self, scope: str, ref: Any, pair_id: int) -> None:
        """An earlier recorder placed the notification with this referenceId (with pair
        `pair_id`, 0: with none): a copy of it that comes now pairs with nothing."""
        self._see(scope, ref, pair_id)

    def expire(self, now: float) -> list[Closed]:
        """Close the requests whose notification did not come within the timeout."""
        closed: list[Closed] = []
        for lane in list(self._held):
            closed += self._expire_held(lane, now)
        for pair in list(self._open.values()):
            if pair.t_request + self.timeout > now:
                break
            closed += self._close(pair, self._closing_status(pair, Status.TIMEOUT))
        for lane in list(self._held):
            closed += self._resolve(lane)
        return closed

    def close(self, now: float) -> list[Closed]:
        """Shutdown: what is still open is written as incomplete."""
        closed: list[Closed] = []
        for pair in list(self._open.values()):
            closed += self._close(pair, self._closing_status(pair, Status.INCOMPLETE))
        for queue in self._held.values():
            for h in queue:
                closed += self._unsolicited(h, "still undecided when the recording ended")
        self._held.clear()
        return closed

    # ---- matching -------------------------------------------------------------------------

    def _match(self, h: _Held) -> list[Closed]:
        scope, note = h.scope, h.note
        ref = note.reference_id
        lane = h.lane
        if ref is not None and note.reports_change:  # (another type may share its referenceId)
            if (scope, ref) in self._seen:
                owner = self._seen[(scope, ref)]
                of = f"of pair {owner}" if owner else "that answered no request"
                return self._unsolicited(h, f"a second copy of the notification {of}")
            if any(held.note.reference_id == ref for held in self._held.get(lane, ())):
                return self._unsolicited(h, "a second copy of a notification still undecided")
        if note.reports_change:  # requests closed without their notification may show in it
            h.unconfirmed = list(self._unconfirmed.get(lane, ()))
        if ref is not None:
            pair = self._awaiting_ref.pop((scope, ref), None)
            if pair is not None and self._open.get(pair.key) is pair:
                self._assign(pair, h, EXACT)
                return self._close(pair, _note_status(pair)) + self._resolve(lane)
        if not note.reports_change:
            return self._unsolicited(h)
        h.last_id = self._next_id - 1
        if lane not in self._held:  # the usual case: decided at once
            chosen = self._decide(h)
            if chosen is not None:
                return self._give(chosen, h)
            if not h.group:
                return self._unsolicited(h, self._late_reason(h))
        self._hold(h)
        return self._resolve(lane)

    def _hold(self, h: _Held) -> None:
        queue = self._held.setdefault(h.lane, [])
        queue.append(h)
        if len(queue) > 1 and queue[-2].t > h.t:  # a notification given back: keep time order
            queue.sort(key=lambda held: held.t)

    def _resolve(self, lane: Lane) -> list[Closed]:
        """Decide what the evidence now allows for the lane's undecided notifications."""
        queue = self._held.get(lane)
        closed: list[Closed] = []
        progress = True
        while queue and progress:
            progress = False
            for h in list(queue):
                owner = self._decide(h)
                if owner is None and h.group:
                    continue
                queue.remove(h)
                progress = True
                if owner is None:
                    closed += self._unsolicited(h, self._late_reason(h))
                    break
                closed += self._give(owner, h)
                break
            if queue and not progress:
                closed += self._in_order(queue)
                progress = not queue
        if not queue:
            self._held.pop(lane, None)
        return closed

    def _decide(self, h: _Held) -> Pair | None:
        """The pair a notification belongs to; None with `h.group` set while undecided, None
        with an empty group when it belongs to no open request."""
        scope, note = h.scope, h.note
        ref = note.reference_id
        h.group = h.lost = ()
        if ref is not None:
            awaited = self._awaiting_ref.get((scope, ref))
            if awaited is not None and awaited.note is None and self._open.get(awaited.key):
                del self._awaiting_ref[(scope, ref)]
                h.group = [awaited]
                return awaited
        candidates = [
            p
            for p in self._open.values()
            if p.scope == scope
            and p.note is None
            and p.lost_in is None
            and p.id <= h.last_id
            and p.request.interaction_id == note.interaction_id
            and (ref is None or p.answer_reference in (None, ref))
        ]
        if not candidates:
            return None
        media = gws.MEDIA_BY_NAME.get(note.media)
        if ref is not None and media is not None and media.reference_in_answer:
            # Its answers name the referenceId: while one may still come, wait for it.
            pending = [p for p in candidates if p.answer is None and p.error is None]
            if pending:
                h.group = pending
                return None
        if note.is_error or (len(candidates) == 1 and not h.unconfirmed):
            # No user data to tell by (an error), or nobody else it could be: the oldest's.
            return candidates[0]
        shown = [p for p in candidates if consistent(p.request, note)]
        late = [u for u in h.unconfirmed if consistent(u[1], note)]
        if not shown:
            # The late notification of a request closed without it, or a change nobody asked
            # for (GWS did not apply it): the oldest open request's.
            return None if late else candidates[0]
        explainers = [q.request for q in candidates] + [r for _, r in h.unconfirmed]

        def caused(p: Pair) -> bool:
            return evidenced(p.request, h.before, [r for r in explainers if r is not p.request])

        # The latest request whose effect it shows owns it: a notification is the state after
        # its operation. Later ones that show only what others asked for could be its owner too.
        last = next((i for i in range(len(shown) - 1, -1, -1) if caused(shown[i])), None)
        group = shown if last is None else shown[last:]
        if len(group) > 1 or (last is None and late):
            h.group = group
            return None
        if last is not None:
            h.lost = [p for p in shown[:last] if caused(p)]
        return group[0]

    def _in_order(self, queue: list[_Held]) -> list[Closed]:
        """Undecided notifications, as many as the requests they could belong to (open, or
        closed without theirs) and each showing the effect of the one in its place: in the
        order GWS carried those requests out, theirs."""
        late = {u[0]: u[1] for h in queue for u in h.unconfirmed if consistent(u[1], h.note)}
        slots: list[tuple[int, Pair | None, gws.UserDataRequest]] = sorted(
            [(p.id, p, p.request) for h in queue for p in h.group if p.id not in late]
            + [(pair_id, None, r) for pair_id, r in late.items()],
            key=lambda slot: slot[0],
        )
        slots = list({slot[0]: slot for slot in slots}.values())
        if len(slots) != len(queue):
            return []
        if not all(consistent(r, h.note) for (_, _, r), h in zip(slots, queue, strict=True)):
            return []
        closed: list[Closed] = []
        for (pair_id, pair, _), h in zip(slots, list(queue), strict=True):
            queue.remove(h)
            if pair is None:
                closed += self._unsolicited(h, f"the late notification of pair {pair_id}")
            else:
                h.group, h.lost = [pair], []
                closed += self._give(pair, h)
        return closed

    def _give(self, pair: Pair, h: _Held) -> list[Closed]:
        ref = h.note.reference_id
        correlation = EXACT if ref is not None and pair.answer_reference == ref else INFERRED
        self._assign(pair, h, correlation)
        closed: list[Closed] = []
        for older in h.lost:
            older.lost_in = pair.id
            if older.answer is not None and older.answer_reference is None:
                closed += self._close(older, Status.LOST)
        if ref is not None and correlation == INFERRED:
            self._inferred_ref[(pair.scope, ref)] = pair
        if pair.answer is None and pair.error is None:
            return closed  # the notification overtook the HTTP answer: wait for it
        return closed + self._close(pair, _note_status(pair))

    def _assign(self, pair: Pair, h: _Held, correlation: str) -> None:
        pair.note, pair.t_note, pair.raw_note, pair.correlation = h.note, h.t, h.raw, correlation
        pair.evidence = h
        if h.note.reference_id is not None:
            self._see(pair.scope, h.note.reference_id, pair.id)
        # Notifications of one interaction come in the order GWS carried the requests out: once
        # this one's came, older requests closed without theirs will never show in a later one.
        lane = (pair.scope, pair.request.interaction_id)
        older = self._unconfirmed.get(lane)
        if older:
            older[:] = [u for u in older if u[0] > pair.id]
            if not older:
                del self._unconfirmed[lane]
        self._carried_out(pair, h.note)

    def _carried_out(self, pair: Pair, note: gws.Notification) -> None:
        """GWS carries out an interaction's operations in the order they came: an open request
        made after `pair`'s, still without its notification, met the user data this notification
        shows, whatever was known when it was made (a client that does not wait for each
        notification, the coarse times of a HAR)."""
        interaction = pair.request.interaction_id
        if note.is_error or self._last_request.get(interaction, 0) <= pair.id:
            return  # (the usual case: no request of the interaction came after this one)
        state = (
            note.user_data if note.user_data is not None else {} if note.reports_change else None
        )
        if state is None:
            return
        for later in self._open.values():
            if (
                later.id > pair.id > later.before_of
                and later.note is None
                and later.request.interaction_id == interaction
            ):
                later.before, later.before_of = state, pair.id

    def _see(self, scope: str, ref: Any, pair_id: int) -> None:
        """Where a notification went (0: nowhere), to know a second copy of it."""
        self._seen[(scope, ref)] = pair_id
        if len(self._seen) > _SEEN_REFS:
            self._seen.popitem(last=False)

    def _take_note(self, pair: Pair) -> _Held:
        """Take back a notification that was wrongly guessed for this pair."""
        h = pair.evidence
        assert isinstance(h, _Held)
        ref = h.note.reference_id
        if ref is not None:
            if self._inferred_ref.get((pair.scope, ref)) is pair:
                del self._inferred_ref[(pair.scope, ref)]
            if self._seen.get((pair.scope, ref)) == pair.id:
                del self._seen[(pair.scope, ref)]
        for older in h.lost:  # what that guess concluded goes with it
            if older.lost_in == pair.id and self._open.get(older.key) is older:
                older.lost_in = None
        h.lost = ()
        pair.note = pair.t_note = pair.raw_note = pair.correlation = pair.evidence = None
        return h

    def _steal(self, pair: Pair, ref: Any) -> None:
        """The answer names a referenceId whose notification was guessed for another open pair."""
        thief = self._inferred_ref.get((pair.scope, ref))
        if thief is None or thief is pair or self._open.get(thief.key) is not thief:
            return
        if thief.note is None or thief.note.reference_id != ref:
            return
        self._assign(pair, self._take_note(thief), EXACT)

    def _expire_held(self, lane: Lane, now: float) -> list[Closed]:
        """An undecided notification whose candidates' time is up: none of them can be told."""
        closed: list[Closed] = []
        for h in list(self._held.get(lane, ())):
            if not h.group or all(p.t_request + self.timeout > now for p in h.group):
                continue
            self._held[lane].remove(h)
            ids = _pairs([p.id for p in h.group])
            if all(consistent(p.request, h.note) for p in h.group):
                alike = f"shows the effect of {ids} alike"
            else:
                alike = f"could be the notification of {ids}: nothing told them apart"
            late = self._late_reason(h)
            alike += f", or {late}" if late else ""
            ref = h.note.reference_id
            what = "the notification" + (f" with referenceId {ref}" if ref is not None else "")
            for p in h.group:
                if self._open.get(p.key) is p:
                    p.error = _join(f"{what} {alike}", p.error)
                    closed += self._close(p, Status.AMBIGUOUS)
            closed += self._unsolicited(h, alike)
        if not self._held.get(lane):
            self._held.pop(lane, None)
        return closed

    def _late_reason(self, h: _Held) -> str | None:
        late = [pair_id for pair_id, r in h.unconfirmed if consistent(r, h.note)]
        return f"may be the late notification of {_pairs(late)}" if late else None

    def _unsolicited(self, h: _Held, reason: str | None = None) -> list[Closed]:
        if h.note.reference_id is not None and h.note.reports_change:
            self._see(h.scope, h.note.reference_id, 0)
        self.counts.unsolicited += 1
        return [Unsolicited(h.scope, h.note, h.t, h.raw, reason)]

    def _remember(self, note: gws.Notification) -> None:
        if note.interaction_id is None or note.is_error:
            return
        if note.user_data is not None:
            self.snapshots[note.interaction_id] = note.user_data
        elif note.reports_change:
            self.snapshots[note.interaction_id] = {}  # voice: no userData after deleting all

    def _forget_oldest_unconfirmed(self) -> None:
        lane, entry = self._unconfirmed_order.popleft()
        left = self._unconfirmed.get(lane)
        if left and entry in left:
            left.remove(entry)
            if not left:
                del self._unconfirmed[lane]

    def _closing_status(self, pair: Pair, otherwise: Status) -> Status:
        if pair.note is not None:
            return _note_status(pair)
        return Status.LOST if pair.lost_in is not None else otherwise

    def _close(self, pair: Pair, status: Status) -> list[Closed]:
        self._open.pop(pair.key, None)
        ref = pair.answer_reference
        if ref is not None and self._awaiting_ref.get((pair.scope, ref)) is pair:
            del self._awaiting_ref[(pair.scope, ref)]
        note_ref = pair.note.reference_id if pair.note is not None else None
        if note_ref is not None and self._inferred_ref.get((pair.scope, note_ref)) is pair:
            del self._inferred_ref[(pair.scope, note_ref)]
        if status == Status.LOST:
            why = f"its effect showed in pair {pair.lost_in}'s notification; its own never came"
            pair.error = _join(why, pair.error)
        elif status in (Status.TIMEOUT, Status.AMBIGUOUS) and pair.note is None:
            # It may have been carried out all the same: its effect may show in what comes next.
            self.carry_over(pair.id, pair.scope, pair.request)
        pair.status = status
        self.counts.pairs += 1
        self.counts.by_status[status] = self.counts.by_status.get(status, 0) + 1
        return [pair]


def _pairs(pair_ids: Sequence[int]) -> str:
    """'pair 3', 'pairs 3 and 4', 'pairs 3, 4 and 5'."""
    ids = [str(i) for i in pair_ids]
    if len(ids) == 1:
        return f"pair {ids[0]}"
    return "pairs " + ", ".join(ids[:-1]) + " and " + ids[-1]


def _join(reason: str, earlier: str | None) -> str:
    return reason if not earlier else f"{reason} (before that: {earlier})"


def _written_alike(a: Any, b: Any) -> bool:
    """Equal, or written alike as JSON: 987654321 and "987654321", true and "true".

    Matching's test of whether a state shows a requested value: cheap (it runs per notification
    and open request) and loose enough that a value GWS stored as text still shows. Whether the
    type changed is for the verdict to say (`verdict._equal_but_for_type`)."""
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


def _note_status(pair: Pair) -> Status:
    return Status.ERROR if pair.note is not None and pair.note.is_error else Status.MATCHED
