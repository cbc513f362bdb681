"""Regression comparison: does a replayed pair change user data the way the recorded one did?

Pure. Compares the before -> after deltas (types matter), so a target whose state differs a
little elsewhere still passes where the operation behaved the same; volatile keys can be ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gwsproxy.verdict import MISSING as ABSENT
from gwsproxy.verdict import same


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a pair did: enough to compare a recording with a replay."""

    id: int
    status: str
    operation: str
    media: str
    interaction_id: str
    requested: Any
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Mismatch:
    key: str
    before: Any
    expected: Any  # the recorded after-value
    actual: Any  # the replayed after-value


@dataclass(frozen=True, slots=True)
class Comparison:
    recorded: Outcome
    actual: Outcome | None  # None: the replay produced no pair (never sent)
    mismatches: tuple[Mismatch, ...] = ()
    problem: str | None = None  # a status difference, or why nothing could be compared

    @property
    def passed(self) -> bool:
        return self.problem is None and not self.mismatches

    def describe(self) -> str:
        """A readable account for a failing test or a report: one line per key."""
        r = self.recorded
        head = f"pair {r.id} {r.operation} on {r.media} {r.interaction_id}"
        if self.passed:
            return f"{head}: as recorded"
        lines = [f"{head}: {self.problem or 'user data changed differently'}"]
        for m in self.mismatches:
            lines.append(
                f"  {m.key}: before {_show(m.before)}, expected {_show(m.expected)}, "
                f"actual {_show(m.actual)}"
            )
        return "\n".join(lines)


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each key whose value differs, with (before, after); ABSENT where a side lacks it."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in before.keys() | after.keys():
        b, a = before.get(key, ABSENT), after.get(key, ABSENT)
        if not same(b, a):
            out[key] = (b, a)
    return out


def compare(recorded: Outcome, actual: Outcome | None, ignore: Iterable[str] = ()) -> Comparison:
    patterns = [re.compile(p) for p in ignore]

    def wanted(key: str) -> bool:
        return not any(p.search(key) for p in patterns)

    if actual is None:
        return Comparison(recorded, None, problem="not replayed")
    if actual.status != recorded.status:
        problem = f"status {actual.status}, recorded {recorded.status}"
        return Comparison(recorded, actual, problem=problem)
    if recorded.after is None or actual.after is None:
        return Comparison(recorded, actual)  # nothing changed on either side (error, timeout...)
    if recorded.before is None:
        # The recording never saw the state before: judge the keys the request named.
        keys = recorded.requested if isinstance(recorded.requested, dict | list) else []
        mismatches = [
            Mismatch(k, ABSENT, recorded.after.get(k, ABSENT), actual.after.get(k, ABSENT))
            for k in keys
            if wanted(k) and not same(recorded.after.get(k, ABSENT), actual.after.get(k, ABSENT))
        ]
        return Comparison(recorded, actual, tuple(mismatches))
    expected = delta(recorded.before, recorded.after)
    got = delta(actual.before or {}, actual.after)
    mismatches = []
    for key in sorted(expected.keys() | got.keys()):
        if not wanted(key):
            continue
        e, g = expected.get(key), got.get(key)
        if e is None or g is None or not same(e[1], g[1]):
            before = (e or g or (ABSENT, ABSENT))[0]
            exp = e[1] if e else recorded.before.get(key, ABSENT)
            act = g[1] if g else actual.after.get(key, ABSENT)
            mismatches.append(Mismatch(key, before, exp, act))
    return Comparison(recorded, actual, tuple(mismatches))


def _show(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    text = repr(value)
    kind = type(value).__name__
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{text} ({kind})"
