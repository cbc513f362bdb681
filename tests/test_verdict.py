"""Verdicts on realistic pairs: the SMS documentation sample's UpdateUserData applied, coerced,
not applied and with side effects; deletes on voice and chat; unknown before; pass-through
statuses; nested values; the cheap counts; a property test; the 1,000-key time budget."""

from __future__ import annotations

import copy
import pickle
import random
import time
from pathlib import Path
from typing import Any

import pytest
from deepdiff import DeepDiff
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gwsproxy import gws, lenient
from gwsproxy.correlate import Status
from gwsproxy.verdict import (
    MISSING,
    KeyChange,
    Verdict,
    VerdictName,
    counts,
    details,
    expected,
    judge,
)

SEED = Path(__file__).resolve().parents[1] / "gwsproxy" / "data" / "seed_000_sms.txt"
# The documented request of seed 000 (UpdateUserData on an SMS session).
REQUESTED = {"UserData1": 987654321, "UserData2": "DATAUPDATE-@123"}
UPDATE = gws.UPDATE
BUDGET = 0.050  # seconds, for a 1,000-key judge


@pytest.fixture(scope="module")
def seed_after() -> dict[str, Any]:
    """The user data the seed's notification reports after the documented update."""
    parsed = lenient.loads(SEED.read_bytes())
    assert isinstance(parsed, lenient.Parsed)
    note = gws.parse_notification(parsed.value)
    assert note is not None and note.user_data is not None
    assert note.user_data["UserData1"] == 987654321
    return note.user_data


@pytest.fixture(scope="module")
def seed_before(seed_after: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in seed_after.items() if k not in REQUESTED}


def change_of(verdict: Verdict, key: str) -> KeyChange:
    found = [c for c in verdict.changes if c.key == key]
    assert len(found) == 1, f"{key!r} appears {len(found)} times in {verdict.changes}"
    return found[0]


# ---- the documented UpdateUserData ------------------------------------------------------------


def test_documented_update_is_applied_with_two_keys_added(seed_before, seed_after):
    v = judge("matched", UPDATE, "sms", REQUESTED, seed_before, seed_after)
    assert v.name == VerdictName.APPLIED
    assert v.summary == "+2 ~0 -0"
    assert (v.not_applied, v.coerced, v.side_effects) == ((), (), ())
    assert v.before_known and v.after_known
    assert [c.key for c in v.changed()] == ["UserData1", "UserData2"]
    first = v.changes[0]
    assert first == KeyChange("UserData1", MISSING, 987654321, 987654321, "added", True, "ok")
    # Every key once: requested keys first, then the others sorted.
    keys = [c.key for c in v.changes]
    assert keys[:2] == ["UserData1", "UserData2"]
    assert keys[2:] == sorted(seed_before)
    assert len(keys) == len(seed_after)
    assert all(c.kind == "unchanged" and c.outcome == "" for c in v.changes[2:])
    assert expected(seed_before, UPDATE, REQUESTED, "sms") == seed_after


def test_number_arriving_as_text_is_coerced(seed_before, seed_after):
    after = {**seed_after, "UserData1": "987654321"}
    v = judge("matched", UPDATE, "sms", REQUESTED, seed_before, after)
    assert v.name == VerdictName.COERCED
    assert v.coerced == ("UserData1",)
    c = change_of(v, "UserData1")
    assert (c.expected, c.after, c.outcome, c.kind) == (987654321, "987654321", "coerced", "added")
    assert change_of(v, "UserData2").outcome == "ok"


@pytest.mark.parametrize(
    ("sent", "got"),
    [
        (987654321, "987654321"),
        (1, 1.0),
        (1, "1"),
        (1.0, "1"),
        (True, "true"),
        (False, "False"),
        (True, 1),
        (None, "null"),
        ({"a": 1, "b": [True]}, {"a": "1", "b": ["true"]}),
        ({"a": 1}, '{"a": 1}'),
        ([1, 2], [1.0, 2.0]),
    ],
)
def test_equal_looking_values_of_another_type_are_coerced(sent, got):
    v = judge("matched", UPDATE, "chat", {"K": sent}, {}, {"K": got})
    assert v.name == VerdictName.COERCED, v.changes
    assert v.coerced == ("K",)


@pytest.mark.parametrize(
    ("sent", "got"),
    [(1, "2"), ("abc", "abd"), (True, "yes"), (1, "1x"), ({"a": 1}, {"a": 2}), ([1], [1, 1])],
)
def test_different_values_are_not_applied(sent, got):
    v = judge("matched", UPDATE, "chat", {"K": sent}, {}, {"K": got})
    assert v.name == VerdictName.NOT_APPLIED
    assert v.not_applied == ("K",)


