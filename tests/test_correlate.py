"""The Correlator: which request gets which notification, and what a capture then says about it.

Inputs are built with the real parsers (gws.classify_request, gws.parse_answer,
gws.parse_notification, bayeux.parse_batch) so the scenarios exercise the shapes seen on the wire.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gwsproxy import bayeux, gws
from gwsproxy.capture.format import pack, unpack
from gwsproxy.correlate import (
    EXACT,
    INFERRED,
    Correlator,
    Pair,
    Scopes,
    Status,
    Unsolicited,
    consistent,
)
from gwsproxy.record.records import pair_record
from gwsproxy.redact import Redactor

A1 = "user:agent1"
A2 = "user:agent2"
COLLECTION = {
    "voice": "calls",
    "chat": "chats",
    "sms": "smssessions",
    "workitem": "workitems",
    "email": "emails",
}


# ---- builders: the real parsers, fed the real wire shapes ---------------------------------------


def request(
    media: str, iid: str, operation: str = gws.UPDATE, **fields: Any
) -> gws.UserDataRequest:
    body = json.dumps({"operationName": operation, **fields}).encode()
    found = gws.classify_request("POST", f"/api/v2/me/{COLLECTION[media]}/{iid}", body)
    assert isinstance(found, gws.UserDataRequest), found
    return found


def update(media: str, iid: str, **user_data: Any) -> gws.UserDataRequest:
    return request(media, iid, gws.UPDATE, userData=user_data)


def answer(reference: int | None = None, status_code: int = 0, message: str | None = None):
    doc: dict[str, Any] = {"statusCode": status_code}
    if reference is not None:
        doc["referenceId"] = reference
    if message is not None:
        doc["statusMessage"] = message
    parsed = gws.parse_answer(json.dumps(doc).encode())
    assert isinstance(parsed, gws.Answer)
    return parsed


def data(
    media: str,
    iid: str,
    user_data: dict[str, Any] | None,
    ref: int | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """The `data` object of a GWS notification, as the docs print it."""
    m = gws.MEDIA_BY_NAME[media]
    kind = kind or ("AttachedDataChanged" if media in ("voice", "im") else "PropertiesUpdated")
    obj: dict[str, Any] = {"id": iid, "state": "Talking" if media == "voice" else "Chatting"}
    if user_data is not None:
        obj["userData"] = user_data
    out: dict[str, Any] = {"messageType": m.message_type, "notificationType": kind}
    if ref is not None:
        out["referenceId"] = ref
    out[m.object_key] = obj
    return out


def message(media: str, iid: str, user_data: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    """A whole Bayeux data message: channel + data."""
    return {"channel": gws.MEDIA_BY_NAME[media].channel, "data": data(media, iid, user_data, **kw)}


def note(media: str, iid: str, user_data: dict[str, Any] | None, **kw: Any) -> gws.Notification:
    parsed = gws.parse_notification(message(media, iid, user_data, **kw))
    assert parsed is not None
    return parsed


def error_note(media: str, iid: str, ref: int | None = None) -> gws.Notification:
    if media == "voice":  # voice errors are their own messageType, without referenceId
        msg: dict[str, Any] = {
            "channel": "/v2/me/calls",
            "data": {
                "messageType": "ErrorMessage",
                "errorMessage": "T-Server rejected the request",
                "call": {"id": iid},
            },
        }
    else:
        msg = message(media, iid, {"ignored": "yes"}, ref=ref, kind="Error")
        msg["data"]["errorMessage"] = "Interaction server error"
    parsed = gws.parse_notification(msg)
    assert parsed is not None and parsed.is_error
    return parsed


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def pair_of(items: list[Any]) -> Pair:
    item = only(items)
    assert isinstance(item, Pair), item
    return item


# ---- exact and inferred, both arrival orders ----------------------------------------------------


def test_exact_match_when_the_answer_names_the_reference_id() -> None:
    c = Correlator()
    req = update("workitem", "WI1", Priority=5)
    assert c.request("f1", A1, req, 0.0, raw={"r": 1}) == []
    assert c.answer("f1", answer(7), 200, 0.1, raw={"a": 1}) == []  # waits for the notification
    assert c.open_count == 1
    n = note("workitem", "WI1", {"Priority": 5, "Other": "x"}, ref=7)
    p = pair_of(c.notification(A1, n, 0.4, raw={"n": 1}))
    assert (p.status, p.correlation) == (Status.MATCHED, EXACT)
    assert p.key == "f1" and p.request is req and p.note is n
    assert p.answer_reference == 7 and p.note.reference_id == 7
    assert p.after == {"Priority": 5, "Other": "x"}
    assert (p.t_request, p.t_answer, p.t_note) == (0.0, 0.1, 0.4)
    assert (p.raw_request, p.raw_answer, p.raw_note) == ({"r": 1}, {"a": 1}, {"n": 1})
    assert c.open_count == 0


def test_exact_match_ignores_a_notification_with_another_reference_id() -> None:
    c = Correlator()
    c.request("f1", A1, update("workitem", "WI1", Priority=5), 0.0)
    c.answer("f1", answer(7), 200, 0.1)
    other = c.notification(A1, note("workitem", "WI1", {"Priority": 5}, ref=6), 0.2)
    assert isinstance(only(other), Unsolicited)  # ref 6 belongs to nobody here
    p = pair_of(c.notification(A1, note("workitem", "WI1", {"Priority": 5}, ref=7), 0.3))
    assert (p.correlation, p.note.reference_id) == (EXACT, 7)


def test_chat_notification_before_the_answer_is_inferred_when_the_answer_comes() -> None:
    c = Correlator()
    c.request("f1", A1, update("chat", "CH1", UserData1="a"), 0.0)
    n = note("chat", "CH1", {"UserData1": "a"}, ref=85)
    assert c.notification(A1, n, 0.05) == []  # overtook the HTTP answer: nothing closed yet
    assert c.is_open("f1")
    p = pair_of(c.answer("f1", answer(), 200, 0.1))  # chat answers carry no referenceId
    assert (p.status, p.correlation, p.note) == (Status.MATCHED, INFERRED, n)
    assert p.t_note < p.t_answer
    assert p.after == {"UserData1": "a"}


def test_workitem_notification_before_the_answer_becomes_exact_when_the_answer_comes() -> None:
    c = Correlator()
    c.request("f1", A1, update("workitem", "WI1", Priority=5), 0.0)
    n = note("workitem", "WI1", {"Priority": 5}, ref=7)
    assert c.notification(A1, n, 0.05) == []
    p = pair_of(c.answer("f1", answer(7), 200, 0.1))
    assert (p.status, p.correlation, p.note) == (Status.MATCHED, EXACT, n)


def test_answer_without_reference_after_inferred_guess_keeps_it_inferred() -> None:
    c = Correlator()
    c.request("f1", A1, update("chat", "CH1", k="v"), 0.0)
    c.answer("f1", answer(), 200, 0.1)
    p = pair_of(c.notification(A1, note("chat", "CH1", {"k": "v"}, ref=3), 0.2))
    assert (p.status, p.correlation) == (Status.MATCHED, INFERRED)


# ---- several open requests on one interaction ---------------------------------------------------


def _two_open(c: Correlator) -> None:
    c.request("A", A1, update("chat", "CH1", X=1), 0.0)
    c.request("B", A1, update("chat", "CH1", Y=2), 0.1)
    assert c.answer("A", answer(), 200, 0.2) == []
    assert c.answer("B", answer(), 200, 0.3) == []


def test_two_requests_notifications_in_order() -> None:
    c = Correlator()
    _two_open(c)
    first = pair_of(c.notification(A1, note("chat", "CH1", {"X": 1}, ref=1), 1.0))
    second = pair_of(c.notification(A1, note("chat", "CH1", {"X": 1, "Y": 2}, ref=2), 1.1))
    assert (first.key, first.after) == ("A", {"X": 1})
    assert (second.key, second.after) == ("B", {"X": 1, "Y": 2})
    assert {first.correlation, second.correlation} == {INFERRED}
    assert first.before is None  # CH1 was never seen before
    # GWS carried the second out on what the first left, whatever was known when it was sent.
    assert second.before == {"X": 1}


def test_two_requests_out_of_order_the_consistent_request_wins() -> None:
    c = Correlator()
    _two_open(c)
    # B's effect shows first (Y=2, no X yet): it is B's, although A is older.
    first = pair_of(c.notification(A1, note("chat", "CH1", {"Y": 2}, ref=2), 1.0))
    assert first.key == "B"
    second = pair_of(c.notification(A1, note("chat", "CH1", {"X": 1, "Y": 2}, ref=1), 1.1))
    assert second.key == "A"


def test_no_consistent_request_goes_to_the_oldest() -> None:
    c = Correlator()
    _two_open(c)
    p = pair_of(c.notification(A1, note("chat", "CH1", {"Z": 3}, ref=9), 1.0))
    assert p.key == "A" and p.correlation == INFERRED


def test_consistent_request_wins_before_the_answers_too() -> None:
    c = Correlator()
    c.request("A", A1, update("chat", "CH1", X=1), 0.0)
    c.request("B", A1, update("chat", "CH1", Y=2), 0.1)
    assert c.notification(A1, note("chat", "CH1", {"Y": 2}, ref=2), 0.2) == []
    assert pair_of(c.answer("B", answer(), 200, 0.3)).key == "B"
    assert c.is_open("A")


def test_snapshot_order_two_requests() -> None:
    """Each request's before is what the proxy knew when the request passed."""
    c = Correlator()
    c.observe("CH1", {"X": 0})
    c.request("A", A1, update("chat", "CH1", X=1), 0.0)
    c.answer("A", answer(), 200, 0.1)
    pa = pair_of(c.notification(A1, note("chat", "CH1", {"X": 1}), 0.2))
    c.request("B", A1, update("chat", "CH1", Y=2), 0.3)
    c.answer("B", answer(), 200, 0.4)
    pb = pair_of(c.notification(A1, note("chat", "CH1", {"X": 1, "Y": 2}), 0.5))
    assert (pa.before, pa.after) == ({"X": 0}, {"X": 1})
    assert (pb.before, pb.after) == ({"X": 1}, {"X": 1, "Y": 2})


