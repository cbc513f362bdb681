"""Verdicts: what a user-data request asked for, what its notification shows, and how they differ.

Pure functions over before/after snapshots: `expected` applies the request to before, `judge`
compares key by key with types (987654321 is not "987654321"), `counts` is the cheap list-view form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

from gwsproxy import gws
from gwsproxy.correlate import Status


class _Missing:
    """The one "key absent" marker: falsy, equal only to itself, survives copy and pickle."""

    __slots__ = ()
    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<missing>"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class VerdictName(StrEnum):
    """What a pair's verdict says: one of the four judged names for a matched pair, else the
    pair's status passed through (same values as `Status`)."""

    APPLIED = "applied"
    COERCED = "coerced"
    NOT_APPLIED = "not applied"
    SIDE_EFFECTS = "side effects"
    REJECTED = Status.REJECTED.value
    ERROR = Status.ERROR.value
    TIMEOUT = Status.TIMEOUT.value
    LOST = Status.LOST.value
    AMBIGUOUS = Status.AMBIGUOUS.value
    FAILED = Status.FAILED.value
    INCOMPLETE = Status.INCOMPLETE.value


# The verdicts `gwsproxy check` fails on unless told otherwise (its --fail-on default).
FAIL_ON: Final = (
    VerdictName.COERCED,
    VerdictName.NOT_APPLIED,
    VerdictName.ERROR,
    VerdictName.REJECTED,
    VerdictName.TIMEOUT,
    VerdictName.FAILED,  # never reached GWS: a run whose requests tested nothing must not pass
)
# Pair statuses that end a pair without a judgeable change: each is its own verdict.
PASS_THROUGH: Final = frozenset(Status) - {Status.MATCHED}
# The names only a matched pair gets.
JUDGED: Final = frozenset(
    {
        VerdictName.APPLIED,
        VerdictName.COERCED,
        VerdictName.NOT_APPLIED,
        VerdictName.SIDE_EFFECTS,
    }
)

ADDED, REMOVED, CHANGED = "added", "removed", "changed"
TYPE_CHANGED, UNCHANGED = "type changed", "unchanged"
KINDS: Final = (ADDED, REMOVED, CHANGED, TYPE_CHANGED, UNCHANGED)

# Per-key outcomes; "" is an unrequested key that did not change (or nothing could be judged).
OK, SIDE_EFFECT = "ok", "side effect"
OUTCOMES: Final = (OK, VerdictName.COERCED, VerdictName.NOT_APPLIED, SIDE_EFFECT, "")


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One user-data key: its value before, after, and what the request should have made of it."""

    key: str
    before: Any  # MISSING if absent (or if before is unknown)
    after: Any  # MISSING if absent
    expected: Any  # MISSING: the request wants it absent, or left it alone and before unknown
    kind: str  # one of KINDS: before -> after
    requested: bool  # the request named this key (a voice delete-everything names every key)
    outcome: str  # one of OUTCOMES


@dataclass(frozen=True, slots=True)
class Verdict:
    """A pair's verdict and its per-key diff."""

    name: VerdictName
    changes: tuple[KeyChange, ...]  # before ∪ after ∪ requested: requested first, then sorted
    not_applied: tuple[str, ...]
    coerced: tuple[str, ...]
    side_effects: tuple[str, ...]
    before_known: bool
    # Added to the agreed API: False when no user data came back (rejected, timeout, incomplete,
    # an error without userData). `after` then shows `before`: nothing is known to have changed.
    after_known: bool = field(default=True)

    def changed(self) -> tuple[KeyChange, ...]:
        """The rows a diff view shows: keys that changed, and every requested key."""
        return tuple(c for c in self.changes if c.kind != UNCHANGED or c.requested)

    @property
    def summary(self) -> str:
        """Counts as "+added ~changed -removed"; type changes count as changed."""
        added = changed = removed = 0
        for c in self.changes:
            if c.kind == ADDED:
                added += 1
            elif c.kind == REMOVED:
                removed += 1
            elif c.kind != UNCHANGED:
                changed += 1
        return f"+{added} ~{changed} -{removed}"


