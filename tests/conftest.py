"""Shared fixtures: the real GWS simulator, started as a subprocess of `gwsproxy sim`."""

import queue
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SEED_DIR = Path(__file__).resolve().parents[1] / "gwsproxy" / "data"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_BANNER = re.compile(r"GWS simulator on (?P<url>http://(?P<host>[^:/\s]+):(?P<port>\d+))")


@dataclass(frozen=True)
class SimProcess:
    """A running `gwsproxy sim` subprocess and where it listens."""

    url: str
    host: str
    port: int
    options: tuple[str, ...]
    process: subprocess.Popen[str]


def _first_line(process: subprocess.Popen[str], timeout: float) -> str | None:
    """The first stdout line of `process`, or None if none came within `timeout` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True)
    reader.start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return None


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    if process.stdout is not None:
        process.stdout.close()


def start_sim(*options: str) -> SimProcess:
    """Start `python -m gwsproxy.cli sim` on a free loopback port with fast notifications."""
    command = [
        sys.executable,
        "-m",
        "gwsproxy.cli",
        "sim",
        "-p",
        "0",
        "--host",
        "127.0.0.1",
        "--delay",
        "0.01",
        "--jitter",
        "0.01",
        *options,
    ]
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        line = _first_line(process, START_TIMEOUT)
        match = _BANNER.search(line or "")
        if match is None:
            _stop(process)
            stderr.seek(0)
            pytest.fail(
                f"`{' '.join(command)}` did not announce its URL within {START_TIMEOUT} s: "
                f"stdout {line!r}, exit status {process.returncode}, stderr {stderr.read()!r}"
            )
    return SimProcess(
        url=match["url"],
        host=match["host"],
        port=int(match["port"]),
        options=tuple(options),
        process=process,
    )


@pytest.fixture(scope="module")
def sim_factory() -> Iterator[Callable[..., SimProcess]]:
    """Start simulators with extra command-line options, e.g. `sim_factory("--faults", "1")`.

    One simulator per distinct set of options and test module; all are stopped at the end.
    """
    started: dict[tuple[str, ...], SimProcess] = {}

    def factory(*options: str) -> SimProcess:
        if options not in started:
            started[options] = start_sim(*options)
        return started[options]

    yield factory
    for running in started.values():
        _stop(running.process)


@pytest.fixture(scope="module")
def sim(sim_factory: Callable[..., SimProcess]) -> SimProcess:
    """The simulator with default options (10 agents, one interaction per agent and media)."""
    return sim_factory()


@pytest.fixture(scope="session")
def seed_dir() -> Path:
    return SEED_DIR
