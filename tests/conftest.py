"""Shared fixtures, and the two tiers of the suite.

A test that starts a process (a simulator, mitmdump, a pytest run, any command) is an `e2e`
test: every test under tests/e2e, every test that uses a fixture starting one (PROCESS_FIXTURES),
and any test marked `@pytest.mark.e2e`. `make test-fast` runs the others (`-m "not e2e"`), and
they may not start a process: one that tries fails with "... starts a process: mark it e2e".

`make test-fast` also loads the hypothesis profile "fast": a tenth of the examples, for the
property tests that count theirs in multiples of the profile's (`settings.default.max_examples`).
"""

import asyncio
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import settings

from gwsproxy.processes import SimProcess, start_sim, stop
from gwsproxy.sim.server import SimConfig, start_simulator

SEED_DIR = Path(__file__).resolve().parents[1] / "gwsproxy" / "data"
E2E_DIR = Path(__file__).resolve().parent / "e2e"
FAST = ("--delay", "0.01", "--jitter", "0.01")  # fast notifications (options may override)
PROCESS_FIXTURES = {"sim", "sim_factory", "procs"}
# Every way Python starts a process: subprocess.run, Popen and asyncio's subprocesses end in
# Popen._execute_child, multiprocessing and pty in os.fork.
SPAWNERS = [
    (subprocess.Popen, "_execute_child"),
    (os, "fork"),
    (os, "forkpty"),
    (os, "posix_spawn"),
    (os, "posix_spawnp"),
    (os, "system"),
]

settings.register_profile("fast", max_examples=10)  # the default profile has 100


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(E2E_DIR) or PROCESS_FIXTURES & set(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Outside the e2e tier, starting a process (in the test or its fixtures) fails the test."""
    if item.get_closest_marker("e2e"):
        return (yield)

    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        pytest.fail(f"{item.nodeid} starts a process: mark it e2e (@pytest.mark.e2e)")

    with pytest.MonkeyPatch.context() as patch:
        for owner, name in SPAWNERS:
            patch.setattr(owner, name, refuse)
        return (yield)


@pytest.fixture(scope="module")
def sim_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., SimProcess]]:
    """Start simulators with extra command-line options, e.g. `sim_factory("--faults", "1")`.

    One simulator per distinct set of options and test module; all are stopped at the end.
    """
    started: dict[tuple[str, ...], SimProcess] = {}
    logs = tmp_path_factory.mktemp("sim")

    def factory(*options: str) -> SimProcess:
        if options not in started:
            log = logs / f"sim{len(started)}"
            started[options] = start_sim(
                *FAST, *options, output=log.with_suffix(".out"), errors=log.with_suffix(".err")
            )
        return started[options]

    yield factory
    for running in started.values():
        stop(running.process)


@pytest.fixture(scope="module")
def sim(sim_factory: Callable[..., SimProcess]) -> SimProcess:
    """The simulator with default options (10 agents, one interaction per agent and media)."""
    return sim_factory()


@pytest.fixture(scope="session")
def seed_dir() -> Path:
    return SEED_DIR


@pytest.fixture
def simulator() -> Iterator[Callable[..., str]]:
    """Simulators in a background loop of this process: `simulator(**SimConfig fields) -> url`."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = []

    def start(**options: object) -> str:
        config = SimConfig(port=0, delay=0, jitter=0, **options)  # type: ignore[arg-type]
        sim = asyncio.run_coroutine_threadsafe(start_simulator(config), loop).result(10)
        running.append(sim)
        return sim.url

    yield start
    for sim in running:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