# ---- the request's effect ----------------------------------------------------------------------


def expected(
    before: dict[str, Any] | None,
    operation: str,
    requested: dict[str, Any] | list[str] | None,
    media: str,
) -> dict[str, Any] | None:
    """The user data the request should leave: `requested` applied to `before` by the GWS model
    (`gws.apply_user_data`), as a notification reads it. None when before is unknown.

    Update and Attach overwrite the given keys (in place, new ones last); DeleteUserData removes
    the listed keys, or everything on voice when `requested` is None; DeleteUserDataPair removes
    its key (`requested` is the one-element list stored in captures).
    """
    if not isinstance(before, dict):
        return None
    return dict(gws.apply_user_data(before.items(), operation, requested, media))


# ---- judging -----------------------------------------------------------------------------------


def judge(
    status: str,
    operation: str,
    media: str,
    requested: dict[str, Any] | list[str] | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> Verdict:
    """The verdict of a pair; never raises on JSON-like input.

    `status` is the capture's pair status. Only `matched` pairs are judged applied / coerced /
    not applied / side effects; the others keep their status as the verdict (an unknown status
    reads as incomplete), with the per-key diff still computed when user data came back. A
    matched pair without `after` means empty user data (a voice delete-everything notification).
    """
    eff = gws.effect_of(operation, requested, media)
    before_known = isinstance(before, dict)
    old: dict[Any, Any] = before if before_known else {}  # type: ignore[assignment]
    is_matched = status == Status.MATCHED
    after_known = isinstance(after, dict) or is_matched
    new: dict[Any, Any] = after if isinstance(after, dict) else ({} if is_matched else old)
    # What each key should hold (absent: MISSING); with before unknown, only the named keys know.
    wants = dict(eff.apply(old.items()))

    named = sorted(old.keys() | new.keys(), key=_sort_key) if eff.everything else eff.named
    rest = sorted((old.keys() | new.keys()).difference(named), key=_sort_key)

    changes: list[KeyChange] = []
    not_applied: list[Any] = []
    coerced: list[Any] = []
    side_effects: list[Any] = []
    for key in named:
        b = old.get(key, MISSING)
        a = new.get(key, MISSING)
        want = wants.get(key, MISSING)
        outcome = _outcome(want, a) if after_known else ""
        if outcome == VerdictName.NOT_APPLIED:
            not_applied.append(key)
        elif outcome == VerdictName.COERCED:
            coerced.append(key)
        changes.append(KeyChange(key, b, a, want, change_kind(b, a), True, outcome))
    for key in rest:
        b = old.get(key, MISSING)
        a = new.get(key, MISSING)
        kind = change_kind(b, a)
        outcome = ""
        if kind != UNCHANGED and before_known and after_known:
            outcome = SIDE_EFFECT
            side_effects.append(key)
        changes.append(KeyChange(key, b, a, wants.get(key, MISSING), kind, False, outcome))

    return Verdict(
        name=_name(status, not_applied, coerced, side_effects),
        changes=tuple(changes),
        not_applied=tuple(not_applied),
        coerced=tuple(coerced),
        side_effects=tuple(side_effects),
        before_known=before_known,
        after_known=after_known,
    )


def _name(status: str, not_applied: Any, coerced: Any, side_effects: Any) -> VerdictName:
    """The verdict's name: a pass-through status, else the worst per-key outcome."""
    if status != Status.MATCHED:
        return VerdictName(status) if status in PASS_THROUGH else VerdictName.INCOMPLETE
    if not_applied:
        return VerdictName.NOT_APPLIED
    if coerced:
        return VerdictName.COERCED
    if side_effects:
        return VerdictName.SIDE_EFFECTS
    return VerdictName.APPLIED


def ignoring(verdict: Verdict, ignored: Callable[[Any], bool]) -> Verdict:
    """`verdict` as if the keys `ignored` says yes to were not compared (`--ignore KEY_REGEX`):
    their changes dropped, the name decided again from what is left."""
    changes = tuple(c for c in verdict.changes if not ignored(c.key))
    if len(changes) == len(verdict.changes):
        return verdict
    not_applied = tuple(k for k in verdict.not_applied if not ignored(k))
    coerced = tuple(k for k in verdict.coerced if not ignored(k))
    side_effects = tuple(k for k in verdict.side_effects if not ignored(k))
    name = verdict.name
    if name in JUDGED:
        name = _name(Status.MATCHED, not_applied, coerced, side_effects)
    return replace(
        verdict,
        name=name,
        changes=changes,
        not_applied=not_applied,
        coerced=coerced,
        side_effects=side_effects,
    )


def counts(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[int, int, int]:
    """(added, changed, removed) keys from before to after, types mattering; None reads as empty.

    For list views: no per-key objects, no deepdiff. Type changes count as changed.
    """
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    changed = removed = 0
    for key, b in old.items():
        a = new.get(key, MISSING)
        if a is MISSING:
            removed += 1
        elif b is not a:
            t = type(b)
            if t is type(a) and t in _SCALARS:
                if b != a:
                    changed += 1
            elif not same(b, a):
                changed += 1
    return len(new) - (len(old) - removed), changed, removed


def details(change: KeyChange) -> tuple[str, ...]:
    """What changed inside one key's value, one line per nested change (deepdiff, on demand).

    For the detail pane of a diff view: a nested value (a map or list) that `judge` reports as
    changed is broken down to the paths that differ, type changes included.
    """
    b, a = change.before, change.after
    if b is MISSING or a is MISSING or same(b, a):
        return ()
    try:
        from deepdiff import DeepDiff

        # zip_ordered_iterables: compare lists index by index. Without it deepdiff 9 matches list
        # items by hash and misses [1] -> [1.0] and [True] -> [1] (equal hashes).
        diff = DeepDiff(b, a, verbose_level=2, zip_ordered_iterables=True)
        text = diff.pretty()
    except Exception:  # noqa: BLE001 - a detail view must not fail on odd values
        return (f"{change.key}: {b!r} -> {a!r}",)
    label = repr(change.key) if not isinstance(change.key, str) else change.key
    return tuple(_ROOT.sub(lambda _: label, line) for line in text.splitlines() if line.strip())


_ROOT = re.compile(r"\broot(?=\[|\b)")


# ---- comparisons -------------------------------------------------------------------------------

_SCALARS = frozenset({str, int, float, bool, type(None)})
_KIND_OF_TYPE = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    type(None): "null",
    dict: "map",
    list: "list",
    tuple: "list",
}


def type_name(value: Any) -> str:
    """A value's JSON type as the verdicts see it: str, int, float, bool, null, map or list."""
    return _type_kind(value)


def _type_kind(value: Any) -> str:
    kind = _KIND_OF_TYPE.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, dict):
        return "map"  # e.g. gws.KVList, voice user data with a repeated key
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


