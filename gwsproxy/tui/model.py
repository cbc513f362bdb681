"""The inspector's pure model: rows of several captures merged by time, and the filter language.

No Textual and no file access here: rows carry summaries only, bodies are read by pairs.Sources.
"""

from __future__ import annotations

import bisect
import fnmatch
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from gwsproxy.capture.format import Kind
from gwsproxy.correlate import Status
from gwsproxy.verdict import PASS_THROUGH, VerdictName

if TYPE_CHECKING:
    from gwsproxy.replay.compare import Comparison

LISTED = frozenset({Kind.PAIR, Kind.NOTIFICATION, Kind.RAW, Kind.NOTE})
KIND_NAMES: dict[int, str] = {
    Kind.PAIR: "pair",
    Kind.NOTIFICATION: "unsolicited",
    Kind.RAW: "raw",
    Kind.NOTE: "note",
}
FIELDS = (
    "media",
    "op",
    "verdict",
    "key",
    "agent",
    "interaction",
    "status",
    "kind",
    "ref",
    "replay",
)
REPLAY_VALUES = ("pass", "fail")

_key = attrgetter("key")


class Row:
    """One listed record. `verdict` and `delta` ("+1 ~0 -2") are filled in lazily from bodies;
    `replay` is the comparison of the last replay of this pair, if it was replayed."""

    __slots__ = ("src", "offset", "kind", "summary", "key", "verdict", "delta", "replay", "_text")

    def __init__(self, src: int, offset: int, kind: int, summary: dict, t: float) -> None:
        self.src = src
        self.offset = offset
        self.kind = kind
        self.summary = summary
        self.key = (t, src, offset)
        self.verdict: str | None = quick_verdict(kind, summary)
        self.delta: str | None = "" if self.verdict is not None or kind != Kind.PAIR else None
        self.replay: Comparison | None = None
        self._text: str | None = None

    @property
    def t(self) -> float:
        return self.key[0]

    @property
    def ident(self) -> tuple[int, int]:
        return (self.src, self.offset)

    @property
    def is_pair(self) -> bool:
        return self.kind == Kind.PAIR

    @property
    def judged(self) -> bool:
        """Whether the verdict and +/~/- are known (only matched pairs need their body)."""
        return self.delta is not None

    def get(self, name: str) -> Any:
        return self.summary.get(name)

    def text(self) -> str:
        """What free text matches, lower-cased, built once."""
        if self._text is None:
            s = self.summary
            parts = [
                s.get("interaction_id"),
                s.get("scope"),
                s.get("media"),
                s.get("operation"),
                s.get("reference_id"),
                s.get("status"),
                s.get("note_type"),
                s.get("reason"),
                s.get("where"),
                s.get("path"),
                *(s.get("requested_keys") or ()),
                KIND_NAMES.get(self.kind),
            ]
            self._text = " ".join(str(p) for p in parts if p is not None).lower()
        return self._text

    def __repr__(self) -> str:
        return f"Row({self.src}, {self.offset}, {KIND_NAMES.get(self.kind, self.kind)})"


def quick_verdict(kind: int, summary: dict) -> str | None:
    """The verdict when the summary alone decides it (every pair that is not `matched`)."""
    if kind != Kind.PAIR:
        return None
    status = summary.get("status")
    if status == Status.MATCHED:
        return None
    return status if status in PASS_THROUGH else VerdictName.INCOMPLETE


