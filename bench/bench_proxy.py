"""Throughput through mitmdump with the gwsproxy addon vs plain mitmdump, same workload, one run.

Target: ops/s with the addon / ops/s without it >= 0.9, for both CometD transports.

One simulator (delay 0, jitter 0) and two mitmdump processes in reverse mode in front of it: one
plain, one with `-s addons/gws_recorder.py` and `gws_trim_websocket=true`. The same agent workload
(`gwsproxy.agents.run_load`, in a separate process so that its CPU is not counted in ours) runs
against each proxy in turn (plain, addon, addon, plain, ...) for several rounds; the ratio is the
median of the per-round ratios. Direct-to-simulator ops/s is shown for context, and the CPU time
mitmdump spent per op (from /proc) for both proxies. Afterwards the capture must hold one pair per
op sent through the addon.

    python bench/bench_proxy.py            # full: 10 agents x 100 ops, 8 rounds per transport
    python bench/bench_proxy.py --smoke    # a few seconds; CI checks that it runs
    python bench/bench_proxy.py --addon /path/to/candidate.py   # A/B a candidate addon script

The workload is latency-bound (each agent has one op in flight) and the agents, the simulator
and mitmdump share the machine, so the addon's extra CPU per op in mitmdump shows up in the
throughput ratio amplified by queueing; the CPU ms/op columns say how much CPU that is.

Exits 0 whatever the ratios (PASS/MISS is printed); non-zero only if the bench itself breaks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    ROOT,
    SIM_BANNER,
    header,
    mitmdump_path,
    print_results,
    start_with_banner,
    tail,
    verdict,
)

from gwsproxy.processes import free_port, stop

ADDON = ROOT / "addons" / "gws_recorder.py"
TARGET_RATIO = 0.9
TRANSPORTS = ("long-polling", "websocket")
START_TIMEOUT = 20.0
LOAD_TIMEOUT = 180.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The workload runs in its own long-lived process (started once, so no interpreter start-up per
# run): one JSON job per stdin line, LoadReport.as_dict() (or an error) as one JSON stdout line.
LOAD_WORKER = """
import asyncio, json, sys
from gwsproxy.agents import LoadConfig, run_load
for line in sys.stdin:
    job = json.loads(line)
    config = LoadConfig(job["target"], job["agents"], job["ops"], job["transport"], timeout=30.0)
    try:
        out = asyncio.run(run_load(config)).as_dict()
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)
"""


# ---- processes -----------------------------------------------------------------------------------


def start_sim(tmp: Path, agents: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "gwsproxy.cli", "sim", "-p", "0", "--host", "127.0.0.1"]
    command += ["--delay", "0", "--jitter", "0", "--agents", str(agents)]
    return start_with_banner(command, SIM_BANNER, tmp / "sim.out", START_TIMEOUT)


def start_mitmdump(tmp: Path, name: str, upstream: str, extra: list[str]) -> tuple:
    port = free_port()
    out = tmp / f"{name}.out"
    command = [mitmdump_path(), "-q", "--listen-host", "127.0.0.1", "-p", str(port)]
    command += ["--mode", f"reverse:{upstream}", *extra]
    with out.open("w") as f:
        process = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    return process, f"http://127.0.0.1:{port}", out


def wait_ready(process: subprocess.Popen, url: str, out: Path) -> None:
    """Any HTTP answer (401 without credentials) through the proxy means it is up."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            urllib.request.urlopen(url + "/api/v2/me", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise SystemExit(f"mitmdump at {url} did not start: {tail(out)!r}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class LoadWorker:
    """The agents' process: `run(...)` sends one job and waits for its report."""

    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "agents.err"
        with self.log.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LOAD_WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=ROOT,
            )

    def run(self, target: str, agents: int, ops: int, transport: str) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        job = {"target": target, "agents": agents, "ops": ops, "transport": transport}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], LOAD_TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        report = json.loads(line) if line.strip() else {"error": "no report"}
        if "error" in report:
            raise SystemExit(
                f"load against {target} ({transport}) failed: {report['error']} "
                f"{tail(self.log, 1500)}"
            )
        return report

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        stop(self.process, 5.0)
        if self.process.stdout is not None:
            self.process.stdout.close()


# ---- measuring -----------------------------------------------------------------------------------


@dataclass
class Series:
    ops_per_s: list[float] = field(default_factory=list)
    cpu_ms_per_op: list[float] = field(default_factory=list)
    timeouts: int = 0
    failed: int = 0
    sent: int = 0


@dataclass
class Target:
    name: str
    url: str
    pid: int | None  # the mitmdump to take CPU time from; None for the simulator itself