def test_missing_requested_key_is_not_applied(seed_before, seed_after):
    after = {k: v for k, v in seed_after.items() if k != "UserData2"}
    v = judge("matched", UPDATE, "sms", REQUESTED, seed_before, after)
    assert v.name == VerdictName.NOT_APPLIED
    assert v.not_applied == ("UserData2",)
    c = change_of(v, "UserData2")
    assert (c.before, c.after, c.expected, c.kind) == (
        MISSING,
        MISSING,
        "DATAUPDATE-@123",
        "unchanged",
    )
    assert c.requested and c.outcome == "not applied"


def test_not_applied_outranks_coerced_and_side_effects(seed_before, seed_after):
    after = {k: v for k, v in seed_after.items() if k != "UserData2"}
    after["UserData1"] = "987654321"
    after["Subject"] = "Changed behind our back"
    v = judge("matched", UPDATE, "sms", REQUESTED, seed_before, after)
    assert v.name == VerdictName.NOT_APPLIED
    assert (v.not_applied, v.coerced, v.side_effects) == (
        ("UserData2",),
        ("UserData1",),
        ("Subject",),
    )


def test_unrequested_changes_are_side_effects(seed_before, seed_after):
    after = {**seed_after, "Subject": "Billing", "ServiceObjective": "0"}
    del after["DISP_KEY"]
    v = judge("matched", UPDATE, "sms", REQUESTED, seed_before, after)
    assert v.name == VerdictName.SIDE_EFFECTS
    assert v.side_effects == ("DISP_KEY", "ServiceObjective", "Subject")
    assert change_of(v, "Subject").kind == "changed"
    assert change_of(v, "ServiceObjective").kind == "type changed"  # 0 -> "0"
    assert change_of(v, "DISP_KEY").kind == "removed"
    assert all(change_of(v, k).outcome == "side effect" for k in v.side_effects)
    assert v.summary == "+2 ~2 -1"
    # Coerced outranks side effects.
    after["UserData1"] = "987654321"
    assert (
        judge("matched", UPDATE, "sms", REQUESTED, seed_before, after).name == VerdictName.COERCED
    )


# ---- deletes ----------------------------------------------------------------------------------


def test_voice_delete_everything(seed_before):
    assert expected(seed_before, gws.DELETE, None, "voice") == {}
    # Voice notifications after DeleteUserData carry no userData: after is absent, i.e. empty.
    v = judge("matched", gws.DELETE, "voice", None, seed_before, None)
    assert v.name == VerdictName.APPLIED
    assert v.summary == f"+0 ~0 -{len(seed_before)}"
    assert all(c.requested and c.kind == "removed" and c.outcome == "ok" for c in v.changes)
    left = judge("matched", gws.DELETE, "voice", None, seed_before, {"Subject": "x", "New": 1})
    assert left.name == VerdictName.NOT_APPLIED
    assert left.not_applied == ("New", "Subject")
    # Multimedia DeleteUserData names its keys; without them it deletes nothing.
    assert expected(seed_before, gws.DELETE, None, "chat") == seed_before


def test_voice_delete_pair(seed_before):
    want = expected(seed_before, gws.DELETE_PAIR, ["Subject"], "voice")
    assert want == {k: v for k, v in seed_before.items() if k != "Subject"}
    v = judge("matched", gws.DELETE_PAIR, "voice", ["Subject"], seed_before, want)
    assert v.name == VerdictName.APPLIED
    assert v.changed() == (
        KeyChange("Subject", "Customer support", MISSING, MISSING, "removed", True, "ok"),
    )
    kept = judge("matched", gws.DELETE_PAIR, "voice", ["Subject"], seed_before, seed_before)
    assert kept.name == VerdictName.NOT_APPLIED and kept.not_applied == ("Subject",)


def test_chat_delete_keys(seed_before):
    keys = ["Subject", "DISP_KEY", "NotThere"]
    want = expected(seed_before, gws.DELETE, keys, "chat")
    assert want == {k: v for k, v in seed_before.items() if k not in keys}
    v = judge("matched", gws.DELETE, "chat", keys, seed_before, want)
    assert v.name == VerdictName.APPLIED
    assert [c.key for c in v.changes[:3]] == keys
    assert v.summary == "+0 ~0 -2"
    assert change_of(v, "NotThere").kind == "unchanged"


