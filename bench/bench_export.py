"""bench_export: `export --format parquet` against the JSONL export of the same capture, and
`gwsproxy query` (DuckDB) over a large capture.

1. Export rate: the JSONL export (report.write_jsonl to a file) and the Parquet export
   (report_parquet.export_parquet) of one capture, in this process, interleaved over the rounds;
   the figure is Parquet's rate as a ratio to JSONL's (provisional target >= 0.8: Parquet adds
   columns and compression on top of the same reading and judging).
2. How `query` reads the captures, measured side by side on the same capture: through a
   temporary Parquet export (what `query` does) or an Arrow RecordBatchReader registered in
   DuckDB (no file, but it can be scanned once only).
3. A large capture (1,000,000 pairs in full mode): `gwsproxy export --format parquet`, then
   `gwsproxy query` with the README's query (keys coerced most often per media), each as the
   real command in a child process (wall time, peak RSS of the child), then DuckDB alone over
   the exported Parquet (time, peak RSS).

Captures are written by gwsproxy.testing.synthetic (through the recording core: every outcome,
small user data as `gwsproxy load` sends, unsolicited and raw records) into a temp dir.

Run: .venv/bin/python bench/bench_export.py [--smoke] [--rounds N] [--pairs N] [--query-pairs N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _common import header, ms, print_results, temp_dir, verdict

from gwsproxy import report, report_parquet
from gwsproxy.processes import gwsproxy_command
from gwsproxy.testing.synthetic import write_capture

RATIO_TARGET = 0.8
QUERY = """
SELECT media, f.key, count(*) AS coerced
FROM (SELECT media, unnest(findings) AS f FROM pairs)
WHERE f.kind = 'coerced'
GROUP BY ALL ORDER BY media, coerced DESC
"""


def make_capture(path: Path, pairs: int) -> float:
    t = time.perf_counter()
    write_capture(path, pairs, seed=7)
    took = time.perf_counter() - t
    mb = path.stat().st_size / 1e6
    print(f"capture {path.name}: {pairs:,} requests, {mb:.1f} MB in {took:.1f} s")
    return took


def export_jsonl(path: Path, out: Path) -> float:
    t = time.perf_counter()
    with out.open("w", encoding="utf-8") as f:
        report.write_jsonl(str(path), f)
    return time.perf_counter() - t


def export_parquet(path: Path, out: Path) -> float:
    t = time.perf_counter()
    report_parquet.export_parquet([str(path)], str(out))
    return time.perf_counter() - t


def query_via_parquet(path: Path) -> float:
    t = time.perf_counter()
    with report_parquet.connect([str(path)]) as con:
        con.execute(QUERY).fetchall()
    return time.perf_counter() - t


def query_via_arrow(path: Path) -> float:
    import duckdb
    import pyarrow as pa

    t = time.perf_counter()
    batches = report_parquet.record_batches([str(path)])
    reader = pa.RecordBatchReader.from_batches(report_parquet.schema(), batches)
    con = duckdb.connect()
    con.register("pairs", reader)
    con.execute(QUERY).fetchall()
    con.close()
    return time.perf_counter() - t


# A small child that runs the measured command and reports its children's peak RSS: measured
# directly, a child forked from this process would start from this process's own RSS.
_MEASURED = (
    "import resource, subprocess, sys; "
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "print((done.stdout + done.stderr).strip()); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(done.returncode)"
)


def measured(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of a command in a child process, and its last line."""
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, *command], capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or len(lines) < 2:
        raise SystemExit(f"{' '.join(command[:4])}... failed:\n{done.stdout[-2000:]}{done.stderr}")
    return wall, int(lines[-1]) / 1024, lines[-2]


