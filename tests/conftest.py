"""Shared fixtures: the real GWS simulator, started as a subprocess of `gwsproxy sim`."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gwsproxy.processes import SimProcess, start_sim, stop

SEED_DIR = Path(__file__).resolve().parents[1] / "gwsproxy" / "data"
FAST = ("--delay", "0.01", "--jitter", "0.01")  # fast notifications (options may override)


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