def measure(
    worker: LoadWorker, target: Target, series: Series, agents: int, ops: int, transport: str
) -> float:
    cpu0 = cpu_seconds(target.pid) if target.pid else 0.0
    report = worker.run(target.url, agents, ops, transport)
    cpu = (cpu_seconds(target.pid) - cpu0) if target.pid else 0.0
    series.sent += report["sent"]
    series.timeouts += report["timeouts"]
    series.failed += report["failed"]
    series.ops_per_s.append(report["ops_per_second"])
    if target.pid and report["sent"]:
        series.cpu_ms_per_op.append(1000 * cpu / report["sent"])
    return report["ops_per_second"]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def check_capture(path: Path, expected: int) -> tuple[bool, str]:
    from gwsproxy.capture.format import Kind
    from gwsproxy.capture.reader import CaptureReader

    with CaptureReader(path) as reader:
        entries = reader.index()
        ended, damage = reader.ended, reader.damage
    pairs = [e for e in entries if e.kind == Kind.PAIR]
    statuses = Counter(e.summary.get("status") for e in pairs)
    others = Counter(Kind(e.kind).name for e in entries if e.kind != Kind.PAIR)
    ok = len(pairs) == expected and ended and not damage and set(statuses) <= {"matched"}
    text = (
        f"{len(pairs)} pairs for {expected} ops sent through the addon "
        f"(statuses {dict(statuses)}, other records {dict(others)}, "
        f"clean end {ended}, damage {len(damage)})"
    )
    return ok, text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run: does it work at all")
    parser.add_argument("--agents", type=int, default=None)
    parser.add_argument("--ops", type=int, default=None, help="ops per agent per run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--addon", type=Path, default=ADDON, help="addon script to measure (default: ours)"
    )
    args = parser.parse_args()
    agents = args.agents or (3 if args.smoke else 10)
    ops = args.ops or (20 if args.smoke else 100)
    rounds = max(1, min(args.rounds or (1 if args.smoke else 8), 50))
    warmup = not args.smoke

    header("bench_proxy: throughput through mitmdump with the addon vs without", args.smoke)
    print(f"{agents} agents x {ops} ops per run, {rounds} rounds per transport, addon {args.addon}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (shared machine)")
    processes: list[subprocess.Popen] = []
    worker: LoadWorker | None = None
    results: dict[str, dict[str, Series]] = {}
    ratios: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_proxy-") as tmpdir:
        tmp = Path(tmpdir)
        capture = tmp / "cap.gwscap"
        try:
            sim, sim_url = start_sim(tmp, agents)
            processes.append(sim)
            plain_p, plain_url, plain_out = start_mitmdump(tmp, "plain", sim_url, [])
            processes.append(plain_p)
            addon_args = ["-s", str(args.addon), "--set", f"gws_capture={capture}"]
            addon_args += ["--set", "gws_trim_websocket=true"]
            addon_p, addon_url, addon_out = start_mitmdump(tmp, "addon", sim_url, addon_args)
            processes.append(addon_p)
            wait_ready(plain_p, plain_url, plain_out)
            wait_ready(addon_p, addon_url, addon_out)
            worker = LoadWorker(tmp)
            direct = Target("direct", sim_url, None)
            plain = Target("plain", plain_url, plain_p.pid)
            addon = Target("addon", addon_url, addon_p.pid)
            warm_sent = 0

            for transport in TRANSPORTS:
                series = {t.name: Series() for t in (direct, plain, addon)}
                results[transport] = series
                ratios[transport] = []
                if warmup:  # connections, caches, first-use costs; not counted
                    for t in (plain, addon):
                        warm = Series()
                        measure(worker, t, warm, agents, ops, transport)
                        if t is addon:
                            warm_sent += warm.sent
                for r in range(rounds):
                    order = (plain, addon) if r % 2 == 0 else (addon, plain)
                    got = {
                        t.name: measure(worker, t, series[t.name], agents, ops, transport)
                        for t in order
                    }
                    measure(worker, direct, series["direct"], agents, ops, transport)
                    ratio = got["addon"] / got["plain"] if got["plain"] else float("nan")
                    ratios[transport].append(ratio)
                    print(
                        f"  {transport:12} round {r + 1}/{rounds}: plain {got['plain']:7.1f} "
                        f"ops/s, addon {got['addon']:7.1f} ops/s, ratio {ratio:.3f}, "
                        f"direct {series['direct'].ops_per_s[-1]:7.1f} ops/s",
                        flush=True,
                    )
            expected = warm_sent + sum(results[t]["addon"].sent for t in TRANSPORTS)
            stop(addon_p)  # SIGTERM: the addon writes its END record
            capture_ok, capture_text = check_capture(capture, expected)
        finally:
            if worker is not None:
                worker.stop()
            for process in reversed(processes):
                stop(process)

    print()
    print(f"capture sanity: {'OK' if capture_ok else 'MISMATCH'}: {capture_text}")
    verdicts = {}
    for transport in TRANSPORTS:
        ratio = med(ratios[transport])
        verdicts[transport] = verdict(ratio, TARGET_RATIO, smoke=args.smoke)
        print(
            f"{verdicts[transport]}: {transport}: ops/s with addon / without = {ratio:.3f} "
            f"(median of {rounds} per-round ratios; target >= {TARGET_RATIO})"
        )

    rows = []
    for transport in TRANSPORTS:
        s = results[transport]
        cpu_p, cpu_a = med(s["plain"].cpu_ms_per_op), med(s["addon"].cpu_ms_per_op)
        best = max(s["addon"].ops_per_s) / max(s["plain"].ops_per_s)
        rows.append(
            [
                transport,
                f"{med(s['direct'].ops_per_s):.1f}",
                f"{med(s['plain'].ops_per_s):.1f}",
                f"{med(s['addon'].ops_per_s):.1f}",
                f"**{med(ratios[transport]):.3f}**",
                f"{best:.3f}",
                f"{cpu_p:.2f}",
                f"{cpu_a:.2f}",
                f"{cpu_a / cpu_p:.2f}",
                f"{sum(x.timeouts for x in s.values())} / {sum(x.failed for x in s.values())}",
                f">= {TARGET_RATIO}: {verdicts[transport]}",
            ]
        )
    print_results(
        f"mitmdump throughput with/without the addon ({agents} agents x {ops} ops, "
        f"{rounds} rounds, medians)",
        [
            "transport",
            "direct ops/s",
            "plain mitmdump ops/s",
            "mitmdump + addon ops/s",
            "ratio addon/plain (median of rounds)",
            "ratio best/best",
            "mitmdump CPU ms/op plain",
            "CPU ms/op with addon",
            "CPU ratio",
            "timeouts / failed",
            "target",
        ],
        rows,
        args.smoke,
    )
    print(f"capture: {capture_text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
