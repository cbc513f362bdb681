"""The capture index (gwsproxy/capture/index.py) at 1,000,000 pairs: `info` and the inspector
with and without it.

Targets (issue 13, at 1,000,000 pairs): the inspector's first screen < 1 s with the index (and
without it, as a ratio to one raw pass over the file), a cursor step < 50 ms, any filter over
all pairs (text, key, verdict) < 2 s, RSS < 500 MB; `gwsproxy info` < 1 s.

The capture is written by gwsproxy.testing.synthetic (through the recording core: every
outcome, unsolicited and raw records, the small user data of `gwsproxy load`) into a temp dir,
or taken from --capture (its sidecar is deleted first). A raw pass is CaptureReader.iter_entries
over the whole file (every frame CRC-checked, every summary decoded, nothing kept), after the
file was read once (page cache warm). `gwsproxy info` runs as a process (imports included),
first without the index (it builds it), then three times with it. The inspector runs headless
(120x40) in a child process per case, so that RSS is its own: without the index (it builds
it), then with it. Filters are timed from apply_filter to the view in place.
Run: .venv/bin/python bench/bench_index.py [--smoke] [--pairs N] [--capture PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

from _common import header, ms, print_results, temp_dir, verdict

from gwsproxy.capture.index import extend_index, open_index, sidecar
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.record.indexing import INDEX_STEP, index_spec
from gwsproxy.testing.synthetic import write_capture

SIZE = (120, 40)
STEPS = 20
FILTERS = ("interaction:CH0", "key:Priority", "verdict:coerced", "priority -media:voice")
ROOT = Path(__file__).resolve().parents[1]


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def raw_pass(path: Path) -> float:
    t0 = time.perf_counter()
    with CaptureReader(path) as reader:
        for _entry in reader.iter_entries():
            pass
    return time.perf_counter() - t0


def keep_in_steps(path: Path) -> int:
    """Index the capture as the recorder's idle steps do (extend_index, INDEX_STEP records a
    step): the sidecar a recording leaves. How many steps it took."""
    steps = 0
    while True:
        with CaptureReader(path) as reader:
            added = extend_index(reader, index_spec(), limit=INDEX_STEP)
        steps += 1
        if not added:
            return steps


def count_segments(path: Path) -> int:
    """The live segments of its index (read, not extended)."""
    with CaptureReader(path) as reader:
        return open_index(reader, index_spec(), save=False).segments


def info_run(path: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import sys; from gwsproxy.cli import main; sys.exit(main())"
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, "info", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    return time.perf_counter() - t0


async def tui(path: Path) -> dict[str, object]:
    from textual import events

    from gwsproxy.tui.app import InspectorApp

    out: dict[str, object] = {}
    t0 = time.perf_counter()
    app = InspectorApp([path])
    async with app.run_test(size=SIZE) as pilot:
        while not app.table.rows or app.panel.detail is None:
            await asyncio.sleep(0.002)
        first = str(app.table.rows[0].summary.get("interaction_id"))
        assert first in app.export_screenshot(), "the first row is not on screen"
        out["first"] = time.perf_counter() - t0
        while app.listing.loading:
            await asyncio.sleep(0.005)
        out["full"] = time.perf_counter() - t0
        out["rows"] = len(app.listing.index.rows)
        await pilot.pause(0.2)
        steps: list[float] = []
        for _ in range(STEPS):
            before = app.panel.detail.row if app.panel.detail else None
            t = time.perf_counter()
            app.post_message(events.Key("down", None))
            while app.panel.detail is None or app.panel.detail.row is before:
                await asyncio.sleep(0.0005)
            steps.append(time.perf_counter() - t)
            await pilot.pause(0.02)
        out["steps"] = steps
        filters: dict[str, list[float]] = {}
        for text in FILTERS:
            t = time.perf_counter()
            app.apply_filter(text)
            while not app.listing.settled:
                await asyncio.sleep(0.002)
            filters[text] = [time.perf_counter() - t, len(app.table.rows)]
            await pilot.pause(0.05)
        out["filters"] = filters
        out["rss"], out["peak"] = rss_mb(), rss_mb("VmHWM")
    return out


def tui_child(path: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"}
    proc = subprocess.run(
        [sys.executable, __file__, "--tui-child", str(path)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, targets not judged")
    parser.add_argument("--pairs", type=int, default=None, help="pairs (1,000,000)")
    parser.add_argument("--capture", type=Path, default=None, help="an existing capture")
    parser.add_argument("--tui-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tui_child:
        print(json.dumps(asyncio.run(tui(args.tui_child))))
        return 0
    pairs = args.pairs or (3000 if args.smoke else 1_000_000)
    header(f"capture index: {pairs:,}-pair capture", args.smoke)
    with temp_dir("index") as tmp:
        path = args.capture or tmp / "bench.gwscap"
        if args.capture is None:
            t = time.perf_counter()
            write_capture(path, pairs, seed=42)
            print(f"capture written in {time.perf_counter() - t:.1f} s")
        sidecar(path).unlink(missing_ok=True)
        size = path.stat().st_size
        with open(path, "rb") as f:  # warm the page cache
            while f.read(1 << 24):
                pass
        raw = raw_pass(path)
        print(f"capture: {size / 1e6:.1f} MB; raw pass {raw:.2f} s")
        build = info_run(path)
        idx_size = sidecar(path).stat().st_size
        print(f"info without the index (builds it, {idx_size / 1e6:.1f} MB): {build:.2f} s")
        with_index = [info_run(path) for _ in range(3)]
        print(f"info with the index: {', '.join(f'{t:.2f}' for t in with_index)} s")
        sidecar(path).unlink()
        cold = tui_child(path)
        print(f"tui without the index: first screen {cold['first']:.2f} s")
        warm = tui_child(path)
        print(f"tui with the index: first screen {warm['first']:.2f} s")
        # As a recorder leaves it: indexed in steps of INDEX_STEP records, a chain of segments.
        sidecar(path).unlink()
        t = time.perf_counter()
        n_steps = keep_in_steps(path)
        kept_time = time.perf_counter() - t
        segments = count_segments(path)
        print(f"kept in {n_steps} steps ({kept_time:.1f} s): {segments} segments")
        kept_info = min(info_run(path) for _ in range(3))
        kept = tui_child(path)
        print(f"with a kept index: info {kept_info:.2f} s, first screen {kept['first']:.2f} s")

    info_best = min(with_index)
    steps = warm["steps"]
    assert isinstance(steps, list)
    step = statistics.median(steps)
    step_max = max(steps)
    worst_filter = max(v[0] for v in warm["filters"].values())  # type: ignore[attr-defined]
    rows = [
        [
            "`gwsproxy info` with the index (a process)",
            f"{info_best:.2f} s (median {statistics.median(with_index):.2f} s)",
            f"without: {build:.1f} s (builds it), {build / raw:.1f}x a raw pass",
            "< 1 s",
            verdict(info_best, 1.0, smoke=args.smoke, higher_is_better=False),
        ],
        [
            "inspector first screen with the index",
            f"{warm['first']:.2f} s ({warm['rows']:,} rows listed after {warm['full']:.2f} s)",
            f"without: {cold['first']:.1f} s, {cold['first'] / raw:.1f}x a raw pass ({raw:.1f} s)",
            "< 1 s",
            verdict(float(warm["first"]), 1.0, smoke=args.smoke, higher_is_better=False),  # type: ignore[arg-type]
        ],
        [
            "cursor step (key to detail)",
            f"{ms(step)} median, {ms(step_max)} max",
            "",
            "< 50 ms",
            verdict(step, 0.05, smoke=args.smoke, higher_is_better=False),
        ],
    ]
    for text, (secs, n) in warm["filters"].items():  # type: ignore[attr-defined]
        rows.append([f"filter `{text}`", f"{ms(secs)} ({n:,} rows)", "", "< 2 s", ""])
    rows[-len(FILTERS)][4] = verdict(worst_filter, 2.0, smoke=args.smoke, higher_is_better=False)
    rows.append(
        [
            "inspector RSS at the end",
            f"{warm['rss']:.0f} MB (peak {warm['peak']:.0f} MB)",
            f"without the index: {cold['rss']:.0f} MB (peak {cold['peak']:.0f} MB)",
            "< 500 MB",
            verdict(float(warm["rss"]), 500, smoke=args.smoke, higher_is_better=False),  # type: ignore[arg-type]
        ]
    )
    kept_worst = max(kept_info, float(kept["first"]))  # type: ignore[arg-type]
    rows.append(
        [
            f"with the index as a recorder keeps it ({segments} segments)",
            f"info {kept_info:.2f} s, first screen {kept['first']:.2f} s, "
            f"RSS {kept['rss']:.0f} MB (peak {kept['peak']:.0f} MB)",
            f"{n_steps} steps of {INDEX_STEP:,} records: {kept_time:.1f} s in all",
            "< 1 s",
            verdict(kept_worst, 1.0, smoke=args.smoke, higher_is_better=False),
        ]
    )
    print_results(
        f"capture index, {pairs:,} pairs ({size / 1e6:.0f} MB, index {idx_size / 1e6:.0f} MB)",
        ["measure", "ours", "side by side", "target", "verdict"],
        rows,
        args.smoke,
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - a benchmark reports, it never fails the build
        traceback.print_exc()
        sys.exit(1)