# ---- batches, scopes -----------------------------------------------------------------------------


def test_batched_notifications_each_go_to_their_own_request() -> None:
    c = Correlator()
    c.request("c1", A1, update("chat", "CH1", a=1), 0.0)
    c.request("w1", A1, update("workitem", "WI1", b=2), 0.0)
    c.request("c2", A2, update("chat", "CH2", c=3), 0.0)
    c.request("v1", A1, update("voice", "CALL1", d=4), 0.0)
    for key in ("c1", "c2", "v1"):
        c.answer(key, answer(), 200, 0.1)
    c.answer("w1", answer(41), 200, 0.1)
    # One held /meta/connect answer for agent1: a meta reply, then data for several interactions
    # (and one for agent2's chat, which must not pair with anything of agent1).
    body = json.dumps(
        [
            {"channel": "/meta/connect", "id": "7", "successful": True, "advice": {"timeout": 0}},
            message("voice", "CALL1", {"d": 4}) | {"id": "7"},
            message("chat", "CH2", {"c": 3}, ref=12),
            message("workitem", "WI1", {"b": 2}, ref=41),
            message("chat", "CH1", {"a": 1}, ref=11),
        ]
    ).encode()
    batch = bayeux.parse_batch(body, "application/json")
    assert isinstance(batch, bayeux.Batch)
    closed: list[Any] = []
    for m in batch.messages:
        if bayeux.is_data(m):
            n = gws.parse_notification(m)
            assert n is not None
            closed += c.notification(A1, n, 1.0)
    pairs = {item.key: item for item in closed if isinstance(item, Pair)}
    assert set(pairs) == {"c1", "w1", "v1"}
    assert pairs["c1"].after == {"a": 1} and pairs["c1"].correlation == INFERRED
    assert pairs["w1"].after == {"b": 2} and pairs["w1"].correlation == EXACT
    assert pairs["v1"].after == {"d": 4} and pairs["v1"].correlation == INFERRED
    stray = only([item for item in closed if isinstance(item, Unsolicited)])
    assert stray.note.interaction_id == "CH2" and stray.scope == A1
    assert c.is_open("c2")
    # agent2's own connection then delivers it: it pairs there.
    p = pair_of(c.notification(A2, note("chat", "CH2", {"c": 3}, ref=12), 1.1))
    assert p.key == "c2" and p.scope == A2


