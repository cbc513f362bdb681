"""`gwsproxy serve` at full speed vs the simulator it stands in for, same client workload, one run.

Target: the mock delivers >= 1,000 pairs/s (a pair: the request answered and its notification
delivered to the client), for both CometD transports. Printed beside it, measured in the same
run: the simulator's own rate (`gwsproxy sim --delay 0 --jitter 0`) for the same workload, and
the ratio mock / simulator.

Setup (not timed): the simulator, `mitmdump -s addons/gws_recorder.py` in front of it and
`gwsproxy load` record a capture (N agents x M ops). Workload: N client agents, each our own
CometdClient plus an aiohttp session, replay that agent's recorded requests in order, each
waiting for its answer and then for a change notification on its interaction. The client runs
in its own process (so its CPU is not the server's), against a fresh server per run (the mock
uses each recorded pair once; the simulator's state must start where the recording started):
mock, sim, sim, mock, ... for several rounds per transport. Rates are medians over rounds; the
server's CPU time per pair (from /proc) is shown too.

    python bench/bench_serve.py            # 10 agents x 200 ops, 3 rounds per transport
    python bench/bench_serve.py --smoke    # a few seconds: does it work at all

Exits 0 whatever the figures (PASS/MISS is printed), also when the bench itself breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from _common import ROOT, header, markdown_table, print_results, verdict

from gwsproxy.processes import (
    free_port,
    gwsproxy_command,
    mitmdump_path,
    spawn,
    start_announcing,
    start_sim,
    stop,
    wait_for_port,
)

ADDON = ROOT / "addons" / "gws_recorder.py"
TARGET = 1000.0  # pairs per second from the mock
TRANSPORTS = ("websocket", "long-polling")
SEED = 7
START_TIMEOUT = 30.0
RUN_TIMEOUT = 300.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
_MOCK_BANNER = re.compile(r"mock GWS on (?P<url>http://127\.0\.0\.1:\d+) from")


# ---- processes ----------------------------------------------------------------------------------


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def sim_options(agents: int) -> tuple[str, ...]:
    return ("--delay", "0", "--jitter", "0", "--agents", str(agents), "--seed", str(SEED))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def record(tmp: Path, agents: int, ops: int) -> tuple[Path, int]:
    """A capture of `agents` x `ops` pairs through the real recording proxy."""
    capture = tmp / "bench.gwscap"
    sim = start_sim(*sim_options(agents), output=tmp / "record-sim.log", timeout=START_TIMEOUT)
    port = free_port()
    log = tmp / "record-mitmdump.log"
    proxy = spawn(
        [
            mitmdump_path(), "-q", "--listen-host", "127.0.0.1", "-p", str(port),
            "--mode", f"reverse:{sim.url}", "-s", str(ADDON), "--set", f"gws_capture={capture}",
        ],
        log,
    )  # fmt: skip
    try:
        wait_for_port(port, proxy, "mitmdump", log, START_TIMEOUT)
        load = subprocess.run(
            python(
                "-m", "gwsproxy.cli", "load", "--target", f"http://127.0.0.1:{port}",
                "--agents", str(agents), "--ops", str(ops), "--seed", str(SEED),
            ),
            capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT, check=False,
        )  # fmt: skip
        if load.returncode != 0:
            raise RuntimeError(f"recording load failed: {load.stderr.strip()[-1500:]}")
    finally:
        stop(proxy)
        stop(sim.process)
    from gwsproxy.capture.format import Kind
    from gwsproxy.capture.reader import CaptureReader

    with CaptureReader(capture) as reader:
        pairs = sum(1 for e in reader.index() if e.kind == Kind.PAIR)
    return capture, pairs


# ---- the client workload (its own process: `bench_serve.py --client URL CAPTURE TRANSPORT`) -----


def client_plan(capture: str) -> dict[str, list[tuple[str, bytes, str, str]]]:
    """Per agent, its recorded requests in order: (path, body, content type, interaction)."""
    from gwsproxy import gws
    from gwsproxy.capture.format import Kind
    from gwsproxy.capture.reader import CaptureReader

    rows = []
    with CaptureReader(capture) as reader:
        for entry, body in reader.records():
            if (
                entry.kind != Kind.PAIR
                or not body
                or not str(entry.summary["scope"]).startswith("user:")
            ):
                continue
            request = body["request"]
            target = gws.parse_target(request["path"])
            content_type = next(
                (v for k, v in request["headers"] if k.lower() == "content-type"),
                "application/json",
            )
            rows.append(
                (
                    entry.summary["t"],
                    entry.summary["scope"].removeprefix("user:"),
                    (request["path"], request["body"], content_type, target.interaction_id),
                )
            )
    plan: dict[str, list[tuple[str, bytes, str, str]]] = {}
    for _, agent, op in sorted(rows, key=lambda r: r[0]):
        plan.setdefault(agent, []).append(op)
    return plan


async def client_run(url: str, capture: str, transport: str, timeout: float = 10.0) -> dict:
    import aiohttp

    from gwsproxy import gws
    from gwsproxy.bayeux.client import CometdClient

    plan = client_plan(capture)
    totals = Counter()

    class Agent:
        def __init__(self, name: str, ops: list[tuple[str, bytes, str, str]]) -> None:
            self.name, self.ops = name, ops
            self.http = aiohttp.ClientSession(
                headers={"Authorization": gws.basic_authorization(name, "password")},
                cookie_jar=aiohttp.CookieJar(unsafe=True),
            )
            self.seen: Counter[str] = Counter()
            self.arrived = asyncio.Event()
            self.cometd: CometdClient | None = None
            self.listener: asyncio.Task | None = None

        async def open(self) -> None:
            async with self.http.get(url + "/api/v2/me") as r:
                name = r.headers.get("X-CSRF-HEADER")
                csrf = {name: r.headers[name]} if name and name in r.headers else {}
            self.cometd = CometdClient(
                self.http, url + "/api/v2/notifications", transport=transport, headers=csrf
            )
            await self.cometd.handshake()
            await self.cometd.start()
            await self.cometd.subscribe("/v2/me/**")
            self.listener = asyncio.create_task(self.listen())

        async def listen(self) -> None:
            assert self.cometd is not None
            async for message in self.cometd.messages():
                note = gws.parse_notification(message)
                if note is not None and note.interaction_id is not None and note.reports_change:
                    self.seen[note.interaction_id] += 1
                    self.arrived.set()

        async def run(self) -> None:
            waited: Counter[str] = Counter()
            for path, body, content_type, interaction in self.ops:
                async with self.http.post(
                    url + path, data=body, headers={"Content-Type": content_type}
                ) as r:
                    status, raw = r.status, await r.read()
                totals["answered"] += 1
                answer = gws.parse_answer(raw)
                if status >= 400 or getattr(answer, "status_code", None) not in (0, None):
                    totals["rejected"] += 1
                    continue
                waited[interaction] += 1
                try:
                    async with asyncio.timeout(timeout):
                        while self.seen[interaction] < waited[interaction]:
                            self.arrived.clear()
                            await self.arrived.wait()
                except TimeoutError:
                    totals["timeouts"] += 1
                    continue
                totals["pairs"] += 1

        async def close(self) -> None:
            if self.cometd is not None:
                await self.cometd.close()
            if self.listener is not None:
                self.listener.cancel()
            await self.http.close()

    agents = [Agent(name, ops) for name, ops in plan.items()]
    try:
        await asyncio.gather(*(a.open() for a in agents))
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(a.run() for a in agents))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await asyncio.gather(*(a.close() for a in agents), return_exceptions=True)
    return {
        "agents": len(agents),
        "sent": sum(len(a.ops) for a in agents),
        **{k: totals[k] for k in ("answered", "rejected", "timeouts", "pairs")},
        "elapsed": elapsed,
        "pairs_per_s": totals["pairs"] / elapsed if elapsed > 0 else 0.0,
        "client_cpu_share": cpu / elapsed if elapsed > 0 else 0.0,
    }


# ---- measuring ----------------------------------------------------------------------------------


def measure(kind: str, capture: Path, agents: int, transport: str, tmp: Path) -> dict:
    """Start a fresh server, run the client workload against it, stop it."""
    log = tmp / f"{kind}.log"
    if kind == "mock":
        command = gwsproxy_command("serve", str(capture), "-p", "0", "--speed", "max")
        server, found = start_announcing(
            command, _MOCK_BANNER, "the mock", output=log, timeout=START_TIMEOUT
        )
        url = found["url"]
    else:
        sim = start_sim(*sim_options(agents), output=log, timeout=START_TIMEOUT)
        server, url = sim.process, sim.url
    try:
        cpu0 = cpu_seconds(server.pid)
        done = subprocess.run(
            python(__file__, "--client", url, str(capture), transport),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            cwd=ROOT,
            check=False,
        )
        cpu = cpu_seconds(server.pid) - cpu0
    finally:
        stop(server)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"client against {kind} ({transport}) failed, exit {done.returncode}: "
            f"{done.stderr.strip()[-1500:]}"
        )
    result = json.loads(lines[-1])
    result["cpu_ms_per_pair"] = 1000 * cpu / result["pairs"] if result["pairs"] else float("nan")
    return result


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(args: argparse.Namespace) -> None:
    agents = args.agents or (2 if args.smoke else 10)
    ops = args.ops or (10 if args.smoke else 200)
    rounds = max(1, args.rounds or (1 if args.smoke else 3))
    header("gwsproxy serve vs the simulator", args.smoke)
    print(f"workload: {agents} agents x {ops} recorded ops, {rounds} rounds per transport")
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    rows = []
    with tempfile.TemporaryDirectory(prefix="gwsproxy-bench-serve-") as d:
        tmp = Path(d)
        capture, pairs = record(tmp, agents, ops)
        print(f"recorded {pairs} pairs through mitmdump + addon", flush=True)
        for transport in TRANSPORTS:
            got: dict[str, list[dict]] = {"mock": [], "sim": []}
            ratios = []
            if not args.smoke:  # warm up the page cache and imports; not counted
                measure("mock", capture, agents, transport, tmp)
            for r in range(rounds):
                order = ("mock", "sim") if r % 2 == 0 else ("sim", "mock")
                now = {k: measure(k, capture, agents, transport, tmp) for k in order}
                for k, v in now.items():
                    got[k].append(v)
                ratio = now["mock"]["pairs_per_s"] / max(now["sim"]["pairs_per_s"], 1e-9)
                ratios.append(ratio)
                print(
                    f"  {transport:12} round {r + 1}/{rounds}: mock "
                    f"{now['mock']['pairs_per_s']:7.0f} pairs/s, sim "
                    f"{now['sim']['pairs_per_s']:7.0f} pairs/s, mock/sim {ratio:.2f}  "
                    f"(client CPU share {now['mock']['client_cpu_share']:.2f} / "
                    f"{now['sim']['client_cpu_share']:.2f})",
                    flush=True,
                )
            mock_rate = med([x["pairs_per_s"] for x in got["mock"]])
            sim_rate = med([x["pairs_per_s"] for x in got["sim"]])
            lost = {
                k: sum(x["timeouts"] + x["rejected"] + x["sent"] - x["answered"] for x in v)
                for k, v in got.items()
            }
            mock_cpu = med([x["cpu_ms_per_pair"] for x in got["mock"]])
            sim_cpu = med([x["cpu_ms_per_pair"] for x in got["sim"]])
            rows.append(
                [
                    transport,
                    f"{pairs}",
                    f"{mock_rate:,.0f}",
                    f"{sim_rate:,.0f}",
                    f"{med(ratios):.2f}",
                    f"{max(x['pairs_per_s'] for x in got['mock']):,.0f}",
                    f"{max(x['pairs_per_s'] for x in got['sim']):,.0f}",
                    f"{mock_cpu:.3f}",
                    f"{sim_cpu:.3f}",
                    f"{1000 / mock_cpu:,.0f}" if mock_cpu > 0 else "-",
                    f"{lost['mock']} / {lost['sim']}",
                    f">= {TARGET:,.0f}: {verdict(mock_rate, TARGET, smoke=args.smoke)}",
                ]
            )
    print(f"load average at end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print()
    print(
        markdown_table(
            ["transport", "pairs", "mock pairs/s", "sim pairs/s", "ratio mock/sim"],
            [row[:5] for row in rows],
        )
    )
    print_results(
        "bench_serve: mock GWS from a capture vs the simulator, same client workload",
        [
            "transport",
            "pairs per run",
            "mock pairs/s",
            "sim pairs/s",
            "ratio mock/sim (median of rounds)",
            "best mock pairs/s",
            "best sim pairs/s",
            "mock CPU ms/pair",
            "sim CPU ms/pair",
            "mock pairs per server CPU-s",
            "lost pairs mock / sim",
            "target (mock)",
        ],
        rows,
        args.smoke,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run: does it work at all")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per transport")
    parser.add_argument("--agents", type=int, default=None, help="client agents")
    parser.add_argument("--ops", type=int, default=None, help="recorded ops per agent")
    parser.add_argument(
        "--client", nargs=3, metavar=("URL", "CAPTURE", "TRANSPORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.client:
        url, capture, transport = args.client
        print(json.dumps(asyncio.run(client_run(url, capture, transport))), flush=True)
        return 0
    try:
        run(args)
    except Exception as exc:  # noqa: BLE001 - the bench reports, it never fails the caller
        traceback.print_exc()
        print(f"bench_serve did not complete: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
