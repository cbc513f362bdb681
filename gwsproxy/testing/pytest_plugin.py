"""The pytest plugin: GWS fixtures, recorded pairs as test items, and record modes.

Registered through the `pytest11` entry point, so installing gwsproxy makes it available.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr  # what Item.repr_failure returns


class RecordMode(StrEnum):
    """--gws-record-mode: what `gws_recording` does (its docstring says how each mode acts)."""

    NONE = "none"
    ONCE = "once"
    NEW = "new"
    REWRITE = "rewrite"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gwsproxy", "GWS capture replay (gwsproxy)")
    group.addoption(
        "--gws-replay", metavar="CAPTURE", help="replay this capture: one test per pair"
    )
    group.addoption("--gws-target", metavar="URL", help="the GWS to replay or record against")
    group.addoption("--gws-user", metavar="USER", help="replay every agent as this user")
    group.addoption("--gws-password", default="password", help="password for --gws-target")
    group.addoption(
        "--gws-ignore", action="append", default=[], metavar="KEY_REGEX", help="keys not compared"
    )
    group.addoption(
        "--gws-record-mode",
        choices=[m.value for m in RecordMode],
        default=RecordMode.ONCE.value,
        help="gws_recording: none (replay only), once (record when the capture is missing; the "
        "default), new (record beside it as NAME.new.gwscap for review), rewrite (record again)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gws_capture(path): the capture a gws_mock / gws_recording test uses"
    )
    if config.getoption("--gws-replay") and not config.getoption("--gws-target"):
        raise pytest.UsageError("--gws-replay needs --gws-target URL (the GWS to replay against)")


# ---- an event loop in a thread, for servers that live beside synchronous tests -------------------


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gwsproxy", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture
def gws_loop() -> Iterator[_LoopThread]:
    thread = _LoopThread()
    yield thread
    thread.close()


@dataclass(frozen=True, slots=True)
class RunningGws:
    """A GWS on 127.0.0.1 for a test: its URL and the simulator or mock behind it."""

    url: str
    server: Any
    password: str = "password"


@pytest.fixture
def gws_simulator(gws_loop: _LoopThread) -> Iterator[RunningGws]:
    """The built-in GWS simulator on a free 127.0.0.1 port (agents agent1..agent10)."""
    from gwsproxy.sim.server import SimConfig, start_simulator

    running = gws_loop.run(start_simulator(SimConfig(port=0, delay=0.005, jitter=0.005)))
    yield RunningGws(running.url, running.simulator)
    gws_loop.run(running.stop())


def _marked_capture(request: pytest.FixtureRequest) -> str | None:
    marker = request.node.get_closest_marker("gws_capture")
    return str(marker.args[0]) if marker and marker.args else None


@pytest.fixture
def gws_capture_path(request: pytest.FixtureRequest) -> Path:
    """The test's capture: `@pytest.mark.gws_capture(path)`, else captures/<module>/<test>.gwscap
    beside the test file. Override this fixture to choose another rule."""
    marked = _marked_capture(request)
    if marked:
        path = Path(marked)
        return path if path.is_absolute() else Path(request.node.path).parent / path
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    return Path(request.node.path).parent / "captures" / request.node.path.stem / f"{name}.gwscap"


@dataclass(frozen=True, slots=True)
class LoadedCapture:
    """A capture's pairs as export objects (see docs/capture-format.md), in recorded order."""

    path: Path
    pairs: list[dict[str, Any]]

    def where(self, **fields: Any) -> list[dict[str, Any]]:
        """The pairs whose export fields equal all the given values."""
        return [p for p in self.pairs if all(p.get(k) == v for k, v in fields.items())]


@pytest.fixture
def gws_capture(gws_capture_path: Path) -> LoadedCapture:
    """The test's capture, loaded (every pair decoded)."""
    from gwsproxy.report import export_pairs

    if not gws_capture_path.exists():
        pytest.fail(f"no capture at {gws_capture_path}: record one with gwsproxy record")
    return LoadedCapture(gws_capture_path, list(export_pairs(str(gws_capture_path))))


# ---- each recorded pair a test item -------------------------------------------------------------


class PairMismatch(AssertionError):
    """A replayed pair changed the user data otherwise than its recording: a test failure."""


