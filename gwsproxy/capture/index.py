"""A capture's index, kept beside it (`CAPTURE.idx`), so that a capture of millions of records
opens without being read again.

Arrow tables: one row per good frame (`offset`, `kind`, `size`, the frame's bytes) and the
columns a caller's Spec derives from the records (this layer knows records, not pairs: what the
columns hold is the caller's). The sidecar is a chain of segments, each a whole Arrow IPC stream
of the rows of one stretch of the capture; its metadata holds where that stretch starts and ends
(`covered`) and what a full pass found up to its end (header, sessions, damage, clean end).

Appended to as the capture grows: by the recorder (`extend_index`, a bounded step at a time,
in its idle moments) and by readers that read past it (`open_index`). A new segment merges with
the last ones of the chain while they are no larger (a binary counter: O(log n) live segments,
each row rewritten O(log n) times): the merged segment is appended and supersedes them. The
file is never cut or changed in place: it only grows, until it holds COMPACT times its live
segments' bytes; then a new file with only those is renamed over it. So readers map it (no
copy) and may keep the mapping: it keeps the file it was made of.

Never trusted past what it can verify: on open, segments are taken while each reads whole and
starts where the chain it joins ends; then the capture must be at least `covered` bytes long,
and its first frame, its last listed frame and SAMPLES frames between must still be the frames
the index lists (CRC-checked, same kind, same size). Anything else (no sidecar, an unreadable
one, another version or spec, a capture replaced or truncated) and the index is rebuilt from
the capture: the capture wins. Past `covered` the capture is scanned as usual and the index
extended. A segment half written (a writer at work, or killed) reads as a torn tail: the chain
before it is used.

Writers (appending, merging, rebuilding) hold an exclusive flock on the sidecar and never wait
for it: busy means someone else is keeping it, and the caller goes on without saving; a reader
appends only to the sidecar it read (same inode, size and time). A sidecar that cannot be
written (a read-only folder) is no error.

pyarrow is imported here only; the recorder imports this module in its worker, lazily.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.ipc

from .format import CaptureError, Damage, FormatError, pack, unpack
from .reader import CaptureReader, Entry, Session

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: no locking there
    fcntl = None  # type: ignore[assignment]

INDEX_VERSION = 2
SUFFIX = ".idx"
MAGIC = b"GWSIDX2\n"
_LENGTH = struct.Struct("<Q")  # each segment's byte length, before it
_EMPTY = pa.py_buffer(b"")
COMPACT = 2  # a sidecar is rewritten with its live segments alone past this many times them
SAMPLES = 32  # frames checked between the first and the last listed one
BATCH = 20_000  # records turned into columns at a time
_META = b"gwsproxy-index"
UNREADABLE = "unreadable (torn or not an index)"

# The columns every index has, before the spec's.
FRAMING = (
    pa.field("offset", pa.int64()),
    pa.field("kind", pa.uint8()),
    pa.field("size", pa.uint32()),
)

# (entries, a function per entry that decodes its body) -> the spec's columns
Columns = Callable[[list[Entry], list[Callable[[], Any]]], dict[str, list[Any]]]
Progress = Callable[[int, int], None]  # (bytes of the capture read, bytes to read)


@dataclass(frozen=True)
class Spec:
    """What a caller keeps per record: `name` names the columns and how they are made (an
    index written under another name is rebuilt), `columns` makes them for a batch of entries
    (it may read bodies through the reader)."""

    name: str
    fields: tuple[pa.Field, ...]
    columns: Columns  # may decode bodies: they are at hand, the pass just read them


@dataclass
class Index:
    table: pa.Table  # FRAMING + the spec's fields, one row per good frame, in file order
    reused: int  # rows taken from the sidecar
    scanned: int  # rows read from the capture (0: the capture was not read again)
    why: str  # why the sidecar, or part of it, was not used ("" when it was)
    saved: bool  # the sidecar was extended or rebuilt
    segments: int = 0  # the sidecar's live segments, as left by this open


@dataclass
class _Segment:
    at: int  # where its length prefix starts in the sidecar
    end: int  # where it ends
    table: pa.Table
    meta: dict[str, Any]


def sidecar(path: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(path) + SUFFIX)


def open_index(
    reader: CaptureReader,
    spec: Spec,
    *,
    progress: Progress | None = None,
    save: bool = True,
) -> Index:
    """The index of reader's capture: from its sidecar where that verifies, else rebuilt, then
    extended to the end of the capture (and the sidecar with it, when it is free). Leaves the
    reader as index() would (sessions, damage, notices)."""
    schema = pa.schema([*FRAMING, *spec.fields])
    path = sidecar(reader.path)
    side = _read(path)
    segments, why = _segments(side, reader, spec, schema)
    start = _resume(reader, segments)
    total = reader.path.stat().st_size
    new, covered = _scan(reader, spec, schema, start, progress, total, None)
    reader.finish()
    saved = False
    if save and (new.num_rows or why):
        with _locked(path) as fd:
            # Only where the sidecar is still the one read: else someone else keeps it.
            if fd is not None and _same(fd, side):
                saved = _append(fd, path, side, segments, new, reader, start, covered, spec)
    reused = sum(s.table.num_rows for s in segments)
    chain = len(segments)
    tables = [s.table for s in segments]
    if new.num_rows or not tables:
        tables.append(new)
    if saved:  # the sidecar as written, mapped: nothing of it held twice
        again = _read(path)
        live, failed = _segments(again, reader, spec, schema)
        if live and not failed and live[-1].meta["covered"] == covered:
            tables, chain = [s.table for s in live], len(live)
    table = tables[0]
    if len(tables) > 1 or table.column(0).num_chunks > 1:  # one chunk a column
        table = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
    return Index(table.replace_schema_metadata(None), reused, new.num_rows, why, saved, chain)


def extend_index(reader: CaptureReader, spec: Spec, *, limit: int | None = None) -> int | None:
    """Index up to `limit` more frames of a growing capture into its sidecar, for the writer
    that is growing it: the rows added, or None when the sidecar is busy (someone else is
    keeping it) or cannot be written. Builds no table for the caller."""
    schema = pa.schema([*FRAMING, *spec.fields])
    path = sidecar(reader.path)
    with _locked(path) as fd:
        if fd is None:
            return None
        side = _read(path)
        segments, why = _segments(side, reader, spec, schema)
        start = _resume(reader, segments)
        new, covered = _scan(reader, spec, schema, start, None, 0, limit)
        if not new.num_rows and not why:
            return 0
        saved = _append(fd, path, side, segments, new, reader, start, covered, spec)
        return new.num_rows if saved else None


def _resume(reader: CaptureReader, segments: list[_Segment]) -> int:
    """Resume the reader where the segments end; that offset."""
    if not segments:
        reader.resume({"header": None, "sessions": [], "damage": [], "ended": False})
        return 0
    state = _state(segments[-1].meta)
    reader.resume(state)
    return int(state["covered"])


def _scan(
    reader: CaptureReader,
    spec: Spec,
    schema: pa.Schema,
    start: int,
    progress: Progress | None,
    total: int,
    limit: int | None,
) -> tuple[pa.Table, int]:
    """Rows for the frames from start (at most limit of them), and where the last one ends."""
    batches: list[pa.RecordBatch] = []
    entries: list[Entry] = []
    sizes: list[int] = []
    bodies: list[Callable[[], Any]] = []
    covered, n = start, 0
    for entry, end, body in reader.iter_frames(start):
        entries.append(entry)
        sizes.append(end - entry.offset)
        bodies.append(body)
        covered, n = end, n + 1
        if len(entries) >= BATCH:
            batches.append(_batch(spec, schema, entries, sizes, bodies))
            entries, sizes, bodies = [], [], []
            if progress is not None:
                progress(covered, total)
        if n == limit:
            break
    if entries:
        batches.append(_batch(spec, schema, entries, sizes, bodies))
    if progress is not None:
        progress(total, total)
    return pa.Table.from_batches(batches, schema), covered


def _batch(
    spec: Spec,
    schema: pa.Schema,
    entries: list[Entry],
    sizes: list[int],
    bodies: list[Callable[[], Any]],
) -> pa.RecordBatch:
    cols = spec.columns(entries, bodies)
    arrays = [
        pa.array([e.offset for e in entries], pa.int64()),
        pa.array([e.kind for e in entries], pa.uint8()),
        pa.array(sizes, pa.uint32()),
        *(pa.array(cols[f.name], f.type) for f in spec.fields),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# ---- the sidecar file -----------------------------------------------------------------------


@dataclass
class _Sidecar:
    """The sidecar as read: its bytes (memory-mapped), its version then, and where its
    readable segments end (the file's end, unless a torn or foreign segment stopped them)."""

    data: pa.Buffer | None  # empty: there is none; None: it cannot be read
    version: tuple[int, int, int] | None = None  # (inode, size, mtime)
    end: int = 0


def _read(path: Path) -> _Sidecar:
    """The sidecar, memory-mapped: no copy, and safe to keep, since the file is only ever
    appended to or replaced whole by a rename (a mapping keeps the file it was made of)."""
    try:
        with open(path, "rb") as f:
            version = _version(f.fileno())
            if version[1] == 0:
                return _Sidecar(_EMPTY, version)
            # Unmapped when the last table made of it goes (the buffer holds the mmap object).
            mapped = mmap.mmap(f.fileno(), version[1], access=mmap.ACCESS_READ)
            return _Sidecar(pa.py_buffer(mapped), version)
    except FileNotFoundError:
        return _Sidecar(_EMPTY)
    except (OSError, ValueError):
        return _Sidecar(None)


def _version(fd: int) -> tuple[int, int, int]:
    """What tells one state of the sidecar from the next: an append changes its size, a
    rewrite its inode."""
    st = os.fstat(fd)
    return st.st_ino, st.st_size, st.st_mtime_ns


def _same(fd: int, side: _Sidecar) -> bool:
    """The sidecar open at fd is still the one read (there was none: it is still empty)."""
    if side.version is None:
        return side.data is not None and not side.data.size and os.fstat(fd).st_size == 0
    return _version(fd) == side.version


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int | None]:
    """The sidecar open for writing (created, mode 0600) under an exclusive lock; None when it
    is busy, was replaced meanwhile, or cannot be opened. Never waits."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError:
        yield None
        return
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield None
                return
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino  # not renamed over since
        except OSError:
            current = False
        yield fd if current else None
    finally:
        os.close(fd)


def _segments(
    side: _Sidecar, reader: CaptureReader, spec: Spec, schema: pa.Schema
) -> tuple[list[_Segment], str]:
    """The sidecar's live segments that can be used (a verified prefix of the chain), and why
    the rest cannot ("" when all can). A segment supersedes those before it that start where
    it starts or later (a merge appends the merged segment); each must start where the chain
    it joins ends. Sets side.end."""
    buf = side.data
    if buf is None:
        return [], UNREADABLE
    if not buf.size:
        return [], "missing"
    if bytes(buf[: len(MAGIC)]) != MAGIC:
        # Version 1 was one Arrow IPC file, rewritten whole each time.
        return [], "another index version" if bytes(buf[:6]) == b"ARROW1" else UNREADABLE
    live: list[_Segment] = []
    why = ""
    pos = len(MAGIC)
    while pos < len(buf):
        segment, why = _segment(buf, pos, spec, schema)
        if segment is None:
            break
        start = segment.meta["start"]
        kept = [s for s in live if s.meta["start"] < start]
        if (kept[-1].meta["covered"] if kept else 0) != start:
            why = "a segment does not follow the one before it"
            break
        if segment.meta["header"] != reader.header:
            why = "stale: the capture's header is not the one indexed (replaced?)"
            break
        live = [*kept, segment]
        pos = segment.end
    side.end = pos
    if live:
        table = pa.concat_tables([s.table for s in live])
        covered = live[-1].meta["covered"]
        failed = _verify(reader, table, covered, _state(live[-1].meta)["sessions"])
        if failed:
            side.end = -1  # nothing of it is kept: rewritten
            return [], failed
    if why and live:
        why = f"partly: {why}"
    return live, why


def _segment(
    buf: pa.Buffer, pos: int, spec: Spec, schema: pa.Schema
) -> tuple[_Segment | None, str]:
    if pos + _LENGTH.size > len(buf):
        return None, UNREADABLE
    (n,) = _LENGTH.unpack(bytes(buf[pos : pos + _LENGTH.size]))
    end = pos + _LENGTH.size + n
    if end > len(buf):
        return None, UNREADABLE
    try:
        table = pa.ipc.open_stream(buf.slice(pos + _LENGTH.size, n)).read_all()
        meta = unpack((table.schema.metadata or {})[_META])
    except (pa.ArrowException, KeyError, ValueError, TypeError, FormatError):
        return None, UNREADABLE
    if not isinstance(meta, dict) or meta.get("version") != INDEX_VERSION:
        return None, "another index version"
    if meta.get("spec") != spec.name or not table.schema.remove_metadata().equals(schema):
        return None, "made for other columns"
    try:
        _state(meta)
        meta["start"] = int(meta["start"])
    except (KeyError, TypeError, ValueError):
        return None, UNREADABLE
    return _Segment(pos, end, table.replace_schema_metadata(None), meta), ""


def _state(meta: dict[str, Any]) -> dict[str, Any]:
    """The scan state a segment's metadata holds, for CaptureReader.resume()."""
    return {
        "header": meta["header"],
        "sessions": [_session(s) for s in meta["sessions"]],
        "damage": [Damage(*d) for d in meta["damage"]],
        "ended": bool(meta["ended"]),
        "covered": int(meta["covered"]),
    }


