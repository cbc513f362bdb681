"""A capture's index, kept beside it (`CAPTURE.idx`), so that a capture of millions of records
opens without being read again.

An Arrow IPC file, memory-mapped when read: one row per good frame (`offset`, `kind`, `size`,
the frame's bytes) and the columns a caller's Spec derives from the records (this layer knows
records, not pairs: what the columns hold is the caller's). Its metadata holds what a full pass
over the capture found (header, sessions, damage, clean end) up to `covered`, the end of the
last frame it lists.

Never trusted past what it can verify: on open, the capture must be at least `covered` bytes
long, and its first frame, its last listed frame and SAMPLES frames between must still be the
frames the index lists (CRC-checked, same kind, same size). Anything else (no sidecar, an
unreadable or torn one, another version or spec, a capture replaced or truncated) and the index
is rebuilt from the capture: the capture wins. Past `covered` the capture is scanned as usual
and the index extended. The sidecar is written whole (a temporary file renamed over it), so a
reader never sees half of one; one that cannot be written (a read-only folder) is no error.

pyarrow is imported here only; the recorder never imports this module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc

from .format import CaptureError, Damage, FormatError, pack, unpack
from .reader import CaptureReader, Entry, Session

INDEX_VERSION = 1
SUFFIX = ".idx"
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
    why: str  # why the sidecar was not used ("" when it was)
    saved: bool  # the sidecar was (re)written


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
    extended to the end of the capture. Leaves the reader as index() would (sessions, damage,
    notices)."""
    schema = pa.schema([*FRAMING, *spec.fields])
    path = sidecar(reader.path)
    table, state, why = _load(path, reader, spec, schema)
    if table is None or state is None:
        table, start = schema.empty_table(), 0
        reader.resume({"header": None, "sessions": [], "damage": [], "ended": False})
    else:
        reader.resume(state)
        start = state["covered"]
    reused = table.num_rows
    total = reader.path.stat().st_size
    batches: list[pa.RecordBatch] = []
    entries: list[Entry] = []
    sizes: list[int] = []
    bodies: list[Callable[[], Any]] = []
    covered = start
    for entry, end, body in reader.iter_frames(start):
        entries.append(entry)
        sizes.append(end - entry.offset)
        bodies.append(body)
        covered = end
        if len(entries) >= BATCH:
            batches.append(_batch(spec, schema, entries, sizes, bodies))
            entries, sizes, bodies = [], [], []
            if progress is not None:
                progress(covered, total)
    if entries:
        batches.append(_batch(spec, schema, entries, sizes, bodies))
    if progress is not None:
        progress(total, total)
    reader.finish()
    scanned = sum(b.num_rows for b in batches)
    saved = False
    if batches or why:
        table = pa.concat_tables([table, pa.Table.from_batches(batches, schema)])
        if table.num_rows and save:
            saved = _save(path, table, reader, covered, spec)
        mapped = _map(path) if saved else None
        # One chunk a column, memory-mapped where the sidecar was written.
        table = mapped if mapped is not None else table.unify_dictionaries().combine_chunks()
    return Index(table, reused, scanned, why, saved)


def _map(path: Path) -> pa.Table | None:
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowException):
        return None


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


def _load(
    path: Path, reader: CaptureReader, spec: Spec, schema: pa.Schema
) -> tuple[pa.Table | None, dict[str, Any] | None, str]:
    """The sidecar's table and the scan state it holds, or (None, None, why it is not used)."""
    if not path.exists():
        return None, None, "missing"
    table = _map(path)
    if table is None:
        return None, None, UNREADABLE
    try:
        meta = unpack((table.schema.metadata or {})[_META])
    except (KeyError, ValueError, TypeError):
        return None, None, UNREADABLE
    if not isinstance(meta, dict) or meta.get("version") != INDEX_VERSION:
        return None, None, "another index version"
    if meta.get("spec") != spec.name or not table.schema.equals(schema):
        return None, None, "made for other columns"
    try:
        covered = int(meta["covered"])
        state = {
            "header": meta["header"],
            "sessions": [_session(s) for s in meta["sessions"]],
            "damage": [Damage(*d) for d in meta["damage"]],
            "ended": bool(meta["ended"]),
            "covered": covered,
        }
    except (KeyError, TypeError, ValueError):
        return None, None, UNREADABLE
    if meta["header"] != reader.header:
        return None, None, "stale: the capture's header is not the one indexed (replaced?)"
    sessions = state["sessions"]
    why = _verify(reader, table, covered, sessions[-1].last if sessions else None)
    if why:
        return None, None, why
    return table.replace_schema_metadata(None), state, ""


def _verify(reader: CaptureReader, table: pa.Table, covered: int, last: Entry | None) -> str:
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
    if last is None or reader.entry(last.offset)[0] != last:
        return "stale: its last record is not the one indexed"
    return ""


def _session(s: list[Any]) -> Session:
    offset, header, first, last, counts, last_id = s
    return Session(offset, header, Entry(*first), Entry(*last), dict(counts), last_id)


def _save(path: Path, table: pa.Table, reader: CaptureReader, covered: int, spec: Spec) -> bool:
    """Write the sidecar whole (temporary file, then rename); False when it cannot be."""
    state = reader.scan_state()
    meta = {
        "version": INDEX_VERSION,
        "spec": spec.name,
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
    try:
        blob = pack(meta)
    except (TypeError, ValueError, FormatError):
        return False
    schema = table.schema.with_metadata({_META: blob})
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f, pa.ipc.new_file(f, schema) as w:
            w.write_table(table.cast(schema).unify_dictionaries().combine_chunks())
        os.replace(tmp, path)
        return True
    except (OSError, pa.ArrowException):
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False
