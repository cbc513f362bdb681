"""The index gwsproxy keeps beside a capture (gwsproxy.capture.index) with its columns, and the
one way a recorded pair is judged (`judged`): by the recorder as it indexes what it wrote, by
readers that index the rest, and by export, check, HAR export and the inspector.

Verdicts are judged once, when a pair enters the index (a matched pair from its body), and kept
there: filtering by verdict reads the column and never judges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from gwsproxy.capture.format import CaptureError, Kind
from gwsproxy.capture.reader import CaptureReader, Entry
from gwsproxy.correlate import Status
from gwsproxy.errors import one_line
from gwsproxy.record.records import after_of
from gwsproxy.verdict import Verdict, judge

log = logging.getLogger(__name__)

INDEX_EVERY = 5.0  # seconds between the recorder's index steps, at most one per idle moment
INDEX_STEP = 20_000  # frames a step indexes at most (about 1.5 s on seed-size user data)
INDEX_FINISH = 5.0  # seconds the recorder spends at its end on what is left to index

UNREADABLE = "unreadable"  # the verdict of a matched pair whose body cannot be decoded

INDEX_SPEC = "gwsproxy-records/1"
# Summary fields kept as text columns (a reference id is kept as its text).
INDEX_TEXT = (
    "scope",
    "media",
    "interaction_id",
    "operation",
    "reference_id",
    "status",
    "note_type",
    "correlation",
    "error",
    "reason",
    "where",
    "path",
)


def index_spec() -> Any:
    """The capture.index Spec of gwsproxy's records: each record's time (`t`, null when it has
    none), its summary fields as text, its requested keys, and a pair's verdict and +/~/-
    (judged here, once, when the index is built: a matched pair from its body)."""
    import pyarrow as pa

    from gwsproxy.capture.index import Spec

    # Text that repeats (all but a reference id) as dictionaries: a smaller index, and
    # filters that look at each distinct value once.
    text = pa.dictionary(pa.int32(), pa.string())
    fields = (
        pa.field("t", pa.float64()),
        pa.field("t_note", pa.float64()),
        pa.field("id", pa.int64()),
        *(pa.field(n, pa.string() if n == "reference_id" else text) for n in INDEX_TEXT),
        pa.field("keys", pa.list_(pa.string())),
        pa.field("verdict", text),
        pa.field("delta", text),
    )
    return Spec(INDEX_SPEC, fields, _index_columns)


def open_index(reader: CaptureReader, progress: Callable[[int, int], None] | None = None) -> Any:
    """The capture's index (gwsproxy.capture.index.Index) with gwsproxy's columns."""
    from gwsproxy.capture.index import open_index as open_capture_index

    return open_capture_index(reader, index_spec(), progress=progress)


def index_file(path: str, progress: Callable[[int, int], None] | None = None) -> None:
    """Build or extend the index of the capture at path (`progress` as open_index takes it)."""
    with CaptureReader(path) as reader:
        open_index(reader, progress)


class IndexKeeper:
    """The recorder's side of the index: while it records, the frames it wrote are indexed
    (verdicts judged) a bounded step at a time in its idle moments, so that the first open
    after a recording reads the index, not the capture. A busy sidecar (a reader extending it)
    is left for the next step; any failure only leaves more for readers to index."""

    def __init__(self, path: str, every: float = INDEX_EVERY, limit: int = INDEX_STEP) -> None:
        self.path, self.every, self.limit = path, every, limit
        self._next = 0.0  # the first step comes at the first idle moment

    def idle(self, now: float) -> None:
        if now >= self._next:
            self._next = now + self.every
            self.step()

    def finish(self, budget: float = INDEX_FINISH) -> None:
        """After the last record: index the rest, for up to budget seconds."""
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline and self.step() == self.limit:
            pass

    def step(self) -> int | None:
        """Index up to `limit` frames; how many (None: the sidecar was busy or failed)."""
        try:
            from gwsproxy.capture.index import extend_index

            with CaptureReader(self.path) as reader:
                return extend_index(reader, index_spec(), limit=self.limit)
        except Exception as e:  # noqa: BLE001 - the index is a cache: never the recording's end
            log.warning("index of %s not extended: %s", self.path, one_line(e))
            return None


def _index_columns(
    entries: list[Entry], bodies: list[Callable[[], dict[str, Any] | None]]
) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {
        name: [] for name in ("t", "t_note", "id", *INDEX_TEXT, "keys", "verdict", "delta")
    }
    for e, body in zip(entries, bodies, strict=True):
        s = e.summary
        cols["t"].append(_number(s.get("t")))
        cols["t_note"].append(_number(s.get("t_note")))
        i = s.get("id")
        cols["id"].append(i if type(i) is int and -(2**63) <= i < 2**63 else None)
        for name in INDEX_TEXT:
            v = s.get(name)
            cols[name].append(None if v is None else str(v))
        keys = s.get("requested_keys")
        cols["keys"].append([str(k) for k in keys] if isinstance(keys, list) else None)
        if e.kind == Kind.PAIR:
            v = _judge_body(s, body)
            cols["verdict"].append(verdict_name(v))
            cols["delta"].append(v.summary if v is not None else "")
        else:
            cols["verdict"].append(None)
            cols["delta"].append(None)
    return cols


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _judge_body(
    summary: dict[str, Any], body: Callable[[], dict[str, Any] | None]
) -> Verdict | None:
    """A pair's verdict; only a matched pair's body is decoded (by `body`; the others pass their
    status on). None (`unreadable`) when it cannot be, or cannot be judged: one odd record
    must not stop an index."""
    try:
        if summary.get("status") != Status.MATCHED:
            return judge_pair(summary, {})
        try:
            return judge_pair(summary, body() or {})
        except CaptureError as e:
            return judge_pair(summary, {}, str(e))
    except Exception:  # noqa: BLE001
        return None


def judge_pair(
    summary: dict[str, Any], body: dict[str, Any], body_error: str | None = None
) -> Verdict | None:
    """A recorded pair's verdict by `verdict.judge`; None for a matched pair whose body could not
    be read (nothing to judge it by: its verdict reads `unreadable`)."""
    if body_error is not None and summary.get("status") == Status.MATCHED:
        return None
    return judged(summary, body)


def judged(summary: dict[str, Any], body: dict[str, Any]) -> Verdict:
    """`verdict.judge` of a recorded pair's summary and decoded body."""
    before = body.get("before")
    return judge(
        str(summary.get("status")),
        str(summary.get("operation")),
        str(summary.get("media")),
        body.get("requested"),
        before if isinstance(before, dict) else None,
        after_of(summary, body),
    )


def verdict_name(verdict: Verdict | None) -> str:
    return UNREADABLE if verdict is None else str(verdict.name)
