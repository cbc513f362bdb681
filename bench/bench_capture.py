"""A 100k-pair capture: summary index time, size per pair, and both against mitmproxy's own dump.

Targets (issue):
  1. summary index (CaptureReader.index) of 100k pairs in <= 2 s, printed with its ratio to one
     raw msgpack.Unpacker pass over the same records;
  2. capture bytes per pair / raw notification bytes per pair <= 1.5;
  3. against mitmproxy's dump of the same traffic (mitmproxy.io.FlowWriter, read back with
     FlowReader.stream): ours "several times" smaller and faster to read. "Several" is judged
     here as >= 3x, for the size and for the full read (records(), bodies decoded) vs
     FlowReader; the index vs FlowReader ratio is printed too.

The records come from the real path: synthetic UpdateUserData traffic on the two seeds'
interactions (small per-pair changes: ids, referenceIds, values) goes through what the addon
does (bench/_common.py AddonPath, the recording core: classify_request, Correlator, parse_batch,
parse_notification, records.pair_record) into a CaptureWriter. Raw request/answer dicts hold
header lists and body bytes, as the addon's do.

Baseline for the index: our frames are not a plain msgpack stream (sync word, length, CRC,
summary, zstd body), so the fair "one raw Unpacker pass" reads a second file holding the SAME
records as plain consecutive msgpack maps ({"kind", "summary", "body"}, uncompressed). The
Unpacker decodes every body; index() decodes only summaries but checks every CRC in Python.

mitmproxy's dump: per pair, the POST flow (request headers + body, response headers + body)
and one long-poll flow (the /meta/connect request, and the response whose body is the
notification batch), each an HTTPFlow made with mitmproxy.test.tflow.tflow(resp=True) and
filled in; two template flows are re-filled per pair (new id, timestamps, headers, contents),
which writes the same bytes as fresh flows and saves minutes of set-up.

All files go to a temp dir. Rounds interleave the readers (order reversed every other round);
mitmproxy's reader, minutes per pass at 100k pairs, runs in the first two rounds only.
Run: .venv/bin/python bench/bench_capture.py [--smoke] [--pairs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
from _common import (
    AddonPath,
    Exchange,
    header,
    iter_traffic,
    ms,
    print_results,
    seeds,
    temp_dir,
    verdict,
)
from mitmproxy import http
from mitmproxy import io as mitmio
from mitmproxy.test import tflow

from gwsproxy.capture import CaptureReader, CaptureWriter
from gwsproxy.capture.format import pack
from gwsproxy.correlate import Status

INDEX_SECONDS = 2.0  # for 100k pairs
BYTES_RATIO = 1.5  # capture bytes per pair / raw notification bytes per pair
SEVERAL = 3.0  # mitmproxy / ours, for size and read time
TICK = 0.25  # the addon's ticker (Correlator.expire)
MITM_ROUNDS = 2  # FlowReader passes (the slowest reader by far); ours run every round


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2k pairs, one round, not judged")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--pairs", type=int, default=None, help="pairs (default 100,000)")
    return parser.parse_args()


class Tee:
    """A CaptureWriter that also appends every record, as a plain msgpack map, to a file."""

    def __init__(self, writer: CaptureWriter, plain: BinaryIO) -> None:
        self.writer = writer
        self.plain = plain

    def write(self, kind: int, summary: dict, body: dict | None = None) -> int:
        self.plain.write(pack({"kind": int(kind), "summary": summary, "body": body}))
        return self.writer.write(kind, summary, body)


def _headers(fields: list[tuple[str, str]]) -> http.Headers:
    return http.Headers([(k.encode(), v.encode()) for k, v in fields])


class MitmDump:
    """mitmproxy's view of the same traffic, written with its own FlowWriter."""

    def __init__(self, out: BinaryIO) -> None:
        self.writer = mitmio.FlowWriter(out)
        self.post = tflow.tflow(resp=True)
        self.poll = tflow.tflow(resp=True)
        for f in (self.post, self.poll):
            f.request.method = "POST"
            f.request.scheme = "http"
            f.request.host = "127.0.0.1"
            f.request.port = 8090
            f.request.authority = ""
            f.response.status_code = 200
            f.response.reason = "OK"
        self.poll.request.path = "/api/v2/notifications"

    def add(self, ex: Exchange) -> None:
        f = self.post
        f.id = str(uuid.uuid4())
        f.timestamp_created = ex.t
        f.request.path = ex.path
        f.request.headers = _headers(ex.request_headers)
        f.request.content = ex.request_body
        f.request.timestamp_start, f.request.timestamp_end = ex.t, ex.t + 0.0002
        f.response.headers = _headers(ex.answer_headers)
        f.response.content = ex.answer_body
        f.response.timestamp_start, f.response.timestamp_end = ex.t + 0.0015, ex.t + 0.002
        self.writer.add(f)

        p = self.poll
        p.id = str(uuid.uuid4())
        t = ex.t - 0.5  # the connect was held until the notification came
        p.timestamp_created = t
        p.request.headers = _headers(
            [(k, v) for k, v in ex.request_headers if k.lower() != "content-length"]
        )
        p.request.content = ex.connect_body
        p.request.timestamp_start, p.request.timestamp_end = t, t + 0.0002
        p.response.headers = _headers(
            [("Content-Type", "application/json;charset=utf-8"), ("Content-Length", "0")]
        )
        p.response.content = ex.batch
        p.response.timestamp_start, p.response.timestamp_end = ex.t + 0.02, ex.t + 0.0205
        self.writer.add(p)


