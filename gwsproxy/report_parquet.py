"""`gwsproxy export FILE... --format parquet -o DIR` and `gwsproxy query "SQL" FILE...`: the export
schema (report.pair_object) as Arrow record batches, written as Parquet, and queried with DuckDB.

Columns (docs/export.md): the export object's scalar fields as typed columns; user data
(`requested`, `before`, `after`) as JSON text with Parquet's JSON logical type, so DuckDB reads
them as JSON and a number stays a number; `requested_keys` and `changed_keys` as lists of
strings; `findings` as a list of structs (DuckDB unnests it); the timings as UTC timestamps and
`latency_ms`; `capture` (the file as named on the command line). A field the export gains later
and this module does not know yet becomes a JSON column of its own name (`extra_columns`).

Memory stays bounded: pairs are turned into a record batch every BATCH rows, and each batch is
written as it comes (one row group per batch). pyarrow and duckdb are imported here only, and
this module only by the commands that use it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gwsproxy.errors import GwsProxyError
from gwsproxy.report import export_pairs, pair_object
from gwsproxy.verdict import MISSING, UNCHANGED, change_kind

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

BATCH = 16_384  # pairs per record batch and Parquet row group


class QueryError(GwsProxyError):
    """The SQL could not run (DuckDB's first line says why)."""


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=repr)


def _keys(value: Any) -> list[str] | None:
    """The keys a request names: an object's keys, a deletion's list; None for "everything"."""
    if isinstance(value, dict):
        return [str(k) for k in value]
    if isinstance(value, list):
        return [str(k) for k in value]
    if isinstance(value, str):  # DeleteUserDataPair names one key
        return [value]
    return None


def _changed(obj: dict[str, Any]) -> list[str] | None:
    """Keys whose value in `after` differs from `before` as the verdict sees it (added,
    removed, changed, or the same value of another type); None when either side is unknown."""
    before, after = obj.get("before"), obj.get("after")
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    return [
        str(key)
        for key in sorted({*before, *after}, key=str)
        if change_kind(before.get(key, MISSING), after.get(key, MISSING)) != UNCHANGED
    ]


def _micros(t: Any) -> int | None:
    return round(t * 1_000_000) if isinstance(t, int | float) else None


def _timing(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda obj: (obj.get("timings") or {}).get(name)


def _types() -> dict[str, Any]:
    import pyarrow as pa

    json_type = pa.json_(pa.string())
    finding = pa.struct(
        [
            ("key", pa.string()),
            ("kind", pa.string()),
            ("expected", json_type),
            ("expected_type", pa.string()),
            ("actual", json_type),
            ("actual_type", pa.string()),
        ]
    )
    return {
        "str": pa.string(),
        "int": pa.int64(),
        "json": json_type,
        "keys": pa.list_(pa.string()),
        "findings": pa.list_(finding),
        "time": pa.timestamp("us", tz="UTC"),
        "float": pa.float64(),
    }


def _findings(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "key": f.get("key"),
            "kind": f.get("kind"),
            "expected": _json(f["expected"]) if "expected" in f else None,
            "expected_type": f.get("expected_type"),
            "actual": _json(f["actual"]) if "actual" in f else None,
            "actual_type": f.get("actual_type"),
        }
        for f in obj.get("findings") or ()
    ]