def test_a_notification_of_another_scope_never_pairs() -> None:
    c = Correlator(timeout=10)
    c.request("f1", A1, update("chat", "CH1", k="v"), 0.0)
    c.answer("f1", answer(), 200, 0.1)
    stray = only(c.notification(A2, note("chat", "CH1", {"k": "v"}, ref=1), 0.2))
    assert isinstance(stray, Unsolicited) and stray.scope == A2
    p = pair_of(c.expire(10.0))
    assert p.status == Status.TIMEOUT and p.note is None


def test_exact_reference_is_per_scope() -> None:
    c = Correlator()
    c.request("f1", A1, update("workitem", "WI1", k="v"), 0.0)
    c.answer("f1", answer(5), 200, 0.1)
    assert isinstance(
        only(c.notification(A2, note("workitem", "WI1", {"k": "v"}, ref=5), 0.2)), Unsolicited
    )
    assert pair_of(c.notification(A1, note("workitem", "WI1", {"k": "v"}, ref=5), 0.3)).key == "f1"


def test_scopes() -> None:
    s = Scopes()
    assert s.scope("agent1", None, "10.0.0.1") == "user:agent1"
    assert s.scope(None, None, "10.0.0.1") == "client:10.0.0.1"
    assert s.scope(None, None, None) == "client:unknown"
    # An unknown session is a hash of the cookie, never the cookie itself.
    cookie = "node01abcdefSECRETcookie42"
    scope = s.scope(None, cookie, "10.0.0.1")
    assert scope.startswith("session:") and cookie not in scope
    assert "SECRET" not in scope
    assert s.scope(None, cookie, "10.0.0.9") == scope  # stable, whatever the address
    assert s.scope(None, cookie + "x", "10.0.0.1") != scope
    # Learning the Basic user that owns the session puts the CometD traffic in its scope.
    s.learn(cookie, "agent1")
    assert s.scope(None, cookie, "10.0.0.1") == "user:agent1"
    # A request carrying both learns the mapping too.
    s.scope("agent2", "other-session", None)
    assert s.scope(None, "other-session", None) == "user:agent2"


def test_scope_learning_pairs_a_session_notification_with_a_basic_request() -> None:
    c = Correlator()
    req_scope = c.scopes.scope("agent1", "JSESS-1", "127.0.0.1")
    note_scope = c.scopes.scope(None, "JSESS-1", "127.0.0.1")  # CometD carries only the cookie
    assert req_scope == note_scope == "user:agent1"
    c.request("f1", req_scope, update("chat", "CH1", k="v"), 0.0)
    c.answer("f1", answer(), 200, 0.1)
    assert pair_of(c.notification(note_scope, note("chat", "CH1", {"k": "v"}), 0.2)).key == "f1"


# ---- errors, timeouts, rejections, shutdown ------------------------------------------------------


@pytest.mark.parametrize("media", ["chat", "workitem", "voice"])
def test_error_notification_closes_as_error_and_keeps_the_snapshot(media: str) -> None:
    c = Correlator()
    iid = f"{media}-1"
    c.observe(iid, {"old": "value"})
    c.request("f1", A1, update(media, iid, k="v"), 0.0)
    ref = 7 if media == "workitem" else None
    c.answer("f1", answer(ref), 200, 0.1)
    p = pair_of(c.notification(A1, error_note(media, iid, ref=ref), 0.2))
    assert p.status == Status.ERROR and p.note is not None and p.note.is_error
    assert p.correlation == (EXACT if media == "workitem" else INFERRED)
    assert p.before == {"old": "value"}
    assert p.after is None  # an error shows no user data, whatever the message carried
    c.request("f2", A1, update(media, iid, k="w"), 0.3)
    c.answer("f2", answer(8 if ref else None), 200, 0.4)
    assert c.snapshots[iid] == {"old": "value"}
    p2 = pair_of(c.close(1.0))
    assert p2.before == {"old": "value"} and p2.status == Status.INCOMPLETE


def test_voice_error_message_before_the_answer() -> None:
    c = Correlator()
    c.request("f1", A1, request("voice", "CALL1", gws.DELETE_PAIR, key="k"), 0.0)
    assert c.notification(A1, error_note("voice", "CALL1"), 0.05) == []
    p = pair_of(c.answer("f1", answer(), 200, 0.1))
    assert (p.status, p.correlation) == (Status.ERROR, INFERRED)


def test_timeout_closes_at_the_timeout_not_before() -> None:
    c = Correlator(timeout=10.0)
    c.request("f1", A1, update("chat", "CH1", k="v"), 100.0)
    c.answer("f1", answer(), 200, 100.1)
    assert c.expire(100.0) == []
    assert c.expire(109.999) == []
    assert c.is_open("f1")
    p = pair_of(c.expire(110.0))
    assert p.status == Status.TIMEOUT and p.correlation is None and p.after is None
    assert c.expire(200.0) == []  # closed once
    # The notification, late, is still recorded: as unsolicited.
    assert isinstance(only(c.notification(A1, note("chat", "CH1", {"k": "v"}), 111.0)), Unsolicited)
    assert c.counts.by_status == {Status.TIMEOUT: 1} and c.counts.unsolicited == 1


def test_timeout_expires_old_requests_and_keeps_young_ones() -> None:
    c = Correlator(timeout=10.0)
    c.request("old", A1, update("chat", "CH1", k="v"), 0.0)
    c.request("young", A1, update("chat", "CH2", k="v"), 5.0)
    assert pair_of(c.expire(12.0)).key == "old"
    assert c.is_open("young")
    assert pair_of(c.expire(15.0)).key == "young"


