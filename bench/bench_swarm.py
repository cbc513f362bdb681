"""`gwsproxy swarm` (Locust) against the simulator: ops/s and notification latency, side by side
with `gwsproxy load` (the asyncio simulated agents) on the same machine and the same run size.

A capture of 10 agents x N operations is recorded once (`gwsproxy record` in front of a
simulator, driven by `run_load`). Then, each round, interleaved and each against a fresh
`gwsproxy sim` (seed 1, 100 agents, delay 0, jitter 0; a separate process, as the clients are):
  (L) `run_load`, 10 agents x N random ops, in a child process: its ops/s and latencies;
  (S1) `gwsproxy swarm` headless, a master and ONE worker, -u 10, --speed 0: the capture's
       10 x N ops; Locust's Requests/s and percentiles (--no-answer-times, so that its
       Aggregated row is the POST-to-notification time alone, as `load`'s latencies are);
  (S2) the same with TWO workers;
  (Sn) one worker, -u 100: each of the 10 scripts replayed by 10 users (90 of them new
       identities on their own interactions), 100 long polls held at once: ops must keep
       flowing (the gevent client does not block the worker).
Medians over the rounds; the ratios are swarm / load. Both clients send one op at a time per
agent and wait for its notification before the next.
Run: .venv/bin/python bench/bench_swarm.py [--smoke]
"""

from __future__ import annotations

import asyncio
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import header, parse_args, print_results, temp_dir, verdict

from gwsproxy.processes import free_port, gwsproxy_command, recording_proxy, start_sim, stop
from gwsproxy.sim.agents import LoadConfig, run_load

AGENTS = 10
SIM = ("--seed", "1", "--agents", "100", "--delay", "0", "--jitter", "0")
TARGET_RATIO = 0.5  # provisional: one Locust worker at least half the ops/s of `gwsproxy load`
RUN_TIMEOUT = 300.0

LOAD_CHILD = """
import asyncio, json, sys
from gwsproxy.sim.agents import LoadConfig, run_load
report = asyncio.run(run_load(LoadConfig(target=sys.argv[1], agents=int(sys.argv[2]),
                                         ops=int(sys.argv[3]))))
print(json.dumps(report.as_dict()))
"""


def record(tmp: Path, ops: int) -> Path:
    capture = tmp / "capture.gwscap"
    sim = start_sim(*SIM, output=tmp / "rec-sim.out")
    try:
        with recording_proxy(sim.url, str(capture)) as url:
            report = asyncio.run(run_load(LoadConfig(target=url, agents=AGENTS, ops=ops)))
            assert report.notified == AGENTS * ops, report.as_dict()
    finally:
        stop(sim.process)
    return capture


def load_round(tmp: Path, ops: int) -> dict[str, float]:
    sim = start_sim(*SIM, output=tmp / "sim.out")
    try:
        out = subprocess.run(
            [sys.executable, "-c", LOAD_CHILD, sim.url, str(AGENTS), str(ops)],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=True,
        )
    finally:
        stop(sim.process)
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["timeouts"] == 0 and report["failed"] == 0, report
    return {
        "ops": report["sent"],
        "rate": report["ops_per_second"],
        "p50": report["latency_p50"] * 1000,
        "p95": report["latency_p95"] * 1000,
        "max": report["latency_max"] * 1000,
    }


def swarm_round(tmp: Path, capture: Path, workers: int, users: int, ops: int) -> dict[str, float]:
    sim = start_sim(*SIM, output=tmp / "sim.out")
    port = free_port()
    prefix = tmp / f"swarm-{workers}-{users}"
    logs = [open(tmp / f"swarm-{i}.log", "wb") for i in range(workers + 1)]  # noqa: SIM115
    try:
        children = [
            subprocess.Popen(
                gwsproxy_command(
                    "swarm", "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)
                ),
                stdout=logs[i + 1],
                stderr=subprocess.STDOUT,
            )
            for i in range(workers)
        ]
        master = subprocess.Popen(
            gwsproxy_command(
                "swarm",
                str(capture),
                "--target",
                sim.url,
                "--headless",
                "-u",
                str(users),
                "-r",
                str(users),
                "--speed",
                "0",
                "--no-answer-times",
                "--csv",
                str(prefix),
                "--master",
                "--expect-workers",
                str(workers),
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(port),
            ),
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        )
        code = master.wait(RUN_TIMEOUT)
        for child in children:
            child.wait(RUN_TIMEOUT)
    finally:
        for log in logs:
            log.close()
        stop(sim.process)
    with open(f"{prefix}_stats.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    assert code == 0 and row["Failure Count"] == "0", (code, row)
    assert int(row["Request Count"]) == users * ops, row  # every op, each script once per user
    return {
        "ops": int(row["Request Count"]),
        "rate": float(row["Requests/s"]),
        "p50": float(row["50%"]),
        "p95": float(row["95%"]),
        "max": float(row["100%"]),
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    ops = 5 if args.smoke else 200
    many = 20 if args.smoke else 100
    rounds = args.rounds or (1 if args.smoke else 3)
    header("swarm (Locust) vs gwsproxy load", args.smoke)
    variants = {
        "load": [],
        "swarm, 1 worker": [],
        "swarm, 2 workers": [],
        f"swarm, 1 worker, {many} users": [],
    }
    with temp_dir("bench-swarm-") as tmp:
        capture = record(tmp, ops)
        for r in range(rounds):
            runs = {
                "load": lambda: load_round(tmp, ops),
                "swarm, 1 worker": lambda: swarm_round(tmp, capture, 1, AGENTS, ops),
                "swarm, 2 workers": lambda: swarm_round(tmp, capture, 2, AGENTS, ops),
                f"swarm, 1 worker, {many} users": lambda: swarm_round(tmp, capture, 1, many, ops),
            }
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                started = time.perf_counter()
                variants[name].append(runs[name]())
                print(f"round {r + 1}: {name}: {time.perf_counter() - started:.1f} s", flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(run[key] for run in variants[name])

    base = med("load", "rate")
    rows = []
    for name in variants:
        rate = med(name, "rate")
        ratio = rate / base
        judged = name == "swarm, 1 worker"
        rows.append(
            [
                name,
                f"{int(variants[name][0]['ops'])}",
                f"{rate:,.0f}",
                f"{ratio:.2f}",
                f"{med(name, 'p50'):.0f} / {med(name, 'p95'):.0f} / {med(name, 'max'):.0f}",
                f">= {TARGET_RATIO}" if judged else "",
                verdict(ratio, TARGET_RATIO, smoke=args.smoke) if judged else "",
            ]
        )
    headers = [
        "what",
        "ops",
        "ops/s",
        "ratio to load",
        "latency p50/p95/max ms",
        "target",
        "result",
    ]
    print_results(
        f"swarm vs load, {AGENTS} agents x {ops} ops, medians of {rounds} rounds",
        headers,
        rows,
        args.smoke,
    )


if __name__ == "__main__":
    main()
