"""Capture reader: fast summary index, random-access bodies, damage reporting and resync.
Also a Follower that tails a capture while it is being written."""

from __future__ import annotations

import gc
import os
import stat
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import zstandard

from .format import (
    DICT_REF_SIZE,
    FLAG_DICT,
    FLAG_SUMMARY_ZSTD,
    FORMAT_NAME,
    FORMAT_VERSION,
    FRAME_HEAD,
    FRAME_HEAD_SIZE,
    MAGIC,
    MAX_FRAME,
    MAX_SUMMARY,
    PAYLOAD_HEAD,
    PAYLOAD_HEAD_SIZE,
    SYNC,
    CaptureError,
    Damage,
    Dictionary,
    FormatError,
    Kind,
    decode_body,
    decode_summary,
    load_dictionary,
)

# Sequential scans read this much at a time; random access reads far less.
SCAN_CHUNK = 1 << 20
RANDOM_CHUNK = 1 << 16

INTERRUPTED = "no end record: the recording was interrupted"

# _LOST: an intact frame (CRC good) whose summary needs a dictionary that cannot be used.
_OK, _INCOMPLETE, _BAD, _LOST = 0, 1, 2, 3
# Plain ints: comparing with an IntEnum member looks it up on the enum class every time.
_HEADER, _PAIR, _END, _DICT = int(Kind.HEADER), int(Kind.PAIR), int(Kind.END), int(Kind.DICT)
# Dictionaries (or why they cannot be used) a reader keeps, by offset of their DICT frame.
_DICT_CACHE = 16


@dataclass(frozen=True, slots=True)
class Entry:
    offset: int
    kind: int
    summary: dict[str, Any]


@dataclass(slots=True)
class Session:
    """One recording session: a HEADER frame and the records after it, up to the next HEADER.
    A file has one per recorder that wrote to it (a restarted recorder appends a session)."""

    offset: int  # of its HEADER frame; of its first frame when that header is lost
    header: dict[str, Any]  # {} when its header is missing or damaged
    first: Entry  # its first good frame (the HEADER, unless lost)
    last: Entry  # its last good frame so far
    counts: dict[int, int] = field(default_factory=dict)  # good frames per kind, header included
    last_id: int = 0  # the highest integer PAIR `id` in it, 0 if none

    @property
    def pairs(self) -> int:
        return self.counts.get(Kind.PAIR, 0)

    @property
    def ended(self) -> bool:
        """Its last good frame is an END record: it closed cleanly."""
        return self.last.kind == Kind.END

    @property
    def start(self) -> float | None:
        """The header's `created`, else the earliest time in its first record."""
        return min(_times(self.first), default=None)

    @property
    def end(self) -> float | None:
        """The time of its last record: END's `closed`, else the latest time in that record."""
        return max(_times(self.last), default=None)


def _times(entry: Entry) -> list[float]:
    """The times a record's summary holds (a pair's: request, answer, notification)."""
    keys = _TIME_KEYS.get(entry.kind, ("t", "t_answer", "t_note"))
    return [t for t in map(entry.summary.get, keys) if isinstance(t, int | float)]


_TIME_KEYS = {_HEADER: ("created",), _END: ("closed",)}


