"""The inspector's pure model: rows of several captures merged by time, and the filter language.

No Textual and no file access here: rows carry summaries only, bodies are read by pairs.Sources.
"""

from __future__ import annotations

import bisect
import fnmatch
import itertools
import re
import shlex
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol, overload

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


class SummarySource(Protocol):
    def summary_at(self, offset: int) -> dict:
        """The summary of the record at offset ({} when it cannot be read)."""
        ...


class Row:
    """One listed record. `verdict` and `delta` ("+1 ~0 -2") are filled in lazily from bodies,
    or come from the capture's index; `replay` is the comparison of the last replay of this
    pair, if it was replayed. A row made from the index holds no summary: it is read from the
    capture when first asked for (only rows shown or opened are)."""

    __slots__ = (
        "src",
        "offset",
        "kind",
        "t",
        "verdict",
        "delta",
        "replay",
        "_summary",
        "_source",
        "_text",
    )

    def __init__(self, src: int, offset: int, kind: int, summary: dict, t: float) -> None:
        self.src = src
        self.offset = offset
        self.kind = kind
        self.t = t
        self._summary: dict | None = summary
        self._source: SummarySource | None = None
        self.verdict: str | None = quick_verdict(kind, summary)
        self.delta: str | None = "" if self.verdict is not None or kind != Kind.PAIR else None
        self.replay: Comparison | None = None
        self._text: str | None = None

    @classmethod
    def indexed(
        cls,
        source: SummarySource,
        src: int,
        offset: int,
        kind: int,
        t: float,
        verdict: str | None,
        delta: str | None,
    ) -> Row:
        """A row from the capture's index: verdict and delta known, summary read on demand."""
        row = cls.__new__(cls)
        row.src, row.offset, row.kind, row.t = src, offset, kind, t
        row._summary, row._source = None, source
        row.verdict, row.delta = verdict, "" if delta is None else delta
        row.replay = None
        row._text = None
        return row

    @property
    def summary(self) -> dict:
        s = self._summary
        if s is None:
            assert self._source is not None
            s = self._summary = self._source.summary_at(self.offset)
        return s

    @property
    def from_index(self) -> bool:
        return self._source is not None

    @property
    def key(self) -> tuple[float, int, int]:
        return (self.t, self.src, self.offset)

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
    """Rows of every source in time order (`rows`: by (time, source, offset)), plus rows per
    interaction.

    A source read through its capture index is kept as that index's table (`tables`): its
    filters run over the table's columns and its rows are made only when looked at (one
    source alone: `rows` is a LazyRows). Rows followed since (`extra`) are kept as rows."""

    def __init__(self) -> None:
        self.by_interaction: dict[str, list[Row]] = {}  # rows not from an index
        self.extra: list[Row] = []  # rows not from an index (followed), in time order
        self.tables: dict[int, Indexed] = {}
        self._last_t: dict[int, float] = {}
        self._merged: list[Row] | Merged | None = None

    @property
    def rows(self) -> Sequence[Row]:
        tables = list(self.tables.values())
        if not tables:
            return self.extra
        if len(tables) == 1 and not self.extra:
            return LazyRows(tables[0])
        if self._merged is None:  # merged once, then kept as rows are added (a new list)
            view = merged([*(LazyRows(t) for t in tables), list(self.extra)])
            self._merged = view if isinstance(view, Merged) else list(view)
        return self._merged

    def pairs(self) -> int:
        """How many pairs are listed."""
        followed = sum(r.is_pair for r in self.extra)
        return followed + sum(t.pairs for t in self.tables.values())

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

    def add_table(self, src: int, table: Any, source: SummarySource) -> Indexed:
        """The rows of a capture index's table, for src."""
        indexed = Indexed(src, table, source, self._last_t.get(src, 0.0))
        self.tables[src] = indexed
        self._last_t[src] = indexed.last_t
        self._merged = None
        return indexed

    def add(self, rows: list[Row]) -> None:
        """Rows followed since the files were read (made by make_rows)."""
        if self._merged is not None:
            for r in rows:
                insert_sorted(self._merged, r)
        for r in rows:
            insert_sorted(self.extra, r)
            iid = r.summary.get("interaction_id")
            if iid is not None:
                insert_sorted(self.by_interaction.setdefault(str(iid), []), r)

    def interaction(self, row: Row) -> Sequence[Row]:
        iid = row.summary.get("interaction_id")
        if iid is None:
            return [row]
        followed = self.by_interaction.get(str(iid), [])
        return merged([*(t.interaction(str(iid)) for t in self.tables.values()), followed])