def test_notification_without_answer_at_timeout_is_matched() -> None:
    c = Correlator(timeout=10.0)
    c.request("f1", A1, update("chat", "CH1", k="v"), 0.0)
    assert c.notification(A1, note("chat", "CH1", {"k": "v"}), 0.5) == []
    p = pair_of(c.expire(10.0))
    assert p.status == Status.MATCHED and p.answer is None and p.after == {"k": "v"}


def test_rejected_closes_at_once() -> None:
    c = Correlator()
    c.request("f1", A1, update("voice", "CALL1", k="v"), 0.0)
    p = pair_of(
        c.answer("f1", answer(status_code=4, message="Voice service is not available"), 503, 0.1)
    )
    assert p.status == Status.REJECTED and p.note is None and p.after is None
    assert isinstance(p.answer, gws.Answer) and p.answer.status_code == 4
    assert p.http_status == 503
    assert not c.is_open("f1")


def test_http_500_with_unreadable_body_is_rejected() -> None:
    c = Correlator()
    c.request("f1", A1, update("chat", "CH1", k="v"), 0.0)
    body = gws.parse_answer(b"<html><body>Internal Server Error</body></html>")
    assert not isinstance(body, gws.Answer)
    p = pair_of(c.answer("f1", body, 500, 0.1))
    assert p.status == Status.REJECTED


def test_http_200_with_unreadable_body_waits_for_the_notification() -> None:
    c = Correlator()
    c.request("f1", A1, update("chat", "CH1", k="v"), 0.0)
    assert c.answer("f1", gws.parse_answer(b"{oops"), 200, 0.1) == []
    p = pair_of(c.notification(A1, note("chat", "CH1", {"k": "v"}), 0.2))
    assert p.status == Status.MATCHED


def test_rejected_request_gives_back_a_notification_guessed_for_it() -> None:
    c = Correlator()
    c.request("A", A1, update("chat", "CH1", k="v"), 0.0)
    c.request("B", A1, update("chat", "CH1", k="v"), 0.1)
    n = note("chat", "CH1", {"k": "v"}, ref=3)
    assert c.notification(A1, n, 0.2) == []  # guessed for A, the oldest
    closed = c.answer("A", answer(status_code=2, message="invalid state"), 400, 0.3)
    rejected = pair_of(closed)
    assert rejected.key == "A" and rejected.status == Status.REJECTED and rejected.note is None
    p = pair_of(c.answer("B", answer(), 200, 0.4))
    assert p.key == "B" and p.note is n and p.status == Status.MATCHED


def test_rejected_request_gives_back_a_notification_nobody_else_wants() -> None:
    c = Correlator()
    c.request("A", A1, update("chat", "CH1", k="v"), 0.0)
    n = note("chat", "CH1", {"k": "v"}, ref=3)
    assert c.notification(A1, n, 0.1) == []
    closed = c.answer("A", answer(status_code=4), 503, 0.2)
    rejected = only([x for x in closed if isinstance(x, Pair)])
    stray = only([x for x in closed if isinstance(x, Unsolicited)])
    assert rejected.status == Status.REJECTED and rejected.note is None and stray.note is n


def test_shutdown_writes_open_pairs_as_incomplete() -> None:
    c = Correlator()
    c.request("no-note", A1, update("chat", "CH1", a=1), 0.0)
    c.answer("no-note", answer(), 200, 0.1)
    c.request("no-answer", A1, update("chat", "CH2", b=2), 0.0)
    c.notification(A1, note("chat", "CH2", {"b": 2}), 0.2)
    c.request("nothing", A1, update("chat", "CH3", c=3), 0.3)
    closed = {p.key: p for p in c.close(0.5)}
    assert closed["no-note"].status == Status.INCOMPLETE and closed["no-note"].after is None
    assert closed["nothing"].status == Status.INCOMPLETE
    assert closed["no-answer"].status == Status.MATCHED
    assert closed["no-answer"].after == {"b": 2}
    assert c.open_count == 0 and c.close(1.0) == []


def test_failed_exchange_stays_open_for_its_notification() -> None:
    c = Correlator()
    c.request("f1", A1, update("chat", "CH1", k="v"), 0.0)
    assert c.failed("f1", "connection reset", 0.1) == []
    p = pair_of(c.notification(A1, note("chat", "CH1", {"k": "v"}), 0.2))
    assert p.status == Status.MATCHED and p.error == "connection reset"


def test_a_reused_key_closes_what_it_held() -> None:
    c = Correlator()
    c.request("f1", A1, update("chat", "CH1", k="v"), 0.0)
    old = pair_of(c.request("f1", A1, update("chat", "CH1", k="w"), 0.1))
    assert old.status == Status.INCOMPLETE and old.request.user_data == {"k": "v"}
    assert c.open_count == 1
    assert pair_of(c.close(1.0)).request.user_data == {"k": "w"}


# ---- unsolicited and notification types ----------------------------------------------------------


def test_notification_for_another_interaction_is_unsolicited() -> None:
    c = Correlator()
    c.request("f1", A1, update("chat", "CH1", k="v"), 0.0)
    c.answer("f1", answer(), 200, 0.1)
    n = note("chat", "CH9", {"k": "v"}, ref=1)
    u = only(c.notification(A1, n, 0.2, raw={"raw": b"..."}))
    assert isinstance(u, Unsolicited)
    assert (u.scope, u.note, u.t, u.raw) == (A1, n, 0.2, {"raw": b"..."})
    assert c.is_open("f1")


