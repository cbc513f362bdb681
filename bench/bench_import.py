"""bench_import: `gwsproxy import` of a HAR against `gwsproxy import` of a mitmproxy dump of the
same traffic, and the peak memory of importing a large HAR.

The traffic is bench_capture's: N user-data POSTs and the long polls that carried their
notifications (SMS and Facebook seed payloads), as mitmproxy HTTPFlows. The same flows are
written twice, by mitmproxy's own FlowWriter (a `mitmdump -w` dump) and by mitmproxy's own HAR
writer (`savehar`, what `--set hardump=FILE` writes), entry by entry. Each import runs as the
real command in a child process (`gwsproxy import FILE -o OUT`), alternating over the rounds;
its wall time and peak RSS (ru_maxrss of the child) are measured.

Targets (issue 11): HAR import rate / dump import rate >= 1.0; peak RSS importing a 500 MB HAR
< 300 MB (full mode builds a HAR of about 500 MB; smoke mode a few MB).

Run: .venv/bin/python bench/bench_import.py [--smoke] [--rounds N]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from _common import header, iter_traffic, parse_args, print_results, seeds, temp_dir, verdict
from bench_capture import MitmDump
from mitmproxy import http
from mitmproxy.addons.savehar import SaveHar

from gwsproxy.processes import gwsproxy_command

FULL_PAIRS, SMOKE_PAIRS = 100_000, 500
RSS_TARGET_MB = 300.0
RATE_TARGET = 1.0


class HarFile:
    """A HAR written entry by entry with mitmproxy's own savehar code."""

    def __init__(self, path: Path) -> None:
        self.out = path.open("w")
        self.out.write('{"log": {"version": "1.2", "creator": {"name": "mitmproxy", ')
        self.out.write('"version": "11"}, "pages": [], "entries": [\n')
        self.har = SaveHar()
        self.servers: set[Any] = set()
        self.first = True

    def add(self, flow: http.HTTPFlow) -> None:
        entry = self.har.flow_entry(flow, self.servers)
        self.out.write(("" if self.first else ",\n") + json.dumps(entry))
        self.first = False

    def close(self) -> None:
        self.out.write("\n]}}\n")
        self.out.close()


class Both(MitmDump):
    """bench_capture's mitmproxy dump, every flow also written to the HAR."""

    def __init__(self, dump: BinaryIO, har: HarFile) -> None:
        super().__init__(dump)
        write = self.writer.add

        def add(flow: http.HTTPFlow) -> None:
            write(flow)
            har.add(flow)

        self.writer.add = add  # type: ignore[method-assign]


def build(tmp: Path, count: int) -> dict[str, Path]:
    files = {"har": tmp / "traffic.har", "dump": tmp / "traffic.flows"}
    har = HarFile(files["har"])
    with files["dump"].open("wb") as dump:
        both = Both(dump, har)
        for n, exchange in enumerate(iter_traffic(count, seeds())):
            both.add(exchange)
            if (n + 1) % 20_000 == 0:
                print(f"  generated {n + 1:,} pairs", file=sys.stderr)
    har.close()
    return files


# A child that runs one import and reports its own children's peak RSS (the import alone).
_MEASURED = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr); "
    "sys.exit(done.returncode)"
)


def run_import(source: Path, out: Path) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of `gwsproxy import SOURCE -o OUT`, and its last line."""
    out.unlink(missing_ok=True)
    command = gwsproxy_command("import", str(source), "-o", str(out))
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, *command], capture_output=True, text=True, env=os.environ
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or len(lines) < 2:
        raise SystemExit(f"import of {source.name} failed: {done.stdout}{done.stderr}")
    wall, peak_kb = lines[0].split()
    return float(wall), int(peak_kb) / 1024, lines[1]


def main() -> None:
    args = parse_args(__doc__.split("\n", 1)[0])
    pairs = SMOKE_PAIRS if args.smoke else FULL_PAIRS
    rounds = args.rounds or (1 if args.smoke else 3)
    header(f"bench_import: HAR vs mitmproxy dump import, {pairs:,} pairs", args.smoke)
    with temp_dir("bench-import-") as tmp:
        t0 = time.perf_counter()
        files = build(tmp, pairs)
        mb = {k: p.stat().st_size / 1e6 for k, p in files.items()}
        built = time.perf_counter() - t0
        print(f"built in {built:.1f} s: HAR {mb['har']:.1f} MB, dump {mb['dump']:.1f} MB")
        walls: dict[str, list[float]] = {"har": [], "dump": []}
        peaks: dict[str, float] = {"har": 0.0, "dump": 0.0}
        for r in range(rounds):
            for name in ("har", "dump") if r % 2 == 0 else ("dump", "har"):
                wall, peak, said = run_import(files[name], tmp / f"{name}.gwscap")
                walls[name].append(wall)
                peaks[name] = max(peaks[name], peak)
                print(f"  round {r + 1} {name}: {wall:.2f} s, peak RSS {peak:.0f} MB ({said})")
    rate = {k: pairs / min(v) for k, v in walls.items()}
    ratio = rate["har"] / rate["dump"]
    rss_verdict = verdict(peaks["har"], RSS_TARGET_MB, smoke=args.smoke, higher_is_better=False)
    rows = [
        [
            "HAR import (mitmproxy's savehar)",
            f"{rate['har']:,.0f} pairs/s",
            f"{peaks['har']:.0f} MB",
            f"{mb['har']:.0f} MB",
            "-",
        ],
        [
            "mitmproxy dump import",
            f"{rate['dump']:,.0f} pairs/s",
            f"{peaks['dump']:.0f} MB",
            f"{mb['dump']:.0f} MB",
            "-",
        ],
        [
            "HAR / dump, rate",
            f"{ratio:.2f}",
            "",
            "",
            f">= {RATE_TARGET}: {verdict(ratio, RATE_TARGET, smoke=args.smoke)}",
        ],
        [
            "HAR import, peak RSS",
            f"{peaks['har']:.0f} MB",
            "",
            "",
            f"< {RSS_TARGET_MB:.0f} MB: {rss_verdict}",
        ],
    ]
    print_results(
        "gwsproxy import: HAR against a mitmproxy dump of the same traffic",
        ["what", "best rate", "peak RSS", "input", "target"],
        rows,
        args.smoke,
    )


if __name__ == "__main__":
    main()
