"""`export --format parquet` and `query`: the Parquet of a capture, read back by DuckDB, says
what the JSONL export says (same rows, values and types); SQL over several captures."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from gwsproxy import cli, report, report_parquet
from gwsproxy.capture import Kind
from gwsproxy.capture import format as fmt
from gwsproxy.testing.synthetic import write_capture

JSON_COLUMNS = ("requested", "before", "after")
SCALARS = (
    "schema",
    "id",
    "scope",
    "media",
    "collection",
    "interaction_id",
    "operation",
    "reference_id",
    "correlation",
    "status",
    "verdict",
    "http_status",
    "status_code",
    "error",
    "notification_type",
    "body_error",
)


@pytest.fixture
def captures(tmp_path: Path) -> list[str]:
    """Three captures; the first ends with a pair whose body cannot be decoded (its summary is
    exported, with `body_error`)."""
    paths = []
    for i in range(3):
        path = tmp_path / f"proxy{i}.gwscap"
        write_capture(path, 250, seed=i, close=i > 0)
        paths.append(str(path))
    summary = {"id": 9999, "status": "matched", "media": "chat", "reference_id": 987654321}
    with open(paths[0], "ab") as f:
        f.write(fmt.pack_frame(Kind.PAIR, 0, fmt.pack(summary), b"\x92\x01\x02"))
    return paths


def _read(parquet: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    con = duckdb.connect()
    cur = con.execute("SELECT * FROM read_parquet(?)", [parquet])
    return [d[0] for d in cur.description], cur.fetchall()


def test_parquet_read_back_by_duckdb_equals_the_jsonl_export(
    captures: list[str], tmp_path: Path
) -> None:
    path = captures[0]
    expected = list(report.export_pairs(path))
    out = tmp_path / "out"
    assert cli.main(["export", path, "--format", "parquet", "-o", str(out)]) == 0
    parquet = str(out / "proxy0.parquet")
    columns, rows = _read(parquet)
    assert len(rows) == len(expected) > 200
    assert expected[-1]["body_error"] and expected[-1]["verdict"] == "unreadable"
    for row, obj in zip(rows, expected, strict=True):
        got = dict(zip(columns, row, strict=True))
        assert got["capture"] == path
        for name in SCALARS:
            assert got[name] == obj.get(name), name
            assert type(got[name]) is type(obj.get(name)), name
        for name in JSON_COLUMNS:
            value = None if got[name] is None else json.loads(got[name])
            assert value == obj[name], name
            assert repr(value) == repr(obj[name])  # 987654321 vs "987654321" stay apart
        findings = [
            {
                k: json.loads(v) if k in ("expected", "actual") and v is not None else v
                for k, v in f.items()
                if v is not None or k not in ("expected", "actual")
            }
            for f in got["findings"]
        ]
        assert findings == obj["findings"]
        timings = obj["timings"]
        for name in ("request", "answer", "notification"):
            t = got[f"{name}_time"]
            if timings[name] is None:
                assert t is None
            else:
                assert abs(t.timestamp() - timings[name]) < 1e-6
        assert got["latency_ms"] == timings["latency_ms"]
        requested = obj["requested"]
        if isinstance(requested, dict):
            assert got["requested_keys"] == list(requested)

    # DuckDB's own JSON functions keep the types: the integer 987654321 is a number.
    con = duckdb.connect()
    typed = con.execute(
        "SELECT json_type(after -> '$.UserData1'), after ->> '$.UserData1', count(*) "
        "FROM read_parquet(?) WHERE after ->> '$.UserData1' = '987654321' GROUP BY ALL",
        [parquet],
    ).fetchall()
    in_jsonl = Counter(
        type(o["after"]["UserData1"]).__name__
        for o in expected
        if isinstance(o["after"], dict) and str(o["after"].get("UserData1")) == "987654321"
    )
    assert in_jsonl["int"] and in_jsonl["str"]  # the capture has both, so both are checked
    assert dict(((t, n) for t, _, n in typed)) == {
        "UBIGINT": in_jsonl["int"],
        "VARCHAR": in_jsonl["str"],
    }
    described = {
        r[0]: r[1]
        for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [parquet]).fetchall()
    }
    assert described["reference_id"] == "BIGINT"
    assert described["after"] == "JSON"
    assert described["requested_keys"] == "VARCHAR[]"
    assert described["request_time"] == "TIMESTAMP WITH TIME ZONE"


def test_parquet_is_written_in_row_groups(
    captures: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_parquet, "BATCH", 50)
    written = report_parquet.export_parquet(captures, str(tmp_path / "out"))
    assert [Path(p).name for p, _ in written] == [
        "proxy0.parquet",
        "proxy1.parquet",
        "proxy2.parquet",
    ]
    for target, rows in written:
        meta = pq.ParquetFile(target).metadata
        assert meta.num_rows == rows
        assert meta.num_row_groups == -(-rows // 50)


def test_a_field_new_to_the_export_becomes_a_json_column(
    captures: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = report.pair_object

    def with_reason(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**original(*args, **kwargs), "failed_reason": {"tls": 1}}

    monkeypatch.setattr(report, "pair_object", with_reason)
    monkeypatch.setattr(report_parquet, "pair_object", with_reason)
    assert report_parquet.extra_columns() == ["failed_reason"]
    ((target, _),) = report_parquet.export_parquet(captures[:1], str(tmp_path / "out"))
    columns, rows = _read(target)
    assert json.loads(rows[0][columns.index("failed_reason")]) == {"tls": 1}


def test_query_over_three_captures(captures: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT capture, verdict, count(*) AS n FROM pairs GROUP BY ALL ORDER BY ALL"
    assert cli.main(["query", sql, *captures, "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # no progress when stderr is not a terminal
    got = {(r["capture"], r["verdict"]): int(r["n"]) for r in csv.DictReader(io.StringIO(out))}
    want = Counter((p, o["verdict"]) for p in captures for o in report.export_pairs(p))
    assert got == dict(want)


def test_query_jsonl_embeds_json_and_keeps_types(
    captures: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sql = (
        "SELECT id, after, requested_keys, request_time FROM pairs "
        "WHERE after ->> '$.UserData1' = '987654321' ORDER BY id"
    )
    assert cli.main(["query", sql, captures[0], "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_id = {o["id"]: o for o in report.export_pairs(captures[0])}
    assert lines
    for line in lines:
        assert line["after"] == by_id[line["id"]]["after"]
        assert repr(line["after"]["UserData1"]) == repr(by_id[line["id"]]["after"]["UserData1"])
        assert isinstance(line["requested_keys"], list | None)
        assert line["request_time"].endswith("+00:00")


def test_query_to_a_pipe_is_an_aligned_table(
    captures: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sql = "SELECT media, count(*) AS pairs FROM pairs GROUP BY media ORDER BY media"
    assert cli.main(["query", sql, captures[0]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["media", "pairs"]
    medias = Counter(o["media"] for o in report.export_pairs(captures[0]))
    assert {ln.split()[0]: int(ln.split()[1]) for ln in lines[1:]} == dict(medias)
    assert len({ln.index(ln.split()[1]) for ln in lines}) == 1  # the second column aligns


def test_bad_sql_is_one_line_and_exit_2(
    captures: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["query", "SELEC count(*) FROM pairs", captures[0]]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("gwsproxy query: Parser Error: syntax error")
    assert cli.main(["query", "SELECT nope FROM pairs", captures[0]]) == 2
    assert "nope" in capsys.readouterr().err


def test_export_refusals(
    captures: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["export", captures[0], "--format", "parquet"]) == 2
    assert "-o DIR" in capsys.readouterr().err
    assert cli.main(["query", "SELECT 1", str(tmp_path / "missing.gwscap")]) == 2
    assert "missing.gwscap" in capsys.readouterr().err
    assert cli.main(["export", *captures[:2], "--format", "har"]) == 2
    assert "one FILE" in capsys.readouterr().err
    assert cli.main(["export", captures[0], captures[0], "--format", "parquet", "-o", "x"]) == 2
    assert "proxy0.parquet" in capsys.readouterr().err


def test_captures_of_the_same_name_in_other_folders_export_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for proxy in ("proxy1", "proxy2"):
        (tmp_path / proxy).mkdir()
        write_capture(tmp_path / proxy / "monday.gwscap", 5)
        paths.append(f"{proxy}/monday.gwscap")
    write_capture(tmp_path / "tuesday.gwscap", 5)
    paths.append("tuesday.gwscap")
    written = report_parquet.export_parquet(
        [str(tmp_path / p) for p in paths], str(tmp_path / "out")
    )
    names = [Path(target).name for target, _ in written]
    assert names[2] == "tuesday.parquet"
    assert names[0].endswith("proxy1_monday.parquet") and names[1].endswith("proxy2_monday.parquet")


def test_jsonl_export_of_several_captures_is_their_concatenation(
    captures: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["export", *captures]) == 0
    ids = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert ids == [o["id"] for p in captures for o in report.export_pairs(p)]


def test_pyarrow_and_duckdb_are_imported_only_by_the_commands_that_use_them() -> None:
    """`record` and `tui` start as fast as before: no module imports pyarrow or duckdb when it
    is imported (report_parquet imports them inside its functions). The capture index
    (capture/index.py) is Arrow through and through: it may, and is itself imported only
    inside the functions that open an index."""
    import ast

    package = Path(report.__file__).parent
    heavy = {"pyarrow", "duckdb", "gwsproxy.capture.index"}
    for path in package.rglob("*.py"):
        if path == package / "capture" / "index.py":
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only (not under `if TYPE_CHECKING:`)
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                here = ".".join(path.relative_to(package.parent).parent.parts)
                module = here if node.level else ""  # gwsproxy's modules go one level deep
                module = ".".join(m for m in (module, node.module) if m)
                names = [module, *(f"{module}.{a.name}" for a in node.names)]
            for name in names:
                assert name.split(".")[0] not in heavy and name not in heavy, path


def test_query_reads_earlier_parquet_exports_as_they_are(
    captures: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A week exported once, queried many times: `.parquet` files go to DuckDB directly, beside
    captures exported on the fly."""
    out = tmp_path / "week"
    assert cli.main(["export", *captures[:2], "--format", "parquet", "-o", str(out)]) == 0
    capsys.readouterr()
    files = sorted(str(p) for p in out.glob("*.parquet"))
    sql = "SELECT capture, count(*) AS n FROM pairs GROUP BY ALL ORDER BY ALL"
    assert cli.main(["query", sql, *files, captures[2], "--format", "csv"]) == 0
    got = {r["capture"]: int(r["n"]) for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert got == {p: sum(1 for _ in report.export_pairs(p)) for p in captures}
    (tmp_path / "bogus.parquet").write_text("not parquet")
    assert cli.main(["query", "SELECT 1", str(tmp_path / "bogus.parquet")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_changed_keys_are_the_keys_the_verdict_sees_change() -> None:
    """A nested 1 that came back as 1.0 is a change, as the verdict judges it; equal values
    are not."""
    from gwsproxy.report_parquet import _changed

    before = {"Same": {"n": 1}, "Nested": {"n": 1}, "Gone": "x", "Kept": "k"}
    after = {"Same": {"n": 1}, "Nested": {"n": 1.0}, "New": 2, "Kept": "k"}
    assert _changed({"before": before, "after": after}) == ["Gone", "Nested", "New"]
    assert _changed({"before": None, "after": after}) is None
