"""Tests for the capture file layer (gwsproxy.capture): round trip, crash safety, bounds,
forward compatibility, following a live file and index speed."""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gwsproxy.capture import (
    FORMAT_VERSION,
    INTERRUPTED,
    MAGIC,
    MAX_FRAME,
    SYNC,
    CaptureError,
    CaptureReader,
    CaptureWriter,
    Damage,
    Entry,
    Follower,
    Kind,
    encode_frame,
)
from gwsproxy.capture import format as fmt
from gwsproxy.capture import reader as reader_mod


def _pair(i: int) -> tuple[dict, dict]:
    summary = {"id": f"req-{i}", "t": 1700000000.0 + i, "status": 200, "seq": i}
    body = {
        "request": b'{"operationName":"UpdateUserData","userData":{"k%d":"v"}}' % i,
        "response": b'{"statusCode":0}',
        "notification": b'{"messageType":"EventUserDataChanged","seq":%d}' % i * 20,
        "before": {"k": "v" * (i % 7), "n": i},
    }
    return summary, body


def _write(path: Path, n: int, *, close: bool = True) -> tuple[list[int], CaptureWriter]:
    w = CaptureWriter(path, {"tool_version": "test", "upstream": "https://gws.example"})
    offsets = [w.write(Kind.PAIR, *_pair(i)) for i in range(n)]
    if close:
        w.close()
    return offsets, w


def _read_all(path: Path) -> tuple[list[Entry], CaptureReader]:
    with CaptureReader(path) as r:
        return r.index(), r


# ---- round trip -------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "a.gwscap"
    with CaptureWriter(p, {"tool_version": "1.2", "upstream": "u", "options": {"x": 1}}) as w:
        o1 = w.write(Kind.PAIR, *_pair(1))
        w.write(Kind.NOTIFICATION, {"t": 2.5, "channel": "/v2/me"}, {"raw": b"\x00\xff" * 300})
        w.write(Kind.NOTE, {"text": "small"}, {"tiny": b"\x01", "s": "é"})
        o4 = w.write(42, {"future": "kind", "nested": {1: [1.5, None, True]}})
        assert w.counts == {1: 1, 2: 1, 3: 1, 5: 1, 42: 1}
    with CaptureReader(p) as r:
        assert r.header["format"] == "gwsproxy-capture"
        assert r.header["version"] == FORMAT_VERSION
        assert r.header["tool_version"] == "1.2" and r.header["options"] == {"x": 1}
        assert isinstance(r.header["created"], float)
        entries = r.index()
        assert [e.kind for e in entries] == [1, 2, 3, 5, 42, 6]
        assert entries[1].offset == o1 and entries[4].offset == o4
        assert entries[1].summary == _pair(1)[0]
        assert entries[4].summary == {"future": "kind", "nested": {1: [1.5, None, True]}}
        assert entries[5].summary["counts"] == {1: 1, 2: 1, 3: 1, 5: 1, 42: 1}
        assert r.damage == [] and r.ended and r.notices == []
        bodies = [b for _, b in r.records()]
        assert bodies[0] is None and bodies[4] is None and bodies[5] is None
        assert bodies[1] == _pair(1)[1]
        assert isinstance(bodies[1]["request"], bytes) and isinstance(bodies[1]["before"]["k"], str)
        assert bodies[2] == {"raw": b"\x00\xff" * 300}
        assert bodies[3] == {"tiny": b"\x01", "s": "é"}
        assert r.body(entries[1]) == _pair(1)[1] and r.body(o1) == _pair(1)[1]
        assert r.body(entries[4]) is None
        with pytest.raises(CaptureError, match="offset 9"):
            r.body(9)


def test_compression_flags(tmp_path: Path) -> None:
    small = encode_frame(Kind.NOTE, {}, {"a": 1})
    big = encode_frame(Kind.PAIR, {}, {"a": b"x" * 5000})
    assert small[12 + 1] & fmt.FLAG_ZSTD == 0
    assert big[12 + 1] & fmt.FLAG_ZSTD and len(big) < 500