# ---- unknown before, pass-through statuses ----------------------------------------------------


def test_unknown_before_claims_no_side_effects(seed_after):
    after = {**seed_after, "Subject": "Billing"}
    assert expected(None, UPDATE, REQUESTED, "sms") is None
    v = judge("matched", UPDATE, "sms", REQUESTED, None, after)
    assert v.name == VerdictName.APPLIED
    assert not v.before_known
    assert v.side_effects == ()
    c = change_of(v, "UserData1")
    assert (c.before, c.expected, c.outcome) == (MISSING, 987654321, "ok")
    assert change_of(v, "Subject").expected is MISSING
    assert judge("matched", UPDATE, "sms", REQUESTED, None, {}).not_applied == (
        "UserData1",
        "UserData2",
    )


@pytest.mark.parametrize(
    "status", ["rejected", "error", "timeout", "lost", "ambiguous", "failed", "incomplete"]
)
def test_unmatched_statuses_pass_through(status, seed_before):
    v = judge(status, UPDATE, "sms", REQUESTED, seed_before, None)
    assert v.name == status
    assert not v.after_known
    # Nothing is known to have changed: after shows before and nothing is judged.
    assert v.summary == "+0 ~0 -0"
    assert (v.not_applied, v.coerced, v.side_effects) == ((), (), ())
    assert [c.key for c in v.changed()] == ["UserData1", "UserData2"]
    assert all(c.outcome == "" for c in v.changes)
    assert change_of(v, "Subject").after == "Customer support"


def test_error_with_user_data_still_shows_the_diff(seed_before):
    v = judge("error", UPDATE, "sms", REQUESTED, seed_before, seed_before)
    assert v.name == VerdictName.ERROR
    assert v.not_applied == ("UserData1", "UserData2")
    assert judge("rejected", UPDATE, "sms", REQUESTED, None, None).name == VerdictName.REJECTED
    assert judge("timeout", UPDATE, "sms", REQUESTED, None, None).name == VerdictName.TIMEOUT
    assert judge("???", UPDATE, "sms", REQUESTED, None, None).name == VerdictName.INCOMPLETE


def test_every_status_but_matched_is_its_own_verdict():
    for status in Status:
        if status != Status.MATCHED:
            assert judge(status.value, UPDATE, "sms", REQUESTED, None, None).name == status


# ---- nested values ----------------------------------------------------------------------------


def test_nested_change_marks_the_key_changed():
    before = {"Order": {"items": [1, 2], "total": 3}, "Note": "x"}
    after = {"Order": {"items": [1, 2.0], "total": 3}, "Note": "x"}  # 2 -> 2.0 deep inside
    v = judge("matched", UPDATE, "chat", {"Note": "x"}, before, after)
    assert v.name == VerdictName.SIDE_EFFECTS
    order = change_of(v, "Order")
    assert (order.kind, order.outcome) == ("changed", "side effect")
    # deepdiff agrees once it compares lists index by index, and details() says where.
    assert DeepDiff(before, after, zip_ordered_iterables=True)
    lines = details(order)
    assert any("Order['items'][1]" in line and "float" in line for line in lines), lines
    assert counts(before, after) == (0, 1, 0)
    flat = judge("matched", UPDATE, "chat", {}, before, {**after, "Order": "1 item"})
    assert change_of(flat, "Order").kind == "type changed"
    same = judge("matched", UPDATE, "chat", {}, before, copy.deepcopy(before))
    assert same.name == VerdictName.APPLIED and details(change_of(same, "Order")) == ()


# ---- counts -----------------------------------------------------------------------------------


def test_counts(seed_before, seed_after):
    assert counts(seed_before, seed_after) == (2, 0, 0)
    assert counts(seed_after, seed_before) == (0, 0, 2)
    assert counts(seed_after, {**seed_after, "UserData1": "987654321"}) == (0, 1, 0)
    assert counts({"a": 1}, {"a": 1.0}) == (0, 1, 0)
    assert counts({"a": [1]}, {"a": [True]}) == (0, 1, 0)
    assert counts({"a": {"b": [1]}}, {"a": {"b": [1]}}) == (0, 0, 0)
    assert counts({"a": 1, "b": 2}, {"b": 3, "c": 4}) == (1, 1, 1)
    assert counts(None, {"a": 1}) == (1, 0, 0)
    assert counts({"a": 1}, None) == (0, 0, 1)
    assert counts(None, None) == (0, 0, 0)


# ---- API details ------------------------------------------------------------------------------


