"""`gwsproxy replay` against the simulator: pairs/s, as a ratio to the simulator's own raw rate.

Target (issue): replay against the simulator >= 300 pairs/s, as a ratio to the simulator's raw
rate measured in the same run. A capture of 10 agents x N operations is recorded once through a
real mitmdump with the addon (no faults); then, interleaved: (A) `replay` of that capture against
a simulator seeded from it (every pair must pass), and (B) the same 10 agents x N operations
sent straight to a fresh simulator by `run_load` (its raw ops/s). Medians of per-round ratios.
Run: .venv/bin/python bench/bench_replay.py [--smoke]
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from _common import header, parse_args, print_results, verdict

from gwsproxy.replay.regress import ReplayConfig, replay
from gwsproxy.sim.agents import LoadConfig, run_load
from gwsproxy.sim.server import SimConfig, start_simulator
from gwsproxy.testing.examples import sim_capture

AGENTS = 10
TARGET = 300.0  # pairs/s


async def replay_round(capture: Path) -> tuple[float, int, int]:
    sim = await start_simulator(SimConfig(port=0, delay=0, jitter=0, seed_from=str(capture)))
    try:
        started = time.perf_counter()
        result = await replay(ReplayConfig(capture=str(capture), target=sim.url))
        elapsed = time.perf_counter() - started
    finally:
        await sim.stop()
    return len(result.comparisons) / elapsed, result.passed, len(result.comparisons)


async def raw_round(ops: int) -> float:
    sim = await start_simulator(SimConfig(port=0, delay=0, jitter=0))
    try:
        started = time.perf_counter()
        report = await run_load(LoadConfig(target=sim.url, agents=AGENTS, ops=ops))
        elapsed = time.perf_counter() - started
    finally:
        await sim.stop()
    return report.sent / elapsed


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    ops = 5 if args.smoke else 60
    rounds = args.rounds or (1 if args.smoke else 5)
    header("replay vs the simulator's raw rate", args.smoke)
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        capture = Path(tmp) / "capture.gwscap"
        await sim_capture(capture, agents=AGENTS, ops=ops, faults=0.0)
        replays, raws, ratios = [], [], []
        passed = total = 0
        for _ in range(rounds):
            rate, passed, total = await replay_round(capture)
            raw = await raw_round(ops)
            replays.append(rate)
            raws.append(raw)
            ratios.append(rate / raw)
    rate, raw, ratio = (statistics.median(x) for x in (replays, raws, ratios))
    rows = [
        [
            "replay against a seeded simulator",
            f"{rate:,.0f} pairs/s",
            f"{passed}/{total} passed",
            f"{ratio:.2f}",
            f">= {TARGET:.0f} pairs/s",
            verdict(rate, TARGET, smoke=args.smoke),
        ],
        ["simulator raw rate (run_load)", f"{raw:,.0f} ops/s", "", "1", "", ""],
    ]
    headers = ["what", "median rate", "check", "ratio to raw", "target", "result"]
    print_results(
        f"Replay, {AGENTS} agents x {ops} ops, {rounds} rounds", headers, rows, args.smoke
    )


if __name__ == "__main__":
    asyncio.run(main())
