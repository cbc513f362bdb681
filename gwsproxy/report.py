"""`gwsproxy info` and `gwsproxy export`: a capture's summary, and its pairs as JSON lines.

The export schema is a public interface (docs/capture-format.md): fields are only ever added.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any, Final, TextIO

from rich.columns import Columns
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from gwsproxy.capture.format import CaptureError, Kind
from gwsproxy.capture.reader import CaptureReader, Session
from gwsproxy.correlate import Status
from gwsproxy.record.indexing import judge_pair, open_index, verdict_name
from gwsproxy.record.records import after_of
from gwsproxy.verdict import MISSING, SIDE_EFFECT, Verdict, VerdictName, type_name

EXPORT_SCHEMA = 3
ABSENT = "absent"  # a finding's type for a key that is not there


def info(path: str, progress: Callable[[int, int], None] | None = None) -> Group:
    """Counts by media, operation and status, the time span, the sessions (one per recorder
    that wrote to the file: a restarted recorder continues it) with the gaps between them, and
    any damage. Read from the capture's index (gwsproxy.capture.index), built or extended first
    where needed (`progress` is told how far)."""
    import pyarrow.compute as pc

    with CaptureReader(path) as reader:
        table = open_index(reader, progress).table
        header, damage, ended = reader.header, reader.damage, reader.ended
        sessions = list(reader.sessions)
    kinds = table.column("kind")
    is_pair = pc.equal(kinds, int(Kind.PAIR))
    pairs = table.select(["media", "operation", "status", "verdict", "error"]).filter(is_pair)
    n_pairs = pairs.num_rows
    times = table.column("t").drop_null()

    def counts(col: str, rows: Any = pairs) -> Counter[str]:
        vc = pc.value_counts(rows.column(col)).to_pylist()
        return Counter({str(d["values"]): d["counts"] for d in vc})

    failed = pairs.filter(pc.fill_null(pc.equal(pairs.column("status"), str(Status.FAILED)), False))
    unreached = counts("error", failed)
    overview = Table(title=escape(str(path)), show_header=False, title_justify="left")
    overview.add_row("created", _when(header.get("created")))
    overview.add_row("upstream", escape(str(header.get("upstream") or "-")))
    overview.add_row("format", f"{header.get('format', '?')} v{header.get('version', '?')}")
    overview.add_row("sessions", str(len(sessions)))
    overview.add_row("pairs", str(n_pairs))
    overview.add_row(
        "unsolicited", str(pc.sum(pc.equal(kinds, int(Kind.NOTIFICATION))).as_py() or 0)
    )
    overview.add_row(
        "raw (unreadable traffic)", str(pc.sum(pc.equal(kinds, int(Kind.RAW))).as_py() or 0)
    )
    if unreached:
        (why, _), *others = unreached.most_common()
        more = f" and {len(others)} other reason{'s' * (len(others) > 1)}" if others else ""
        overview.add_row(
            "never reached GWS (failed)",
            f"[red]{unreached.total()}[/]: {escape(why)}{more}",
        )
    if len(times):
        lo, hi = pc.min(times).as_py(), pc.max(times).as_py()
        overview.add_row("time span", f"{_when(lo)} .. {_when(hi)} ({hi - lo:.1f} s)")
    cut = [str(i) for i, s in enumerate(sessions[:-1], 1) if not s.ended]
    if not ended:
        closed = "[yellow]no: the recording was interrupted[/]"
    elif cut:
        closed = f"[yellow]the last session yes; cut short: session {', '.join(cut)}[/]"
    else:
        closed = "yes"
    overview.add_row("closed cleanly", closed)
    parts: list[Any] = [overview]
    if len(sessions) > 1:
        parts.append(_sessions_table(sessions))
    for field in ("media", "operation"):
        parts.append(_counts_table(field, counts(field)))
    parts.append(
        Columns(
            [_counts_table("status", counts("status")), _counts_table("verdict", counts("verdict"))]
        )
    )
    if damage:
        table = Table(title="damage", title_justify="left", style="red")
        table.add_column("offset", justify="right")
        table.add_column("bytes", justify="right")
        table.add_column("what")
        for d in damage:
            table.add_row(str(d.offset), str(d.length), escape(d.reason))
        parts.append(table)
    return Group(*parts)


def _counts_table(field: str, counts: Counter[str]) -> Table:
    table = Table(title=f"by {field}", title_justify="left")
    table.add_column(field)
    table.add_column("pairs", justify="right")
    for name, n in counts.most_common():
        table.add_row(escape(name), str(n))
    return table


def _sessions_table(sessions: list[Session]) -> Table:
    """One row per session: when it started and wrote its last record, its pairs, whether it
    closed cleanly, how long the recording was off before it, and why it continues the file.
    Times on the day the file was started show only the clock, so that it fits 80 columns."""
    table = Table(title="sessions", title_justify="left")
    for name in ("#", "started", "last record", "pairs", "ended", "gap before", "after"):
        table.add_column(name, justify="right" if name in ("#", "pairs", "gap before") else "left")
    day = _day(sessions[0].start)
    previous: Session | None = None
    for i, s in enumerate(sessions, 1):
        gap = "-"
        if previous is not None and previous.end is not None and s.start is not None:
            gap = _duration(s.start - previous.end)
        table.add_row(
            str(i),
            _clock(s.start, day),
            _clock(s.end, day),
            str(s.pairs),
            "cleanly" if s.ended else "[yellow]cut short[/]",
            gap,
            escape(str(s.header.get("continues") or "-")),
        )
        previous = s
    return table


# The per-key outcomes a finding reports (ok and unchanged keys are no finding).
FINDING_OUTCOMES: Final = frozenset({VerdictName.COERCED, VerdictName.NOT_APPLIED, SIDE_EFFECT})


def read_pairs(
    path: str, progress: Callable[[int], None] | None = None
) -> Iterator[tuple[dict[str, Any], dict[str, Any], str | None]]:
    """Each pair's summary, body and why its body could not be read (None: it could), in file
    order. A pair whose body is damaged still comes out: its summary is sound. `progress` gets
    the file offset of each pair."""
    with CaptureReader(path) as reader:
        for entry in reader.iter_entries():
            if entry.kind != Kind.PAIR:
                continue
            if progress is not None:
                progress(entry.offset)
            try:
                body = reader.body(entry) or {}
            except CaptureError as e:
                yield entry.summary, {}, str(e)
                continue
            yield entry.summary, body, None


def findings(verdict: Verdict | None) -> list[dict[str, Any]]:
    """One JSON object per key whose outcome is coerced, not applied or side effect: the key,
    that outcome (`kind`), the value the request should have left (`expected`) and the value that
    came back (`actual`), with their types. An absent key has no value field, and its type reads
    `absent` (null is a value)."""
    out: list[dict[str, Any]] = []
    for c in verdict.changes if verdict is not None else ():
        if c.outcome not in FINDING_OUTCOMES:
            continue
        finding: dict[str, Any] = {"key": c.key if isinstance(c.key, str) else repr(c.key)}
        finding["kind"] = str(c.outcome)
        for field, value in (("expected", c.expected), ("actual", c.after)):
            if value is not MISSING:
                finding[field] = _json_safe(value)
            finding[f"{field}_type"] = ABSENT if value is MISSING else type_name(value)
        out.append(finding)
    return out


def export_pairs(
    path: str, progress: Callable[[int], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Each pair as the documented export object, in file order (`progress`: as `read_pairs`)."""
    for summary, body, body_error in read_pairs(path, progress):
        if body_error is not None:
            yield {**pair_object(summary, {}, body_error), "body_error": body_error}
        else:
            yield pair_object(summary, body)