def _sort_key(key: Any) -> tuple[bool, str]:
    return (not isinstance(key, str), key if isinstance(key, str) else repr(key))


def change_kind(b: Any, a: Any) -> str:
    """What became of a key whose value was `b` and is `a` (MISSING: absent): ADDED, REMOVED,
    CHANGED, TYPE_CHANGED or UNCHANGED (types matter at every level, as in `same`)."""
    if b is MISSING:
        return UNCHANGED if a is MISSING else ADDED
    if a is MISSING:
        return REMOVED
    if b is a:
        return UNCHANGED
    t = type(b)
    if t is type(a) and t in _SCALARS:
        return UNCHANGED if b == a else CHANGED
    if _type_kind(b) != _type_kind(a):
        return TYPE_CHANGED
    return UNCHANGED if same(b, a) else CHANGED


def _outcome(want: Any, got: Any) -> str:
    if want is MISSING:
        return OK if got is MISSING else VerdictName.NOT_APPLIED
    if got is MISSING:
        return VerdictName.NOT_APPLIED
    if same(want, got):
        return OK
    return VerdictName.COERCED if _equal_but_for_type(want, got) else VerdictName.NOT_APPLIED


def same(x: Any, y: Any) -> bool:
    """Deep equality where types matter at every level (1, 1.0, True and "1" all differ).

    Iterative, so deeply nested values cannot exhaust the stack.
    """
    stack = [(x, y)]
    while stack:
        a, b = stack.pop()
        if a is b:
            continue
        ka, kb = _type_kind(a), _type_kind(b)
        if ka != kb:
            return False
        if ka == "map":
            if len(a) != len(b) or a.keys() != b.keys():
                return False
            stack.extend((v, b[k]) for k, v in a.items())
        elif ka == "list":
            if len(a) != len(b):
                return False
            stack.extend(zip(a, b, strict=True))
        else:
            try:
                if a != b:
                    return False
            except Exception:  # noqa: BLE001 - exotic values that refuse comparison differ
                return False
    return True


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_NUMERIC = frozenset({"int", "float", "bool"})
_CONTAINERS = frozenset({"map", "list"})


