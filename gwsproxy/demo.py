"""`gwsproxy demo`: the simulator, the recording proxy and simulated agents, in one command.

With a terminal the inspector follows the capture live; without one (CI, a pipe) the demo runs
for a bounded time and prints a summary. Each part is the real command, in its own process.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from rich.console import Console


class DemoError(Exception):
    """A part of the demo did not start; the message says which and why."""


@dataclass(frozen=True, slots=True)
class DemoConfig:
    output: str = "captures/demo-%Y%m%d-%H%M%S.gwscap"
    agents: int = 4
    ops: int = 25  # per agent; with a terminal the agents keep going until the inspector quits
    think: float = 0.0
    transport: str = "long-polling"
    seed: int = 0
    interactive: bool = True


def _gwsproxy(*args: str) -> list[str]:
    return [sys.executable, "-m", "gwsproxy.cli", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().strip().splitlines() if proc.stderr else []
            raise DemoError(f"{what} exited: {err[-1] if err else proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise DemoError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def _start_sim(seed: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        _gwsproxy("sim", "-p", "0", "--seed", str(seed), "--faults", "0.03", "--shared", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    found = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not found:
        proc.kill()
        raise DemoError(f"the simulator did not start: {line.strip() or 'no output'}")
    return proc, found[0]


@contextlib.contextmanager
def running_demo(config: DemoConfig, ops: int) -> Iterator[tuple[str, subprocess.Popen]]:
    """Simulator, recording proxy and agents running; yields the capture path and the agents."""
    procs: list[subprocess.Popen] = []
    path = time.strftime(config.output)
    try:
        sim, sim_url = _start_sim(config.seed)
        procs.append(sim)
        port = _free_port()
        record = subprocess.Popen(
            _gwsproxy("record", "--upstream", sim_url, "-p", str(port), "-o", path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(record)
        _wait_for_port(port, record, "the recording proxy")
        agents = subprocess.Popen(
            _gwsproxy(
                "load",
                "--target",
                f"http://127.0.0.1:{port}",
                "--agents",
                str(config.agents),
                "--ops",
                str(ops),
                "--think",
                str(config.think),
                "--transport",
                config.transport,
                "--seed",
                str(config.seed),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(agents)
        yield path, agents
    finally:
        for proc in reversed(procs):  # agents, then the proxy (writes its END record), then GWS
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def run_demo(config: DemoConfig, console: Console) -> int:
    os.makedirs(os.path.dirname(time.strftime(config.output)) or ".", exist_ok=True)
    if config.interactive:
        from gwsproxy.tui.app import run_tui

        with running_demo(config, ops=1_000_000) as (path, _agents):
            _wait_for_file(path)
            run_tui([path], follow=True)
        console.print(f"The capture is in [bold]{path}[/]: `gwsproxy tui {path}` opens it again.")
        return 0
    from gwsproxy.report import info

    with running_demo(config, ops=config.ops) as (path, agents):
        console.print(f"recording {config.agents} simulated agents x {config.ops} operations ...")
        try:
            out, err = agents.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            agents.kill()
            out, err = agents.communicate()
        if agents.returncode not in (0, 1):
            raise DemoError(f"the agents failed: {(err or out).strip().splitlines()[-1:]}")
    console.print(out.rstrip())
    console.print(info(path))
    console.print(f"The capture is in [bold]{path}[/]: `gwsproxy tui {path}` inspects it.")
    return 0


def _wait_for_file(path: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise DemoError(f"the recording proxy did not create {path}")
        time.sleep(0.05)