DUCKDB_ALONE = (
    "import sys, duckdb; con = duckdb.connect(); "
    'con.execute("CREATE VIEW pairs AS SELECT * FROM read_parquet(\'" + sys.argv[1] + "\')"); '
    "rows = con.execute(sys.argv[2]).fetchall(); print(len(rows), 'rows')"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, targets not judged")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3)")
    parser.add_argument("--pairs", type=int, default=None, help="export capture (100,000)")
    parser.add_argument("--query-pairs", type=int, default=None, help="large capture (1,000,000)")
    args = parser.parse_args(argv)
    pairs = args.pairs or (2_000 if args.smoke else 100_000)
    big = args.query_pairs or (5_000 if args.smoke else 1_000_000)
    rounds = args.rounds or (1 if args.smoke else 3)
    header(
        f"bench_export: Parquet vs JSONL export, {pairs:,} pairs; query over {big:,}", args.smoke
    )
    with temp_dir("export") as tmp:
        path = tmp / "export.gwscap"
        make_capture(path, pairs)
        exported = sum(1 for _ in report.read_pairs(str(path)))
        times: dict[str, list[float]] = {"jsonl": [], "parquet": [], "arrow": [], "via parquet": []}
        for r in range(rounds):
            order = ["jsonl", "parquet", "arrow", "via parquet"]
            for name in order if r % 2 == 0 else order[::-1]:
                if name == "jsonl":
                    times[name].append(export_jsonl(path, tmp / "out.jsonl"))
                elif name == "parquet":
                    times[name].append(export_parquet(path, tmp / "out"))
                elif name == "arrow":
                    times[name].append(query_via_arrow(path))
                else:
                    times[name].append(query_via_parquet(path))
                print(f"  round {r + 1} {name}: {ms(times[name][-1])}")
        sizes = {
            "jsonl": (tmp / "out.jsonl").stat().st_size,
            "parquet": (tmp / "out" / "export.parquet").stat().st_size,
        }
        rate = {k: exported / min(v) for k, v in times.items()}
        ratio = rate["parquet"] / rate["jsonl"]
        query_ratio = min(times["via parquet"]) / min(times["arrow"])

        big_path = tmp / "big.gwscap"
        made = make_capture(big_path, big)
        capture_mb = big_path.stat().st_size / 1e6
        big_path.read_bytes()  # the page cache warm for every reader alike
        out_dir = tmp / "big-out"
        e_wall, e_rss, e_said = measured(
            gwsproxy_command("export", str(big_path), "--format", "parquet", "-o", str(out_dir))
        )
        print(f"  export: {e_wall:.1f} s, peak RSS {e_rss:.0f} MB ({e_said})")
        big_pairs = int(e_said.rsplit(":", 1)[1].split()[0])
        q_wall, q_rss, _ = measured(
            gwsproxy_command("query", QUERY, str(big_path), "--format", "csv")
        )
        print(f"  query: {q_wall:.1f} s, peak RSS {q_rss:.0f} MB")
        parquet_file = out_dir / "big.parquet"
        parquet_mb = parquet_file.stat().st_size / 1e6
        d_wall, d_rss, d_said = measured(
            [sys.executable, "-c", DUCKDB_ALONE, str(parquet_file), QUERY]
        )
        print(f"  DuckDB over the Parquet: {d_wall:.2f} s, peak RSS {d_rss:.0f} MB ({d_said})")

    rows = [
        [
            f"JSONL export, {exported:,} pairs",
            f"{rate['jsonl']:,.0f} pairs/s",
            f"{sizes['jsonl'] / 1e6:.1f} MB",
            "",
        ],
        [
            "Parquet export, same capture",
            f"{rate['parquet']:,.0f} pairs/s",
            f"{sizes['parquet'] / 1e6:.1f} MB",
            "",
        ],
        [
            "Parquet rate / JSONL rate",
            f"{ratio:.2f}",
            "",
            f">= {RATIO_TARGET} (provisional): {verdict(ratio, RATIO_TARGET, smoke=args.smoke)}",
        ],
        [
            "query: temporary Parquet / Arrow stream, time",
            f"{query_ratio:.2f} ({ms(min(times['via parquet']))} / {ms(min(times['arrow']))})",
            "",
            "information (the Arrow stream scans once only)",
        ],
        [
            f"`export --format parquet`, {big_pairs:,} pairs ({capture_mb:.0f} MB capture)",
            f"{e_wall:.1f} s ({big_pairs / e_wall:,.0f} pairs/s)",
            f"peak RSS {e_rss:.0f} MB; {parquet_mb:.0f} MB Parquet",
            "",
        ],
        [
            f"`gwsproxy query` (README's query), {big_pairs:,} pairs",
            f"{q_wall:.1f} s",
            f"peak RSS {q_rss:.0f} MB",
            "",
        ],
        [
            "DuckDB alone over that Parquet",
            f"{d_wall:.2f} s",
            f"peak RSS {d_rss:.0f} MB",
            "",
        ],
        [f"(writing the {big:,}-request synthetic capture)", f"{made:.0f} s", "", ""],
    ]
    print_results(
        "export to Parquet and query with DuckDB",
        ["what", "measured", "size / memory", "target"],
        rows,
        args.smoke,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
