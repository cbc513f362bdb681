"""The index kept as the capture grows (gwsproxy.record.indexing.IndexKeeper, issue 13): what
the recorder pays for it, and what the first open after a recording gains.

A capture of N pairs (default 200,000; smoke 3,000) is written through gwsproxy.testing.synthetic
twice in one run, in chunks of CHUNK pairs (a recorder's 5 s at 500 pairs a second):
- plain: the writer alone, as before;
- kept: after each chunk, extend_index() (the recorder's idle step, verdicts judged) indexes
  what was written, appending a segment to the sidecar (merged as a binary counter).
Measured: the time spent indexing over the time spent writing (same records, same run), the
longest step (the recorder's longest pause), bytes written to the sidecar over its final size
(the merges' rewriting and the file's compactions), the live segments left. Then the first
open of each capture (the inspector's and info's open_index): the kept one reads only the
records written after the last step; the plain one builds the index from the capture (its
first open after a recording before this change), as a ratio.
Run: .venv/bin/python bench/bench_keep.py [--smoke] [--pairs N]
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from _common import header, ms, print_results, temp_dir, verdict

from gwsproxy.capture import index as capture_index
from gwsproxy.capture.index import extend_index, open_index, sidecar
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.capture.writer import CaptureWriter
from gwsproxy.record.indexing import INDEX_STEP, index_spec
from gwsproxy.testing.synthetic import Traffic

CHUNK = 2_500


def write(path: Path, pairs: int, keep: bool) -> dict[str, float]:
    spec = index_spec()
    traffic = Traffic(seed=42)
    writing = indexing = longest = 0.0
    with CaptureWriter(path, {"upstream": "bench"}) as writer:
        done = 0
        while done < pairs:
            n = min(CHUNK, pairs - done)
            t = time.perf_counter()
            for kind, summary, body in traffic.records(n):
                writer.write(kind, summary, body)
            writing += time.perf_counter() - t
            done += n
            if keep:
                t = time.perf_counter()
                with CaptureReader(path) as reader:
                    extend_index(reader, spec, limit=INDEX_STEP)
                step = time.perf_counter() - t
                indexing += step
                longest = max(longest, step)
        for kind, summary, body in traffic.close():
            writer.write(kind, summary, body)
    return {"writing": writing, "indexing": indexing, "longest": longest}


def first_open(path: Path) -> tuple[float, int, int]:
    t = time.perf_counter()
    with CaptureReader(path) as reader:
        index = open_index(reader, index_spec())
    return time.perf_counter() - t, index.scanned, index.table.num_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, targets not judged")
    parser.add_argument("--pairs", type=int, default=None, help="pairs (200,000)")
    args = parser.parse_args(argv)
    pairs = args.pairs or (3000 if args.smoke else 200_000)
    header(f"index kept as the capture grows: {pairs:,} pairs", args.smoke)
    written = [0]
    write_segment, replace = capture_index._write_segment, capture_index._replace

    def counted_segment(f: Any, table: Any, meta: bytes) -> None:
        at = f.tell()
        write_segment(f, table, meta)
        written[0] += f.tell() - at

    def counted_replace(path: Path, parts: list[Any], new: Any, meta: bytes) -> None:
        written[0] += sum(len(part) for part in parts)  # the live segments copied over
        replace(path, parts, new, meta)

    with temp_dir("keep") as tmp:
        plain, kept = tmp / "plain.gwscap", tmp / "kept.gwscap"
        p = write(plain, pairs, keep=False)
        capture_index._write_segment = counted_segment  # type: ignore[assignment]
        capture_index._replace = counted_replace  # type: ignore[assignment]
        try:
            k = write(kept, pairs, keep=True)
        finally:
            capture_index._write_segment, capture_index._replace = write_segment, replace
        size = sidecar(kept).stat().st_size
        with CaptureReader(kept) as reader:
            segments = open_index(reader, index_spec(), save=False).segments
        print(
            f"written: plain {p['writing']:.1f} s, kept {k['writing']:.1f} s + indexing "
            f"{k['indexing']:.1f} s; sidecar {size / 1e6:.1f} MB in {segments} segments, "
            f"{written[0] / 1e6:.1f} MB written to it"
        )
        for f in (plain, kept):  # warm the page cache alike
            f.read_bytes()
        built, _, rows = first_open(plain)
        opened, scanned, _ = first_open(kept)
        print(f"first open: kept {opened:.2f} s ({scanned} records read), plain {built:.2f} s")
    per_pair = k["indexing"] / pairs
    rows_out = [
        [
            "indexing while writing",
            f"{per_pair * 1e6:.0f} µs a pair, {k['indexing'] / p['writing']:.2f}x the writing",
            f"writing alone {p['writing'] / pairs * 1e6:.0f} µs a pair",
            "",
            "",
        ],
        [
            "longest step (the recorder's pause)",
            ms(k["longest"]),
            f"steps of {CHUNK:,} pairs",
            "",
            "",
        ],
        [
            "bytes written to the sidecar / its size",
            f"{written[0] / size:.1f}x ({segments} segments)",
            f"{size / 1e6:.1f} MB, {size / rows:.0f} bytes a record",
            "",
            "",
        ],
        [
            "first open after the recording",
            f"{opened:.2f} s, {scanned} records read",
            f"index built on first open: {built:.2f} s ({built / opened:.0f}x)",
            "< 1 s",
            verdict(opened, 1.0, smoke=args.smoke, higher_is_better=False),
        ],
    ]
    print_results(
        f"index kept as the capture grows, {pairs:,} pairs",
        ["measure", "kept", "side by side", "target", "verdict"],
        rows_out,
        args.smoke,
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - a benchmark reports, it never fails the build
        traceback.print_exc()
        sys.exit(1)