@pytest.mark.parametrize(
    ("media", "kind", "pairs"),
    [
        ("chat", "StatusChange", False),
        ("chat", "ParticipantsUpdated", False),
        ("chat", "NewMessages", False),
        ("chat", "PropertiesUpdated", True),
        ("chat", "Error", True),
        ("voice", "StatusChange", False),
        ("voice", "AttachedDataChanged", True),
        ("email", "EmailSaved", False),
        ("sms", "PropertiesUpdated", True),
    ],
)
def test_only_change_and_error_types_pair(media: str, kind: str, pairs: bool) -> None:
    c = Correlator()
    c.request("f1", A1, update(media, "X1", k="v"), 0.0)
    c.answer("f1", answer(), 200, 0.1)
    closed = c.notification(A1, note(media, "X1", {"k": "v"}, kind=kind), 0.2)
    if pairs:
        assert pair_of(closed).status == (Status.ERROR if kind == "Error" else Status.MATCHED)
    else:
        assert isinstance(only(closed), Unsolicited)
        assert c.is_open("f1")


def test_status_change_never_pairs_even_with_the_right_reference_id() -> None:
    c = Correlator()
    c.request("f1", A1, update("chat", "CH1", k="v"), 0.0)
    assert isinstance(
        only(c.notification(A1, note("chat", "CH1", {"k": "v"}, ref=1, kind="StatusChange"), 0.1)),
        Unsolicited,
    )
    assert c.is_open("f1")


def test_voice_error_message_pairs() -> None:
    c = Correlator()
    c.request("f1", A1, update("voice", "CALL1", k="v"), 0.0)
    c.answer("f1", answer(), 200, 0.1)
    assert pair_of(c.notification(A1, error_note("voice", "CALL1"), 0.2)).status == Status.ERROR


# ---- before snapshots ----------------------------------------------------------------------------


def test_before_is_unknown_for_a_never_seen_interaction() -> None:
    c = Correlator()
    c.request("f1", A1, update("chat", "CH1", k="v"), 0.0)
    assert pair_of(c.close(1.0)).before is None


def test_before_from_a_get_answer() -> None:
    c = Correlator()
    c.observe("CH1", {"a": 1})
    c.request("f1", A1, update("chat", "CH1", k="v"), 0.0)
    c.answer("f1", answer(), 200, 0.1)
    p = pair_of(c.notification(A1, note("chat", "CH1", {"a": 1, "k": "v"}), 0.2))
    assert (p.before, p.after) == ({"a": 1}, {"a": 1, "k": "v"})


def test_before_from_any_earlier_notification() -> None:
    c = Correlator()
    # A StatusChange pairs with nothing, but shows the user data all the same.
    c.notification(A1, note("chat", "CH1", {"a": 1}, kind="StatusChange"), 0.0)
    c.request("f1", A1, update("chat", "CH1", b=2), 0.1)
    assert pair_of(c.close(1.0)).before == {"a": 1}


def test_before_is_taken_when_the_request_passes() -> None:
    c = Correlator()
    c.observe("CH1", {"a": 1})
    c.request("f1", A1, update("chat", "CH1", b=2), 0.0)
    c.observe("CH1", {"a": 99})  # a later GET does not rewrite history
    assert pair_of(c.close(1.0)).before == {"a": 1}


def test_voice_delete_all_absent_user_data_means_empty() -> None:
    c = Correlator()
    c.observe("CALL1", {"a": 1, "b": 2})
    c.request("f1", A1, request("voice", "CALL1", gws.DELETE), 0.0)
    c.answer("f1", answer(), 200, 0.1)
    n = note("voice", "CALL1", None)  # AttachedDataChanged without userData
    assert n.user_data is None
    p = pair_of(c.notification(A1, n, 0.2))
    assert (p.status, p.before, p.after) == (Status.MATCHED, {"a": 1, "b": 2}, {})
    c.request("f2", A1, update("voice", "CALL1", c=3), 0.3)
    assert pair_of(c.close(1.0)).before == {}


# ---- release and steal ---------------------------------------------------------------------------


def _workitem_pair(c: Correlator) -> tuple[gws.Notification, gws.Notification]:
    c.request("A", A1, update("workitem", "WI1", k="v"), 0.0)
    c.request("B", A1, update("workitem", "WI1", k="v"), 0.1)
    return (
        note("workitem", "WI1", {"k": "v"}, ref=7),  # A's
        note("workitem", "WI1", {"k": "v"}, ref=8),  # B's
    )


def test_release_a_wrong_guess_moves_the_notification_to_its_owner() -> None:
    c = Correlator()
    note_a, note_b = _workitem_pair(c)
    assert c.notification(A1, note_b, 0.2) == []  # guessed for A, the oldest
    # A's answer names 7: the guess was wrong, so B's notification goes to B (still a guess).
    assert c.answer("A", answer(7), 200, 0.3) == []
    assert c.is_open("A") and c.is_open("B")
    pa = pair_of(c.notification(A1, note_a, 0.4))
    assert (pa.key, pa.note, pa.correlation) == ("A", note_a, EXACT)
    pb = pair_of(c.answer("B", answer(8), 200, 0.5))
    assert (pb.key, pb.note, pb.correlation) == ("B", note_b, EXACT)


def test_steal_a_later_answer_claims_a_notification_guessed_for_another() -> None:
    c = Correlator()
    note_a, note_b = _workitem_pair(c)
    assert c.notification(A1, note_b, 0.2) == []  # guessed for A
    pb = pair_of(c.answer("B", answer(8), 200, 0.3))  # B's answer names it: B takes it
    assert (pb.key, pb.note, pb.correlation, pb.status) == ("B", note_b, EXACT, Status.MATCHED)
    assert c.is_open("A")
    assert c.answer("A", answer(7), 200, 0.4) == []
    pa = pair_of(c.notification(A1, note_a, 0.5))
    assert (pa.key, pa.note, pa.correlation) == ("A", note_a, EXACT)


def test_crossed_guesses_are_both_put_right() -> None:
    """Both notifications came first, each guessed for the other's request."""
    c = Correlator()
    note_a, note_b = _workitem_pair(c)
    assert c.notification(A1, note_b, 0.2) == []  # -> A
    assert c.notification(A1, note_a, 0.3) == []  # -> B
    pa = pair_of(c.answer("A", answer(7), 200, 0.4))
    assert (pa.key, pa.note, pa.correlation) == ("A", note_a, EXACT)
    pb = pair_of(c.answer("B", answer(8), 200, 0.5))
    assert (pb.key, pb.note, pb.correlation) == ("B", note_b, EXACT)
    assert c.counts.unsolicited == 0