class _File:
    """A read-only descriptor with positionless reads, so scans and body() can interleave."""

    __slots__ = ("path", "_fd", "_lock", "dicts")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # v2 dictionaries met so far: DICT frame offset -> Dictionary, or why it is unusable.
        self.dicts: dict[int, Dictionary | str] = {}
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd: int | None = os.open(self.path, flags)
        except FileNotFoundError:
            raise CaptureError(f"{self.path}: no such capture file; check the path") from None
        except PermissionError:
            raise CaptureError(
                f"{self.path}: permission denied; captures are private (mode 0600), "
                "read it as the user who recorded it"
            ) from None
        except OSError as e:
            raise CaptureError(f"{self.path}: cannot open: {e.strerror}") from None
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            self.close()
            raise CaptureError(f"{self.path}: not a regular file; give the path of a capture")

    def size(self) -> int:
        return os.fstat(self._require()).st_size

    def read_at(self, offset: int, n: int) -> bytes:
        fd = self._require()
        parts: list[bytes] = []
        while n > 0:
            if hasattr(os, "pread"):
                data = os.pread(fd, n, offset)
            else:  # pragma: no cover - Windows has no pread
                with self._lock:
                    os.lseek(fd, offset, os.SEEK_SET)
                    data = os.read(fd, n)
            if not data:
                break
            parts.append(data)
            offset += len(data)
            n -= len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _require(self) -> int:
        if self._fd is None:
            raise CaptureError(f"{self.path}: reader is closed; open the capture again")
        return self._fd


class _Window:
    """Read-ahead over [.., end) of a file. Holds immutable bytes, so views handed out earlier
    stay valid after a refill."""

    __slots__ = ("file", "end", "chunk", "buf", "view", "base")

    def __init__(self, file: _File, end: int, chunk: int = SCAN_CHUNK) -> None:
        self.file = file
        self.end = end
        self.chunk = chunk
        self.buf = b""
        self.view = memoryview(self.buf)
        self.base = 0

    def ensure(self, off: int, n: int) -> bool:
        """Make [off, off+n) available in buf; False if it lies past the end."""
        if off >= self.base and off + n <= self.base + len(self.buf):
            return True
        if off + n > self.end:
            return False
        return self._fill(off, max(n, min(self.chunk, self.end - off)))

    def _fill(self, off: int, n: int) -> bool:
        data = self.file.read_at(off, n)
        self.buf, self.view, self.base = data, memoryview(data), off
        return len(data) >= n  # short only if the file shrank under us

    def find(self, pattern: bytes, start: int) -> int:
        """File offset of the next pattern at or after start, or -1."""
        k = len(pattern)
        pos = start
        while pos + k <= self.end:
            i = pos - self.base
            want = min(self.chunk, self.end - pos)
            if i < 0 or len(self.buf) - i < want:
                if not self._fill(pos, want):
                    return -1
                i = 0
            j = self.buf.find(pattern, i)
            if j >= 0:
                return self.base + j
            pos = self.base + len(self.buf) - k + 1
        return -1


