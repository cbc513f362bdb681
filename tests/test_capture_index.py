"""The capture's persistent index (gwsproxy/capture/index.py): built when missing, extended when
the capture grew, rebuilt when it cannot be verified; what it gives equals a full pass."""

from __future__ import annotations

import io
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc
import pytest
from rich.console import Console

from gwsproxy.capture import index as capture_index
from gwsproxy.capture.format import Kind, unpack
from gwsproxy.capture.index import MAGIC, Spec, extend_index, open_index, sidecar
from gwsproxy.capture.reader import CaptureReader, Entry
from gwsproxy.capture.writer import CaptureWriter
from gwsproxy.report import info, write_jsonl
from gwsproxy.testing.synthetic import Traffic, write_capture


def _columns(entries: list[Entry], bodies: list[Any]) -> dict[str, list[Any]]:
    return {"status": [e.summary.get("status") for e in entries]}


SPEC = Spec("test/1", (pa.field("status", pa.string()),), _columns)


def opened(path: Path, spec: Spec = SPEC) -> tuple[Any, dict[str, Any]]:
    """The index and what the reader was left with."""
    with CaptureReader(path) as reader:
        index = open_index(reader, spec)
        return index, state(reader)


def segments(idx: Path) -> list[pa.Table]:
    """The sidecar's segments as tables (with their metadata): its layout, read plainly."""
    data, pos, out = idx.read_bytes(), len(MAGIC), []
    assert data.startswith(MAGIC)
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 8], "little")
        out.append(pa.ipc.open_stream(data[pos + 8 : pos + 8 + n]).read_all())
        pos += 8 + n
    return out


def live(idx: Path) -> list[pa.Table]:
    """The chain the segments make: each supersedes those before it that start where it
    starts or later (a merged segment is appended after the ones it merges)."""
    chain: list[pa.Table] = []
    for table in segments(idx):
        start = unpack(table.schema.metadata[b"gwsproxy-index"])["start"]
        chain = [t for t in chain if unpack(t.schema.metadata[b"gwsproxy-index"])["start"] < start]
        chain.append(table)
    return chain


def write_segments(idx: Path, tables: list[pa.Table]) -> None:
    out = bytearray(MAGIC)
    for table in tables:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        out += sink.getvalue().size.to_bytes(8, "little") + sink.getvalue().to_pybytes()
    idx.write_bytes(bytes(out))


def state(reader: CaptureReader) -> dict[str, Any]:
    return {
        "header": reader.header,
        "damage": reader.damage,
        "ended": reader.ended,
        "notices": reader.notices,
        "sessions": [
            (s.offset, s.header, s.first, s.last, s.counts, s.last_id) for s in reader.sessions
        ],
    }


def full_pass(path: Path) -> tuple[list[tuple[int, int]], dict[str, Any]]:
    with CaptureReader(path) as reader:
        entries = reader.index()
        return [(e.offset, e.kind) for e in entries], state(reader)


def rows(index: Any) -> list[tuple[int, int]]:
    t = index.table
    return list(zip(t.column("offset").to_pylist(), t.column("kind").to_pylist(), strict=True))


def assert_like_a_full_pass(path: Path, index: Any, got: dict[str, Any]) -> None:
    entries, expected = full_pass(path)
    assert rows(index) == entries
    assert got == expected


def test_a_missing_index_is_built_then_used_without_reading_the_capture(tmp_path: Path) -> None:
    path = tmp_path / "c.gwscap"
    write_capture(path, 300, seed=1)
    first, got = opened(path)
    assert (first.why, first.reused, first.saved) == ("missing", 0, True)
    assert first.scanned == len(rows(first))
    assert_like_a_full_pass(path, first, got)
    assert stat.S_IMODE(sidecar(path).stat().st_mode) == 0o600  # summaries are private too

    second, got = opened(path)
    assert (second.why, second.scanned, second.saved) == ("", 0, False)
    assert second.reused == first.scanned
    assert rows(second) == rows(first)
    assert second.table.column("status").to_pylist() == first.table.column("status").to_pylist()
    assert_like_a_full_pass(path, second, got)


def test_a_capture_that_grew_is_read_from_where_its_index_ends(tmp_path: Path) -> None:
    path = tmp_path / "c.gwscap"
    traffic = write_capture(path, 100, seed=2, close=False)
    before, _ = opened(path)
    with CaptureWriter(path, {"upstream": "again"}, append=True) as writer:  # a second session
        for kind, summary, body in traffic.records(50):
            writer.write(kind, summary, body)
    after, got = opened(path)
    assert after.why == "" and after.reused == before.scanned
    assert 0 < after.scanned < before.scanned
    assert_like_a_full_pass(path, after, got)
    assert len(got["sessions"]) == 2 and got["ended"]
    assert any("session 1 of 2 has no end record" in n for n in got["notices"])