def test_release_with_no_other_owner_is_unsolicited() -> None:
    c = Correlator()
    c.request("A", A1, update("workitem", "WI1", k="v"), 0.0)
    stray = note("workitem", "WI1", {"k": "v"}, ref=99)
    assert c.notification(A1, stray, 0.1) == []
    u = only(c.answer("A", answer(7), 200, 0.2))
    assert isinstance(u, Unsolicited) and u.note is stray
    assert c.is_open("A")


def test_a_released_request_keeps_its_age_for_the_timeout() -> None:
    c = Correlator(timeout=10.0)
    c.request("A", A1, update("workitem", "WI1", k="v"), 0.0)
    c.request("B", A1, update("workitem", "WI2", k="v"), 5.0)
    assert c.notification(A1, note("workitem", "WI1", {"k": "v"}, ref=99), 1.0) == []
    assert isinstance(only(c.answer("A", answer(7), 200, 2.0)), Unsolicited)
    p = pair_of(c.expire(10.0))
    assert (p.key, p.status) == ("A", Status.TIMEOUT)
    assert pair_of(c.expire(15.0)).key == "B"


# ---- lost, held back, doubled: the network's faults (docs/correlation.md) -----------------------


def _seen(c: Correlator, iid: str, user_data: dict[str, Any]) -> None:
    """The proxy has seen the interaction's user data (a GET or an earlier notification)."""
    c.observe(iid, user_data)


def _sent(c: Correlator, key: str, req: gws.UserDataRequest, t: float) -> None:
    assert c.request(key, A1, req, t) == []
    assert c.answer(key, answer(), 200, t + 0.01) == []


def test_a_lost_notification_does_not_shift_the_next_pair() -> None:
    """A's notification was lost; B's shows A's effect and B's: it is B's, and A was lost."""
    c = Correlator()
    _seen(c, "CH1", {})
    _sent(c, "A", update("chat", "CH1", X=1), 0.0)
    _sent(c, "B", update("chat", "CH1", Y=2), 0.5)
    closed = c.notification(A1, note("chat", "CH1", {"X": 1, "Y": 2}, ref=86), 0.51)
    by_key = {p.key: p for p in closed if isinstance(p, Pair)}
    assert by_key["B"].status == Status.MATCHED and by_key["B"].note.reference_id == 86
    assert by_key["A"].status == Status.LOST and by_key["A"].note is None
    assert by_key["A"].error == (
        f"its effect showed in pair {by_key['B'].id}'s notification; its own never came"
    )


def test_a_chain_of_lost_notifications_is_lost_each() -> None:
    c = Correlator()
    _seen(c, "CH1", {"X": 0})
    _sent(c, "A", update("chat", "CH1", X=1), 0.0)
    _sent(c, "B", update("chat", "CH1", Y=2), 0.1)
    _sent(c, "C", update("chat", "CH1", Z=3), 0.2)
    closed = c.notification(A1, note("chat", "CH1", {"X": 1, "Y": 2, "Z": 3}, ref=9), 0.3)
    assert {p.key: p.status for p in closed} == {
        "A": Status.LOST,
        "B": Status.LOST,
        "C": Status.MATCHED,
    }


def test_an_older_request_whose_effect_is_overwritten_times_out() -> None:
    """Nothing in B's notification says whether A was carried out: A times out, honestly."""
    c = Correlator(timeout=10.0)
    _seen(c, "CH1", {})
    _sent(c, "A", update("chat", "CH1", X=1), 0.0)
    _sent(c, "B", update("chat", "CH1", X=2), 0.1)
    assert pair_of(c.notification(A1, note("chat", "CH1", {"X": 2}, ref=9), 0.2)).key == "B"
    p = pair_of(c.expire(10.0))
    assert (p.key, p.status) == ("A", Status.TIMEOUT)


def test_the_same_values_twice_pair_in_order_when_both_notifications_come() -> None:
    c = Correlator()
    _seen(c, "CH1", {})
    _sent(c, "A", update("chat", "CH1", X=1), 0.0)
    _sent(c, "B", update("chat", "CH1", X=1), 0.1)
    first, second = note("chat", "CH1", {"X": 1}, ref=7), note("chat", "CH1", {"X": 1}, ref=8)
    assert c.notification(A1, first, 0.2) == []  # A's, or B's with A's lost: wait and see
    closed = c.notification(A1, second, 0.3)
    assert [(p.key, p.note, p.status) for p in closed] == [
        ("A", first, Status.MATCHED),
        ("B", second, Status.MATCHED),
    ]


def test_the_same_values_twice_and_one_notification_is_ambiguous() -> None:
    c = Correlator(timeout=10.0)
    _seen(c, "CH1", {})
    _sent(c, "A", update("chat", "CH1", X=1), 0.0)
    _sent(c, "B", update("chat", "CH1", X=1), 0.1)
    assert c.notification(A1, note("chat", "CH1", {"X": 1}, ref=8), 0.2) == []
    assert c.expire(9.9) == []
    closed = c.expire(10.0)
    pairs = [x for x in closed if isinstance(x, Pair)]
    assert [(p.key, p.status, p.note) for p in pairs] == [
        ("A", Status.AMBIGUOUS, None),
        ("B", Status.AMBIGUOUS, None),
    ]
    assert (
        pairs[0].error
        == "the notification with referenceId 8 shows the effect of pairs 1 and 2 alike"
    )
    u = only([x for x in closed if isinstance(x, Unsolicited)])
    assert u.reason == "shows the effect of pairs 1 and 2 alike"


def test_a_second_copy_of_a_notification_pairs_with_nothing() -> None:
    c = Correlator()
    _seen(c, "CH1", {})
    _sent(c, "A", update("chat", "CH1", X=1), 0.0)
    n = note("chat", "CH1", {"X": 1}, ref=7)
    pa = pair_of(c.notification(A1, n, 0.1))
    _sent(c, "B", update("chat", "CH1", X=1), 0.2)  # would look like B's
    u = only(c.notification(A1, n, 0.3))
    assert isinstance(u, Unsolicited)
    assert u.reason == f"a second copy of the notification of pair {pa.id}"
    assert c.is_open("B")