class _Scanner:
    """Walks frames, verifying each CRC, and records damage. Shared by reader and follower."""

    def __init__(self, file: _File) -> None:
        self.file = file
        self.reset()

    def reset(self) -> None:
        self.damage: list[Damage] = []
        self.ended = False
        self.pos = len(MAGIC)
        self.header: dict[str, Any] | None = None
        self.sessions: list[Session] = []
        self._lost_run: tuple[Damage, int, int] | None = None

    def scan(
        self, start: int, end: int, *, follow: bool = False, bodies: bool = False
    ) -> Iterator[Any]:
        """Yield Entry (or (entry, flags, body view, frame end, dictionary offset or -1) with
        bodies=True) for every good frame in [start, end). self.pos tracks the first byte not
        yet consumed."""
        w = _Window(self.file, end)
        pos = max(start, len(MAGIC))
        self.pos = pos
        sessions = self.sessions
        if pos == len(MAGIC):
            sessions.clear()  # a pass from the start finds them all again
        session = sessions[-1] if sessions else None
        while pos < end:
            r = _parse(w, pos)
            if r[0] == _LOST:
                self._lose(pos, r[3], r[1], r[2])
                pos = self.pos = r[3]
                continue
            if r[0] == _OK:
                entry, nxt = r[1], r[2]
                kind = entry.kind
                self.ended = kind == _END
                if kind == _HEADER or session is None:
                    if self.header is None and entry.offset == len(MAGIC) and kind == _HEADER:
                        self.header = entry.summary
                    header = entry.summary if kind == _HEADER else {}
                    session = Session(entry.offset, header, entry, entry)
                    sessions.append(session)
                # Per frame only what cannot be worked out later (index() is a hot path).
                session.last = entry
                session.counts[kind] = session.counts.get(kind, 0) + 1
                if kind == _PAIR:
                    i = entry.summary.get("id")
                    if type(i) is int and i > session.last_id:
                        session.last_id = i
                pos = self.pos = nxt
                if kind == _DICT:
                    continue  # a v2 dictionary: framing, not a record (it is counted above)
                yield (entry, r[3], w.view[r[4] : r[5]], nxt, r[6]) if bodies else entry
                continue
            if follow and r[0] == _INCOMPLETE:
                return  # the writer is still writing this frame
            nxt = _resync(w, pos + 1)
            if nxt < 0:
                if follow:
                    return  # the next good frame may still be on its way
                reason = r[1]
                if r[0] == _INCOMPLETE:
                    reason = f"torn tail: {end - pos} bytes after the last complete record"
                self.damage.append(Damage(pos, end - pos, reason))
                self.pos = end
                return
            reason = r[1]
            after = _parse(w, nxt)
            if after[0] == _OK and after[1].kind == Kind.HEADER:
                # What a recorder killed mid-write leaves when a new one continues the file.
                reason = f"damaged end of a session ({reason}); the next session starts after it"
            self.damage.append(Damage(pos, nxt - pos, reason))
            pos = self.pos = nxt

    def _lose(self, pos: int, nxt: int, dref: int, why: str) -> None:
        """Report an intact frame whose dictionary is unusable; a run of them is one entry."""
        last = self.damage[-1] if self.damage else None
        run = self._lost_run
        if run is not None and last is run[0] and run[2] == dref:
            start, count = last.offset, run[1] + 1
            self.damage.pop()
        else:
            start, count = pos, 1
        records = "1 record" if count == 1 else f"{count} records"
        reason = (
            f"{records} compressed with the dictionary at offset {dref}, which is unusable "
            f"({why}): their summaries and bodies are lost"
        )
        d = Damage(start, nxt - start, reason)
        self.damage.append(d)
        self._lost_run = (d, count, dref)


def _dictionary(file: _File, offset: int, user: int) -> Dictionary | str:
    """The dictionary of the DICT frame at `offset` for the frame at `user`, or why not."""
    if not len(MAGIC) <= offset < user:
        return "not a record before the one that uses it"
    d = file.dicts.get(offset)
    if d is None:
        w = _Window(file, file.size(), RANDOM_CHUNK)
        r = _parse(w, offset, refs=False)
        if r[0] != _OK:
            d = r[1] if r[0] != _INCOMPLETE else "cut short"
        elif r[1].kind != _DICT:
            d = f"the record there is of kind {r[1].kind}, not a dictionary"
        else:
            try:
                d = load_dictionary(r[3], w.view[r[4] : r[5]])
            except FormatError as e:
                d = str(e)
        if len(file.dicts) >= _DICT_CACHE:
            file.dicts.clear()
        file.dicts[offset] = d
    return d


def _decode(
    file: _File, pos: int, flags: int, body: memoryview, dref: int
) -> dict[str, Any] | None:
    """The body of the frame at `pos`, decoded with its dictionary when it has one (`dref`);
    FormatError when it cannot be, the dictionary being unusable included."""
    if not flags & FLAG_DICT:
        return decode_body(flags, body)
    d = _dictionary(file, dref, pos)
    if isinstance(d, str):
        raise FormatError(f"its dictionary at offset {dref} is unusable ({d})")
    return decode_body(flags, body, d)


