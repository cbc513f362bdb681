"""The simulator's user-data operations + notifications per second with 10 agents, as a ratio to a
bare aiohttp server answering {"statusCode": 0} to the same number of POSTs.

Target (issue): the simulator's ops/s with 10 agents (each op = 1 POST + its CometD
notification), over long polling and over WebSocket. The judged figure is the ratio
  sim ops/s / bare aiohttp requests/s
measured side by side in one run: the bare baseline is an aiohttp app on 127.0.0.1 with one
handler returning {"statusCode": 0}, hit by 10 concurrent aiohttp client sessions doing the same
number of POSTs (same JSON body size, Basic auth header). Everything (servers and clients) runs
in this one process and event loop, as `gwsproxy demo` does.

Rounds interleave long polling, bare, WebSocket, bare, ...; medians of per-round ratios. The
judged ratio uses wall time (perf_counter); the same ratio per CPU second of this process
(process_time: time spent descheduled on a shared machine is not counted) is printed too.
Run: .venv/bin/python bench/bench_sim.py [--smoke]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import time

import aiohttp
from _common import header, parse_args, print_results, verdict
from aiohttp import web

from gwsproxy import gws
from gwsproxy.sim.agents import LoadConfig, LoadReport, run_load
from gwsproxy.sim.server import SimConfig, start_simulator

AGENTS = 10
# The issue sets no number for the simulator, only "report its ops/s with 10 agents". This bar
# is PROVISIONAL (ours, not the issue's): the simulator must not be the bottleneck of the proxy
# benchmarks, so an op (request + notification: over long polling that is a second HTTP
# exchange, the re-issued connect) should run at no less than a quarter of the bare request rate.
TARGET_RATIO = 0.25
BODY = {"operationName": "UpdateUserData", "userData": {"Subject": "billing-42", "Score": 7}}


async def bare_server() -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"statusCode": 0})

    app = web.Application()
    app.router.add_post("/api/v2/me/{tail:.+}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def bare_load(url: str, agents: int, ops: int) -> tuple[float, float]:
    """Requests per second of wall time and of CPU time: `agents` sessions, each sending `ops`
    POSTs one after another."""
    auth = {"Authorization": gws.basic_authorization("agent1", "password")}
    sessions = [aiohttp.ClientSession(headers=auth) for _ in range(agents)]
    target = f"{url}/api/v2/me/chats/0000BENCH0000000"

    async def one(session: aiohttp.ClientSession) -> None:
        for _ in range(ops):
            async with session.post(target, json=BODY) as response:
                doc = json.loads(await response.read())
                assert doc == {"statusCode": 0}

    try:
        for s in sessions:  # connect first, as run_load's agents log in before the clock starts
            async with s.post(target, json=BODY) as response:
                await response.read()
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(s) for s in sessions))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    return agents * ops / elapsed, agents * ops / cpu


async def sim_load(url: str, transport: str, agents: int, ops: int) -> tuple[LoadReport, float]:
    """run_load's report, and ops per CPU second of this process (simulator and agents both)
    between the first and the last finished op (progress callback), so set-up is left out."""
    marks: list[tuple[int, float]] = []
    total = agents * ops

    def progress(done: int) -> None:
        if done == 1 or done == total:
            marks.append((done, time.process_time()))

    config = LoadConfig(url, agents=agents, ops=ops, transport=transport)
    report = await run_load(config, progress=progress)
    lost = report.sent - report.notified - report.errors
    if lost or report.rejected or report.failed:
        raise SystemExit(f"{transport}: not every op was notified: {report.as_dict()}")
    (first, c_first), (last, c_last) = marks[0], marks[-1]
    cpu_rate = (last - first) / (c_last - c_first) if c_last > c_first else float("nan")
    return report, cpu_rate


async def run(smoke: bool, rounds: int, ops: int) -> None:
    sim = await start_simulator(SimConfig(port=0, agents=AGENTS, delay=0.0, jitter=0.0))
    bare_runner, bare_url = await bare_server()
    series: dict[str, list[float]] = {"long-polling": [], "websocket": [], "bare": []}
    ratios: dict[str, list[float]] = {"long-polling": [], "websocket": []}
    cpu_series: dict[str, list[float]] = {"long-polling": [], "websocket": [], "bare": []}
    cpu_ratios: dict[str, list[float]] = {"long-polling": [], "websocket": []}
    latency: dict[str, list[float]] = {"long-polling": [], "websocket": []}
    try:
        # warm-up: connections, imports, the simulator's first notifications
        await sim_load(sim.url, "long-polling", AGENTS, 2)
        await sim_load(sim.url, "websocket", AGENTS, 2)
        await bare_load(bare_url, AGENTS, 2)
        for r in range(rounds):
            transports = (
                ("long-polling", "websocket") if r % 2 == 0 else ("websocket", "long-polling")
            )
            for transport in transports:
                # bare and sim back to back, alternating which goes first
                order = ("sim", "bare") if r % 2 == 0 else ("bare", "sim")
                got: dict[str, float] = {}
                cpu: dict[str, float] = {}
                for which in order:
                    if which == "sim":
                        ops_before = sim.simulator.ops
                        report, cpu["sim"] = await sim_load(sim.url, transport, AGENTS, ops)
                        assert sim.simulator.ops - ops_before == report.sent
                        got["sim"] = report.ops_per_second
                        if report.p50_latency is not None:
                            latency[transport].append(report.p50_latency)
                    else:
                        got["bare"], cpu["bare"] = await bare_load(bare_url, AGENTS, ops)
                series[transport].append(got["sim"])
                series["bare"].append(got["bare"])
                ratios[transport].append(got["sim"] / got["bare"])
                cpu_series[transport].append(cpu["sim"])
                cpu_series["bare"].append(cpu["bare"])
                cpu_ratios[transport].append(cpu["sim"] / cpu["bare"])
                print(
                    f"round {r + 1} {transport}: sim {got['sim']:,.0f} ops/s, "
                    f"bare {got['bare']:,.0f} req/s, ratio {got['sim'] / got['bare']:.3f}; "
                    f"per CPU second: sim {cpu['sim']:,.0f}, bare {cpu['bare']:,.0f}, "
                    f"ratio {cpu['sim'] / cpu['bare']:.3f}"
                )
    finally:
        await sim.stop()
        await bare_runner.cleanup()

    rows = []
    for transport in ("long-polling", "websocket"):
        ratio = statistics.median(ratios[transport])
        p50 = statistics.median(latency[transport]) if latency[transport] else float("nan")
        rows.append(
            [
                f"simulator, {transport}",
                f"{statistics.median(series[transport]):,.0f} ops/s",
                f"{max(series[transport]):,.0f} ops/s",
                f"{statistics.median(cpu_series[transport]):,.0f} ops/s",
                f"{p50 * 1000:.2f} ms",
                f"{ratio:.3f}",
                f"{statistics.median(cpu_ratios[transport]):.3f}",
                f">= {TARGET_RATIO} (provisional)",
                verdict(ratio, TARGET_RATIO, smoke=smoke),
            ]
        )
    rows.append(
        [
            "bare aiohttp POST -> {statusCode: 0}",
            f"{statistics.median(series['bare']):,.0f} req/s",
            f"{max(series['bare']):,.0f} req/s",
            f"{statistics.median(cpu_series['bare']):,.0f} req/s",
            "-",
            "1",
            "1",
            "-",
            "-",
        ]
    )
    print_results(
        f"Simulator throughput, {AGENTS} agents x {ops} ops, {rounds} interleaved rounds "
        "(ratio = sim ops/s / bare req/s, median of per-round ratios)",
        [
            "what",
            "median (wall)",
            "best (wall)",
            "per CPU second",
            "p50 op latency",
            "ratio (wall)",
            "ratio (CPU)",
            "target",
            "result",
        ],
        rows,
        smoke,
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    smoke = args.smoke
    rounds = args.rounds or (1 if smoke else 5)
    ops = 5 if smoke else 200
    header("bench_sim: simulator ops/s (10 agents) vs a bare aiohttp server", smoke)
    logging.getLogger("aiohttp").setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(smoke, rounds, ops))


if __name__ == "__main__":
    main()
