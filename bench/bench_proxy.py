"""Throughput through mitmdump with the gwsproxy addon vs plain mitmdump, same workload, one run.

Target: ops/s with the addon / ops/s without it >= 0.9, for both CometD transports.

One simulator (delay 0, jitter 0). Each round starts a fresh pair of mitmdump processes in reverse
mode in front of it: one plain, one with `-s addons/gws_recorder.py` and `gws_trim_websocket=true`
(each round its own capture). The same agent workload (`gwsproxy.sim.agents.run_load`, in a separate
process so that its CPU is not counted in ours) runs against each proxy in turn, order alternating
by round, after a short warm-up; the ratio is the median of the per-round ratios. Fresh processes
per round matter: two identical mitmdumps started side by side differ by up to 10 % for their
whole life (memory layout, hash seeds, which core they land on), so a bias of the process
would otherwise pass for the addon's cost; `--aa` measures exactly that (plain against plain).

Direct-to-simulator ops/s is shown for context, and the CPU time spent per op (from /proc): plain
mitmdump, mitmdump with the addon, and mitmdump plus the addon's recording worker process.
Afterwards the captures must hold one pair per op sent through the addon.

    python bench/bench_proxy.py            # full: 10 agents x 150 ops, 12 rounds (about 7 min)
    python bench/bench_proxy.py --smoke    # a few seconds; CI checks that it runs
    python bench/bench_proxy.py --aa       # plain against plain: the bench's own noise
    python bench/bench_proxy.py --tls      # GWS over HTTPS: mitmproxy speaks TLS upstream
    python bench/bench_proxy.py --addon /path/to/candidate.py   # A/B a candidate addon script

The workload is latency-bound (each agent has one op in flight) and the agents, the simulator
and mitmdump share the machine, so extra CPU per op in mitmdump shows up in the throughput ratio
amplified by queueing; the CPU ms/op columns say how much CPU that is.

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

from _common import ROOT, header, print_results, tail, verdict

from gwsproxy import tls
from gwsproxy.processes import SimProcess, free_port, mitmdump_path, start_sim, stop

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
from gwsproxy import tls
from gwsproxy.gws.session import Access
from gwsproxy.sim.agents import LoadConfig, run_load
trust = Access(tls=tls.client_context(sys.argv[1:]))  # the simulator's CA, with --tls
for line in sys.stdin:
    job = json.loads(line)
    config = LoadConfig(
        job["target"], job["agents"], job["ops"], job["transport"], timeout=30.0, access=trust
    )
    try:
        out = asyncio.run(run_load(config)).as_dict()
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)
"""


# ---- processes -----------------------------------------------------------------------------------


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


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_times(pid: int) -> tuple[float, float]:
    """(CPU seconds of the process, of the process and its children: the recording worker)."""
    own = cpu_seconds(pid)
    total = own
    for child in children(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(child)
    return own, total


class LoadWorker:
    """The agents' process: `run(...)` sends one job and waits for its report."""

    def __init__(self, tmp: Path, cacert: Path | None = None) -> None:
        self.log = tmp / "agents.err"
        with self.log.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LOAD_WORKER, *([str(cacert)] if cacert else [])],
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
    cpu_ms_per_op: list[float] = field(default_factory=list)  # mitmdump's own process
    cpu_all_ms_per_op: list[float] = field(default_factory=list)  # with its worker process
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
    cpu0 = cpu_times(target.pid) if target.pid else (0.0, 0.0)
    report = worker.run(target.url, agents, ops, transport)
    sent = report["sent"]
    series.sent += sent
    series.timeouts += report["timeouts"]
    series.failed += report["failed"]
    series.ops_per_s.append(report["ops_per_second"])
    if target.pid and sent:
        cpu1 = cpu_times(target.pid)
        series.cpu_ms_per_op.append(1000 * (cpu1[0] - cpu0[0]) / sent)
        series.cpu_all_ms_per_op.append(1000 * (cpu1[1] - cpu0[1]) / sent)
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