def _field(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda obj: obj.get(name)


def _json_field(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda obj: _json(obj.get(name))


def _int_field(name: str) -> Callable[[dict[str, Any]], Any]:
    def get(obj: dict[str, Any]) -> int | None:
        value = obj.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return get


def _str_field(name: str) -> Callable[[dict[str, Any]], Any]:
    def get(obj: dict[str, Any]) -> str | None:
        value = obj.get(name)
        return None if value is None else str(value)

    return get


# (column, type, value from the export object), in column order. `capture` comes first.
_COLUMNS: list[tuple[str, str, Callable[[dict[str, Any]], Any]]] = [
    ("schema", "int", _int_field("schema")),
    ("id", "int", _int_field("id")),
    *((n, "str", _str_field(n)) for n in ("scope", "media", "collection", "interaction_id")),
    ("operation", "str", _str_field("operation")),
    ("requested", "json", _json_field("requested")),
    ("requested_keys", "keys", lambda obj: _keys(obj.get("requested"))),
    ("changed_keys", "keys", _changed),
    ("reference_id", "int", _int_field("reference_id")),
    *((n, "str", _str_field(n)) for n in ("correlation", "status", "verdict")),
    ("findings", "findings", _findings),
    ("http_status", "int", _int_field("http_status")),
    ("status_code", "int", _int_field("status_code")),
    ("error", "str", _str_field("error")),
    ("notification_type", "str", _str_field("notification_type")),
    ("before", "json", _json_field("before")),
    ("after", "json", _json_field("after")),
    ("request_time", "time", lambda obj: _micros(_timing("request")(obj))),
    ("answer_time", "time", lambda obj: _micros(_timing("answer")(obj))),
    ("notification_time", "time", lambda obj: _micros(_timing("notification")(obj))),
    ("latency_ms", "float", lambda obj: _timing("latency_ms")(obj)),
    ("body_error", "str", _str_field("body_error")),
]
# The export fields those columns stand for (the others become JSON columns of their name).
_KNOWN = {name for name, _, _ in _COLUMNS} | {"timings"}


def extra_columns() -> list[str]:
    """Fields of the export object that have no typed column here (added to the export after
    this module): each is written as a JSON column of its own name."""
    return [k for k in pair_object({}, {}) if k not in _KNOWN]


def _spec() -> list[tuple[str, str, Callable[[dict[str, Any]], Any]]]:
    extras = [(name, "json", _json_field(name)) for name in extra_columns()]
    return [("capture", "str", _field("capture")), *_COLUMNS, *extras]


def schema() -> pa.Schema:
    import pyarrow as pa

    types = _types()
    return pa.schema([(name, types[kind]) for name, kind, _ in _spec()])


def _storage(t: pa.DataType) -> pa.DataType:
    """The type pyarrow builds from Python values: JSON columns as plain strings (cast after)."""
    import pyarrow as pa

    if isinstance(t, pa.BaseExtensionType):
        return t.storage_type
    if pa.types.is_list(t):
        return pa.list_(_storage(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([(f.name, _storage(f.type)) for f in t])
    return t


def record_batches(
    paths: Sequence[str], progress: Callable[[int], None] | None = None
) -> Iterator[pa.RecordBatch]:
    """The pairs of each capture in turn, as record batches of at most BATCH rows, with the
    capture's name (as given) in `capture`. `progress` gets the bytes read so far, over all."""
    import pyarrow as pa

    spec = _spec()
    target = schema()
    storage = [_storage(f.type) for f in target]
    done = 0

    def batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
        arrays = [
            pa.array([get(r) for r in rows], type=s).cast(f.type)
            for (_, _, get), s, f in zip(spec, storage, target, strict=True)
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=target)

    for path in paths:
        rows: list[dict[str, Any]] = []
        report = None if progress is None else (lambda off, base=done: progress(base + off))
        for obj in export_pairs(path, report):
            obj["capture"] = path
            rows.append(obj)
            if len(rows) >= BATCH:
                yield batch(rows)
                rows = []
        if rows:
            yield batch(rows)
        done += os.path.getsize(path)
        if progress is not None:
            progress(done)


def total_bytes(paths: Sequence[str]) -> int:
    try:
        return sum(os.path.getsize(p) for p in paths)
    except OSError as e:
        raise GwsProxyError(f"cannot read {e.filename}: {e.strerror}") from None


def parquet_names(paths: Sequence[str]) -> list[str]:
    """Each capture's Parquet file name: `<stem>.parquet`, or, for captures whose stems
    collide (`proxy1/monday.gwscap`, `proxy2/monday.gwscap`), the path's folders and stem
    joined by `_` (`proxy1_monday.parquet`)."""
    stems = [Path(p).stem for p in paths]
    names = []
    for path, stem in zip(paths, stems, strict=True):
        if stems.count(stem) > 1:
            parts = [p for p in Path(path).with_suffix("").parts if p not in ("/", ".", "..")]
            stem = "_".join(parts)
        names.append(stem + ".parquet")
    for name in names:
        if names.count(name) > 1:
            raise GwsProxyError(f"two captures would both export to {name}: give one another name")
    return names


def export_parquet(
    paths: Sequence[str], out_dir: str, progress: Callable[[int], None] | None = None
) -> list[tuple[str, int]]:
    """One Parquet file per capture in out_dir (`<stem>.parquet`), written row group by row
    group; returns each file written and its rows."""
    import pyarrow.parquet as pq

    names = parquet_names(paths)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise GwsProxyError(f"cannot create {out_dir}: {e.strerror}") from None
    written = []
    done = 0
    for path, name in zip(paths, names, strict=True):
        target = os.path.join(out_dir, name)
        rows = 0
        report = None if progress is None else (lambda n, base=done: progress(base + n))
        try:
            with pq.ParquetWriter(target + ".part", schema(), compression="zstd") as writer:
                for b in record_batches([path], report):
                    writer.write_batch(b, row_group_size=BATCH)
                    rows += b.num_rows
            os.replace(target + ".part", target)  # a reader never sees half a file
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(target + ".part")
            raise
        written.append((target, rows))
        done += os.path.getsize(path)
    return written


# ---- query ------------------------------------------------------------------------------------


def connect(paths: Sequence[str], progress: Callable[[int], None] | None = None) -> Any:
    """A DuckDB connection with the view `pairs` over the captures, exported to temporary
    Parquet first (docs/export.md says why: any SQL, as many scans as it needs, pushdown);
    a `.parquet` file (an earlier export) is read as it is. The temporary directory goes with
    the returned connection's `close`."""
    import duckdb

    scratch = tempfile.TemporaryDirectory(prefix="gwsproxy-query-")
    try:
        files = []
        done = 0
        for i, path in enumerate(paths):
            if path.endswith(".parquet"):
                files.append(path)
            else:  # numbered: two captures may share a file name
                sub = os.path.join(scratch.name, str(i))
                report = None if progress is None else (lambda n, base=done: progress(base + n))
                files += [f for f, _ in export_parquet([path], sub, report)]
            done += os.path.getsize(path)
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")  # ours is on stderr; its own is on stdout
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        # by name: exports of another gwsproxy version may have a column more or fewer
        con.execute(
            f"CREATE VIEW pairs AS SELECT * FROM read_parquet([{listed}], union_by_name = true)"
        )
    except duckdb.Error as e:  # a .parquet file that is not one
        scratch.cleanup()
        raise QueryError(str(e).strip().splitlines()[0]) from None
    except BaseException:
        scratch.cleanup()
        raise
    return _Connection(con, scratch)


class _Connection:
    def __init__(self, con: duckdb.DuckDBPyConnection, scratch: tempfile.TemporaryDirectory[str]):
        self.con = con
        self.scratch = scratch

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def __exit__(self, *exc: object) -> None:
        self.con.close()
        self.scratch.cleanup()


def run(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[bool], Any]:
    """The result's column names, which of them are JSON, and a cursor to fetch it from; a SQL
    error in one line."""
    import duckdb

    try:
        cursor = con.execute(sql)
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise QueryError(first) from None
    description = cursor.description or ()
    return [d[0] for d in description], [str(d[1]) == "JSON" for d in description], cursor


def rows_of(cursor: Any, size: int = 4096) -> Iterator[tuple[Any, ...]]:
    while chunk := cursor.fetchmany(size):
        yield from chunk


def text(value: Any) -> str:
    """A result value as a cell: null empty, lists and structs as JSON."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _plain(value: Any) -> Any:
    """A result value as JSON holds it (timestamps as ISO text)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def write_csv(columns: list[str], rows: Iterable[tuple[Any, ...]], out: TextIO) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([text(v) for v in row])


def write_jsonl(
    columns: list[str], is_json: list[bool], rows: Iterable[tuple[Any, ...]], out: TextIO
) -> None:
    """One object per row; a JSON column's value is embedded as JSON (not as its text)."""
    for row in rows:
        obj = {
            c: json.loads(v) if j and isinstance(v, str) else _plain(v)
            for c, j, v in zip(columns, is_json, row, strict=True)
        }
        out.write(json.dumps(obj, ensure_ascii=False) + "\n")


def write_aligned(columns: list[str], rows: Iterable[tuple[Any, ...]], out: TextIO) -> None:
    """A plain table for a pipe: a header line, then one line per row, columns padded."""
    cells = [[text(v).replace("\n", " ") for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")