def _equal_but_for_type(x: Any, y: Any) -> bool:
    """What *coerced* means: equal once types are set aside, at every level: 987654321 ~
    "987654321", 1 ~ 1.0 ~ "1", True ~ "true", None ~ "null", {"a": 1} ~ {"a": "1"} ~ '{"a": 1}'.

    Only asked after `same` said no, once per requested key of a judged pair, so it may parse
    numbers and JSON text. (The Correlator's `_written_alike` is the cheap test of whether a
    notification shows a request at all.)"""
    stack = [(x, y)]
    while stack:
        a, b = stack.pop()
        if a is b:
            continue
        ka, kb = _type_kind(a), _type_kind(b)
        if ka == kb == "map":
            if len(a) != len(b) or a.keys() != b.keys():
                return False
            stack.extend((v, b[k]) for k, v in a.items())
        elif ka == kb == "list":
            if len(a) != len(b):
                return False
            stack.extend(zip(a, b, strict=True))
        elif ka in _CONTAINERS or kb in _CONTAINERS:
            text, other = (a, b) if ka == "str" else (b, a) if kb == "str" else (None, None)
            if text is None:
                return False
            decoded = _json_or_missing(text)
            if decoded is MISSING:
                return False
            stack.append((decoded, other))
        elif not _scalars_equal_but_for_type(a, ka, b, kb):
            return False
    return True


def _json_or_missing(text: str) -> Any:
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return MISSING
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return MISSING


def _scalars_equal_but_for_type(a: Any, ka: str, b: Any, kb: str) -> bool:
    try:
        if ka in _NUMERIC and kb in _NUMERIC:
            return bool(a == b)
        if ka == "str" and kb == "str":
            return bool(a == b)
        if ka == "str" or kb == "str":
            text, value, kind = (a, b, kb) if ka == "str" else (b, a, ka)
            return _text_looks_like(text, value, kind)
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that refuse comparison do not look equal
        return False


def _text_looks_like(text: str, value: Any, kind: str) -> bool:
    word = text.strip()
    if kind == "bool":
        if word.lower() in ("true", "false"):
            return (word.lower() == "true") is value
        kind, value = "int", int(value)
    if kind in ("int", "float"):
        if not _NUMBER.fullmatch(word):
            return False
        try:
            number: int | float = int(word) if word.lstrip("-").isdigit() else float(word)
        except (ValueError, OverflowError):  # over int's digit limit, or out of float range
            return False
        return bool(number == value)
    if kind == "null":
        return word.lower() in ("null", "none")
    return word == str(value)
