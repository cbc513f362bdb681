"""Capture format v2 (a zstd dictionary per session): v1 and v2 captures of the same records
read alike by every command; damage (torn tail, flipped byte, damaged dictionary) loses only
what it must and is reported; continued files; any record sequence round-trips."""

from __future__ import annotations

import dataclasses
import json
import re
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gwsproxy import cli
from gwsproxy.capture import CaptureReader, CaptureWriter, Follower, Kind
from gwsproxy.capture import format as fmt
from gwsproxy.replay.book import load_capture
from gwsproxy.replay.regress import load_pairs
from gwsproxy.testing.synthetic import Traffic, write_capture
from gwsproxy.tui.model import Index

REQUESTS = 400  # well past the DICT_SAMPLES records a dictionary is trained on


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The same synthetic recording written as v1 and as v2."""
    d = tmp_path_factory.mktemp("v1v2")
    out = {}
    for v in (1, 2):
        out[v] = d / f"rec-v{v}.gwscap"
        write_capture(out[v], REQUESTS, seed=3, version=v)
    return out


def frames(path: Path) -> list[tuple[int, int, int]]:
    """(offset, kind, flags) of every frame, walking lengths (no checks)."""
    data = path.read_bytes()
    pos, out = len(fmt.MAGIC), []
    while pos + 18 <= len(data):
        _sync, n, _crc = fmt.FRAME_HEAD.unpack_from(data, pos)
        kind, flags, _slen = fmt.PAYLOAD_HEAD.unpack_from(data, pos + 12)
        out.append((pos, kind, flags))
        pos += 12 + n
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    out, _err = capsys.readouterr()
    return code, out


# ---- the format itself --------------------------------------------------------------------


def test_v2_is_the_default_and_smaller_with_a_dictionary_after_the_first_records(
    both: dict[int, Path],
) -> None:
    with CaptureReader(both[2]) as r:
        assert r.header["version"] == 2 == fmt.FORMAT_VERSION
    with CaptureReader(both[1]) as r:
        assert r.header["version"] == 1
    kinds = [k for _o, k, _f in frames(both[2])]
    assert kinds.count(Kind.DICT) == 1
    first = kinds.index(Kind.DICT)
    assert first == 1 + fmt.DICT_SAMPLES  # the header, then the records it was trained on
    flags = [f for _o, _k, f in frames(both[2])]
    assert not any(f & fmt.FLAG_DICT for f in flags[: first + 1])
    after = frames(both[2])[first + 1 :]
    assert all(f & fmt.FLAG_DICT for _o, k, f in after if k != Kind.END)
    assert all(f & fmt.FLAG_SUMMARY_ZSTD for _o, k, f in after if k == Kind.PAIR)
    assert after[-1][1] == Kind.END and after[-1][2] == 0  # readable without the dictionary
    assert Kind.DICT not in [k for _o, k, _f in frames(both[1])]
    assert both[2].stat().st_size < 0.6 * both[1].stat().st_size


def test_v1_and_v2_hold_the_same_records(both: dict[int, Path]) -> None:
    def read(p: Path) -> list[tuple[int, dict, Any]]:
        with CaptureReader(p) as r:
            got = [(e.kind, e.summary, body) for e, body in r.records()]
            assert r.damage == [] and r.ended
            # random access by offset, as the TUI and serve read bodies
            entries = r.index()
            assert [r.body(e) for e in entries] == [b for _k, _s, b in got]
        return got

    v1, v2 = read(both[1]), read(both[2])
    assert len(v1) > REQUESTS
    # the END record's counts differ by the dictionary frame (kind 7), and the headers by version
    assert [x for x in v1 if x[0] not in (Kind.HEADER, Kind.END)] == [
        x for x in v2 if x[0] not in (Kind.HEADER, Kind.END)
    ]
    assert v2[-1][1]["counts"] == {**v1[-1][1]["counts"], Kind.DICT: 1}


# ---- every command reads v1 and v2 alike ----------------------------------------------------


def _same(text1: str, text2: str, both: dict[int, Path]) -> None:
    a = text1.replace(str(both[1]), "FILE").replace(both[1].name, "FILE")
    b = text2.replace(str(both[2]), "FILE").replace(both[2].name, "FILE")
    # the format line differs, and so does the time each file was created
    a, b = (re.sub(r"gwsproxy-capture v\d|\d\d:\d\d:\d\d\.\d+", "", x) for x in (a, b))
    assert a == b


def test_info_export_and_check_print_the_same(
    both: dict[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["info"], ["export", "--format", "jsonl"], ["check"]):
        code1, out1 = run(capsys, argv[0], str(both[1]), *argv[1:])
        code2, out2 = run(capsys, argv[0], str(both[2]), *argv[1:])
        assert code1 == code2
        _same(out1, out2, both)
    assert "gwsproxy-capture v2" in run(capsys, "info", str(both[2]))[1]
    lines = run(capsys, "export", str(both[2]), "--format", "jsonl")[1].splitlines()
    assert len(lines) == REQUESTS and all(json.loads(line)["schema"] for line in lines)


def test_har_export_is_the_same(both: dict[int, Path], tmp_path: Path) -> None:
    hars = []
    for v in (1, 2):
        out = tmp_path / f"v{v}.har"
        assert cli.main(["export", str(both[v]), "--format", "har", "-o", str(out)]) == 0
        hars.append(out.read_text().replace(both[v].name, "FILE"))
    assert hars[0] == hars[1]


def test_tui_listing_serve_book_and_replay_pairs_are_the_same(both: dict[int, Path]) -> None:
    def listing(p: Path) -> list[tuple[int, dict, float]]:
        with CaptureReader(p) as r:
            rows = Index().make_rows(0, r.index())
        return [(row.kind, row.summary, row.t) for row in rows]

    assert listing(both[1]) == listing(both[2])
    assert len(listing(both[2])) > REQUESTS

    def book(p: Path) -> Any:
        c = load_capture(str(p))
        return (
            [dataclasses.astuple(x) for x in c.pairs],
            [dataclasses.astuple(x) for x in c.notes],
            sorted(c.interactions),
            c.scopes,
            c.notices,
        )

    assert book(both[1]) == book(both[2])
    assert load_pairs(str(both[1])) == load_pairs(str(both[2]))


# ---- damage ------------------------------------------------------------------------------


def _copy(src: Path, dst: Path, data: bytes | None = None) -> Path:
    dst.write_bytes(src.read_bytes() if data is None else data)
    return dst


def _dict_frame(p: Path) -> tuple[int, int]:
    """(offset, end) of the DICT frame."""
    fs = frames(p)
    i = [k for _o, k, _f in fs].index(Kind.DICT)
    return fs[i][0], fs[i + 1][0]


def test_torn_tail_anywhere_keeps_every_complete_record(
    both: dict[int, Path], tmp_path: Path
) -> None:
    data = both[2].read_bytes()
    fs = frames(both[2])
    dict_at, dict_end = _dict_frame(both[2])
    cuts = [dict_at + 5, dict_end - 1, dict_end, dict_end + 7, fs[-3][0] + 20, len(data) - 3]
    for cut in cuts:
        p = _copy(both[2], tmp_path / "torn.gwscap", data[:cut])
        with CaptureReader(p) as r:
            entries = r.index()
            whole = {f[0] for f in fs if f[0] < cut} - {dict_at}
            ends = {fs[i + 1][0] if i + 1 < len(fs) else len(data) for i in range(len(fs))}
            expected = sorted(o for o in whole if min(e for e in ends if e > o) <= cut)
            assert [e.offset for e in entries] == expected, cut
            bodies = [body for _e, body in r.records()]
            assert len(bodies) == len(expected) and not any(
                d.reason.startswith(("body", "its dictionary")) for d in r.damage
            )
            if cut not in (dict_end,):
                assert len(r.damage) == 1 and "torn tail" in r.damage[0].reason


def test_a_flipped_byte_loses_one_record(both: dict[int, Path], tmp_path: Path) -> None:
    fs = frames(both[2])
    _dict_at, dict_end = _dict_frame(both[2])
    victim = next(o for o, _k, _f in fs if o > dict_end + 3000)
    data = bytearray(both[2].read_bytes())
    data[victim + 30] ^= 0x40
    p = _copy(both[2], tmp_path / "flip.gwscap", bytes(data))
    with CaptureReader(both[2]) as r:
        good = [e.offset for e in r.index()]
    with CaptureReader(p) as r:
        got = [e.offset for e in r.index()]
        assert got == [o for o in good if o != victim]
        assert [(d.offset, d.reason) for d in r.damage] == [(victim, "crc mismatch")]
        bodies = [body for e, body in r.records() if e.kind == Kind.PAIR]
        assert len(bodies) == sum(e.kind == Kind.PAIR for e in r.index()) and all(bodies)
        assert [(d.offset, d.reason) for d in r.damage] == [(victim, "crc mismatch")]


def test_a_damaged_dictionary_loses_only_what_depends_on_it_and_says_so(
    both: dict[int, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dict_at, dict_end = _dict_frame(both[2])
    data = bytearray(both[2].read_bytes())
    data[dict_at + 500] ^= 0x01  # inside the dictionary's bytes
    p = _copy(both[2], tmp_path / "dict.gwscap", bytes(data))
    fs = frames(both[2])
    before = [o for o, k, _f in fs if o < dict_at]
    dependent = [o for o, _k, f in fs if f & fmt.FLAG_DICT]
    end = fs[-1][0]  # the END record needs no dictionary
    with CaptureReader(p) as r:
        entries = r.index()
        # every record written before the dictionary is read, bodies and all
        assert [e.offset for e in entries] == [*before, end] and r.ended
        assert all(r.body(e) is not None for e in entries if e.kind == Kind.PAIR)
        crc, lost = r.damage
        assert (crc.offset, crc.length, crc.reason) == (dict_at, dict_end - dict_at, "crc mismatch")
        assert lost.offset == dependent[0] and lost.offset + lost.length == end
        assert lost.reason.startswith(f"{len(dependent)} records compressed with the dictionary")
        assert f"at offset {dict_at}, which is unusable (crc mismatch)" in lost.reason
    _code, out = run(capsys, "info", str(p))
    assert "records compressed with the dictionary" in " ".join(out.split())


def test_records_after_a_damaged_dictionary_in_a_later_session_are_the_only_loss(
    tmp_path: Path,
) -> None:
    p = tmp_path / "two.gwscap"
    write_capture(p, 300, seed=5)
    with CaptureWriter(p, {"continues": "restart"}, append=True) as w:
        for kind, summary, body in Traffic(6).records(300):
            w.write(kind, summary, body)
    dicts = [o for o, k, _f in frames(p) if k == Kind.DICT]
    assert len(dicts) == 2  # each session trains its own
    data = bytearray(p.read_bytes())
    data[dicts[1] + 400] ^= 0x10
    damaged = _copy(p, tmp_path / "d.gwscap", bytes(data))
    with CaptureReader(p) as r:
        whole = r.index()
    with CaptureReader(damaged) as r:
        got = r.index()
        kept = [e.offset for e in whole if e.offset < dicts[1]] + [whole[-1].offset]  # + END
        assert [e.offset for e in got] == kept and r.ended
        assert len(r.sessions) == 2 and len(r.damage) == 2


# ---- continued files ----------------------------------------------------------------------


def test_a_v1_file_continued_stays_v1_and_a_v2_file_stays_v2(tmp_path: Path) -> None:
    for v in (1, 2):
        p = tmp_path / f"c{v}.gwscap"
        write_capture(p, 200, seed=v, version=v)
        with CaptureWriter(p, {"continues": "restart"}, append=True) as w:
            for kind, summary, body in Traffic(v + 10).records(200):
                w.write(kind, summary, body)
        with CaptureReader(p) as r:
            entries = r.index()
            assert [s.header["version"] for s in r.sessions] == [v, v]
            assert r.damage == [] and r.ended and len(r.sessions) == 2
            assert all(r.body(e) is not None for e in entries if e.kind == Kind.PAIR)
        assert sum(k == Kind.DICT for _o, k, _f in frames(p)) == (0 if v == 1 else 2)


def test_a_mixed_file_reads_whole(tmp_path: Path) -> None:
    """Not what the recorder writes, but a reader takes each frame as it comes."""
    p = tmp_path / "mixed.gwscap"
    write_capture(p, 200, seed=9, version=1)
    with CaptureWriter(p, {}, append=True, version=2) as w:
        for kind, summary, body in Traffic(10).records(200):
            w.write(kind, summary, body)
    with CaptureReader(p) as r:
        got = list(r.records())
        assert [s.header["version"] for s in r.sessions] == [1, 2]
        assert r.damage == [] and all(b is not None for e, b in got if e.kind == Kind.PAIR)


def test_a_follower_reads_a_v2_capture_as_it_is_written(tmp_path: Path) -> None:
    p = tmp_path / "live.gwscap"
    seen = []
    with CaptureWriter(p, {}) as w:
        f = Follower(p)
        for i in range(300):
            w.write(Kind.NOTE, {"t": float(i), "i": i}, {"text": f"note {i} " * 20})
            if i % 50 == 0:
                seen += f.poll()
    seen += f.poll()
    assert [e.summary.get("i") for e in seen if e.kind == Kind.NOTE] == list(range(300))
    assert f.damage == []


# ---- hostile dictionary references ----------------------------------------------------------


def test_a_reference_to_something_that_is_no_dictionary_is_damage_not_a_crash(
    tmp_path: Path,
) -> None:
    p = tmp_path / "bad-ref.gwscap"
    with CaptureWriter(p, {}) as w:
        note = w.write(Kind.NOTE, {"t": 1.0}, {"x": "y" * 300})
    s = fmt.pack({"t": 2.0})
    frames_ = [
        # refers to a NOTE, to itself (not before it), and far past the end of the file
        (note, s),
        (10**9, s),
    ]
    data = p.read_bytes()
    for ref, summary in frames_:
        payload = fmt.PAYLOAD_HEAD.pack(
            Kind.PAIR, fmt.FLAG_DICT | fmt.FLAG_SUMMARY_ZSTD, len(summary)
        )
        payload += ref.to_bytes(5, "little") + summary
        data += fmt.FRAME_HEAD.pack(fmt.SYNC, len(payload), zlib.crc32(payload)) + payload
    p.write_bytes(data)
    with CaptureReader(p) as r:
        entries = r.index()
        assert [e.kind for e in entries] == [Kind.HEADER, Kind.NOTE, Kind.END]
        reasons = [d.reason for d in r.damage]
        assert len(reasons) == 2, reasons
        assert "kind 5, not a dictionary" in reasons[0]
        assert "not a record before the one that uses it" in reasons[1]


# ---- property ------------------------------------------------------------------------------

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=40)
    | st.binary(max_size=60)
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_maps = st.dictionaries(st.text(max_size=12), _values, max_size=6)
_records = st.lists(
    st.tuples(st.sampled_from([2, 3, 4, 5, 42]), _maps, st.none() | _maps), max_size=40
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=_records)
def test_any_record_sequence_round_trips(tmp_path: Path, records: list[tuple]) -> None:
    p = tmp_path / "prop.gwscap"
    p.unlink(missing_ok=True)
    # a few realistic records first, so a dictionary is trained (on 8) and used for the rest
    lead = [(Kind.NOTE, {"t": float(i), "text": "x" * i}, {"body": "abc" * i}) for i in range(8)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fmt, "DICT_SAMPLES", 8)
        with CaptureWriter(p, {}) as w:
            offsets = [w.write(k, s, b) for k, s, b in [*lead, *records]]
    with CaptureReader(p) as r:
        got = [(e.kind, e.summary, b) for e, b in r.records()]
        assert r.damage == []
        assert got[1:-1] == [(k, s, b) for k, s, b in [*lead, *records]]
        assert [e.offset for e in r.index()][1:-1] == offsets
    assert any(k == Kind.DICT for _o, k, _f in frames(p))