@pytest.mark.parametrize("how", ["truncated", "replaced", "replaced-longer"])
def test_a_capture_replaced_or_truncated_is_not_trusted(tmp_path: Path, how: str) -> None:
    path = tmp_path / "c.gwscap"
    write_capture(path, 200, seed=3)
    opened(path)
    if how == "truncated":
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    else:
        other = tmp_path / "other.gwscap"
        write_capture(other, 400 if how == "replaced-longer" else 100, seed=4)
        shutil.copyfile(other, path)
    index, got = opened(path)
    assert index.why.startswith("stale") and index.reused == 0
    assert_like_a_full_pass(path, index, got)
    if how == "truncated":
        assert got["damage"] and "torn tail" in got["damage"][-1].reason


def test_a_torn_or_foreign_index_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "c.gwscap"
    write_capture(path, 200, seed=5)
    opened(path)
    idx = sidecar(path)
    with open(idx, "r+b") as f:
        f.truncate(idx.stat().st_size - 100)
    index, got = opened(path)
    assert index.why.startswith("unreadable") and index.saved
    assert_like_a_full_pass(path, index, got)
    idx.write_bytes(b"not an index at all")
    index, got = opened(path)
    assert index.why.startswith("unreadable")
    assert_like_a_full_pass(path, index, got)
    # An index of other columns (another spec, or a newer gwsproxy's) is rebuilt too.
    other = Spec("test/2", SPEC.fields, _columns)
    index, got = opened(path, other)
    assert index.why == "made for other columns"
    assert_like_a_full_pass(path, index, got)