def test_unknown_fields_flags_and_kinds_are_kept(tmp_path: Path) -> None:
    p = tmp_path / "f.gwscap"
    _write(p, 1, close=False)[1].close()
    future = fmt.pack_frame(200, 0x80, fmt.pack({"new": 1, "x": b"y"}), fmt.pack({"b": 2}))
    with open(p, "ab") as f:
        f.write(future)
    with CaptureReader(p) as r:
        entries = r.index()
        assert entries[-1].kind == 200 and entries[-1].summary == {"new": 1, "x": b"y"}
        assert r.body(entries[-1]) == {"b": 2}  # informational high flag bits are ignored
        assert r.damage == []
        assert not r.ended and INTERRUPTED in r.notices  # the last frame is not END


def test_newer_version_is_a_notice(tmp_path: Path) -> None:
    p = tmp_path / "v.gwscap"
    p.write_bytes(
        MAGIC + encode_frame(Kind.HEADER, {"format": "gwsproxy-capture", "version": 7}, None)
    )
    with CaptureReader(p) as r:
        assert r.index()[0].summary["version"] == 7
        assert any("version 7" in n for n in r.notices)


def test_writer_rejects_oversized_and_bad_input(tmp_path: Path) -> None:
    p = tmp_path / "w.gwscap"
    with CaptureWriter(p, {}) as w:
        with pytest.raises(ValueError):
            w.write(Kind.NOTE, {"big": b"x" * (fmt.MAX_SUMMARY + 1)})
        with pytest.raises(TypeError):
            w.write(Kind.NOTE, {"t": object()})
        with pytest.raises(TypeError):
            w.write(Kind.NOTE, ["not", "a", "dict"])  # type: ignore[arg-type]
    entries, r = _read_all(p)
    assert [e.kind for e in entries] == [Kind.HEADER, Kind.END] and r.damage == []
    assert entries[1].summary["counts"] == {1: 1}
    w.close()  # idempotent
    with pytest.raises(CaptureError, match="closed"):
        w.write(Kind.NOTE, {})


def test_threads_write_whole_records(tmp_path: Path) -> None:
    p = tmp_path / "t.gwscap"
    with CaptureWriter(p, {}) as w:

        def work(k: int) -> None:
            for i in range(200):
                body = {"raw": os.urandom(64) * (i % 9)} if i else None
                w.write(Kind.PAIR, {"k": k, "i": i}, body)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with CaptureReader(p) as r:
        entries = r.index()
        assert len(entries) == 802 and r.damage == [] and r.ended
        # 7: the v2 dictionary, trained on the first records (written after them)
        assert entries[-1].summary["counts"] == {1: 1, 2: 800, 7: 1}
        recs = [(e, b) for e, b in r.records() if e.kind == Kind.PAIR]
        assert sum(1 for _, b in recs if b is not None) == 800 - 4
        assert all(len(b["raw"]) == 64 * (e.summary["i"] % 9) for e, b in recs if b)
        assert r.damage == []


# ---- files, modes and errors ------------------------------------------------------------


def test_file_mode_and_no_clobber(tmp_path: Path) -> None:
    p = tmp_path / "m.gwscap"
    old = os.umask(0)
    try:
        _write(p, 2)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    before = p.read_bytes()
    with pytest.raises(CaptureError, match="append=True") as exc:
        CaptureWriter(p, {})
    assert isinstance(exc.value, OSError) and exc.value.strerror  # callers catching OSError
    assert p.read_bytes() == before
    with CaptureWriter(p, {"session": 2}, append=True) as w:
        w.write(Kind.NOTE, {"again": True})
    entries, r = _read_all(p)
    kinds = [e.kind for e in entries]
    assert kinds == [1, 2, 2, 6, 1, 5, 6] and r.damage == [] and r.ended
    assert r.header.get("session") is None  # the file's header is its first one