def _verify(reader: CaptureReader, table: pa.Table, covered: int, sessions: list[Session]) -> str:
    """What differs between the capture and the frames the index lists ("" when nothing does):
    its last frame is compared whole, SAMPLES others by kind and size."""
    n = table.num_rows
    if n == 0:
        return "empty"
    size = reader.path.stat().st_size
    if size < covered:
        return f"stale: the capture is {size} bytes, the index covers {covered} (replaced?)"
    offsets, kinds, sizes = (table.column(c) for c in ("offset", "kind", "size"))
    picks = sorted({0, n - 1, *(i * (n - 1) // (SAMPLES + 1) for i in range(1, SAMPLES + 1))})
    for i in picks:
        offset = offsets[i].as_py()
        try:
            entry, end = reader.entry(offset)
        except CaptureError:
            return f"stale: no good record at offset {offset} any more"
        if entry.kind != kinds[i].as_py() or end - offset != sizes[i].as_py():
            return f"stale: the record at offset {offset} is not the one indexed"
    if offsets[n - 1].as_py() + sizes[n - 1].as_py() != covered:
        return "stale: its end does not match"
    last = sessions[-1].last if sessions else None
    if last is None or reader.entry(last.offset)[0] != last:
        return "stale: its last record is not the one indexed"
    return ""


def _session(s: list[Any]) -> Session:
    offset, header, first, last, counts, last_id = s
    return Session(offset, header, Entry(*first), Entry(*last), dict(counts), last_id)


def _append(
    fd: int,
    path: Path,
    side: _Sidecar,
    segments: list[_Segment],
    new: pa.Table,
    reader: CaptureReader,
    start: int,
    covered: int,
    spec: Spec,
) -> bool:
    """Add new (the rows from start to covered) to the chain of segments, merged with its last
    ones while they are no larger: appended at the end of the file, which never shrinks in
    place; or, when the file would hold more than COMPACT times its live segments' bytes, or
    ends in something unreadable, a new file with only the live segments, renamed over it.
    False when it cannot be written."""
    keep = list(segments)
    while keep and new.num_rows and keep[-1].table.num_rows <= new.num_rows:
        last = keep.pop()
        new = pa.concat_tables([last.table, new])
        start = last.meta["start"]
    buf = side.data
    size = buf.size if buf is not None else -1  # unreadable: replaced
    live = len(MAGIC) + sum(s.end - s.at for s in keep) + new.nbytes
    try:
        meta = pack(_meta(reader, start, covered, spec))
        if size > 0 and side.end == size and size + new.nbytes <= COMPACT * live:
            with os.fdopen(os.dup(fd), "r+b") as f:
                f.seek(size)
                _write_segment(f, new, meta)
        elif size == 0:
            with os.fdopen(os.dup(fd), "r+b") as f:
                f.write(MAGIC)
                _write_segment(f, new, meta)
        else:
            kept = [buf[s.at : s.end] for s in keep] if buf is not None else []
            _replace(path, [MAGIC, *kept], new, meta)
        return True
    except (OSError, pa.ArrowException, TypeError, ValueError, FormatError):
        return False


def _replace(path: Path, parts: list[Any], new: pa.Table, meta: bytes) -> None:
    """parts, then new as a segment, in a new file (mode 0600) renamed over path: a reader that
    has the old one mapped keeps reading it."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
            _write_segment(f, new, meta)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write_segment(f: BinaryIO, table: pa.Table, meta: bytes) -> None:
    """table (none: nothing) as one segment at f's position: its length, then an Arrow IPC
    stream of one batch, streamed to the file (no copy of it in memory). The length is written
    last: a segment cut short reads as torn."""
    if not table.num_rows:
        return
    at = f.tell()
    f.write(bytes(_LENGTH.size))
    schema = table.schema.with_metadata({_META: meta})
    with pa.ipc.new_stream(f, schema) as w:
        w.write_table(table.cast(schema).unify_dictionaries().combine_chunks())
    end = f.tell()
    f.seek(at)
    f.write(_LENGTH.pack(end - at - _LENGTH.size))
    f.seek(end)


def _meta(reader: CaptureReader, start: int, covered: int, spec: Spec) -> dict[str, Any]:
    """A segment's metadata: its stretch of the capture and the scan state at its end."""
    state = reader.scan_state()
    return {
        "version": INDEX_VERSION,
        "spec": spec.name,
        "start": start,
        "covered": covered,
        "header": state["header"],
        "sessions": [
            [
                s.offset,
                s.header,
                [s.first.offset, s.first.kind, s.first.summary],
                [s.last.offset, s.last.kind, s.last.summary],
                s.counts,
                s.last_id,
            ]
            for s in state["sessions"]
        ],
        # Damage past the last good frame is found again by the next pass: the capture may
        # still be growing there.
        "damage": [[d.offset, d.length, d.reason] for d in state["damage"] if d.offset < covered],
        "ended": state["ended"],
    }