def _parse(w: _Window, pos: int, *, refs: bool = True) -> tuple[Any, ...]:
    """Check the frame at pos. Returns (_OK, entry, next offset, flags, body lo, body hi,
    dictionary offset or -1), with body bounds indexing w.view; (_LOST, reason, dictionary
    offset, next offset) for an intact frame whose summary needs an unusable dictionary; or
    (_INCOMPLETE | _BAD, reason). Without `refs`, a frame that uses a dictionary is _BAD."""
    if not w.ensure(pos, FRAME_HEAD_SIZE):
        avail = w.end - pos
        if avail > 0 and w.ensure(pos, avail):
            i = pos - w.base
            if SYNC.startswith(w.buf[i : i + min(avail, len(SYNC))]):
                return _INCOMPLETE, "frame header cut short"
        return _BAD, "no frame marker"
    i = pos - w.base
    sync, n, crc = FRAME_HEAD.unpack_from(w.buf, i)
    if sync != SYNC:
        return _BAD, "no frame marker"
    if n > MAX_FRAME:
        return _BAD, f"frame length {n} exceeds limit"
    if n < PAYLOAD_HEAD_SIZE:
        return _BAD, f"frame length {n} is too short"
    if not w.ensure(pos, FRAME_HEAD_SIZE + n):
        return _INCOMPLETE, f"frame length {n} runs past the end of the file"
    view = w.view
    p = pos - w.base + FRAME_HEAD_SIZE
    if zlib.crc32(view[p : p + n]) != crc:
        return _BAD, "crc mismatch"
    kind, flags, slen = PAYLOAD_HEAD.unpack_from(w.buf, p)
    s = p + PAYLOAD_HEAD_SIZE
    room = n - PAYLOAD_HEAD_SIZE
    dref = -1
    if flags & FLAG_DICT:
        if not refs:
            return _BAD, "a dictionary record that refers to another dictionary"
        if room < DICT_REF_SIZE:
            return _BAD, "frame too short for its dictionary reference"
        dref = int.from_bytes(view[s : s + DICT_REF_SIZE], "little")
        s += DICT_REF_SIZE
        room -= DICT_REF_SIZE
    if slen > room:
        return _BAD, f"summary length {slen} exceeds the frame"
    if slen > MAX_SUMMARY:
        return _BAD, f"summary length {slen} exceeds limit"
    nxt = pos + FRAME_HEAD_SIZE + n
    dctx: Dictionary | zstandard.ZstdDecompressor | None = None
    if flags & FLAG_SUMMARY_ZSTD:
        if dref < 0:
            dctx = zstandard.ZstdDecompressor()
        else:
            d = _dictionary(w.file, dref, pos)
            if isinstance(d, str):
                return _LOST, dref, d, nxt
            dctx = d
    try:
        summary = decode_summary(view[s : s + slen], dctx)
    except FormatError as e:
        return _BAD, str(e)
    return _OK, Entry(pos, kind, summary), nxt, flags, s + slen, p + n, dref


def _resync(w: _Window, start: int) -> int:
    """Offset of the next frame marker at or after start whose frame fully verifies, or -1."""
    while (q := w.find(SYNC, start)) >= 0:
        if _parse(w, q)[0] in (_OK, _LOST):  # a frame whose dictionary is lost is intact
            return q
        start = q + 1
    return -1