class ReplayCollector(pytest.Collector):
    """The pairs of --gws-replay, replayed once against --gws-target; each pair is an item."""

    def __init__(self, *, capture: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.capture = capture
        self._results: dict[int, Any] | None = None

    def collect(self) -> list[pytest.Item]:
        from gwsproxy.capture.format import CaptureError
        from gwsproxy.replay.regress import load_pairs

        try:
            pairs = load_pairs(self.capture)
        except CaptureError as e:
            raise pytest.UsageError(f"--gws-replay: {e}") from None
        return [
            ReplayItem.from_parent(
                self,
                name=f"pair{p.outcome.id}-{p.outcome.media}-{p.outcome.operation}-{p.outcome.interaction_id}",
                pair_id=p.outcome.id,
            )
            for p in pairs
        ]

    def comparison(self, pair_id: int) -> Any:
        if self._results is None:
            from gwsproxy.replay.regress import ReplayConfig, replay

            opts = self.config.option
            config = ReplayConfig(
                capture=self.capture,
                target=opts.gws_target.rstrip("/"),
                user=opts.gws_user,
                password=opts.gws_password,
                ignore=tuple(opts.gws_ignore),
            )
            result = asyncio.run(replay(config))  # the whole capture, in order, once
            self._results = {c.recorded.id: c for c in result.comparisons}
        return self._results[pair_id]


class ReplayItem(pytest.Item):
    def __init__(self, *, pair_id: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pair_id = pair_id

    def runtest(self) -> None:
        assert isinstance(self.parent, ReplayCollector)
        comparison = self.parent.comparison(self.pair_id)
        if not comparison.passed:
            raise PairMismatch(comparison.describe())

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, PairMismatch):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[str, int | None, str]:
        assert isinstance(self.parent, ReplayCollector)
        return self.parent.capture, None, f"gws replay: {self.name}"


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    capture = config.getoption("--gws-replay")
    if capture:
        collector = ReplayCollector.from_parent(
            session, name=f"gws-replay[{os.path.basename(capture)}]", capture=capture
        )
        items.extend(collector.collect())


# ---- outcome of a test, for fixtures that must not save what a failing test recorded ------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_PASSED] = report.passed
    return report


_PASSED = pytest.StashKey[bool]()


def _passed(request: pytest.FixtureRequest) -> bool:
    return request.node.stash.get(_PASSED, False)


@pytest.fixture
def gws_mock(gws_capture_path: Path, gws_loop: _LoopThread) -> Iterator[RunningGws]:
    """The test's capture served as a mock GWS on a free 127.0.0.1 port, at full speed."""
    from gwsproxy.replay.mock import MockConfig, start_mock

    if not gws_capture_path.exists():
        pytest.fail(f"no capture at {gws_capture_path}: record one (see --gws-record-mode)")
    config = MockConfig(capture=str(gws_capture_path), port=0, speed=0)
    running = gws_loop.run(start_mock(config))
    yield RunningGws(running.url, running.mock)
    gws_loop.run(running.stop())


@pytest.fixture
def gws_recording(
    request: pytest.FixtureRequest, gws_capture_path: Path, gws_loop: _LoopThread, tmp_path: Path
) -> Iterator[RunningGws]:
    """A GWS for this test, replayed from its capture or recorded, per --gws-record-mode:

    none: replay only; once: record when the capture is missing, else replay; new: record
    beside the capture as NAME.new.gwscap for review; rewrite: record and replace. Recording
    goes through the real proxy to --gws-target (else a fresh simulator); a failing test
    never saves what it recorded."""
    mode = RecordMode(request.config.getoption("--gws-record-mode"))
    exists = gws_capture_path.exists()
    if mode == RecordMode.NONE or (mode == RecordMode.ONCE and exists):
        yield request.getfixturevalue("gws_mock")
        return
    target = request.config.getoption("--gws-target")
    if not target:
        target = request.getfixturevalue("gws_simulator").url
    recording = tmp_path / "recording.gwscap"
    from gwsproxy.processes import recording_proxy

    with recording_proxy(target, str(recording)) as url:  # ProcessError: the test errors
        yield RunningGws(url, None)
    if not _passed(request):
        return
    keep = (
        gws_capture_path.with_suffix(".new.gwscap") if mode == RecordMode.NEW else gws_capture_path
    )
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(recording), str(keep))