def test_append_refuses_foreign_file_and_accepts_empty(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.txt"
    foreign.write_bytes(b"hello world, not a capture")
    with pytest.raises(CaptureError, match="not a gwsproxy capture"):
        CaptureWriter(foreign, {}, append=True)
    assert foreign.read_bytes() == b"hello world, not a capture"
    with pytest.raises(OSError, match="cannot create capture"):
        CaptureWriter(tmp_path / "no-such-dir" / "x.gwscap", {})
    empty = tmp_path / "empty.gwscap"
    empty.touch()
    CaptureWriter(empty, {}).close()
    assert [e.kind for e in _read_all(empty)[0]] == [1, 6]


def test_reader_open_errors(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such capture"):
        CaptureReader(tmp_path / "missing.gwscap")
    with pytest.raises(CaptureError, match="not a regular file"):
        CaptureReader(tmp_path)
    bad = tmp_path / "bad.gwscap"
    bad.write_bytes(b"PK\x03\x04 zip file, not a capture")
    with pytest.raises(CaptureError, match="bad magic"):
        CaptureReader(bad)
    empty = tmp_path / "empty.gwscap"
    empty.touch()
    with pytest.raises(CaptureError, match="empty file"):
        CaptureReader(empty)
    if os.geteuid() != 0:  # root reads anything
        p = tmp_path / "private.gwscap"
        _write(p, 1)
        p.chmod(0)
        with pytest.raises(CaptureError, match="permission denied"):
            CaptureReader(p)


def test_damaged_header_gives_empty_header(tmp_path: Path) -> None:
    p = tmp_path / "h.gwscap"
    offsets, _ = _write(p, 3)
    data = bytearray(p.read_bytes())
    data[len(MAGIC) + 20] ^= 0xFF
    p.write_bytes(bytes(data))
    with CaptureReader(p) as r:
        assert r.header == {}
        assert r.damage == [Damage(len(MAGIC), offsets[0] - len(MAGIC), "crc mismatch")]
        entries = r.index()
        assert [e.offset for e in entries[:3]] == offsets and r.ended
        assert len(r.damage) == 1 and any("header" in n for n in r.notices)


# ---- crash safety -----------------------------------------------------------------------


def test_torn_tail_at_every_offset(tmp_path: Path) -> None:
    src = tmp_path / "src.gwscap"
    n = 5
    offsets, w = _write(src, n, close=False)
    data = src.read_bytes()  # as a crash would leave it: no END record
    w.close()
    last = offsets[-1]
    p = tmp_path / "torn.gwscap"
    for cut in range(last, len(data) + 1):
        p.write_bytes(data[:cut])
        entries, r = _read_all(p)
        if cut in (last, len(data)):
            assert len(entries) == 1 + n - (cut == last) and r.damage == []
        else:
            assert [e.offset for e in entries[1:]] == offsets[:-1]
            assert r.damage == [
                Damage(
                    last,
                    cut - last,
                    f"torn tail: {cut - last} bytes after the last complete record",
                )
            ]
        assert not r.ended and INTERRUPTED in r.notices


FIELD_OFFSETS = {"sync": 1, "length": 6, "crc": 9, "kind": 12, "summary": 20, "body": -40}


@pytest.mark.parametrize("field", FIELD_OFFSETS)
def test_damage_in_the_middle(tmp_path: Path, field: str) -> None:
    p = tmp_path / "mid.gwscap"
    offsets, _ = _write(p, 100)
    k = 37
    start, stop = offsets[k], offsets[k + 1]
    data = bytearray(p.read_bytes())
    at = FIELD_OFFSETS[field]
    data[(start if at >= 0 else stop) + at] ^= 0x5A
    p.write_bytes(bytes(data))
    with CaptureReader(p) as r:
        entries = r.index()
        pairs = [e for e in entries if e.kind == Kind.PAIR]
        assert [e.offset for e in pairs] == offsets[:k] + offsets[k + 1 :]
        assert len(r.damage) == 1
        assert r.damage[0].offset == start and r.damage[0].length == stop - start
        assert r.ended
        recs = [(e, b) for e, b in r.records() if e.kind == Kind.PAIR]
        assert len(recs) == 99 and all(b == _pair(e.summary["seq"])[1] for e, b in recs)
        assert len(r.damage) == 1


def test_hostile_frame_length_does_not_allocate(tmp_path: Path) -> None:
    p = tmp_path / "hostile.gwscap"
    offsets, w = _write(p, 3, close=False)
    with open(p, "ab") as f:
        bad = f.tell()
        f.write(SYNC + struct.pack("<II", 0xFFFFFFFF, 0) + b"\x02" * 100)
        f.write(SYNC + struct.pack("<II", MAX_FRAME, 0) + b"\x02" * 100)  # in bounds, past EOF
    after = w.write(Kind.PAIR, *_pair(9))
    w.close()
    tracemalloc.start()
    try:
        entries, r = _read_all(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024
    assert [e.offset for e in entries if e.kind == Kind.PAIR] == [*offsets, after]
    assert r.damage == [Damage(bad, after - bad, "frame length 4294967295 exceeds limit")]


def test_hostile_length_at_the_end(tmp_path: Path) -> None:
    p = tmp_path / "hostile-end.gwscap"
    _write(p, 2)
    size = p.stat().st_size
    with open(p, "ab") as f:
        f.write(SYNC + struct.pack("<II", 0xFFFFFFFF, 0))
    entries, r = _read_all(p)
    assert len(entries) == 4 and r.ended
    assert r.damage == [Damage(size, 12, "frame length 4294967295 exceeds limit")]


def _zstd_bomb_header(declared: int) -> bytes:
    # zstd frame header: magic, descriptor (4-byte content size, single segment), size.
    return struct.pack("<IBI", 0xFD2FB528, 0xA0, declared) + b"\x01\x00\x00"


@pytest.mark.parametrize(
    ("flags", "body", "reason"),
    [
        (0, b"\xc6\x7f\xff\xff\xff", "body undecodable"),  # bin32 claiming 2 GB
        (0, b"\xdd\x7f\xff\xff\xff", "body undecodable"),  # array32 claiming 2**31 items
        (0, b"\x92\x01\x02", "not a map"),
        (fmt.FLAG_ZSTD, _zstd_bomb_header(0x80000000), "over the"),
        (fmt.FLAG_ZSTD, b"not zstd at all", "compression damaged"),
        (0x08, fmt.pack({"a": 1}), "unsupported body encoding"),
    ],
)
def test_hostile_body(tmp_path: Path, flags: int, body: bytes, reason: str) -> None:
    p = tmp_path / "body.gwscap"
    _, w = _write(p, 1, close=False)
    with open(p, "ab") as f:
        bad = f.tell()
        f.write(fmt.pack_frame(Kind.PAIR, flags, fmt.pack({"id": "evil"}), body))
    w.close()
    tracemalloc.start()
    try:
        with CaptureReader(p) as r:
            entries = r.index()
            assert r.damage == [] and len(entries) == 4  # the frame itself is intact
            with pytest.raises(CaptureError, match=reason):
                r.body(bad)
            recs = list(r.records())
            assert [b is None for _, b in recs] == [True, False, True, True]
            assert len(r.damage) == 1 and r.damage[0].offset == bad
            assert reason in r.damage[0].reason
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_hostile_summary(tmp_path: Path) -> None:
    p = tmp_path / "summary.gwscap"
    _, w = _write(p, 1, close=False)
    with open(p, "ab") as f:
        bad = f.tell()
        f.write(fmt.pack_frame(Kind.PAIR, 0, b"\x81\xa1a\xc6\x7f\xff\xff\xff", b""))
        f.write(fmt.pack_frame(Kind.PAIR, 0, b"\xa3str", b""))
        good = fmt.pack_frame(Kind.PAIR, 0, b"\x80", b"")
        f.write(good[:8] + bytes([good[8] ^ 1]) + good[9:])  # bad crc
    w.close()
    entries, r = _read_all(p)
    assert [e.kind for e in entries] == [Kind.HEADER, Kind.PAIR, Kind.END] and r.ended
    assert len(r.damage) == 1 and r.damage[0].offset == bad
    assert "summary undecodable" in r.damage[0].reason


# ---- never raise on garbage -------------------------------------------------------------


def _exercise(path: Path) -> list[Entry]:
    with CaptureReader(path) as r:
        entries = r.index()
        for e in entries:
            with contextlib.suppress(CaptureError):
                r.body(e)
        list(r.records())
        list(r.iter_entries(len(MAGIC) + 3))
    with Follower(path) as f:
        f.poll()
    return entries


_valid_frame = st.builds(
    lambda k, s, b: encode_frame(k, s, b),
    st.integers(0, 255),
    st.dictionaries(
        st.text(max_size=5), st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=8), max_size=3
    ),
    st.none() | st.dictionaries(st.text(max_size=5), st.binary(max_size=600), max_size=2),
)
_chunks = st.lists(
    st.binary(max_size=40)
    | st.just(SYNC)
    | st.builds(lambda n: SYNC + struct.pack("<II", n, 0), st.integers(0, 2**32 - 1))
    | _valid_frame
    | _valid_frame.map(lambda b: b[: len(b) // 2]),
    max_size=8,
).map(b"".join)


@settings(
    max_examples=3 * settings.default.max_examples,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(tail=_chunks)
def test_garbage_after_a_valid_file_never_raises(tail: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "g.gwscap"
        _write(p, 3)
        good = _read_all(p)[0]
        with open(p, "ab") as f:
            f.write(tail)
        entries = _exercise(p)
        assert entries[: len(good)] == good


@settings(max_examples=3 * settings.default.max_examples, deadline=None)
@given(data=_chunks | st.binary(max_size=300))
def test_garbage_after_the_magic_never_raises(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "g.gwscap"
        p.write_bytes(MAGIC + data)
        _exercise(p)
        p.write_bytes(MAGIC[:3] + data)
        with pytest.raises(CaptureError):
            CaptureReader(p)


# ---- following a live file --------------------------------------------------------------


def test_follower(tmp_path: Path) -> None:
    p = tmp_path / "live.gwscap"
    w = CaptureWriter(p, {"live": True})
    with Follower(p) as fol:
        first = fol.poll()
        assert [e.kind for e in first] == [Kind.HEADER] and fol.header["live"] is True
        assert fol.poll() == []
        offs = [w.write(Kind.PAIR, *_pair(i)) for i in range(3)]
        assert [e.offset for e in fol.poll()] == offs
        assert fol.poll() == []
        w.close()
        assert [e.kind for e in fol.poll()] == [Kind.END] and fol.ended

        frame = encode_frame(Kind.NOTIFICATION, {"late": 1}, {"raw": b"z" * 3000})
        for split in (3, 7, 12, 15, len(frame) // 2, len(frame) - 1):
            with open(p, "ab") as f:
                f.write(frame[:split])
            assert fol.poll() == [] and fol.damage == []
            with open(p, "ab") as f:
                f.write(frame[split:])
            got = fol.poll()
            assert len(got) == 1 and got[0].summary == {"late": 1} and not fol.ended
        assert fol.damage == []


def test_follower_reads_only_new_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "big.gwscap"
    _, w = _write(p, 2000, close=False)
    with Follower(p) as fol:
        assert len(fol.poll()) == 2001
        read: list[int] = []
        real = reader_mod._File.read_at

        def counting(self: object, offset: int, n: int) -> bytes:
            read.append(n)
            return real(self, offset, n)  # type: ignore[arg-type]

        monkeypatch.setattr(reader_mod._File, "read_at", counting)
        before = p.stat().st_size
        w.write(Kind.PAIR, *_pair(5000))
        assert len(fol.poll()) == 1
        assert sum(read) <= p.stat().st_size - before
    w.close()


def test_follower_waits_for_magic_and_rejects_foreign(tmp_path: Path) -> None:
    p = tmp_path / "new.gwscap"
    p.touch()
    with Follower(p) as fol:
        assert fol.poll() == []
        with CaptureWriter(p, {}) as w:
            w.write(Kind.NOTE, {"n": 1})
        assert [e.kind for e in fol.poll()] == [1, 5, 6]
    with pytest.raises(CaptureError):
        Follower(tmp_path / "absent.gwscap")
    foreign = tmp_path / "x.txt"
    foreign.write_bytes(b"plain text file")
    with pytest.raises(CaptureError, match="bad magic"):
        Follower(foreign)


# ---- speed --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_index_speed_and_no_body_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    p = tmp_path / "speed.gwscap"
    rnd = os.urandom(400)
    with CaptureWriter(p, {}, version=version) as w:
        for i in range(20_000):
            summary, body = _pair(i)
            body["blob"] = rnd + b"%d" % i
            w.write(Kind.PAIR, summary, body)

    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("index must not decode bodies")

    monkeypatch.setattr(reader_mod, "decode_body", forbidden)
    if version == 1:  # v1 summaries are never compressed; v2's are (with the dictionary)
        monkeypatch.setattr(fmt.zstandard, "ZstdDecompressor", forbidden)
    t = time.perf_counter()
    entries, r = _read_all(p)
    elapsed = time.perf_counter() - t
    assert len(entries) == 20_002 and r.damage == [] and r.ended
    assert elapsed < 2.0, f"indexing 20k records took {elapsed:.2f} s"


def test_crc_is_verified_in_the_index(tmp_path: Path) -> None:
    p = tmp_path / "crc.gwscap"
    offsets, _ = _write(p, 3)
    data = bytearray(p.read_bytes())
    data[offsets[2] - 1] ^= 1  # last byte of record 1's body
    p.write_bytes(bytes(data))
    entries, r = _read_all(p)
    assert len(entries) == 4 and r.damage == [
        Damage(offsets[1], offsets[2] - offsets[1], "crc mismatch")
    ]
