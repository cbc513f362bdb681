"""`gwsproxy demo`: the simulator, the recording proxy and simulated agents, in one command.

With a terminal the inspector follows the capture live; without one (CI, a pipe) the demo runs
for a bounded time and prints a summary. Each part is the real command, in its own process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from gwsproxy.processes import ProcessError, gwsproxy_command, recording_proxy, start_sim, stop


@dataclass(frozen=True, slots=True)
class DemoConfig:
    output: str = "captures/demo-%Y%m%d-%H%M%S.gwscap"
    agents: int = 4
    ops: int = 25  # per agent; with a terminal the agents keep going until the inspector quits
    think: float = 0.0
    transport: str = "long-polling"
    seed: int = 0
    interactive: bool = True


@contextlib.contextmanager
def running_demo(config: DemoConfig, ops: int) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Simulator, recording proxy and agents running; yields the capture path and the agents."""
    path = time.strftime(config.output)
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gwsproxy-demo-")))
        options = ("--seed", str(config.seed), "--faults", "0.03", "--shared", "1")
        sim = start_sim(*options, output=scratch / "sim.log")
        stack.callback(stop, sim.process)  # last: agents, then the proxy (its END record), then GWS
        proxy = stack.enter_context(recording_proxy(sim.url, path))
        agents = subprocess.Popen(
            gwsproxy_command(
                "load",
                "--target",
                proxy,
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
        stack.callback(stop, agents)
        yield path, agents


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
            why = (err or out).strip().splitlines() or ["no output"]
            raise ProcessError(f"the agents failed: {why[-1]}")
    console.print(out.rstrip())
    console.print(info(path))
    console.print(f"The capture is in [bold]{path}[/]: `gwsproxy tui {path}` inspects it.")
    return 0


def _wait_for_file(path: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise ProcessError(f"the recording proxy did not create {path}")
        time.sleep(0.05)
