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
   the exported Parquet (time, peak RSS), then `gwsproxy query` over 5 copies of that export
   (5,000,000 pairs, each copy under its own capture name: a week of exports).

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
from typing import Any

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


class Clock:
    """Wall and CPU seconds (this process, every thread) of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def export_jsonl(path: Path, out: Path) -> Clock:
    with Clock() as c, out.open("w", encoding="utf-8") as f:
        report.write_jsonl(str(path), f)
    return c


def export_parquet(path: Path, out: Path) -> Clock:
    with Clock() as c:
        report_parquet.export_parquet([str(path)], str(out))
    return c


def query_via_parquet(path: Path) -> Clock:
    with Clock() as c, report_parquet.connect([str(path)]) as con:
        con.execute(QUERY).fetchall()
    return c


def query_via_arrow(path: Path) -> Clock:
    import duckdb
    import pyarrow as pa

    with Clock() as c:
        _query_via_arrow(path, duckdb, pa)
    return c


def _query_via_arrow(path: Path, duckdb: Any, pa: Any) -> None:
    batches = report_parquet.record_batches([str(path)])
    reader = pa.RecordBatchReader.from_batches(report_parquet.schema(), batches)
    con = duckdb.connect()
    con.register("pairs", reader)
    con.execute(QUERY).fetchall()
    con.close()


# A small child that runs the measured command and reports its children's peak RSS: measured
# directly, a child forked from this process would start from this process's own RSS.
_MEASURED = (
    "import resource, subprocess, sys; "
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "print((done.stdout + done.stderr).strip()); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(u.ru_utime + u.ru_stime, u.ru_maxrss); "
    "sys.exit(done.returncode)"
)


def measured(command: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds and peak RSS (MB) of a command in a child process, and its
    output's last line."""
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, *command], capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or len(lines) < 2:
        raise SystemExit(f"{' '.join(command[:4])}... failed:\n{done.stdout[-2000:]}{done.stderr}")
    cpu, peak_kb = lines[-1].split()
    return wall, float(cpu), int(peak_kb) / 1024, lines[-2]