class LazyRows(Sequence[Row]):
    """Rows of one capture index by rank (their place in its time order): every listed one,
    or those of `ranks`. A row is made when first looked at, and stays the same object."""

    __slots__ = ("indexed", "ranks")

    def __init__(self, indexed: Indexed, ranks: Any = None) -> None:
        self.indexed = indexed
        self.ranks = ranks  # an Arrow integer array; None: every row

    def __len__(self) -> int:
        return len(self.indexed.order) if self.ranks is None else len(self.ranks)

    @overload
    def __getitem__(self, i: int) -> Row: ...

    @overload
    def __getitem__(self, i: slice) -> list[Row]: ...

    def __getitem__(self, i: int | slice) -> Row | list[Row]:
        n = len(self)
        if isinstance(i, slice):
            lo, hi, step = i.indices(n)
            if step != 1:
                return [self[j] for j in range(lo, hi, step)]
            ranks = self._ranks(lo, hi)
            return self.indexed.rows_of(ranks)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        return self.indexed.row(i if self.ranks is None else self.ranks[i].as_py())

    def __iter__(self) -> Iterator[Row]:
        n = len(self)
        for lo in range(0, n, 50_000):
            yield from self[lo : min(lo + 50_000, n)]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyRows | list):
            return len(self) == len(other) and all(a is b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def _ranks(self, lo: int, hi: int) -> Any:
        import pyarrow as pa

        if self.ranks is None:
            return pa.array(range(lo, hi), pa.int64())
        return self.ranks[lo:hi]


class Indexed:
    """One source's capture index (an Arrow table, record.indexing.index_spec's columns): its
    listed records in time order (`order`: their positions in the table), and the rows made of
    them so far. A row is light (offset, kind, time, verdict); what filters read stays in the
    table's columns."""

    def __init__(self, src: int, table: Any, source: SummarySource, last_t: float) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.src, self.table, self.source = src, table, source
        n = table.num_rows
        t = pc.fill_null(pc.fill_null_forward(table.column("t")), last_t).combine_chunks()
        self.t = t
        self.last_t = float(t[n - 1].as_py()) if n else last_t
        # Time order (the file's order for equal times), as the rows are listed.
        order = pc.sort_indices(
            pa.table({"t": t, "offset": table.column("offset")}),
            sort_keys=[("t", "ascending"), ("offset", "ascending")],
        )
        kinds = table.column("kind")
        listed = pc.is_in(kinds, pa.array(sorted(LISTED), pa.uint8()))
        self.order = pc.filter(order, pc.take(listed, order))  # positions of listed records
        self.pairs = int(pc.sum(pc.equal(kinds, int(Kind.PAIR))).as_py() or 0)
        self.rows_at: list[Row | None] = [None] * n  # by position in the table
        self._lock = threading.Lock()
        self._groups: tuple[dict[str, tuple[int, int]], Any] | None = None
        self._offsets = table.column("offset").combine_chunks()
        self._kinds = kinds.combine_chunks()
        self._verdicts = _encoded(table.column("verdict"))
        self._deltas = _encoded(table.column("delta"))
        _release()

    def row(self, rank: int) -> Row:
        """The row at rank in time order."""
        p = self.order[rank].as_py()
        r = self.rows_at[p]
        if r is None:
            (vi, vnames), (di, dnames) = self._verdicts, self._deltas
            v, d = vi[p].as_py(), di[p].as_py()
            r = self._made(
                p,
                self._offsets[p].as_py(),
                self._kinds[p].as_py(),
                self.t[p].as_py(),
                None if v is None else vnames[v],
                None if d is None else dnames[d],
            )
        return r

    def rows_of(self, ranks: Any) -> list[Row]:
        """The rows at these ranks (an Arrow array), made together where they are not yet."""
        import pyarrow.compute as pc

        positions = pc.take(self.order, ranks)
        ps = positions.to_pylist()
        rows_at = self.rows_at
        if all(rows_at[p] is not None for p in ps):
            return [rows_at[p] for p in ps]
        offsets = pc.take(self._offsets, positions).to_pylist()
        kinds = pc.take(self._kinds, positions).to_pylist()
        times = pc.take(self.t, positions).to_pylist()
        (vi, vnames), (di, dnames) = self._verdicts, self._deltas
        verdicts = pc.take(vi, positions).to_pylist()
        deltas = pc.take(di, positions).to_pylist()
        out: list[Row] = []
        for p, offset, kind, t, v, d in zip(
            ps, offsets, kinds, times, verdicts, deltas, strict=True
        ):
            r = rows_at[p]
            if r is None:
                r = self._made(
                    p,
                    offset,
                    kind,
                    t,
                    None if v is None else vnames[v],
                    None if d is None else dnames[d],
                )
            out.append(r)
        return out

    def _made(
        self, p: int, offset: int, kind: int, t: float, verdict: str | None, delta: str | None
    ) -> Row:
        with self._lock:  # rows are made by the UI and by filter threads: one object each
            r = self.rows_at[p]
            if r is None:
                r = Row.indexed(self.source, self.src, offset, kind, t, verdict, delta)
                self.rows_at[p] = r
        return r

    def offsets(self, flt: Filter, others: bool) -> set[int]:
        """Offsets of the records flt and others let through (by the columns)."""
        import pyarrow.compute as pc

        mask = column_mask(self.table, flt, others)
        return set(pc.filter(self.table.column("offset"), mask).to_pylist())

    def select(self, flt: Filter, others: bool) -> LazyRows | list[Row]:
        """The rows flt and others let through, in time order (filtered on the columns)."""
        import pyarrow.compute as pc

        if flt.empty and others:
            return LazyRows(self)
        mask = column_mask(self.table, flt, others)
        hits: Any = pc.indices_nonzero(pc.take(mask, self.order))  # ranks in time order
        _release()
        if flt.needs_replay:  # replay results are on rows: these rows are made
            return [r for r in LazyRows(self, hits) if flt.matches_replay(r)]
        return LazyRows(self, hits)

    def interaction(self, iid: str) -> LazyRows:
        """The rows of one interaction, in time order (grouped once, on the first call; rows
        made as they are looked at: an interaction may have thousands)."""
        import pyarrow.compute as pc

        if self._groups is None:
            ids = pc.take(self.table.column("interaction_id"), self.order).combine_chunks()
            if not _is_dictionary(ids.type):
                ids = pc.dictionary_encode(ids)
            codes = ids.indices
            counts = pc.value_counts(codes)
            n = dict(
                zip(
                    counts.field("values").to_pylist(),
                    counts.field("counts").to_pylist(),
                    strict=True,
                )
            )
            spans: dict[str, tuple[int, int]] = {}
            start = 0
            for code, name in enumerate(ids.dictionary.to_pylist()):
                end = start + n.get(code, 0)
                spans.setdefault(name, (start, end))
                start = end
            # A stable sort by interaction: each one's records stay in time order (ranks).
            self._groups = spans, pc.sort_indices(codes)
        spans, grouped = self._groups
        lo, hi = spans.get(iid, (0, 0))
        return LazyRows(self, grouped[lo:hi])


def _release() -> None:
    """Give back what Arrow's allocator keeps of freed buffers (a filter's masks over a million
    rows would otherwise stay in the inspector's RSS)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _is_dictionary(arrow_type: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_dictionary(arrow_type))


def _encoded(column: Any) -> tuple[Any, list[Any]]:
    """A text column as (indices, the distinct values as Python strings): rows share them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = column.combine_chunks()
    if not pa.types.is_dictionary(encoded.type):
        encoded = pc.dictionary_encode(encoded)
    return encoded.indices, encoded.dictionary.to_pylist()


# Columns of the index whose text free-text filtering searches, as Row.text() does.
TEXT_COLUMNS = (
    "interaction_id",
    "scope",
    "media",
    "operation",
    "reference_id",
    "status",
    "note_type",
    "reason",
    "where",
    "path",
)


def column_mask(table: Any, flt: Filter, others: bool) -> Any:
    """Which records of an index table flt lets through (only listed ones; only pairs unless
    others), as an Arrow boolean array: the columns' version of Filter.matches (replay: terms
    are left to matches_replay)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = sorted(LISTED) if others else [Kind.PAIR]
    mask = pc.is_in(table.column("kind"), pa.array([int(k) for k in wanted], pa.uint8()))
    for term in flt.terms:
        hit = _column_match(term, table)
        if hit is None:
            continue
        hit = pc.fill_null(hit, False)
        mask = pc.and_(mask, pc.invert(hit) if term.negate else hit)
    return mask


def _column_match(term: Term, table: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    f, value = term.field, term.value
    col = table.column
    if f is None:
        v = value.lower()
        hit = _list_any(col("keys"), lambda flat: pc.match_substring(flat, v, ignore_case=True))
        for name in TEXT_COLUMNS:
            found = _per_value(col(name), lambda c: pc.match_substring(c, v, ignore_case=True))
            hit = pc.or_(hit, pc.fill_null(found, False))
        kinds = [k for k, n in KIND_NAMES.items() if v in n]
        return pc.or_(hit, pc.is_in(col("kind"), pa.array(kinds, pa.uint8())))
    if f == "verdict":
        return pc.is_in(col("verdict"), pa.array(list(_verdicts_named(value)), pa.string()))
    if f == "replay":
        return None
    if f == "media":
        return _column_glob(value, col("media"), exact=True)
    if f == "op":  # the operation, else the notification type
        operation = col("operation")
        return pc.if_else(
            pc.is_valid(operation),
            _column_glob(value, operation),
            _column_glob(value, col("note_type")),
        )
    if f == "key":
        return _list_any(col("keys"), lambda flat: _column_glob(value, flat, exact=True))
    if f == "agent":
        return _column_glob(value, col("scope"))
    if f == "interaction":
        return _column_glob(value, col("interaction_id"))
    if f == "status":
        return _column_glob(value, col("status"), exact=True)
    if f == "kind":
        kinds = [k for k, n in KIND_NAMES.items() if n.startswith(value.lower())]
        return pc.is_in(col("kind"), pa.array(kinds, pa.uint8()))
    if f == "ref":
        return pc.equal(col("reference_id"), value.lstrip("~"))
    return pa.repeat(pa.scalar(False), table.num_rows)


def _column_glob(pattern: str, column: Any, *, exact: bool = False) -> Any:
    """_glob over a text column."""
    import pyarrow.compute as pc

    p = pattern.lower()
    if "*" in p or "?" in p:
        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p)
        regex = f"(?s)^{body}$"
        return _per_value(column, lambda c: pc.match_substring_regex(c, regex, ignore_case=True))
    if exact:
        return _per_value(column, lambda c: pc.equal(pc.utf8_lower(c), p))
    return _per_value(column, lambda c: pc.match_substring(c, p, ignore_case=True))


def _per_value(column: Any, match: Any) -> Any:
    """match over a text column: over a dictionary column's distinct values only, then spread
    to its rows (most of the index's text columns are dictionaries)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array([_per_value(c, match) for c in column.chunks], pa.bool_())
    if pa.types.is_dictionary(column.type):
        return pc.take(match(column.dictionary), column.indices)
    return match(column)


def _list_any(column: Any, match: Any) -> Any:
    """Per row of a list column: whether any of its items match (null lists: False)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = pc.list_flatten(column)
    parents = pc.list_parent_indices(column)
    hit = pc.unique(pc.filter(parents, pc.fill_null(match(flat), False)))
    rows = pa.array(range(len(column)), pa.int64())
    return pc.is_in(rows, value_set=hit.cast(pa.int64()))


def position(rows: Sequence[Row], row: Row) -> int | None:
    """Index of row in a key-sorted list, or None."""
    i = bisect.bisect_left(rows, row.key, key=_key)
    return i if i < len(rows) and rows[i] is row else None


def merged(parts: Sequence[Sequence[Row]]) -> Sequence[Row]:
    """Views, each in time order, as one in time order. One index's rows with others among
    them stay lazy (a Merged: following a capture of a million pairs makes no row of its index
    that is not looked at); several indexes' rows are all made and sorted."""
    parts = [p for p in parts if len(p)]
    if len(parts) <= 1:
        return parts[0] if parts else []
    lazy = [p for p in parts if not isinstance(p, list)]
    if len(lazy) != 1:
        return sorted(itertools.chain.from_iterable(parts), key=_key)
    view = Merged(lazy[0])
    for part in parts:
        if part is not lazy[0]:
            for row in part:
                view.insert(row)
    return view


class Merged(Sequence[Row]):
    """A view in time order that is not a list (an index's LazyRows) with rows inserted among
    them: the view's rows are made only when looked at, as before the insertions."""

    __slots__ = ("base", "added", "_at")

    def __init__(self, base: Sequence[Row]) -> None:
        self.base = base
        self.added: list[Row] = []  # in time order
        self._at: list[int] = []  # each added row's position in the whole

    def insert(self, row: Row) -> int:
        """Insert row after those of the same key or earlier (as insert_sorted); its position."""
        j = bisect.bisect_right(self.added, row.key, key=_key)
        at = bisect.bisect_right(self.base, row.key, key=_key) + j
        self.added.insert(j, row)
        self._at.insert(j, at)
        for k in range(j + 1, len(self._at)):
            self._at[k] += 1
        return at

    def __len__(self) -> int:
        return len(self.base) + len(self.added)

    @overload
    def __getitem__(self, i: int) -> Row: ...

    @overload
    def __getitem__(self, i: slice) -> list[Row]: ...

    def __getitem__(self, i: int | slice) -> Row | list[Row]:
        n = len(self)
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(n))]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        j = bisect.bisect_left(self._at, i)  # added rows before position i
        if j < len(self._at) and self._at[j] == i:
            return self.added[j]
        return self.base[i - j]

    __hash__ = None  # type: ignore[assignment]


def insert_sorted(rows: list[Row] | Merged, row: Row) -> int:
    if isinstance(rows, Merged):
        return rows.insert(row)
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

    def matches_replay(self, row: Row) -> bool:
        """Whether the row passes the replay: terms (the only ones no index column holds)."""
        return all(_match(t, row) != t.negate for t in self.terms if t.field == "replay")

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