def run_round(
    worker: LoadWorker,
    tmp: Path,
    sim_url: str,
    trust: list[str],
    addon_args: list[str],
    results: dict[str, dict[str, Series]],
    r: int,
    args: argparse.Namespace,
) -> tuple[float, float, int]:
    """One round on a fresh pair of proxies: per transport, plain and addon (order alternating by
    round) and direct. Returns the two ratios and the ops of the addon's warm-up."""
    processes = []
    try:
        plain_p, plain_url, plain_out = start_mitmdump(tmp, f"plain{r}", sim_url, trust)
        processes.append(plain_p)
        addon_args = [*trust, *addon_args]
        addon_p, addon_url, addon_out = start_mitmdump(tmp, f"addon{r}", sim_url, addon_args)
        processes.append(addon_p)
        wait_ready(plain_p, plain_url, plain_out)
        wait_ready(addon_p, addon_url, addon_out)
        plain = Target("plain", plain_url, plain_p.pid)
        addon = Target("addon", addon_url, addon_p.pid)
        direct = Target("direct", sim_url, None)
        warm = Series()
        if not args.smoke:  # connections, caches, first-use costs; not counted
            for transport in TRANSPORTS:
                for t in (plain, addon):
                    measure(worker, t, warm if t is addon else Series(), args.agents, 20, transport)
        ratios = []
        for transport in TRANSPORTS:
            series = results[transport]
            order = (plain, addon) if r % 2 == 0 else (addon, plain)
            got = {
                t.name: measure(worker, t, series[t.name], args.agents, args.ops, transport)
                for t in order
            }
            measure(worker, direct, series["direct"], args.agents, args.ops, transport)
            ratio = got["addon"] / got["plain"] if got["plain"] else float("nan")
            ratios.append(ratio)
            print(
                f"  {transport:12} round {r + 1}/{args.rounds}: plain {got['plain']:7.1f} "
                f"ops/s, addon {got['addon']:7.1f} ops/s, ratio {ratio:.3f}, "
                f"direct {series['direct'].ops_per_s[-1]:7.1f} ops/s",
                flush=True,
            )
        stop(addon_p)  # SIGTERM: the addon writes its END record
        return ratios[0], ratios[1], warm.sent
    finally:
        for process in reversed(processes):
            stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run: does it work at all")
    parser.add_argument("--agents", type=int, default=None)
    parser.add_argument("--ops", type=int, default=None, help="ops per agent per run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--addon", type=Path, default=ADDON, help="addon script to measure (default: ours)"
    )
    parser.add_argument(
        "--aa", action="store_true", help="plain mitmdump on both sides: the bench's own noise"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="GWS over HTTPS (sim --tls; both mitmdumps trust its CA, as record --upstream-ca)",
    )
    args = parser.parse_args()
    args.agents = args.agents or (3 if args.smoke else 10)
    args.ops = args.ops or (20 if args.smoke else 150)
    args.rounds = max(1, min(args.rounds or (1 if args.smoke else 12), 50))
    rounds = args.rounds

    header("bench_proxy: throughput through mitmdump with the addon vs without", args.smoke)
    side = "plain mitmdump (A/A)" if args.aa else f"addon {args.addon}"
    side += ", GWS over HTTPS (TLS upstream)" if args.tls else ""
    print(
        f"{args.agents} agents x {args.ops} ops per run, {rounds} rounds on fresh proxies, {side}"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f} (shared machine)")
    worker: LoadWorker | None = None
    sim: SimProcess | None = None
    results = {t: {n: Series() for n in ("direct", "plain", "addon")} for t in TRANSPORTS}
    ratios: dict[str, list[float]] = {t: [] for t in TRANSPORTS}
    checks: list[tuple[bool, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench_proxy-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            options = ["--delay", "0", "--jitter", "0", "--agents", str(args.agents)]
            options += ["--tls"] if args.tls else []
            sim = start_sim(*options, output=tmp / "sim.out", timeout=START_TIMEOUT)
            worker = LoadWorker(tmp, sim.ca)
            trust = []
            if sim.ca is not None:  # what `gwsproxy record --upstream-ca` does, for both sides
                bundle = tls.bundle_with_defaults([str(sim.ca)], tmp / "upstream-ca.pem")
                trust = ["--set", f"ssl_verify_upstream_trusted_ca={bundle}"]
            for r in range(rounds):
                capture = tmp / f"cap{r}.gwscap"
                addon_args = [] if args.aa else ["-s", str(args.addon)]
                if not args.aa:
                    addon_args += ["--set", f"gws_capture={capture}"]
                    addon_args += ["--set", "gws_trim_websocket=true"]
                before = sum(results[t]["addon"].sent for t in TRANSPORTS)
                lp, ws, warm_sent = run_round(
                    worker, tmp, sim.url, trust, addon_args, results, r, args
                )
                ratios["long-polling"].append(lp)
                ratios["websocket"].append(ws)
                if not args.aa:
                    expected = (
                        warm_sent + sum(results[t]["addon"].sent for t in TRANSPORTS) - before
                    )
                    try:
                        checks.append(check_capture(capture, expected))
                    except Exception as e:  # noqa: BLE001 - e.g. an A/B candidate that writes none
                        checks.append((False, f"no readable capture: {e}"))
        finally:
            if worker is not None:
                worker.stop()
            if sim is not None:
                stop(sim.process)

    print()
    if checks:
        ok = all(c[0] for c in checks)
        capture_text = "; ".join(sorted({c[1] for c in checks if not c[0]})) or (
            f"{len(checks)} captures, each with one matched pair per op sent through it, "
            "clean end, no damage"
        )
        print(f"capture sanity: {'OK' if ok else 'MISMATCH'}: {capture_text}")
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
        cpu_w = med(s["addon"].cpu_all_ms_per_op)
        rows.append(
            [
                transport,
                f"{med(s['direct'].ops_per_s):.1f}",
                f"{med(s['plain'].ops_per_s):.1f}",
                f"{med(s['addon'].ops_per_s):.1f}",
                f"**{med(ratios[transport]):.3f}**",
                f"{min(ratios[transport]):.3f} to {max(ratios[transport]):.3f}",
                f"{cpu_p:.2f}",
                f"{cpu_a:.2f} ({cpu_a / cpu_p:.2f}x)",
                f"{cpu_w:.2f} ({cpu_w / cpu_p:.2f}x)",
                f"{sum(x.timeouts for x in s.values())} / {sum(x.failed for x in s.values())}",
                f">= {TARGET_RATIO}: {verdicts[transport]}",
            ]
        )
    print_results(
        f"mitmdump throughput with/without the addon ({args.agents} agents x {args.ops} ops, "
        f"{rounds} rounds on fresh proxies{', A/A' if args.aa else ''}"
        f"{', GWS over HTTPS' if args.tls else ''}, medians)",
        [
            "transport",
            "direct ops/s",
            "plain mitmdump ops/s",
            "mitmdump + addon ops/s",
            "ratio addon/plain (median of rounds)",
            "ratio range",
            "CPU ms/op plain mitmdump",
            "CPU ms/op mitmdump with addon",
            "CPU ms/op with addon + its worker",
            "timeouts / failed",
            "target",
        ],
        rows,
        args.smoke,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