def test_when_index_and_capture_disagree_the_capture_wins(tmp_path: Path) -> None:
    path = tmp_path / "c.gwscap"
    write_capture(path, 200, seed=6)
    opened(path)
    idx = sidecar(path)
    (table,) = segments(idx)
    kinds = table.column("kind").to_pylist()
    n = len(kinds)
    kinds[n // 4 : 3 * n // 4] = [int(Kind.RAW)] * (3 * n // 4 - n // 4)  # other records
    write_segments(idx, [table.set_column(1, table.schema.field(1), pa.array(kinds, pa.uint8()))])
    index, got = opened(path)
    assert index.why.startswith("stale: the record at offset")
    assert_like_a_full_pass(path, index, got)
    # The index of another capture alike but for its header (recorded at another time).
    other = tmp_path / "other.gwscap"
    write_capture(other, 200, seed=6)
    opened(other)
    shutil.copyfile(sidecar(other), tmp_path / "copy.idx")
    (tmp_path / "copy.idx").replace(idx)
    index, got = opened(path)
    assert index.why.startswith("stale: the capture's header")
    assert_like_a_full_pass(path, index, got)


def test_damage_and_a_torn_tail_read_alike_through_the_index(tmp_path: Path) -> None:
    path = tmp_path / "c.gwscap"
    write_capture(path, 200, seed=7, close=False)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # a flipped byte in the middle
    path.write_bytes(bytes(data) + b"\xc7\x5a\x3b\xe1\x00\x10")  # and half a frame at the end
    first, got = opened(path)
    assert len(got["damage"]) == 2
    assert_like_a_full_pass(path, first, got)
    second, got = opened(path)
    assert second.why == "" and second.scanned == 0
    assert_like_a_full_pass(path, second, got)


def test_verdicts_in_the_index_of_a_v2_capture_are_judged_through_its_dictionary(
    tmp_path: Path,
) -> None:
    from gwsproxy.record import indexing

    path = tmp_path / "c.gwscap"
    write_capture(path, 400, seed=11)  # v2: past the first records, bodies use a dictionary
    with CaptureReader(path) as reader:
        assert reader.header["version"] == 2
        index = indexing.open_index(reader)
        by_offset = dict(
            zip(
                index.table.column("offset").to_pylist(),
                index.table.column("verdict").to_pylist(),
                strict=True,
            )
        )
        expected = {
            e.offset: indexing.verdict_name(indexing.judged(e.summary, reader.body(e) or {}))
            for e in reader.index()
            if e.kind == Kind.PAIR
        }
    assert {by_offset[o] for o in expected} >= {"applied", "coerced"}
    assert {o: by_offset[o] for o in expected} == expected


def _info_text(path: Path) -> str:
    console = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(info(str(path)))
    return console.export_text()


def test_info_and_export_say_the_same_with_and_without_the_index(tmp_path: Path) -> None:
    path = tmp_path / "c.gwscap"
    traffic = write_capture(path, 300, seed=9, close=False)
    with CaptureWriter(path, {"upstream": "again"}, append=True) as writer:
        for kind, summary, body in traffic.records(30):
            writer.write(kind, summary, body)
    outputs = []
    for _ in range(2):  # without, then with the index
        export = tmp_path / "export.jsonl"
        with open(export, "w") as out:
            write_jsonl(str(path), out)
        outputs.append((_info_text(path), export.read_text()))
        assert sidecar(path).exists()
    assert outputs[0] == outputs[1]
    assert "sessions" in outputs[0][0] and "coerced" in outputs[0][0]


def test_a_followed_traffic_source_still_appends_after_an_index(tmp_path: Path) -> None:
    """The writer knows nothing of the index: appending never needs it, the next open catches
    up."""
    path = tmp_path / "c.gwscap"
    traffic = Traffic(seed=10)
    with CaptureWriter(path, {"upstream": "x"}) as writer:
        for kind, summary, body in traffic.records(20):
            writer.write(kind, summary, body)
        opened(path)  # while the writer is still at it
        for kind, summary, body in traffic.records(20):
            writer.write(kind, summary, body)
    index, got = opened(path)
    assert index.reused and index.scanned
    assert_like_a_full_pass(path, index, got)


def test_info_shows_progress_while_indexing_on_a_terminal_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gwsproxy import cli

    path = tmp_path / "c.gwscap"
    write_capture(path, 300, seed=11)
    assert cli.main(["info", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "pairs" in out and err == ""  # not a terminal: no progress
    sidecar(path).unlink()

    terminal = io.StringIO()
    real = cli._console

    def console(stderr: bool = False) -> Console:
        if not stderr:
            return real()
        return Console(file=terminal, force_terminal=True, width=100)

    monkeypatch.setattr(cli, "_console", console)
    assert cli.main(["info", str(path)]) == 0
    assert "indexing" in terminal.getvalue()


def test_a_follower_takes_up_where_the_index_ends(tmp_path: Path) -> None:
    from gwsproxy.capture.reader import Follower

    path = tmp_path / "c.gwscap"
    traffic = Traffic(seed=13)
    with CaptureWriter(path, {"upstream": "x"}) as writer:
        for kind, summary, body in traffic.records(30):
            writer.write(kind, summary, body)
        with CaptureReader(path) as reader:
            index = open_index(reader, SPEC)
            t = index.table
            covered = t["offset"][-1].as_py() + t["size"][-1].as_py()
            resumed = Follower(path)
            resumed.resume(reader.scan_state(), covered)
        for kind, summary, body in traffic.records(30):
            writer.write(kind, summary, body)
    new = resumed.poll()
    fresh = Follower(path)
    every = fresh.poll()
    assert [e.offset for e in new] == [e.offset for e in every if e.offset >= covered]
    assert new and new[-1].kind == Kind.END
    assert resumed.sessions == fresh.sessions and resumed.ended
    assert resumed.damage == fresh.damage == []


def test_an_index_that_cannot_be_written_is_no_error(tmp_path: Path) -> None:
    path = tmp_path / "c.gwscap"
    write_capture(path, 50, seed=14)
    sidecar(path).mkdir()  # something else holds its name: it can be neither read nor replaced
    for _ in range(2):
        index, got = opened(path)
        assert not index.saved and index.why.startswith("unreadable")
        assert_like_a_full_pass(path, index, got)
    assert sidecar(path).is_dir() and not list(tmp_path.glob("*.tmp"))


# ---- a sidecar kept as the capture grows -----------------------------------------------------


def grow(path: Path, steps: list[int]) -> list[int | None]:
    """A capture written in steps (requests each), its writer extending the index after each
    (as the recorder does in its idle moments); what each extension added."""
    traffic = Traffic(seed=21)
    added = []
    with CaptureWriter(path, {"upstream": "x"}) as writer:
        for n in steps:
            for kind, summary, body in traffic.records(n):
                writer.write(kind, summary, body)
            with CaptureReader(path) as reader:
                added.append(extend_index(reader, SPEC))
        for kind, summary, body in traffic.close():
            writer.write(kind, summary, body)
    return added


def test_a_growing_capture_is_indexed_in_steps_and_then_opens_without_a_pass(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.gwscap"
    added = grow(path, [5] * 40)
    assert all(n for n in added)  # each step indexed what was written since the one before
    # Merged as a binary counter: a short chain, whatever the number of steps; the merged
    # segments appended, the file rewritten with the live ones alone now and then.
    chain = live(sidecar(path))
    assert 1 < len(chain) <= 6 and sum(t.num_rows for t in chain) == sum(added)
    assert len(segments(sidecar(path))) <= 2 * len(chain)
    index, got = opened(path)
    # Only what came after the last step (the closing records) is read from the capture.
    assert index.why == "" and index.reused == sum(added)
    assert 0 < index.scanned == len(rows(index)) - sum(added) < 10
    assert_like_a_full_pass(path, index, got)
    assert index.table.column("status").num_chunks == 1  # one chunk a column, for the TUI
    again, _ = opened(path)
    assert again.scanned == 0 and rows(again) == rows(index)


def test_an_extension_step_indexes_at_most_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "c.gwscap"
    write_capture(path, 300, seed=22)
    total = len(full_pass(path)[0])
    with CaptureReader(path) as reader:
        assert extend_index(reader, SPEC, limit=100) == 100
    with CaptureReader(path) as reader:
        assert extend_index(reader, SPEC, limit=100) == 100
    index, got = opened(path)
    assert (index.reused, index.scanned) == (200, total - 200)
    assert_like_a_full_pass(path, index, got)


@pytest.mark.parametrize("damage", ["torn", "gap"])
def test_a_damaged_last_segment_loses_only_itself(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "c.gwscap"
    added = grow(path, [60, 30, 15])  # each smaller than the one before: no merge
    idx = sidecar(path)
    tables = live(idx)
    assert [t.num_rows for t in tables] == [t.num_rows for t in segments(idx)] and len(tables) == 3
    if damage == "torn":  # the last one (a writer killed while writing it)
        with open(idx, "r+b") as f:
            f.truncate(idx.stat().st_size - 50)
        kept = tables[:2]
    else:  # a segment that does not start where the chain before it ends
        write_segments(idx, [tables[0], tables[2]])
        kept = tables[:1]
    index, got = opened(path)
    reused = sum(t.num_rows for t in kept)
    assert index.why.startswith("partly") and index.reused == reused
    assert index.saved and index.scanned == len(rows(index)) - reused
    assert_like_a_full_pass(path, index, got)
    mended, _ = opened(path)
    assert (mended.why, mended.scanned) == ("", 0) and sum(added) < len(rows(mended))


def test_a_busy_index_is_read_and_left_to_its_keeper(tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / "c.gwscap"
    write_capture(path, 100, seed=23)
    idx = sidecar(path)
    with open(idx, "wb") as keeper:
        fcntl.flock(keeper.fileno(), fcntl.LOCK_EX)  # another process is writing it
        with CaptureReader(path) as reader:
            assert extend_index(reader, SPEC) is None
        index, got = opened(path)
        assert not index.saved and index.why == "missing"
        assert_like_a_full_pass(path, index, got)
    assert idx.stat().st_size == 0
    index, _ = opened(path)
    assert index.saved


def test_a_version_1_index_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "c.gwscap"
    write_capture(path, 50, seed=24)
    table = opened(path)[0].table
    with pa.OSFile(str(sidecar(path)), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)  # version 1 was one Arrow IPC file
    index, got = opened(path)
    assert index.why == "another index version" and index.saved
    assert_like_a_full_pass(path, index, got)


def test_a_table_read_before_a_merge_stays_whole(tmp_path: Path) -> None:
    """A merge cuts the sidecar's tail and rewrites it: an inspector holding the index it read
    before must keep every row (it holds a copy, not a mapping)."""
    path = tmp_path / "c.gwscap"
    traffic = Traffic(seed=25)
    with CaptureWriter(path, {"upstream": "x"}) as writer:
        for step in range(6):
            for kind, summary, body in traffic.records(10):
                writer.write(kind, summary, body)
            with CaptureReader(path) as reader:
                extend_index(reader, SPEC)
            if step == 2:
                held, _ = opened(path)
                before = held.table.to_pylist()
                chains = len(segments(sidecar(path)))
    assert len(segments(sidecar(path))) < chains + 3  # later steps merged into earlier ones
    assert held.table.to_pylist() == before


def test_a_reader_does_not_append_over_a_step_taken_since_it_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder extends the sidecar between a reader's read and its append: the reader
    leaves the sidecar to it, and the recorder's rows stay."""
    path = tmp_path / "c.gwscap"
    traffic = Traffic(seed=26)
    with CaptureWriter(path, {"upstream": "x"}) as writer:
        for kind, summary, body in traffic.records(30):
            writer.write(kind, summary, body)
        with CaptureReader(path) as reader:
            extend_index(reader, SPEC)
        for kind, summary, body in traffic.records(30):
            writer.write(kind, summary, body)
        read = capture_index._read
        steps = []

        def then_a_step(idx: Path) -> Any:
            got = read(idx)
            if not steps:  # the reader's read (the step's own read is left alone)
                steps.append(1)
                with CaptureReader(path) as other:
                    assert extend_index(other, SPEC)
            return got

        monkeypatch.setattr(capture_index, "_read", then_a_step)
        index, got = opened(path)
        assert not index.saved and index.scanned
        assert_like_a_full_pass(path, index, got)
    monkeypatch.undo()
    after, _ = opened(path)
    assert after.why == "" and after.scanned == 1  # only the END record written since
