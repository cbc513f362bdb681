"""The GWS vocabulary (gwsproxy.gws): user-data requests, HTTP answers and CometD notifications.

Every spelling the public GWS API v2 documentation uses for operations and notifications, every
quirk of its samples, and the two seed documents (gwsproxy/data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gwsproxy import gws
from gwsproxy.gws import (
    ATTACH,
    DELETE,
    DELETE_PAIR,
    UPDATE,
    Answer,
    BadRequest,
    Notification,
    UserDataRequest,
    classify_request,
    parse_answer,
    parse_notification,
)
from gwsproxy.lenient import Parsed, Unreadable, loads

IXN = "0000Wa9CAM6W00J"

# Every collection spelling of the docs and their samples, and the media it names.
COLLECTIONS = [
    ("calls", "voice"),
    ("chats", "chat"),
    ("smssessions", "sms"),
    ("smsessions", "sms"),
    ("facebooksessions", "facebook"),
    ("facebooksession", "facebook"),
    ("emails", "email"),
    ("workitems", "workitem"),
    ("openmedia/promotion", "openmedia"),
    ("twitter", "twitter"),
    ("tweets", "twitter"),
    ("im-sessions", "im"),
]

# The same path written the ways clients and documents write it.
PATH_FORMS = [
    "/api/v2/me/{c}/{i}",
    "api/v2/me/{c}/{i}",  # the docs leave out the leading slash
    "/api/v2/me/{c}/{i}?verbose=true&x=1",
    "/gws/api/v2/me/{c}/{i}",  # a base path in front of /api/v2
    "/api/v2/me/{c}/{i}/",
]

UPDATE_BODY = {"operationName": "UpdateUserData", "userData": {"UserData1": 987654321, "K": "v"}}


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def classify_ok(method: str, path: str, raw: bytes | str) -> UserDataRequest:
    result = classify_request(method, path, raw)
    assert isinstance(result, UserDataRequest), f"{method} {path} {raw!r} -> {result!r}"
    return result


# ---- classify_request: paths ------------------------------------------------------------------


@pytest.mark.parametrize("form", PATH_FORMS)
@pytest.mark.parametrize(("collection", "media"), COLLECTIONS)
def test_every_collection_spelling_and_path_form_is_recognised(
    collection: str, media: str, form: str
) -> None:
    path = form.format(c=collection, i=IXN)
    req = classify_ok("POST", path, body(UPDATE_BODY))
    assert (req.media, req.target.collection, req.interaction_id) == (media, collection, IXN)
    assert req.operation == UPDATE
    assert req.user_data == {"UserData1": 987654321, "K": "v"}
    assert req.repairs == ()


@pytest.mark.parametrize("media_type", ["promotion", "sms-outbound", "Workflow"])
def test_openmedia_keeps_its_media_type_in_the_collection(media_type: str) -> None:
    req = classify_ok("POST", f"/api/v2/me/openmedia/{media_type}/OM1", body(UPDATE_BODY))
    assert (req.media, req.target.collection, req.interaction_id) == (
        "openmedia",
        f"openmedia/{media_type}",
        "OM1",
    )


@pytest.mark.parametrize("collection", ["videosessions", "foo-bars", "Callbacks"])
def test_unknown_collection_is_kept_as_spelled_with_media_unknown(collection: str) -> None:
    req = classify_ok(
        "POST",
        f"/api/v2/me/{collection}/X1",
        body({"operationName": "AttachUserData", "userData": {"a": 1}}),
    )
    assert req.media == gws.UNKNOWN
    assert req.target.collection == collection
    assert req.interaction_id == "X1"
    assert (req.operation, req.user_data) == (ATTACH, {"a": 1})


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/me",
        "/api/v2/me/chats",  # a collection, no interaction
        "/api/v2/notifications",
        "/api/v2/notifications/connect",
        "/api/v2/users/U1/chats/C1",  # not under /me
        "/",
        "",
    ],
)
def test_non_interaction_paths_are_not_user_data_requests(path: str) -> None:
    assert classify_request("POST", path, body(UPDATE_BODY)) is None


@pytest.mark.parametrize("method", ["GET", "get", "PUT", "DELETE", "OPTIONS"])
def test_only_posts_are_user_data_requests(method: str) -> None:
    assert classify_request(method, f"/api/v2/me/chats/{IXN}", body(UPDATE_BODY)) is None


def test_method_is_case_insensitive() -> None:
    assert classify_ok("post", f"/api/v2/me/chats/{IXN}", body(UPDATE_BODY)).operation == UPDATE


# ---- classify_request: operations -------------------------------------------------------------


def test_update_and_attach_request_the_given_user_data() -> None:
    for op in (UPDATE, ATTACH):
        req = classify_ok(
            "POST",
            f"/api/v2/me/chats/{IXN}",
            body({"operationName": op, "userData": {"a": 1, "b": "2"}}),
        )
        assert req.operation == op
        assert req.requested == {"a": 1, "b": "2"}
        assert (req.keys, req.key) == (None, None)


def test_multimedia_delete_user_data_requests_its_keys() -> None:
    req = classify_ok(
        "POST",
        f"/api/v2/me/chats/{IXN}",
        body({"operationName": "DeleteUserData", "keys": ["UserData1", "UserData2"]}),
    )
    assert req.operation == DELETE
    assert req.keys == ("UserData1", "UserData2")
    assert req.requested == ["UserData1", "UserData2"]
    assert req.user_data is None


def test_voice_delete_user_data_without_keys_requests_everything() -> None:
    req = classify_ok("POST", "/api/v2/me/calls/CALL1", body({"operationName": "DeleteUserData"}))
    assert (req.media, req.operation) == ("voice", DELETE)
    assert (req.keys, req.key, req.user_data) == (None, None, None)
    assert req.requested is None  # None means: all of it


def test_im_delete_user_data_names_one_key() -> None:
    req = classify_ok(
        "POST", "/api/v2/me/im-sessions/IM1", body({"operationName": "DeleteUserData", "key": "K"})
    )
    assert (req.media, req.operation, req.key, req.keys) == ("im", DELETE, "K", None)
    assert req.requested == ["K"]


def test_delete_user_data_pair_names_one_key() -> None:
    req = classify_ok(
        "POST", "/api/v2/me/calls/CALL1", body({"operationName": "DeleteUserDataPair", "key": "K"})
    )
    assert (req.media, req.operation, req.key) == ("voice", DELETE_PAIR, "K")
    assert req.requested == ["K"]


@pytest.mark.parametrize(
    ("spelling", "operation"),
    [
        ("updateuserdata", UPDATE),
        ("UPDATEUSERDATA", UPDATE),
        ("attachUserData", ATTACH),
        ("deleteuserdata", DELETE),
        ("DeleteUserDataPAIR", DELETE_PAIR),
        (" UpdateUserData ", UPDATE),
    ],
)
def test_operation_name_is_case_insensitive(spelling: str, operation: str) -> None:
    req = classify_ok(
        "POST",
        f"/api/v2/me/chats/{IXN}",
        body({"operationName": spelling, "userData": {"a": 1}, "keys": ["a"], "key": "a"}),
    )
    assert req.operation == operation


@pytest.mark.parametrize(
    "doc",
    [
        {"operationName": "Complete"},
        {"operationName": "SetDisposition", "disposition": "resolved"},
        {"operationName": "SendMessage", "message": "hi"},
        {"operationName": "UpdateUserDataX", "userData": {"a": 1}},
        {"userData": {"a": 1}},  # no operationName at all
        {"operationName": 5, "userData": {"a": 1}},
    ],
)
def test_other_operations_are_not_user_data_requests(doc: dict[str, Any]) -> None:
    assert classify_request("POST", f"/api/v2/me/chats/{IXN}", body(doc)) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b'{"operationName": "UpdateUserData", "userData": {"K": 1}',  # truncated
        b"\xff\xfe\x00\x01",  # not UTF-8
        b"<html><body>Bad gateway</body></html>",
        b'["UpdateUserData"]',  # JSON, but not an object
        b'"UpdateUserData"',
        b"null",
    ],
)
def test_unreadable_body_at_an_interaction_is_a_bad_request_with_a_reason(raw: bytes) -> None:
    result = classify_request("POST", f"/api/v2/me/smsessions/{IXN}", raw)
    assert isinstance(result, BadRequest), result
    assert result.target == gws.Target("sms", "smsessions", IXN)
    assert isinstance(result.reason, str) and result.reason.strip(), result


def test_bad_request_reason_says_what_is_wrong() -> None:
    empty = classify_request("POST", f"/api/v2/me/chats/{IXN}", b"")
    assert isinstance(empty, BadRequest) and "empty" in empty.reason
    listed = classify_request("POST", f"/api/v2/me/chats/{IXN}", b"[1, 2]")
    assert isinstance(listed, BadRequest) and "list" in listed.reason


def test_body_may_be_text() -> None:
    req = classify_ok("POST", f"/api/v2/me/chats/{IXN}", json.dumps(UPDATE_BODY))
    assert req.user_data == {"UserData1": 987654321, "K": "v"}


def test_delete_user_data_posted_to_the_wrong_collection_still_classifies() -> None:
    # A quirk of the public samples: a DeleteUserData sample for one media is posted to another's
    # collection; the request is recognised for what its path says, keys and all.
    req = classify_ok(
        "POST",
        "api/v2/me/emails/0000Wa9CAM6W00J",
        body({"operationName": "DeleteUserData", "keys": ["UserData1"]}),
    )
    assert (req.media, req.target.collection, req.operation, req.keys) == (
        "email",
        "emails",
        DELETE,
        ("UserData1",),
    )


# ---- the public samples' quirks through classify_request -----------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected", "repair"),
    [
        (
            '{"operationName": "UpdateUserData", "userData": {"RRequestedSkills": None}}',
            {"RRequestedSkills": None},
            "python None/True/False",
        ),
        (
            '{"operationName": "UpdateUserData", "userData": {"ts": 1389261492035L}}',
            {"ts": 1389261492035},
            "python long literal",
        ),
        (
            '{"operationName": "UpdateUserData", "userData": {"UserData2": ""DATA""}}',
            {"UserData2": "DATA"},
            "doubled quotes",
        ),
        (
            '{"operationName": "UpdateUserData", "userData": {"Subject": "say "hi" now"}}',
            {"Subject": 'say "hi" now'},
            "unescaped inner quote",
        ),
        (
            '{"operationName": "UpdateUserData", "userData": {"a": 1, "b": [1, 2,],},}',
            {"a": 1, "b": [1, 2]},
            "trailing comma",
        ),
        (
            '{"operationName": "UpdateUserData", "userData": {"text": "line one\nline two"}}',
            {"text": "line one\nline two"},
            "raw newline in string",
        ),
    ],
)
def test_request_quirks_are_repaired_and_reported(
    raw: str, expected: dict[str, Any], repair: str
) -> None:
    req = classify_ok("POST", f"/api/v2/me/chats/{IXN}", raw.encode())
    assert req.user_data == expected
    assert repair in req.repairs, req.repairs


def test_long_literal_becomes_an_int() -> None:
    req = classify_ok(
        "POST",
        f"/api/v2/me/chats/{IXN}",
        b'{"operationName": "UpdateUserData", "userData": {"ts": 1389261492035L}}',
    )
    assert type(req.user_data["ts"]) is int  # type: ignore[index]


def test_http_colon_space_value_is_kept_verbatim() -> None:
    raw = (
        b'{"operationName": "UpdateUserData", "userData": {"uri": "http: //192.168.83.25: 8090/x"}}'
    )
    req = classify_ok("POST", f"/api/v2/me/chats/{IXN}", raw)
    assert req.user_data == {"uri": "http: //192.168.83.25: 8090/x"}
    assert req.repairs == ()  # valid JSON: nothing to repair, nothing rewritten


@pytest.mark.parametrize(
    ("singular", "plural", "media"),
    [("facebooksession", "facebooksessions", "facebook"), ("smsession", "smssessions", "sms")],
)
def test_singular_and_plural_collections_name_the_same_media(
    singular: str, plural: str, media: str
) -> None:
    a = classify_ok("POST", f"/api/v2/me/{singular}/I1", body(UPDATE_BODY))
    b = classify_ok("POST", f"/api/v2/me/{plural}/I1", body(UPDATE_BODY))
    assert (a.media, b.media) == (media, media)
    assert (a.target.collection, b.target.collection) == (singular, plural)


# ---- applying user data --------------------------------------------------------------------------

BEFORE = [("Subject", "Billing"), ("Priority", 3), ("Subject", "Sales")]  # voice: Subject twice


@pytest.mark.parametrize(
    ("media", "operation", "requested", "after"),
    [
        # Update (and multimedia Attach) overwrite in place, a repeated key keeping its first
        # place only, and add new keys last, types as sent.
        (
            "chat",
            UPDATE,
            {"Priority": "3", "New": None},
            [("Subject", "Billing"), ("Priority", "3"), ("Subject", "Sales"), ("New", None)],
        ),
        ("voice", UPDATE, {"Subject": "Order"}, [("Subject", "Order"), ("Priority", 3)]),
        ("chat", ATTACH, {"Subject": "Order"}, [("Subject", "Order"), ("Priority", 3)]),
        # Voice Attach adds a key that exists again.
        (
            "voice",
            ATTACH,
            {"Subject": "Order", "New": 1},
            [*BEFORE, ("Subject", "Order"), ("New", 1)],
        ),
        # DeleteUserData removes every pair of the listed keys; without keys, all of them on voice
        # and none elsewhere.
        ("chat", DELETE, ["Subject", "Absent"], [("Priority", 3)]),
        ("voice", DELETE, None, []),
        ("chat", DELETE, None, BEFORE),
        ("im", DELETE, ["Priority"], [("Subject", "Billing"), ("Subject", "Sales")]),
        ("voice", DELETE_PAIR, ["Subject"], [("Priority", 3)]),
        ("voice", DELETE_PAIR, "Priority", [("Subject", "Billing"), ("Subject", "Sales")]),
        ("voice", DELETE_PAIR, None, BEFORE),
        # What no operation reads changes nothing; an unknown operation is read by its shape.
        ("chat", UPDATE, ["Subject"], BEFORE),
        (
            "chat",
            "SomethingNew",
            {"Priority": 4},
            [("Subject", "Billing"), ("Priority", 4), ("Subject", "Sales")],
        ),
        ("chat", "SomethingNew", "Priority", BEFORE),
    ],
)
def test_apply_user_data(media: str, operation: str, requested: Any, after: list) -> None:
    assert gws.apply_user_data(BEFORE, operation, requested, media) == after


def test_apply_user_data_takes_what_a_request_names() -> None:
    """The `requested` of a classified request is what apply_user_data reads."""
    path = "/api/v2/me/im-sessions/IM1"
    req = classify_ok("POST", path, body({"operationName": "DeleteUserData", "key": "Priority"}))
    got = gws.apply_user_data(BEFORE, req.operation, req.requested, req.media)
    assert got == [("Subject", "Billing"), ("Subject", "Sales")]
    req = classify_ok("POST", "/api/v2/me/calls/C1", body({"operationName": "DeleteUserData"}))
    assert gws.apply_user_data(BEFORE, req.operation, req.requested, req.media) == []


def test_a_repeated_key_reads_as_its_last_value_and_goes_out_twice() -> None:
    user_data = gws.json_object(BEFORE)
    assert isinstance(user_data, gws.KVList)
    assert user_data == {"Subject": "Sales", "Priority": 3}  # as any JSON reader takes it
    text = json.dumps({"userData": user_data})
    assert text == '{"userData": {"Subject": "Billing", "Priority": 3, "Subject": "Sales"}}'
    assert json.loads(text, object_pairs_hook=gws.json_object)["userData"].items() == BEFORE
    plain = gws.json_object([("a", 1), ("b", 2)])
    assert type(plain) is dict and plain == {"a": 1, "b": 2}


# ---- parse_answer ----------------------------------------------------------------------------


def test_answer_success() -> None:
    answer = parse_answer(b'{"statusCode": 0}')
    assert isinstance(answer, Answer)
    assert (answer.status_code, answer.status_message, answer.reference_id) == (0, None, None)
    assert answer.ok


def test_answer_with_reference_id() -> None:
    answer = parse_answer(b'{"statusCode": 0, "referenceId": 83}')
    assert isinstance(answer, Answer)
    assert (answer.status_code, answer.reference_id, answer.ok) == (0, 83, True)


def test_answer_voice_service_unavailable() -> None:
    answer = parse_answer(
        b'{"statusCode": 4, "statusMessage": "Voice service is not available at this time"}'
    )
    assert isinstance(answer, Answer)
    assert answer.status_code == 4
    assert answer.status_message == "Voice service is not available at this time"
    assert answer.reference_id is None
    assert not answer.ok


@pytest.mark.parametrize("code", [1, 6, 20])
def test_answer_any_non_zero_status_is_not_ok(code: int) -> None:
    answer = parse_answer(body({"statusCode": code, "statusMessage": "no"}))
    assert isinstance(answer, Answer)
    assert (answer.status_code, answer.ok) == (code, False)


def test_answer_reference_id_as_text_equals_the_number() -> None:
    answer = parse_answer(b'{"statusCode": 0, "referenceId": "85"}')
    assert isinstance(answer, Answer)
    assert answer.reference_id == 85
    assert type(answer.reference_id) is int


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"<html>503 Service Unavailable</html>", b"\xff\xfe", "statusCode: 0"],
)
def test_unreadable_answer_is_unreadable_with_a_reason(raw: bytes | str) -> None:
    answer = parse_answer(raw)
    assert isinstance(answer, Unreadable), answer
    assert answer.reason.strip()


def test_answer_quirks_are_repaired_and_reported() -> None:
    answer = parse_answer(b'{"statusCode": 0, "referenceId": 1389261492035L,}')
    assert isinstance(answer, Answer)
    assert (answer.status_code, answer.reference_id) == (0, 1389261492035)
    assert set(answer.repairs) == {"python long literal", "trailing comma"}


def test_answer_that_is_not_an_object_is_kept() -> None:
    answer = parse_answer(b"[1, 2]")
    assert isinstance(answer, Answer)
    assert (answer.status_code, answer.value) == (None, [1, 2])


@pytest.mark.parametrize("value", ["\u00b2", "\u2460", "1" * 5000])
def test_digit_like_status_code_does_not_crash_parse_answer(value: str) -> None:
    answer = parse_answer(body({"statusCode": value}))
    assert isinstance(answer, Answer)


def test_digit_like_reference_id_does_not_crash_parse_notification() -> None:
    note = parse_notification(
        {"messageType": "ChatStateChangeMessage", "referenceId": "\u00b2", "chat": {"id": "C"}}
    )
    assert isinstance(note, Notification)
    assert note.reference_id == "\u00b2"  # kept as the text it is


# ---- parse_notification: each media's topic, messageType and object key --------------------------

# (media, channel, messageType, key of the interaction object, a user-data notificationType)
TOPICS = [
    ("voice", "/v2/me/calls", "CallStateChangeMessage", "call", "AttachedDataChanged"),
    ("chat", "/v2/me/chats", "ChatStateChangeMessage", "chat", "PropertiesUpdated"),
    (
        "sms",
        "/v2/me/smssessions",
        "SMSsessionStateChangeMessage",
        "smssession",
        "PropertiesUpdated",
    ),
    ("sms", "/v2/me/smssessions", "SMSsessionStateChangeMessage", "smsession", "PropertiesUpdated"),
    (
        "facebook",
        "/v2/me/facebooksession",
        "FacebooksessionStateChangeMessage",
        "facebooksession",
        "PropertiesUpdated",
    ),
    ("email", "/v2/me/emails", "EmailStateChangeMessage", "email", "PropertiesUpdated"),
    ("workitem", "/v2/me/workitems", "WorkitemStateChangeMessage", "workitem", "PropertiesUpdated"),
    (
        "openmedia",
        "/v2/me/openmedia",
        "OpenmediaStateChangeMessage",
        "openmedia",
        "PropertiesUpdated",
    ),
    ("twitter", "/v2/me/twitter", "TwitterStateChangeMessage", "twitter", "PropertiesUpdated"),
    ("twitter", "/v2/me/twitter", "TweetStateChangeMessage", "tweet", "PropertiesUpdated"),
    ("im", "/v2/me/im-sessions", "IMSessionStateChangeMessage", "imSession", "AttachedDataChanged"),
]


def _data(message_type: str, key: str, notification_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "messageType": message_type,
        "notificationType": notification_type,
        **extra,
        key: {"id": "I-42", "state": "Processing", "userData": {"UserData1": 987654321, "s": "x"}},
    }


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "bare"])
@pytest.mark.parametrize(("media", "channel", "message_type", "key", "ntype"), TOPICS)
def test_notification_of_every_media(
    media: str, channel: str, message_type: str, key: str, ntype: str, wrapped: bool
) -> None:
    data = _data(message_type, key, ntype, referenceId=85)
    note = parse_notification({"channel": channel, "data": data, "id": "7"} if wrapped else data)
    assert isinstance(note, Notification), note
    assert note.media == media
    assert note.channel == (channel if wrapped else None)
    assert (note.message_type, note.notification_type) == (message_type, ntype)
    assert (note.interaction_key, note.interaction_id) == (key, "I-42")
    assert note.reference_id == 85
    assert note.user_data == {"UserData1": 987654321, "s": "x"}
    assert note.data is data
    assert note.reports_change and not note.is_error


@pytest.mark.parametrize(("media", "channel", "message_type", "key", "ntype"), TOPICS)
def test_media_comes_from_the_channel_alone(
    media: str, channel: str, message_type: str, key: str, ntype: str
) -> None:
    note = parse_notification(
        {"channel": channel, "data": {"notificationType": ntype, "thing": {"id": "I"}}}
    )
    assert isinstance(note, Notification)
    assert note.media == media


@pytest.mark.parametrize(("media", "channel", "message_type", "key", "ntype"), TOPICS)
def test_media_comes_from_the_message_type_alone(
    media: str, channel: str, message_type: str, key: str, ntype: str
) -> None:
    note = parse_notification({"messageType": message_type, "thing": {"id": "I"}})
    assert isinstance(note, Notification)
    assert note.media == media


def test_unknown_message_type_is_parsed_generically() -> None:
    data = {
        "messageType": "VideoSessionStateChangeMessage",
        "notificationType": "PropertiesUpdated",
        "referenceId": 12,
        "meta": {"source": "x"},  # an object without an id is not the interaction
        "videoSession": {"id": "V1", "userData": {"a": 1}},
    }
    note = parse_notification({"channel": "/v2/me/videosessions", "data": data})
    assert isinstance(note, Notification), "an unknown media must not be dropped"
    assert note.media == gws.UNKNOWN
    assert (note.interaction_key, note.interaction_id) == ("videoSession", "V1")
    assert note.user_data == {"a": 1}
    assert note.reference_id == 12
    assert note.message_type == "VideoSessionStateChangeMessage"


def test_interaction_without_id_falls_back_to_the_object_holding_user_data() -> None:
    note = parse_notification(
        {"messageType": "ChatStateChangeMessage", "chat": {"userData": {"a": 1}}}
    )
    assert isinstance(note, Notification)
    assert (note.interaction_key, note.interaction_id, note.user_data) == ("chat", None, {"a": 1})


def test_voice_attached_data_changed_without_user_data() -> None:
    data = {
        "messageType": "CallStateChangeMessage",
        "notificationType": "AttachedDataChanged",
        "call": {"id": "CALL1", "state": "Established"},
    }
    note = parse_notification({"channel": "/v2/me/calls", "data": data})
    assert isinstance(note, Notification)
    assert note.media == "voice"
    assert note.user_data is None, "absent user data is not empty user data"
    assert note.reference_id is None
    assert note.reports_change and not note.is_error


def test_empty_user_data_is_not_absent_user_data() -> None:
    note = parse_notification(
        {"messageType": "ChatStateChangeMessage", "chat": {"id": "C", "userData": {}}}
    )
    assert isinstance(note, Notification)
    assert note.user_data == {}


@pytest.mark.parametrize(("media", "channel", "message_type", "key", "ntype"), TOPICS)
def test_multimedia_error_notification(
    media: str, channel: str, message_type: str, key: str, ntype: str
) -> None:
    data = {
        "messageType": message_type,
        "notificationType": "Error",
        "referenceId": 9,
        "errorMessage": "Interaction server error",
        key: {"id": "E1"},
    }
    note = parse_notification({"channel": channel, "data": data})
    assert isinstance(note, Notification)
    assert note.is_error and note.reports_change
    assert note.error_message == "Interaction server error"
    assert (note.media, note.interaction_id, note.reference_id) == (media, "E1", 9)


@pytest.mark.parametrize("message_type", ["ErrorMessage", "ErrorMessage "])
def test_voice_error_message_type(message_type: str) -> None:
    data = {"messageType": message_type, "errorMessage": "T-Server error", "call": {"id": "C1"}}
    note = parse_notification({"channel": "/v2/me/calls", "data": data})
    assert isinstance(note, Notification)
    assert note.is_error and note.reports_change
    assert (note.media, note.interaction_id, note.error_message) == (
        "voice",
        "C1",
        "T-Server error",
    )


def test_error_message_inside_the_interaction_object_is_found() -> None:
    note = parse_notification(
        {
            "messageType": "ChatStateChangeMessage",
            "notificationType": "Error",
            "chat": {"id": "C", "errorMessage": "inner"},
        }
    )
    assert isinstance(note, Notification)
    assert note.error_message == "inner"


@pytest.mark.parametrize(
    "ntype",
    ["StatusChange", "ParticipantsUpdated", "MessageLogUpdated", "NewMessages", "EmailSaved"],
)
def test_non_change_types_do_not_report_a_change(ntype: str) -> None:
    note = parse_notification(
        {"messageType": "ChatStateChangeMessage", "notificationType": ntype, "chat": {"id": "C"}}
    )
    assert isinstance(note, Notification)
    assert not note.reports_change and not note.is_error


@pytest.mark.parametrize("ntype", ["PropertiesUpdated", "AttachedDataChanged", "Error"])
def test_change_types_report_a_change(ntype: str) -> None:
    note = parse_notification(
        {"messageType": "ChatStateChangeMessage", "notificationType": ntype, "chat": {"id": "C"}}
    )
    assert isinstance(note, Notification)
    assert note.reports_change


def test_quirk_message_type_with_trailing_space() -> None:
    data = {"messageType": "test_accept ", "notificationType": "StatusChange", "chat": {"id": "C9"}}
    note = parse_notification(data)
    assert isinstance(note, Notification), "a strange messageType must not drop the notification"
    assert note.message_type == "test_accept "  # kept as sent
    assert (note.media, note.interaction_id) == ("chat", "C9")  # media from the object key


def test_notification_type_with_trailing_space_still_reports_a_change() -> None:
    note = parse_notification(
        {
            "messageType": "ChatStateChangeMessage",
            "notificationType": "PropertiesUpdated ",
            "chat": {"id": "C"},
        }
    )
    assert isinstance(note, Notification)
    assert note.notification_type == "PropertiesUpdated"
    assert note.reports_change


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "bare"])
def test_quirk_lower_case_facebook_message_type_and_plural_key(wrapped: bool) -> None:
    data = {
        "messageType": "facebooksessionStateChangeMessage",
        "notificationType": "PropertiesUpdated",
        "referenceId": 16,
        "facebooksessions": {"id": "0002DaAVKJ0V0095", "userData": {"UserData1": 987654321}},
    }
    message = {"channel": "/v2/me/facebooksession", "data": data} if wrapped else data
    note = parse_notification(message)
    assert isinstance(note, Notification)
    assert note.media == "facebook"
    assert (note.interaction_key, note.interaction_id) == ("facebooksessions", "0002DaAVKJ0V0095")
    assert note.user_data == {"UserData1": 987654321}


def test_reference_id_as_text_equals_the_number() -> None:
    note = parse_notification(
        {"messageType": "ChatStateChangeMessage", "referenceId": "85", "chat": {"id": "C"}}
    )
    assert isinstance(note, Notification)
    assert note.reference_id == 85 and type(note.reference_id) is int


@pytest.mark.parametrize(
    "message",
    [
        None,
        [],
        "ChatStateChangeMessage",
        42,
        {},
        {"channel": "/meta/connect", "successful": True, "advice": {"reconnect": "retry"}},
        {"channel": "/meta/handshake", "clientId": "abc", "successful": True},
    ],
)
def test_non_notifications_are_none(message: Any) -> None:
    assert parse_notification(message) is None


def test_notification_decoded_from_quirky_text_reports_repairs() -> None:
    raw = (
        b'{"channel": "/v2/me/chats", "data": {"messageType": "ChatStateChangeMessage",'
        b' "notificationType": "PropertiesUpdated", "referenceId": 1389261492035L,'
        b' "chat": {"id": "C1", "userData": {"K": ""DATA"", "N": None, "Q": "a "b" c",},},},}'
    )
    parsed = loads(raw)
    assert isinstance(parsed, Parsed), parsed
    assert set(parsed.repairs) >= {
        "python long literal",
        "doubled quotes",
        "python None/True/False",
        "unescaped inner quote",
        "trailing comma",
    }
    note = parse_notification(parsed.value)
    assert isinstance(note, Notification)
    assert note.reference_id == 1389261492035
    assert note.user_data == {"K": "DATA", "N": None, "Q": 'a "b" c'}


# ---- the two seed documents -------------------------------------------------------------


def _seed(seed_dir: Path, name: str) -> tuple[Parsed, Notification]:
    parsed = loads((seed_dir / name).read_bytes())
    assert isinstance(parsed, Parsed), f"{name}: {parsed}"
    note = parse_notification(parsed.value)
    assert isinstance(note, Notification), name
    return parsed, note


def test_seed_000_sms(seed_dir: Path) -> None:
    parsed, note = _seed(seed_dir, "seed_000_sms.txt")
    assert "python None/True/False" in parsed.repairs
    assert note.media == "sms"
    assert note.reference_id == 85 and type(note.reference_id) is int
    assert note.interaction_id == "0000Wa9CAM6W00J"
    assert note.interaction_key == "smsession"  # the seed's spelling
    assert (note.message_type, note.notification_type) == (
        "SMSsessionStateChangeMessage",
        "PropertiesUpdated",
    )
    assert note.reports_change and not note.is_error
    ud = note.user_data
    assert ud is not None
    assert len(ud) == 32  # counted in the file: 32 key lines, no duplicates
    assert ud["UserData1"] == 987654321 and type(ud["UserData1"]) is int
    assert ud["UserData2"] == "DATAUPDATE-@123"
    assert "RRequestedSkills" in ud and ud["RRequestedSkills"] is None
    assert ud["PegAGChat distribution for processing"] == 1
    assert ud["RVQID"] == ""
    assert note.interaction is not None
    assert note.interaction["uri"] == "http://localhost:8080/api/v2/smsessions/0000Wa9CAM6W00J"
    assert len(note.interaction["participants"]) == 2


def test_seed_003_facebook(seed_dir: Path) -> None:
    parsed, note = _seed(seed_dir, "seed_003_facebook.txt")
    assert {"python None/True/False", "raw newline in string"} <= set(parsed.repairs)
    assert note.media == "facebook"
    assert note.reference_id == 16 and type(note.reference_id) is int
    assert note.interaction_id == "0002DaAVKJ0V0095"
    assert note.interaction_key == "facebooksession"
    ud = note.user_data
    assert ud is not None
    # 84 key lines in the file; LCATimeStamp_facebooksession appears twice: 83 distinct keys.
    assert len(ud) == 83
    assert ud["LCATimeStamp_facebooksession"] == "a1"  # the last one wins
    assert ud["UserData1"] == 987654321 and type(ud["UserData1"]) is int
    assert ud["UserData2"] == "DATAUPDATE-@123"
    assert "RRequestedSkills" in ud and ud["RRequestedSkills"] is None
    assert (
        ud["_facebookPMInboxUrl"]
        == "https://www.facebook.com/Cloud-App-Community-\n...&folder=inbox"
    )
    assert ud["_facebookPMMessageId"] == "m_mid.1441197555276: d391c5a244a6798f46"
    assert ud["LCATimeStamp_facebook"] == "2015-08-11T12: 11: 34Z"
    assert ud["_facebookSourceXML"].startswith("<com.genesyslab.mcr.facebook.fql.Page>")
    ixn = note.interaction
    assert ixn is not None
    assert ixn["uri"] == "http://192.168.83.25: 8090/api/v2/facebooksessions/0002DaAVKJ0V0095"
    assert ixn["suggestedQueueUris"] == [
        "http://192.168.83.25: 8090/api/v2/queues/41cc5016-2d18-4a91-93ec-b43748948608"
    ]
    assert ixn["capabilities"] == []
    assert [p["nickname"] for p in ixn["participants"]] == ["TestName", "VitaliyOnv"]


@pytest.mark.parametrize("name", ["seed_000_sms.txt", "seed_003_facebook.txt"])
def test_seed_wrapped_in_a_bayeux_message_parses_the_same(seed_dir: Path, name: str) -> None:
    parsed, bare = _seed(seed_dir, name)
    channel = "/v2/me/smssessions" if "sms" in name else "/v2/me/facebooksession"
    wrapped = parse_notification({"channel": channel, "data": parsed.value})
    assert isinstance(wrapped, Notification)
    assert wrapped.channel == channel
    assert (wrapped.media, wrapped.reference_id, wrapped.interaction_id, wrapped.user_data) == (
        bare.media,
        bare.reference_id,
        bare.interaction_id,
        bare.user_data,
    )


def test_seed_documented_request_classifies() -> None:
    # The request both seed documents print (without the leading slash).
    raw = b"""{
  "operationName": "UpdateUserData",
  "userData": {
    "UserData1": 987654321,
    "UserData2": "DATAUPDATE-@123"
  }
}"""
    sms = classify_ok("POST", "api/v2/me/smsessions/0071023821aec011", raw)
    fb = classify_ok("POST", "api/v2/me/facebooksessions/0002DaAVKJ0V0095", raw)
    assert (sms.media, sms.interaction_id) == ("sms", "0071023821aec011")
    assert (fb.media, fb.interaction_id) == ("facebook", "0002DaAVKJ0V0095")
    for req in (sms, fb):
        assert req.requested == {"UserData1": 987654321, "UserData2": "DATAUPDATE-@123"}


# ---- never raise ---------------------------------------------------------------------------

GWS_FIELDS = [
    "operationName",
    "userData",
    "keys",
    "key",
    "statusCode",
    "statusMessage",
    "referenceId",
    "channel",
    "data",
    "messageType",
    "notificationType",
    "errorMessage",
    "id",
    "chat",
    "call",
    "smsession",
    "imSession",
]


TEXT = st.text(max_size=20) | st.sampled_from(["²", "①", "7" * 5000, " 85 ", "-3"])
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT | st.sampled_from(gws.OPERATIONS)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(GWS_FIELDS) | TEXT, inner, max_size=5)
    ),
    max_leaves=25,
)
OPERATION_DOCS = st.fixed_dictionaries(
    {"operationName": st.sampled_from([*gws.OPERATIONS, "complete", "UPDATEUSERDATA"]) | TEXT},
    optional={"userData": JSON, "keys": JSON, "key": JSON},
)
BODIES = (
    st.binary(max_size=200)
    | st.text(max_size=200)
    | JSON.map(json.dumps)
    | OPERATION_DOCS.map(json.dumps)
    | OPERATION_DOCS.map(lambda d: json.dumps(d).encode())
)
PATHS = st.builds(
    lambda prefix, tail: prefix + tail,
    st.sampled_from(
        [
            "/api/v2/me/",
            "api/v2/me/",
            "/gws/api/v2/me/",
            "/api/v2/me/chats/",
            "/api/v2/me/calls/",
            "/api/v2/me/openmedia/",
            "/api/v2/me/im-sessions/",
            "/api/v2/notifications",
            "",
        ]
    ),
    st.text(max_size=30),
)
NOTIFICATIONS = (
    JSON
    | st.fixed_dictionaries(
        {"channel": JSON | st.sampled_from(["/v2/me/chats", "/v2/me/x"]), "data": JSON}
    )
    | st.dictionaries(st.sampled_from(GWS_FIELDS), JSON, max_size=6)
)

FAST = settings(
    max_examples=3 * settings.default.max_examples // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FAST
@given(
    method=st.sampled_from(["POST", "post", "GET"]) | st.text(max_size=6), path=PATHS, raw=BODIES
)
def test_classify_request_never_raises(method: str, path: str, raw: bytes | str) -> None:
    result = classify_request(method, path, raw)
    assert result is None or isinstance(result, UserDataRequest | BadRequest)
    if isinstance(result, UserDataRequest):
        assert result.operation in gws.OPERATIONS
        assert result.requested is None or isinstance(result.requested, dict | list)
    if isinstance(result, BadRequest):
        assert result.reason


@FAST
@given(raw=BODIES)
def test_parse_answer_never_raises(raw: bytes | str) -> None:
    result = parse_answer(raw)
    assert isinstance(result, Answer | Unreadable)


@FAST
@given(message=NOTIFICATIONS)
def test_parse_notification_never_raises(message: Any) -> None:
    note = parse_notification(message)
    if note is not None:
        assert isinstance(note.media, str) and isinstance(note.data, dict)
        assert note.user_data is None or isinstance(note.user_data, dict)
        assert isinstance(note.reports_change, bool) and isinstance(note.is_error, bool)


@pytest.mark.parametrize(
    ("user", "password"), [("agent1", "password"), ("agent", "pa:ss"), ("agënt", "wörd")]
)
def test_basic_authorization_reads_back_as_the_same_credentials(user: str, password: str) -> None:
    header = gws.basic_authorization(user, password)
    assert header.startswith("Basic ")
    assert gws.basic_credentials(header) == (user, password)


def test_an_interaction_shows_its_user_data_as_gws_does() -> None:
    assert gws.with_user_data({"id": "c1"}, [], "chat") == {"id": "c1", "userData": {}}
    assert gws.with_user_data({"id": "v1"}, [], "voice") == {"id": "v1"}  # voice leaves it out
    shown = gws.with_user_data({"id": "v1"}, [("k", 1), ("k", 2)], "voice")
    assert json.dumps(shown["userData"]) == '{"k": 1, "k": 2}'  # a repeated voice key stays