def copies_of(parquet: Path, folder: Path, copies: int) -> list[Path]:
    """`copies` Parquet files holding the large export's pairs, each under its own capture
    name: the exports of a week of captures, without writing and exporting each capture."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    table = pq.read_table(parquet)
    where = table.schema.get_field_index("capture")
    files = []
    for k in range(copies):
        name = pa.array(
            [f"proxy{k + 1}/week.gwscap"] * table.num_rows, table.schema.field(where).type
        )
        files.append(folder / f"proxy{k + 1}.parquet")
        pq.write_table(table.set_column(where, "capture", name), files[-1], row_group_size=16_384)
    return files


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
    parser.add_argument(
        "--copies", type=int, default=None, help="exports of it queried together (5)"
    )
    args = parser.parse_args(argv)
    pairs = args.pairs or (2_000 if args.smoke else 100_000)
    big = args.query_pairs or (5_000 if args.smoke else 1_000_000)
    rounds = args.rounds or (1 if args.smoke else 3)
    copies = args.copies or (2 if args.smoke else 5)
    header(
        f"bench_export: Parquet vs JSONL export, {pairs:,} pairs; query over {big:,}", args.smoke
    )
    with temp_dir("export") as tmp:
        path = tmp / "export.gwscap"
        make_capture(path, pairs)
        exported = sum(1 for _ in report.read_pairs(str(path)))
        times: dict[str, list[Clock]] = {"jsonl": [], "parquet": [], "arrow": [], "via parquet": []}
        for r in range(rounds):
            order = ["jsonl", "parquet", "arrow", "via parquet"]
            for name in order if r % 2 == 0 else order[::-1]:
                if name == "jsonl":
                    c = export_jsonl(path, tmp / "out.jsonl")
                elif name == "parquet":
                    c = export_parquet(path, tmp / "out")
                elif name == "arrow":
                    c = query_via_arrow(path)
                else:
                    c = query_via_parquet(path)
                times[name].append(c)
                print(f"  round {r + 1} {name}: {ms(c.wall)} wall, {ms(c.cpu)} CPU")
        sizes = {
            "jsonl": (tmp / "out.jsonl").stat().st_size,
            "parquet": (tmp / "out" / "export.parquet").stat().st_size,
        }
        cpu = {k: min(c.cpu for c in v) for k, v in times.items()}
        wall = {k: min(c.wall for c in v) for k, v in times.items()}
        # the ratio of rates on CPU time (the machine is shared: wall time is given beside it)
        ratio = cpu["jsonl"] / cpu["parquet"]
        wall_ratio = wall["jsonl"] / wall["parquet"]
        query_ratio = cpu["via parquet"] / cpu["arrow"]

        big_path = tmp / "big.gwscap"
        made = make_capture(big_path, big)
        capture_mb = big_path.stat().st_size / 1e6
        out_dir = tmp / "big-out"
        e_wall, e_cpu, e_rss, e_said = measured(
            gwsproxy_command("export", str(big_path), "--format", "parquet", "-o", str(out_dir))
        )
        print(f"  export: {e_wall:.1f} s ({e_cpu:.1f} s CPU), peak RSS {e_rss:.0f} MB ({e_said})")
        big_pairs = int(e_said.rsplit(":", 1)[1].split()[0])
        q_wall, q_cpu, q_rss, _ = measured(
            gwsproxy_command("query", QUERY, str(big_path), "--format", "csv")
        )
        print(f"  query: {q_wall:.1f} s ({q_cpu:.1f} s CPU), peak RSS {q_rss:.0f} MB")
        parquet_file = out_dir / "big.parquet"
        parquet_mb = parquet_file.stat().st_size / 1e6
        d_wall, d_cpu, d_rss, d_said = measured(
            [sys.executable, "-c", DUCKDB_ALONE, str(parquet_file), QUERY]
        )
        print(f"  DuckDB alone: {d_wall:.2f} s ({d_cpu:.2f} s CPU), peak RSS {d_rss:.0f} MB")
        week = copies_of(parquet_file, tmp / "week", copies)
        w_wall, w_cpu, w_rss, _ = measured(
            gwsproxy_command("query", QUERY, *map(str, week), "--format", "csv")
        )
        print(
            f"  query over {copies} exports ({copies * big_pairs:,} pairs): {w_wall:.2f} s"
            f" ({w_cpu:.2f} s CPU), peak RSS {w_rss:.0f} MB"
        )

    def rate(name: str) -> str:
        return f"{exported / cpu[name]:,.0f} pairs/s CPU ({exported / wall[name]:,.0f} wall)"

    rows = [
        [f"JSONL export, {exported:,} pairs", rate("jsonl"), f"{sizes['jsonl'] / 1e6:.1f} MB", ""],
        [
            "Parquet export, same capture",
            rate("parquet"),
            f"{sizes['parquet'] / 1e6:.1f} MB",
            "",
        ],
        [
            "Parquet rate / JSONL rate",
            f"{ratio:.2f} CPU ({wall_ratio:.2f} wall)",
            "",
            f">= {RATIO_TARGET} (provisional): {verdict(ratio, RATIO_TARGET, smoke=args.smoke)}",
        ],
        [
            "query: temporary Parquet / Arrow stream, CPU",
            f"{query_ratio:.2f} ({cpu['via parquet']:.1f} s / {cpu['arrow']:.1f} s)",
            "",
            "information (the Arrow stream scans once only)",
        ],
        [
            f"`export --format parquet`, {big_pairs:,} pairs ({capture_mb:.0f} MB capture)",
            f"{e_wall:.1f} s wall, {e_cpu:.1f} s CPU ({big_pairs / e_cpu:,.0f} pairs/s)",
            f"peak RSS {e_rss:.0f} MB; {parquet_mb:.0f} MB Parquet",
            "",
        ],
        [
            f"`gwsproxy query` (README's query), {big_pairs:,} pairs",
            f"{q_wall:.1f} s wall, {q_cpu:.1f} s CPU",
            f"peak RSS {q_rss:.0f} MB",
            "",
        ],
        [
            "DuckDB alone over that Parquet",
            f"{d_wall:.2f} s wall, {d_cpu:.2f} s CPU",
            f"peak RSS {d_rss:.0f} MB",
            "",
        ],
        [
            f"`gwsproxy query` over {copies} such exports ({copies * big_pairs:,} pairs)",
            f"{w_wall:.2f} s wall, {w_cpu:.2f} s CPU",
            f"peak RSS {w_rss:.0f} MB",
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