def build(tmp: Path, count: int) -> dict[str, Any]:
    files = {
        "ours": tmp / "ours.gwscap",
        "plain": tmp / "plain.msgpack",
        "mitm": tmp / "mitm.flows",
    }
    wire = 0  # raw notification bytes (the long-poll body that carried each notification)
    spent = {"ours": 0.0, "mitm": 0.0}
    pc = time.perf_counter
    with (
        CaptureWriter(files["ours"], {"bench": "capture"}) as cw,
        open(files["plain"], "wb") as plain,
        open(files["mitm"], "wb") as mitm,
    ):
        path = AddonPath(Tee(cw, plain))
        dump = MitmDump(mitm)
        tick = pc()
        for key, ex in enumerate(iter_traffic(count, seeds())):
            wire += len(ex.batch)
            t0 = pc()
            path.feed(ex, key)
            if t0 - tick >= TICK:
                path.tick(ex.t)
                tick = t0
            t1 = pc()
            dump.add(ex)
            spent["ours"] += t1 - t0
            spent["mitm"] += pc() - t1
            if (key + 1) % 20_000 == 0:
                print(f"  generated {key + 1:,} pairs", file=sys.stderr)
        path.tick(float("inf"))
    assert path.pairs == count, (path.pairs, count)
    assert path.recording.correlator.counts.by_status == {Status.MATCHED: count}
    return {
        "files": files,
        "sizes": {k: p.stat().st_size for k, p in files.items()},
        "wire": wire,
        "write": spent,
    }


def readers(files: dict[str, Path], count: int) -> dict[str, Callable[[], int]]:
    def index() -> int:
        with CaptureReader(files["ours"]) as r:
            entries = r.index()
            assert not r.damage and r.ended
        return len(entries)

    def records() -> int:
        n = 0
        with CaptureReader(files["ours"]) as r:
            for _entry, _body in r.records():
                n += 1
        return n

    def unpacker() -> int:
        with open(files["plain"], "rb") as f:
            return sum(1 for _ in msgpack.Unpacker(f, raw=False, strict_map_key=False))

    def mitm() -> int:
        with open(files["mitm"], "rb") as f:
            return sum(1 for _ in mitmio.FlowReader(f).stream())

    expected = {"index": count + 2, "records": count + 2, "unpacker": count, "mitm": 2 * count}
    funcs = {"index": index, "unpacker": unpacker, "records": records, "mitm": mitm}

    def checked(name: str) -> Callable[[], int]:
        def run() -> int:
            n = funcs[name]()
            assert n == expected[name], (name, n, expected[name])
            return n

        return run

    return {name: checked(name) for name in funcs}