def test_sentinel_and_names():
    assert repr(MISSING) == "<missing>"
    assert not MISSING
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING
    assert copy.deepcopy(MISSING) is MISSING
    assert tuple(VerdictName) == (
        "applied",
        "coerced",
        "not applied",
        "side effects",
        "rejected",
        "error",
        "timeout",
        "lost",
        "ambiguous",
        "failed",
        "incomplete",
    )
    v = judge("matched", UPDATE, "chat", {"a": 1}, {}, {"a": 1})
    with pytest.raises(AttributeError):
        v.name = "x"  # type: ignore[misc]


# ---- property ---------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["1", "1.0", "true", "null", "987654321", ""])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(["a", "b", "c", "UserData1", "Subject", ""]) | st.text(max_size=3)
USER_DATA = st.dictionaries(KEYS, JSON, max_size=6)


def typed(value: Any) -> Any:
    """A form whose == is equality with types at every level (the test's own oracle)."""
    if isinstance(value, dict):
        return ("map", frozenset((k, typed(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("list", tuple(typed(v) for v in value))
    return (type(value).__name__, value)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[str, str, Any, dict | None, dict | None]:
    operation = draw(st.sampled_from([*gws.OPERATIONS, "Bogus"]))
    media = draw(st.sampled_from(["voice", "chat", "sms", "unknown"]))
    requested = draw(
        st.none() | USER_DATA | st.lists(KEYS, max_size=3) | st.lists(JSON, max_size=2)
    )
    before = draw(st.none() | USER_DATA)
    want = expected(before, operation, requested, media)
    after = draw(
        st.none()
        | USER_DATA
        | (st.just(want) if want is not None else st.nothing())
        | (
            st.builds(lambda extra: {**want, **extra}, USER_DATA)
            if want is not None
            else st.nothing()
        )
    )
    return operation, media, requested, before, after


@settings(
    max_examples=4 * settings.default.max_examples,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=pairs(), status=st.sampled_from(["matched", "matched", "error", "timeout", "x"]))
def test_judge_never_raises_and_applied_means_after_equals_expected(case, status):
    operation, media, requested, before, after = case
    v = judge(status, operation, media, requested, before, after)
    assert v.name in VerdictName
    assert v.before_known == (before is not None)
    keys = [c.key for c in v.changes]
    assert len(keys) == len(set(keys))
    if before is None:
        assert v.side_effects == ()
    if status == "matched" and before is not None:
        got = after if after is not None else {}
        want = expected(before, operation, requested, media)
        assert (v.name == VerdictName.APPLIED) == (typed(got) == typed(want)), (v, want)
        assert v.summary == "+{} ~{} -{}".format(*counts(before, got))


# ---- speed ------------------------------------------------------------------------------------


def thousand_keys() -> tuple[dict, dict, dict]:
    """1,000 keys; after differs in 50 (values, type changes, nested, added, removed), 10 asked."""
    rng = random.Random(7)
    before: dict[str, Any] = {}
    for i in range(1000):
        before[f"Key{i:04d}"] = rng.choice(
            [i, f"value-{i}", i / 3, True, None, {"n": i, "tags": ["a", str(i)]}, [i, i + 1]]
        )
    after = dict(before)
    for i, key in enumerate(rng.sample(sorted(before), 50)):
        value = after[key]
        if i % 5 == 0:
            after[key] = str(value)  # type change (or text change)
        elif i % 5 == 1:
            del after[key]
        elif i % 5 == 2:
            after[key + "-new"] = value
        elif isinstance(value, dict):
            after[key] = {**value, "tags": ["a", int(value["n"])]}  # nested type change
        else:
            after[key] = [value]
    requested = {f"Key{i:04d}": f"asked-{i}" for i in range(0, 1000, 100)}
    after.update(requested)
    return before, after, requested


def best_of(runs: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_judge_of_a_thousand_keys_is_within_budget():
    before, after, requested = thousand_keys()
    v = judge("matched", UPDATE, "chat", requested, before, after)
    assert v.name == VerdictName.SIDE_EFFECTS and len(v.side_effects) >= 40
    elapsed = best_of(5, lambda: judge("matched", UPDATE, "chat", requested, before, after))
    assert elapsed < BUDGET, f"judge of 1,000 keys took {elapsed * 1e3:.1f} ms (budget 50 ms)"
    cheap = best_of(5, lambda: counts(before, after))
    assert cheap < elapsed, f"counts {cheap * 1e3:.2f} ms is not cheaper than judge"
