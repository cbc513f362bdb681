"""`gwsproxy info` and `gwsproxy export`: a capture's summary, and its pairs as JSON lines.

The export schema is a public interface (docs/capture-format.md): fields are only ever added.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, TextIO

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from gwsproxy.capture.format import CaptureError, Kind
from gwsproxy.capture.reader import CaptureReader, Session
from gwsproxy.record.records import after_of

EXPORT_SCHEMA = 2


def info(path: str) -> Group:
    """Counts by media, operation and status, the time span, the sessions (one per recorder
    that wrote to the file: a restarted recorder continues it) with the gaps between them, and
    any damage."""
    with CaptureReader(path) as reader:
        entries = reader.index()
        header, damage, ended = reader.header, reader.damage, reader.ended
        sessions = list(reader.sessions)
    pairs = [e.summary for e in entries if e.kind == Kind.PAIR]
    times = [e.summary["t"] for e in entries if isinstance(e.summary.get("t"), int | float)]
    overview = Table(title=escape(str(path)), show_header=False, title_justify="left")
    overview.add_row("created", _when(header.get("created")))
    overview.add_row("upstream", escape(str(header.get("upstream") or "-")))
    overview.add_row("format", f"{header.get('format', '?')} v{header.get('version', '?')}")
    overview.add_row("sessions", str(len(sessions)))
    overview.add_row("pairs", str(len(pairs)))
    overview.add_row("unsolicited", str(sum(e.kind == Kind.NOTIFICATION for e in entries)))
    overview.add_row("raw (unreadable traffic)", str(sum(e.kind == Kind.RAW for e in entries)))
    if times:
        overview.add_row(
            "time span",
            f"{_when(min(times))} .. {_when(max(times))} ({max(times) - min(times):.1f} s)",
        )
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
    for field, title in (
        ("media", "by media"),
        ("operation", "by operation"),
        ("status", "by status"),
    ):
        counts = Counter(str(p.get(field)) for p in pairs)
        table = Table(title=title, title_justify="left")
        table.add_column(field)
        table.add_column("pairs", justify="right")
        for name, n in counts.most_common():
            table.add_row(name, str(n))
        parts.append(table)
    if damage:
        table = Table(title="damage", title_justify="left", style="red")
        table.add_column("offset", justify="right")
        table.add_column("bytes", justify="right")
        table.add_column("what")
        for d in damage:
            table.add_row(str(d.offset), str(d.length), escape(d.reason))
        parts.append(table)
    return Group(*parts)


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


def export_pairs(path: str) -> Iterator[dict[str, Any]]:
    """Each pair as the documented export object, in file order."""
    with CaptureReader(path) as reader:
        for entry in reader.iter_entries():
            if entry.kind != Kind.PAIR:
                continue
            try:
                body = reader.body(entry) or {}
            except CaptureError as e:  # the summary is sound: the pair is still exported
                yield {**pair_object(entry.summary, {}), "body_error": str(e)}
                continue
            yield pair_object(entry.summary, body)


def pair_object(summary: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    t = summary.get("t")
    t_note = summary.get("t_note")
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


def write_jsonl(path: str, out: TextIO) -> int:
    n = 0
    for obj in export_pairs(path):
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