def test_a_status_change_with_a_placed_reference_id_is_no_copy() -> None:
    c = Correlator()
    _sent(c, "A", update("chat", "CH1", X=1), 0.0)
    pair_of(c.notification(A1, note("chat", "CH1", {"X": 1}, ref=7), 0.1))
    u = only(c.notification(A1, note("chat", "CH1", {"X": 1}, ref=7, kind="StatusChange"), 0.2))
    assert isinstance(u, Unsolicited) and u.reason is None


def test_a_notification_held_back_past_the_timeout_is_not_matched_late_to_another() -> None:
    c = Correlator(timeout=10.0)
    _seen(c, "CH1", {})
    _sent(c, "A", update("chat", "CH1", X=1), 0.0)
    assert pair_of(c.expire(10.0)).status == Status.TIMEOUT
    _sent(c, "B", update("chat", "CH1", X=1), 12.0)  # the same values again
    late = note("chat", "CH1", {"X": 1}, ref=7)
    assert c.notification(A1, late, 12.5) == []  # A's late, or B's: B's own may still come
    own = note("chat", "CH1", {"X": 1}, ref=8)
    closed = c.notification(A1, own, 12.6)
    pb = next(p for p in closed if isinstance(p, Pair))
    assert (pb.key, pb.note) == ("B", own)
    u = next(x for x in closed if isinstance(x, Unsolicited))
    assert u.note is late and u.reason == "the late notification of pair 1"


def test_a_request_that_never_reached_gws_fails_at_once() -> None:
    c = Correlator()
    c.request("A", A1, update("chat", "CH1", X=1), 0.0)
    p = pair_of(c.failed("A", "Connection refused", 0.1, reached=False))
    assert (p.status, p.error) == (Status.FAILED, "Connection refused")


def test_a_renewed_session_cookie_keeps_the_agent() -> None:
    s = Scopes()
    before = s.scope(None, "OLD", "10.0.0.1")
    s.renew("OLD", "NEW")
    assert s.scope(None, "NEW", "10.0.0.2") == before
    s.learn("OLD2", "agent7")
    s.renew("OLD2", "NEW2")
    assert s.scope(None, "NEW2", None) == "user:agent7"


def test_statuses_are_the_plain_words_of_captures_and_exports() -> None:
    assert list(Status) == [
        "matched",
        "error",
        "rejected",
        "timeout",
        "lost",
        "ambiguous",
        "failed",
        "incomplete",
    ]
    c = Correlator()
    c.request("A", A1, update("chat", "CH1", X=1), 0.0)
    c.answer("A", answer(), 200, 0.1)
    p = pair_of(c.notification(A1, note("chat", "CH1", {"X": 1}), 0.2))
    summary, _ = pair_record(p, Redactor())
    # What a capture holds and an export prints: the word, read back as a plain str.
    for back in (unpack(pack(summary))["status"], json.loads(json.dumps(summary))["status"]):
        assert type(back) is str and back == "matched" == Status.MATCHED
    assert c.counts.by_status == {"matched": 1}
    assert f"{p.status} {p.status!s}" == "matched matched"


# ---- types ---------------------------------------------------------------------------------------


def test_equal_looking_values_are_consistent_for_matching() -> None:
    c = Correlator()
    c.request("B", A1, update("chat", "CH1", Other="x"), 0.0)  # older, not shown by the note
    c.request("A", A1, update("chat", "CH1", UserData1=987654321), 0.1)
    c.answer("B", answer(), 200, 0.2)
    c.answer("A", answer(), 200, 0.2)
    n = note("chat", "CH1", {"UserData1": "987654321"})
    p = pair_of(c.notification(A1, n, 0.3))
    assert p.key == "A"
    assert p.request.user_data == {"UserData1": 987654321}
    assert p.after == {"UserData1": "987654321"}  # recorded as it came: types kept for the diff


@pytest.mark.parametrize(
    ("wanted", "shown", "expected"),
    [
        (987654321, "987654321", True),
        ("987654321", 987654321, True),
        (True, "true", True),
        (1.5, "1.5", True),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        (None, None, True),
        (1, 2, False),
        ("x", "y", False),
    ],
)
def test_consistent_update(wanted: Any, shown: Any, expected: bool) -> None:
    req = update("chat", "CH1", K=wanted)
    assert consistent(req, note("chat", "CH1", {"K": shown})) is expected
    assert consistent(req, note("chat", "CH1", {})) is False


def test_consistent_deletes() -> None:
    delete_keys = request("chat", "CH1", gws.DELETE, keys=["a", "b"])
    assert consistent(delete_keys, note("chat", "CH1", {"c": 1}))
    assert not consistent(delete_keys, note("chat", "CH1", {"a": 1}))
    delete_all = request("voice", "C1", gws.DELETE)
    assert consistent(delete_all, note("voice", "C1", None))
    assert not consistent(delete_all, note("voice", "C1", {"a": 1}))
    delete_pair = request("voice", "C1", gws.DELETE_PAIR, key="a")
    assert consistent(delete_pair, note("voice", "C1", {"b": 1}))
    assert not consistent(delete_pair, note("voice", "C1", {"a": 1}))
    assert consistent(delete_pair, error_note("voice", "C1"))


# ---- properties ----------------------------------------------------------------------------------

SCOPES = (A1, A2)


@st.composite
def plans(draw: st.DrawFn, media: tuple[str, ...]) -> list[dict[str, Any]]:
    """Requests, each on an interaction of a scope, with what will happen to it."""
    n_interactions = draw(st.integers(1, 4))
    interactions = [
        (
            draw(st.sampled_from(SCOPES)),
            draw(st.sampled_from(media)),
            f"IX{draw(st.integers(0, 2))}",  # the same id may recur in the other scope
        )
        for _ in range(n_interactions)
    ]
    plan = []
    for k in range(draw(st.integers(1, 8))):
        scope, m, iid = draw(st.sampled_from(interactions))
        plan.append(
            {
                "key": f"r{k}",
                "scope": scope,
                "media": m,
                "iid": iid,
                "ref": 100 + k,
                "value": draw(st.integers(0, 2)),
                "fate": draw(st.sampled_from(["ok", "ok", "no_note", "no_answer", "rejected"])),
            }
        )
    return plan


