"""bench_size: capture format v2 (a zstd dictionary per session) against v1 (each body
compressed alone), on the same records, side by side in one run.

Three kinds of traffic, all through the real recording core (gwsproxy.record.core.Recording):
  live   `gwsproxy load` (10 agents, long polling) through a real mitmdump with the addon
         against the simulator (gwsproxy.testing.examples.sim_capture); the records it wrote
         are then read back and written again;
  small  the same kind of small user data, synthetic and in-process, at scale
         (gwsproxy.testing.synthetic.Traffic: a few keys per interaction, every outcome,
         unsolicited and raw records);
  seeds  the two seeds' large user data with small per-pair changes (bench/_common.py
         iter_traffic + AddonPath, as bench_capture.py).
Every record is written to a v1 and a v2 CaptureWriter at once (the same dicts, so the same
records); the time spent in each writer's write() is the write rate.

Figures:
  1. bytes per pair over notification bytes: the file's size over the raw JSON of every
     notification recorded (those of pairs and the unsolicited ones), v1 and v2; target for v2
     <= 1.0 on both kinds (issue 13);
  2. write rate v2 / v1 (records per second in write(), same records);
  3. index rate v2 / v1: CaptureReader.index() of the two files, interleaved rounds, best of
     each (v2 decompresses every summary; v1 never decompresses), and records() (every body
     decoded) likewise.

Run: .venv/bin/python bench/bench_size.py [--smoke] [--rounds N] [--pairs N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from _common import AddonPath, header, iter_traffic, print_results, seeds, temp_dir, verdict

from gwsproxy.capture import CaptureReader, CaptureWriter, Kind
from gwsproxy.testing.examples import sim_capture
from gwsproxy.testing.synthetic import Traffic

TARGET = 1.0  # v2 capture bytes / notification JSON bytes
TICK = 0.25


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2k pairs, 2 rounds, not judged")
    parser.add_argument("--rounds", type=int, default=None, help="index rounds (default 5)")
    parser.add_argument("--pairs", type=int, default=None, help="requests (default 100,000)")
    parser.add_argument(
        "--live-pairs", type=int, default=None, help="requests through mitmdump (default 10,000)"
    )
    return parser.parse_args()


class Both:
    """Writes every record to a v1 and a v2 writer, timing each, and counts notification bytes."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.paths = {v: tmp / f"{name}-v{v}.gwscap" for v in (1, 2)}
        self.writers = {
            v: CaptureWriter(p, {"bench": name}, version=v) for v, p in self.paths.items()
        }
        self.spent = {1: 0.0, 2: 0.0}
        self.records = self.pairs = self.notification_bytes = 0

    def write(self, kind: int, summary: dict, body: dict | None = None) -> int:
        self.records += 1
        if kind == Kind.PAIR:
            self.pairs += 1
        note = (body or {}).get("notification")
        if kind in (Kind.PAIR, Kind.NOTIFICATION) and isinstance(note, dict):
            self.notification_bytes += len(note.get("raw") or b"")
        pc = time.perf_counter
        for v in (1, 2) if self.records % 2 else (2, 1):
            t = pc()
            self.writers[v].write(kind, summary, body)
            self.spent[v] += pc() - t
        return 0

    def close(self, end: bool = True) -> None:
        for w in self.writers.values():
            w.close(end)

    def sizes(self) -> dict[int, int]:
        return {v: p.stat().st_size for v, p in self.paths.items()}