class Index:
    """Rows of every source, sorted by (time, source, offset), plus rows per interaction."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.by_interaction: dict[str, list[Row]] = {}
        self._last_t: dict[int, float] = {}

    def make_rows(self, src: int, entries: Iterable[Any]) -> list[Row]:
        """Rows for listed entries (objects with offset, kind, summary); others are skipped.
        A record without a time takes the time of the record before it in its file."""
        out = []
        last = self._last_t.get(src, 0.0)
        for e in entries:
            t = e.summary.get("t")
            if isinstance(t, int | float) and not isinstance(t, bool):
                last = float(t)
            if e.kind in LISTED:
                out.append(Row(src, e.offset, e.kind, e.summary, last))
        self._last_t[src] = last
        return out

    def add(self, rows: list[Row]) -> bool:
        """Insert rows; True if any landed before the end (views must then insert, not append)."""
        inserted = False
        all_rows = self.rows
        for r in rows:
            if not all_rows or all_rows[-1].key <= r.key:
                all_rows.append(r)
            else:
                bisect.insort(all_rows, r, key=_key)
                inserted = True
            iid = r.summary.get("interaction_id")
            if iid is not None:
                lst = self.by_interaction.setdefault(str(iid), [])
                if not lst or lst[-1].key <= r.key:
                    lst.append(r)
                else:
                    bisect.insort(lst, r, key=_key)
        return inserted

    def interaction(self, row: Row) -> list[Row]:
        iid = row.summary.get("interaction_id")
        return self.by_interaction.get(str(iid), []) if iid is not None else [row]


def position(rows: list[Row], row: Row) -> int | None:
    """Index of row in a key-sorted list, or None."""
    i = bisect.bisect_left(rows, row.key, key=_key)
    return i if i < len(rows) and rows[i] is row else None


def insert_sorted(rows: list[Row], row: Row) -> int:
    if not rows or rows[-1].key <= row.key:
        rows.append(row)
        return len(rows) - 1
    i = bisect.bisect_right(rows, row.key, key=_key)
    rows.insert(i, row)
    return i


# ---- filter language ----------------------------------------------------------------------------


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


_VERDICT_NORM = {_norm(v): v for v in VerdictName}


@dataclass(frozen=True, slots=True)
class Term:
    field: str | None  # None: free text
    value: str
    negate: bool = False

    def __str__(self) -> str:
        value = f'"{self.value}"' if " " in self.value else self.value
        text = f"{self.field}:{value}" if self.field else value
        return ("-" if self.negate else "") + text


@dataclass(frozen=True, slots=True)
class Filter:
    """Terms ANDed together. `problems` says what could not be understood."""

    terms: tuple[Term, ...] = ()
    problems: tuple[str, ...] = ()
    text: str = ""

    @property
    def empty(self) -> bool:
        return not self.terms

    @property
    def needs_replay(self) -> bool:
        """Whether replay results change what this filter lets through."""
        return any(t.field == "replay" for t in self.terms)

    def matches(self, row: Row) -> bool | None:
        """True/False, or None when a verdict: term needs a verdict not yet computed."""
        unknown = False
        for term in self.terms:
            hit = _match(term, row)
            if hit is None:
                unknown = True
                continue
            if hit == term.negate:
                return False
        return None if unknown else True


def parse_filter(text: str) -> Filter:
    try:
        words = shlex.split(text, posix=True)
    except ValueError:  # an unbalanced quote: read it as plain words
        words = text.split()
    terms: list[Term] = []
    problems: list[str] = []
    for word in words:
        negate = False
        if len(word) > 1 and word[0] in "-!":
            negate, word = True, word[1:]
        name, sep, value = word.partition(":")
        name = name.lower()
        if sep and name in FIELDS:
            if not value:
                problems.append(f"{name}: needs a value")
                continue
            if name == "verdict" and not _verdicts_named(value):
                problems.append(
                    f"verdict:{value} names no verdict; one of {', '.join(VerdictName)} "
                    "(spaces as - or quoted)"
                )
            if name == "replay" and _replay_named(value) is None:
                problems.append(f"replay:{value} means nothing: replay:pass or replay:fail")
            terms.append(Term(name, value, negate))
        else:
            terms.append(Term(None, word, negate))
    return Filter(tuple(terms), tuple(problems), text)


def _verdicts_named(value: str) -> tuple[str, ...]:
    v = _norm(value)
    return tuple(name for n, name in _VERDICT_NORM.items() if v and n.startswith(v))


def _replay_named(value: str) -> str | None:
    """pass or fail from a prefix of either (case-insensitive), else None."""
    v = value.lower()
    return next((name for name in REPLAY_VALUES if v and name.startswith(v[:4])), None)


def _match(term: Term, row: Row) -> bool | None:
    f, value = term.field, term.value
    s = row.summary
    if f is None:
        return value.lower() in row.text()
    if f == "verdict":
        if not row.is_pair:
            return False
        if row.verdict is None:
            return None
        return row.verdict in _verdicts_named(value)
    if f == "replay":  # not replayed: neither pass nor fail
        c = row.replay
        return c is not None and ("pass" if c.passed else "fail") == _replay_named(value)
    if f == "media":
        return _glob(value, s.get("media"), exact=True)
    if f == "op":
        return _glob(value, s.get("operation") or s.get("note_type"))
    if f == "key":
        return any(_glob(value, k, exact=True) for k in s.get("requested_keys") or ())
    if f == "agent":
        return _glob(value, s.get("scope"))
    if f == "interaction":
        return _glob(value, s.get("interaction_id"))
    if f == "status":
        return _glob(value, s.get("status"), exact=True)
    if f == "kind":
        return KIND_NAMES.get(row.kind, "").startswith(value.lower())
    if f == "ref":
        return str(s.get("reference_id")) == value.lstrip("~")
    return False


def _glob(pattern: str, value: Any, *, exact: bool = False) -> bool:
    """Case-insensitive: a glob when the pattern has * or ?, else equality or a substring."""
    if value is None:
        return False
    text = str(value).lower()
    p = pattern.lower()
    if "*" in p or "?" in p:
        return fnmatch.fnmatchcase(text, p)
    return text == p if exact else p in text