def _run(data: st.DataObject, plan: list[dict[str, Any]], expire: bool) -> dict[str, Any]:
    """Play the plan in an order hypothesis picks; return what was closed and emitted."""
    c = Correlator(timeout=10.0)
    pending: list[tuple[str, dict[str, Any]]] = [("request", r) for r in plan]
    extra = data.draw(st.integers(0, 2), label="extra StatusChange notifications")
    pending += [("status", plan[i % len(plan)]) for i in range(extra)]
    emitted: dict[int, tuple[str, dict[str, Any] | None, gws.Notification]] = {}
    closed: list[Any] = []
    t = 0.0
    while pending:
        i = data.draw(st.integers(0, len(pending) - 1), label="next event")
        what, r = pending.pop(i)
        t += data.draw(st.sampled_from([0.0, 0.1, 3.0]), label="dt")
        if expire and data.draw(st.booleans(), label="expire"):
            closed += c.expire(t)
        ref = r["ref"] if r["media"] in ("workitem",) else None
        if what == "request":
            req = update(r["media"], r["iid"], K=r["value"], Own=r["key"])
            closed += c.request(r["key"], r["scope"], req, t)
            if r["fate"] != "no_answer":
                pending.append(("answer", r))
            if r["fate"] in ("ok", "no_answer"):
                pending.append(("note", r))
        elif what == "answer":
            if r["fate"] == "rejected":
                a = answer(status_code=4, message="internal error")
                closed += c.answer(r["key"], a, 503, t)
            else:
                closed += c.answer(r["key"], answer(ref), 200, t)
        elif what == "note":
            value = data.draw(st.integers(0, 2), label="value shown")
            n = note(r["media"], r["iid"], {"K": value, "Own": r["key"]}, ref=r["ref"])
            emitted[id(n)] = (r["scope"], r, n)
            closed += c.notification(r["scope"], n, t)
        else:
            n = note(r["media"], r["iid"], {"K": 0}, ref=None, kind="StatusChange")
            emitted[id(n)] = (r["scope"], None, n)
            closed += c.notification(r["scope"], n, t)
    closed += c.close(t + 1.0)
    assert c.open_count == 0
    return {"closed": closed, "emitted": emitted, "correlator": c}


def _check_common(plan: list[dict[str, Any]], run: dict[str, Any]) -> None:
    closed, emitted = run["closed"], run["emitted"]
    pairs = [x for x in closed if isinstance(x, Pair)]
    unsolicited = [x for x in closed if isinstance(x, Unsolicited)]
    # Every request closes exactly once.
    assert sorted(p.key for p in pairs) == sorted(r["key"] for r in plan)
    by_key = {r["key"]: r for r in plan}
    # Every notification is in exactly one pair or unsolicited, never both.
    homes = [id(p.note) for p in pairs if p.note is not None] + [id(u.note) for u in unsolicited]
    assert sorted(homes) == sorted(emitted)
    for p in pairs:
        r = by_key[p.key]
        assert p.status in (
            Status.MATCHED,
            Status.REJECTED,
            Status.TIMEOUT,
            Status.LOST,
            Status.AMBIGUOUS,
            Status.INCOMPLETE,
        )
        if p.note is not None:
            scope, owner, _ = emitted[id(p.note)]
            assert owner is not None, "a StatusChange was paired"
            assert scope == p.scope == r["scope"]  # never across scopes
            assert p.note.interaction_id == r["iid"]
            assert p.correlation in (EXACT, INFERRED)
            assert p.status == Status.MATCHED
        else:
            assert p.correlation is None
            assert p.status != Status.MATCHED
        if p.correlation == EXACT:
            assert p.note.reference_id == p.answer_reference == r["ref"]
        if p.status == Status.REJECTED:
            assert r["fate"] == "rejected" and p.note is None
    for u in unsolicited:
        assert emitted[id(u.note)][0] == u.scope
    counts = run["correlator"].counts
    assert counts.pairs == len(pairs) and counts.unsolicited == len(unsolicited)


@settings(
    max_examples=2 * settings.default.max_examples,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plan=plans(("chat", "workitem", "voice")), data=st.data())
def test_random_interleavings_keep_the_books(plan: list[dict[str, Any]], data: st.DataObject):
    _check_common(plan, _run(data, plan, expire=True))


@settings(
    max_examples=2 * settings.default.max_examples,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plan=plans(("workitem",)), data=st.data())
def test_with_reference_ids_in_answers_every_answered_request_gets_its_own(
    plan: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Without timeouts, every guess is put right by the answers that name referenceIds."""
    run = _run(data, plan, expire=False)
    _check_common(plan, run)
    by_key = {p.key: p for p in run["closed"] if isinstance(p, Pair)}
    for r in plan:
        p = by_key[r["key"]]
        if r["fate"] == "ok":
            assert p.status == Status.MATCHED and p.correlation == EXACT
            assert (
                p.note is not None
                and p.note.data[gws.MEDIA_BY_NAME["workitem"].object_key]["userData"]["Own"]
                == r["key"]
            )
        elif r["fate"] == "no_note":
            assert p.status == Status.INCOMPLETE and p.note is None
        elif r["fate"] == "rejected":
            assert p.status == Status.REJECTED
    # A notification whose request is open somewhere is left unsolicited only when the evidence
    # could not tell whose it was, and then it says so.
    for u in (x for x in run["closed"] if isinstance(x, Unsolicited)):
        assert emitted_owner(run, u) is None or "undecided" in (u.reason or ""), u.reason


def emitted_owner(run: dict[str, Any], u: Unsolicited) -> dict[str, Any] | None:
    return run["emitted"][id(u.note)][1]