def main() -> None:
    args = parse_args()
    smoke = args.smoke
    count = args.pairs or (2_000 if smoke else 100_000)
    rounds = args.rounds or (1 if smoke else 3)
    header(f"bench_capture: a {count:,}-pair capture vs msgpack and mitmproxy", smoke)

    with temp_dir("bench-capture") as tmp:
        t0 = time.perf_counter()
        built = build(tmp, count)
        print(
            f"generated {count:,} pairs in {time.perf_counter() - t0:.1f} s "
            f"(write side, wall: ours parse+correlate+write {ms(built['write']['ours'])}, "
            f"mitmproxy FlowWriter {ms(built['write']['mitm'])})"
        )
        wall: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        funcs = readers(built["files"], count)
        for name in ("index", "unpacker", "records"):  # warm-up (mitmproxy's is too slow)
            funcs[name]()
        names = list(funcs)
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                if name == "mitm" and r >= MITM_ROUNDS:
                    continue  # minutes per pass at 100k pairs, and 10x+ away from ours
                c0, w0 = time.process_time(), time.perf_counter()
                funcs[name]()
                wall.setdefault(name, []).append(time.perf_counter() - w0)
                cpu.setdefault(name, []).append(time.process_time() - c0)
            print(
                f"round {r + 1}: "
                + ", ".join(
                    f"{n} {wall[n][r]:.2f} s (cpu {cpu[n][r]:.2f} s)"
                    for n in names
                    if r < len(wall[n])
                )
            )

    sizes, wire = built["sizes"], built["wire"]

    def ratio(ref: str, ours: str) -> float:
        # mitmproxy may have fewer rounds: pair each of its rounds with ours of the same round
        return statistics.median(a / b for a, b in zip(wall[ref], wall[ours], strict=False))

    scale = 100_000 / count  # the 2 s target is for 100k pairs
    index_best = min(wall["index"])
    per_pair = sizes["ours"] / count
    wire_per_pair = wire / count
    bytes_ratio = per_pair / wire_per_pair
    size_ratio = sizes["mitm"] / sizes["ours"]
    read_ratio = ratio("mitm", "records")
    index_vs_mitm = ratio("mitm", "index")
    index_vs_unpacker = ratio("unpacker", "index")

    def v(value: float, target: float, higher: bool = True) -> str:
        return verdict(value, target, smoke=smoke, higher_is_better=higher)

    rows = [
        [
            "index() time (summaries, CRC-checked)",
            f"{index_best:.2f} s (cpu {min(cpu['index']):.2f} s)",
            f"<= {INDEX_SECONDS} s per 100k"
            + (f" (scaled: {INDEX_SECONDS / scale:.2f} s)" if scale != 1 else ""),
            v(index_best * scale, INDEX_SECONDS, higher=False),
        ],
        [
            "raw msgpack.Unpacker pass, same records as plain maps",
            f"{min(wall['unpacker']):.2f} s (cpu {min(cpu['unpacker']):.2f} s)",
            "-",
            "-",
        ],
        [
            "ratio Unpacker time / index() time",
            f"{index_vs_unpacker:.2f}",
            "info",
            "-",
        ],
        [
            "records() time (every body decoded)",
            f"{min(wall['records']):.2f} s (cpu {min(cpu['records']):.2f} s)",
            "-",
            "-",
        ],
        [
            "mitmproxy FlowReader.stream() time",
            f"{min(wall['mitm']):.2f} s (cpu {min(cpu['mitm']):.2f} s)",
            "-",
            "-",
        ],
        [
            "read ratio: FlowReader / records()",
            f"{read_ratio:.1f}x",
            f">= {SEVERAL:g}x",
            v(read_ratio, SEVERAL),
        ],
        ["read ratio: FlowReader / index()", f"{index_vs_mitm:.1f}x", "info", "-"],
        [
            "capture bytes per pair / raw notification bytes",
            f"{per_pair:,.0f} B / {wire_per_pair:,.0f} B = {bytes_ratio:.2f}",
            f"<= {BYTES_RATIO}",
            v(bytes_ratio, BYTES_RATIO, higher=False),
        ],
        [
            "file sizes: ours / plain msgpack / mitmproxy",
            f"{sizes['ours'] / 1e6:,.1f} MB / {sizes['plain'] / 1e6:,.1f} MB / "
            f"{sizes['mitm'] / 1e6:,.1f} MB",
            "-",
            "-",
        ],
        [
            "size ratio: mitmproxy / ours",
            f"{size_ratio:.2f}x",
            f">= {SEVERAL:g}x",
            v(size_ratio, SEVERAL),
        ],
    ]
    print_results(
        f"Capture of {count:,} pairs (SMS + Facebook seeds), {rounds} interleaved rounds, "
        "best wall times, ratios = median of per-round ratios",
        ["measure", "value", "target", "result"],
        rows,
        smoke,
    )


if __name__ == "__main__":
    main()