def pair_object(
    summary: dict[str, Any], body: dict[str, Any], body_error: str | None = None
) -> dict[str, Any]:
    t = summary.get("t")
    t_note = summary.get("t_note")
    verdict = judge_pair(summary, body, body_error)
    return {
        "schema": EXPORT_SCHEMA,
        "id": summary.get("id"),
        "scope": summary.get("scope"),
        "media": summary.get("media"),
        "collection": summary.get("collection"),
        "interaction_id": summary.get("interaction_id"),
        "operation": summary.get("operation"),
        "requested": body.get("requested"),
        "reference_id": summary.get("reference_id"),
        "correlation": summary.get("correlation"),
        "status": summary.get("status"),
        "verdict": verdict_name(verdict),
        "findings": findings(verdict),
        "http_status": summary.get("http_status"),
        "status_code": summary.get("status_code"),
        "error": summary.get("error"),
        "notification_type": summary.get("note_type"),
        "before": body.get("before"),
        "after": after_of(summary, body),
        "timings": {
            "request": t,
            "answer": summary.get("t_answer"),
            "notification": t_note,
            "latency_ms": round((t_note - t) * 1000, 3)
            if t is not None and t_note is not None
            else None,
        },
    }


def _json_safe(value: Any) -> Any:
    """A user-data value as JSON can hold it: maps with string keys, lists, scalars; anything
    else (bytes from a msgpack record, say) by its repr."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return repr(value)


def write_jsonl(path: str, out: TextIO, progress: Callable[[int], None] | None = None) -> int:
    n = 0
    for obj in export_pairs(path, progress):
        out.write(json.dumps(obj, ensure_ascii=False, default=repr) + "\n")
        n += 1
    return n


def _when(t: Any) -> str:
    if not isinstance(t, int | float):
        return "-"
    return datetime.fromtimestamp(t).isoformat(sep=" ", timespec="milliseconds")


def _day(t: Any) -> date | None:
    return datetime.fromtimestamp(t).date() if isinstance(t, int | float) else None


def _clock(t: Any, day: date | None) -> str:
    """HH:MM:SS on `day`, else the date too."""
    if not isinstance(t, int | float):
        return "-"
    when = datetime.fromtimestamp(t)
    if when.date() == day:
        return when.time().isoformat(timespec="seconds")
    return when.isoformat(sep=" ", timespec="seconds")


def _duration(seconds: float) -> str:
    """A gap between sessions, in the largest units that keep it readable."""
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.1f} s"
    minutes, s = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{sign}{minutes} min {s:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{sign}{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{sign}{days} d {hours:02d} h"