class _Scanned:
    """What a reader and a follower share: a file, its scanner, and what the scan found."""

    _file: _File
    _scanner: _Scanner

    @property
    def path(self) -> Path:
        return self._file.path

    @property
    def header(self) -> dict[str, Any]:
        return self._scanner.header or {}

    @property
    def damage(self) -> list[Damage]:
        """Damage found by the last full pass (index() or records()) and any scans since."""
        return self._scanner.damage

    @property
    def ended(self) -> bool:
        """True when the last good frame scanned is an END record (a clean close)."""
        return self._scanner.ended

    @property
    def sessions(self) -> list[Session]:
        """The sessions found by the last full pass (index() or records()), in file order; a
        follower's grow with each poll. Frames before any good HEADER form a headerless one."""
        return self._scanner.sessions

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class CaptureReader(_Scanned):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file = _File(path)
        try:
            magic = self._file.read_at(0, len(MAGIC))
        except OSError as e:
            self._file.close()
            raise CaptureError(f"{self.path}: cannot read: {e.strerror}") from None
        if magic != MAGIC:
            self._file.close()
            what = "an empty file" if not magic else "not a gwsproxy capture (bad magic)"
            raise CaptureError(f"{self.path}: {what}; give the path of a .gwscap recording")
        self._scanner = _Scanner(self._file)
        self.notices: list[str] = []
        # Only the first frame is read here; it is enough to say what the file is.
        next(self._scanner.scan(len(MAGIC), self._file.size()), None)
        self.notices = self._header_notices()

    def index(self) -> list[Entry]:
        self._restart()
        # Entries hold no reference cycles, yet every collection of the cyclic GC walks the
        # growing list of summary dicts: about 40% of index() at 100k records. Pause it.
        paused = gc.isenabled()
        gc.disable()
        try:
            entries = list(self.iter_entries())
        finally:
            if paused:
                gc.enable()
        self._finish()
        return entries

    def iter_entries(self, start: int = 0) -> Iterator[Entry]:
        """Summaries from start (a frame offset) to the current end of the file; bodies are
        CRC-checked but never decompressed or decoded."""
        yield from self._scanner.scan(start, self._file.size())

    def iter_frames(
        self, start: int = 0
    ) -> Iterator[tuple[Entry, int, Callable[[], dict[str, Any] | None]]]:
        """As iter_entries, with the offset where each frame ends and a function that decodes
        its body from what the pass read (raises CaptureError as body() does); for
        gwsproxy.capture.index."""
        scan = self._scanner.scan(start, self._file.size(), bodies=True)
        for entry, flags, view, end, dref in scan:
            yield entry, end, partial(self._decode, entry.offset, flags, view, dref)

    def _decode(
        self, offset: int, flags: int, view: memoryview, dref: int
    ) -> dict[str, Any] | None:
        try:
            return _decode(self._file, offset, flags, view, dref)
        except FormatError as e:
            raise CaptureError(f"{self.path}: record at offset {offset}: {e}") from None

    def entry(self, offset: int) -> tuple[Entry, int]:
        """The record at offset, CRC-checked, and where its frame ends; raises CaptureError if
        there is no good frame there."""
        w = _Window(self._file, self._file.size(), RANDOM_CHUNK)
        r = _parse(w, max(offset, 0))
        if r[0] != _OK:
            raise CaptureError(f"{self.path}: record at offset {offset} is unreadable: {r[1]}")
        return r[1], r[2]

    def scan_state(self) -> dict[str, Any]:
        """What a full pass found (header, sessions, damage, end), for resume()."""
        sc = self._scanner
        return {
            "header": sc.header,
            "sessions": sc.sessions,
            "damage": sc.damage,
            "ended": sc.ended,
        }

    def resume(self, state: dict[str, Any]) -> None:
        """Take up the state of a pass that went up to some offset (a persisted index): a pass
        with iter_entries(start) then finish() continues it as if index() had gone through."""
        self._restart()
        sc = self._scanner
        sc.header, sc.sessions = state["header"], state["sessions"]
        sc.damage, sc.ended = state["damage"], state["ended"]
        self.notices = self._header_notices()

    def finish(self) -> None:
        """After resume() and a pass to the end: the notices index() would have left."""
        self.notices = self._header_notices()
        self._finish()

    def body(self, entry_or_offset: Entry | int) -> dict[str, Any] | None:
        """Decode one record's body (None if it has none); raises CaptureError if damaged."""
        offset = entry_or_offset.offset if isinstance(entry_or_offset, Entry) else entry_or_offset
        w = _Window(self._file, self._file.size(), RANDOM_CHUNK)
        r = _parse(w, max(offset, 0))
        if r[0] == _LOST:
            raise CaptureError(
                f"{self.path}: record at offset {offset} is unreadable: its dictionary at "
                f"offset {r[1]} is unusable ({r[2]})"
            )
        if r[0] != _OK:
            raise CaptureError(f"{self.path}: record at offset {offset} is unreadable: {r[1]}")
        return self._decode(r[1].offset, r[3], w.view[r[4] : r[5]], r[6])

    def records(self) -> Iterator[tuple[Entry, dict[str, Any] | None]]:
        """Every record with its decoded body, in file order. An undecodable body is yielded
        as None and reported in damage."""
        self._restart()
        scan = self._scanner.scan(0, self._file.size(), bodies=True)
        for entry, flags, view, nxt, dref in scan:
            try:
                body = _decode(self._file, entry.offset, flags, view, dref)
            except FormatError as e:
                self._scanner.damage.append(Damage(entry.offset, nxt - entry.offset, str(e)))
                body = None
            yield entry, body
        self._finish()

    def _restart(self) -> None:
        header = self._scanner.header
        self._scanner.reset()
        self._scanner.header = header
        self.notices = self._header_notices()

    def _finish(self) -> None:
        sessions = self._scanner.sessions
        n = len(sessions)
        for i, s in enumerate(sessions[1:], 2):
            self.notices += [f"session {i} of {n}: {note}" for note in _header_notes(s.header)]
        for i, s in enumerate(sessions[:-1], 1):
            if not s.ended:
                self.notices.append(
                    f"session {i} of {n} has no end record: that recording was interrupted "
                    "before the next one began"
                )
        if not self._scanner.ended:
            self.notices.append(INTERRUPTED)

    def _header_notices(self) -> list[str]:
        h = self._scanner.header
        if h is None:
            return ["no header record: the file's first record is missing or damaged"]
        return _header_notes(h)