def live(tmp: Path, requests: int) -> Both:
    recorded = tmp / "live.gwscap"
    asyncio.run(sim_capture(recorded, agents=10, ops=max(1, requests // 10), faults=0.0))
    out = Both(tmp, "live")
    with CaptureReader(recorded) as r:
        for entry, body in r.records():
            if entry.kind not in (Kind.HEADER, Kind.END):
                out.write(entry.kind, entry.summary, body)
        assert not r.damage, r.damage
    out.close()
    return out


def small(tmp: Path, requests: int) -> Both:
    out = Both(tmp, "small")
    traffic = Traffic(7)
    for kind, summary, body in traffic.records(requests):
        out.write(kind, summary, body)
    for kind, summary, body in traffic.close():
        out.write(kind, summary, body)
    out.close()
    return out


def seed(tmp: Path, requests: int) -> Both:
    out = Both(tmp, "seeds")
    path = AddonPath(out)
    tick = time.perf_counter()
    for key, ex in enumerate(iter_traffic(requests, seeds())):
        path.feed(ex, key)
        if time.perf_counter() - tick >= TICK:
            path.tick(ex.t)
            tick = time.perf_counter()
    path.tick(float("inf"))
    out.close()
    return out


def read_rates(paths: dict[int, Path], rounds: int) -> dict[str, dict[int, float]]:
    """Best seconds of index() and of records() per version, interleaved."""
    best: dict[str, dict[int, float]] = {"index": {}, "records": {}}

    def index(p: Path) -> int:
        with CaptureReader(p) as r:
            n = len(r.index())
            assert not r.damage, r.damage
        return n

    def records(p: Path) -> int:
        with CaptureReader(p) as r:
            n = sum(1 for _ in r.records())
            assert not r.damage, r.damage
        return n

    for what, fn in (("index", index), ("records", records)):
        counts = set()
        for i in range(rounds):
            for v in (1, 2) if i % 2 == 0 else (2, 1):
                t = time.perf_counter()
                counts.add(fn(paths[v]))
                took = time.perf_counter() - t
                best[what][v] = min(best[what].get(v, took), took)
        assert len(counts) == 1, f"v1 and v2 {what} differ: {counts}"
    return best


def main() -> None:
    args = parse_args()
    smoke = args.smoke
    requests = args.pairs or (2_000 if smoke else 100_000)
    rounds = args.rounds or (2 if smoke else 5)
    header("capture format v2 vs v1: size, write and index rates", smoke)
    rows: list[list[Any]] = []
    rates: list[list[Any]] = []
    with temp_dir("size") as tmp:
        live_requests = args.live_pairs or (200 if smoke else 10_000)
        kinds = (
            (f"live: `gwsproxy load` via mitmdump ({live_requests:,})", live, live_requests),
            (f"small: synthetic ({requests:,})", small, requests),
            (f"seeds ({requests:,})", seed, requests),
        )
        for name, build, n in kinds:
            t = time.perf_counter()
            both = build(tmp, n)
            sizes = both.sizes()
            print(
                f"{name}: {both.records:,} records ({both.pairs:,} pairs) written in "
                f"{time.perf_counter() - t:.1f} s; v1 {sizes[1] / 1e6:.1f} MB, "
                f"v2 {sizes[2] / 1e6:.1f} MB"
            )
            note = both.notification_bytes
            for v in (1, 2):
                ratio = sizes[v] / note
                rows.append(
                    [
                        name,
                        f"v{v}",
                        f"{sizes[v] / both.pairs:,.0f}",
                        f"{note / both.pairs:,.0f}",
                        f"{ratio:.2f}",
                        verdict(ratio, TARGET, smoke=smoke, higher_is_better=False)
                        if v == 2
                        else "",
                    ]
                )
            best = read_rates(both.paths, rounds)
            rates.append(
                [
                    name,
                    f"{both.records / both.spent[1]:,.0f} / {both.records / both.spent[2]:,.0f}",
                    f"{both.spent[1] / both.spent[2]:.2f}",
                    f"{best['index'][1]:.2f} s / {best['index'][2]:.2f} s",
                    f"{best['index'][1] / best['index'][2]:.2f}",
                    f"{best['records'][1]:.2f} s / {best['records'][2]:.2f} s",
                    f"{best['records'][1] / best['records'][2]:.2f}",
                ]
            )
    print_results(
        "bytes per pair over notification JSON bytes (requests in brackets)",
        ["traffic", "format", "bytes per pair", "notification bytes per pair", "ratio", "<= 1.0"],
        rows,
        smoke,
    )
    print_results(
        f"write and read rates, v2 / v1 (best of {rounds} interleaved reads)",
        [
            "traffic",
            "write records/s v1 / v2",
            "write rate v2 / v1",
            "index() v1 / v2",
            "index rate v2 / v1",
            "records() v1 / v2",
            "records() rate v2 / v1",
        ],
        rates,
        smoke,
    )


if __name__ == "__main__":
    main()
