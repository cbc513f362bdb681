"""The capture files behind the inspector: bodies on demand, verdicts per row, pair details.

Readers are positionless (pread), so worker threads may fetch bodies while the index grows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gwsproxy import gws
from gwsproxy.capture.format import MAGIC, CaptureError, Kind
from gwsproxy.capture.reader import INTERRUPTED, CaptureReader, Follower
from gwsproxy.record.indexing import UNREADABLE, judged
from gwsproxy.record.records import after_of, notification_of
from gwsproxy.tui.model import Row
from gwsproxy.verdict import Verdict

BODY_CACHE = 256


@dataclass(slots=True)
class Source:
    """One capture file: its reader (bodies, first pass) and, when following, its follower."""

    path: Path
    reader: CaptureReader | None
    follower: Follower | None = None
    last_offset: int = -1  # entries at or before this offset are already listed
    covered: int = 0  # the end of the last good frame its index lists (following starts there)
    loaded: bool = False
    error: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def summary_at(self, offset: int) -> dict[str, Any]:
        """The summary of the record at offset, read from the capture ({} if it cannot be)."""
        if self.reader is None:
            return {}
        try:
            return self.reader.entry(offset)[0].summary
        except (CaptureError, OSError):
            return {}

    def problems(self, following: bool) -> list[str]:
        """Damage and notices as lines for the banner."""
        lines: list[str] = []
        if self.error:
            lines.append(self.error)
        if following:
            reported = self.follower.damage if self.follower else []
            notices = [n for n in (self.reader.notices if self.reader else []) if n != INTERRUPTED]
            notices += self.follower.notices if self.follower else []
        else:
            reported = self.reader.damage if self.reader else []
            notices = list(self.reader.notices) if self.reader and self.loaded else []
            # iter_entries() leaves this to index(): a full pass without an END record
            if self.reader and self.loaded and not self.reader.ended and INTERRUPTED not in notices:
                notices.append(INTERRUPTED)
        for d in reported:
            lines.append(f"damage at offset {d.offset} ({d.length} bytes): {d.reason}")
        lines.extend(notices)
        return lines


def open_source(path: str | Path, follow: bool) -> Source:
    """Open one capture; raises CaptureError with a one-line message. When following, a file
    still shorter than its magic (the recorder just created it) is waited for."""
    p = Path(path)
    try:
        return Source(p, CaptureReader(p))
    except CaptureError:
        if not follow or not p.is_file() or p.stat().st_size >= len(MAGIC):
            raise
    return Source(p, None, Follower(p))


@dataclass(slots=True)
class Detail:
    """What the detail tabs show for one row."""

    row: Row
    body: dict[str, Any] | None
    error: str | None = None
    verdict: Verdict | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    note: gws.Notification | None = None


class Sources:
    def __init__(self, sources: list[Source]) -> None:
        self.items = sources
        self._lock = threading.Lock()
        self._bodies: OrderedDict[tuple[int, int], dict | None] = OrderedDict()

    def __getitem__(self, src: int) -> Source:
        return self.items[src]

    def __len__(self) -> int:
        return len(self.items)

    def body(self, row: Row) -> dict[str, Any] | None:
        """A row's decoded body (cached); raises CaptureError if it cannot be read."""
        key = row.ident
        with self._lock:
            if key in self._bodies:
                self._bodies.move_to_end(key)
                return self._bodies[key]
        reader = self._reader(row.src)
        body = reader.body(row.offset)
        with self._lock:
            self._bodies[key] = body
            while len(self._bodies) > BODY_CACHE:
                self._bodies.popitem(last=False)
        return body

    def judge(self, row: Row) -> None:
        """Fill in row.verdict and row.delta (a no-op when the summary already decided them)."""
        if row.judged:
            return
        try:
            detail = self.detail(row)
        except CaptureError:
            row.verdict, row.delta = UNREADABLE, ""
            return
        v = detail.verdict
        if v is None:
            row.verdict, row.delta = UNREADABLE, ""
        else:
            row.verdict, row.delta = v.name, v.summary

    def detail(self, row: Row) -> Detail:
        """Decode a row's body and judge it; never raises (an unreadable body is reported)."""
        try:
            body = self.body(row)
        except CaptureError as e:
            return Detail(row, None, error=str(e))
        if row.kind == Kind.PAIR:
            body = body or {}
            s = row.summary
            before = body.get("before")
            after = after_of(s, body)
            try:
                verdict = judged(s, body)
            except Exception as e:  # noqa: BLE001 - one odd record must not break the view
                return Detail(row, body, error=f"cannot judge this pair: {e!r}")
            if row.delta is None:
                row.verdict, row.delta = verdict.name, verdict.summary
            return Detail(row, body, None, verdict, _dict(before), after)
        if row.kind == Kind.NOTIFICATION and body:
            note = _note(body)
            return Detail(row, body, after=note.user_data if note else None, note=note)
        return Detail(row, body)

    def _reader(self, src: int) -> CaptureReader:
        source = self.items[src]
        if source.reader is None:
            # Opened lazily: a followed file may have been empty when the app started.
            source.reader = CaptureReader(source.path)
        return source.reader

    def close(self) -> None:
        for s in self.items:
            if s.reader is not None:
                s.reader.close()
            if s.follower is not None:
                s.follower.close()


def _note(body: dict[str, Any]) -> gws.Notification | None:
    try:
        return notification_of(body)
    except Exception:  # noqa: BLE001 - a damaged raw notification is shown raw instead
        return None


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None