def _header_notes(h: dict[str, Any]) -> list[str]:
    """What a reader should say about one HEADER summary (the file's, or a later session's)."""
    notes = []
    if h.get("format") != FORMAT_NAME:
        notes.append(f"header names format {h.get('format')!r}, expected {FORMAT_NAME!r}")
    version = h.get("version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        notes.append(
            f"written with format version {version}, this reader knows {FORMAT_VERSION}: "
            "unknown fields and kinds are ignored"
        )
    return notes


class Follower(_Scanned):
    """Tails a growing capture: each poll() returns only the entries completed since the last.
    A partial frame at the end is waited for, not reported as damage."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file = _File(path)
        self._scanner = _Scanner(self._file)
        self._checked = False
        self.notices: list[str] = []
        self._check_magic()

    @property
    def position(self) -> int:
        """Offset up to which the file has been consumed."""
        return self._scanner.pos

    def resume(self, state: dict[str, Any], pos: int) -> None:
        """Follow on from a full pass (CaptureReader.scan_state()) whose last good frame ends
        at pos, instead of reading the file again from its start."""
        sc = self._scanner
        sc.header, sc.ended, sc.pos = state["header"], state["ended"], pos
        sc.sessions = [replace(s, counts=dict(s.counts)) for s in state["sessions"]]
        sc.damage = [d for d in state["damage"] if d.offset < pos]

    def poll(self) -> list[Entry]:
        if not self._check_magic():
            return []
        size = self._file.size()
        pos = self._scanner.pos
        if size < pos:
            note = f"file shrank to {size} bytes below the followed position {pos}"
            if note not in self.notices:
                self.notices.append(note)
            return []
        return list(self._scanner.scan(pos, size, follow=True))

    def _check_magic(self) -> bool:
        """True once the magic is confirmed; a file still shorter than it is waited for."""
        if self._checked:
            return True
        head = self._file.read_at(0, len(MAGIC))
        if not MAGIC.startswith(head):
            self._file.close()
            raise CaptureError(f"{self.path}: not a gwsproxy capture (bad magic)")
        self._checked = len(head) == len(MAGIC)
        return self._checked
