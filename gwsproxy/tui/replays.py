"""Replays from the inspector: what the dialog asks for, and one run's results by (file, pair id).

The run itself is gwsproxy.replay.regress on the app's loop; its comparisons land on the rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gwsproxy.errors import GwsProxyError
from gwsproxy.tui.model import Row

if TYPE_CHECKING:
    from gwsproxy.gws.session import Access
    from gwsproxy.replay.compare import Comparison

DEFAULT_TARGET = "http://127.0.0.1:8090"
RUNNING, DONE, STOPPED, FAILED = "running", "done", "stopped", "failed"


class ReplayFailure(GwsProxyError):
    """Why a replay could not go on (target unreachable, credentials refused...), in one line."""


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """What the replay dialog asks for (and remembers for the next time)."""

    target: str = DEFAULT_TARGET
    user: str | None = None  # None: each agent of the capture as itself
    password: str = "password"
    ignore: tuple[str, ...] = ()  # regexes of user-data keys not to compare
    access: Access | None = None  # bearer tokens, headers, TLS: `gwsproxy tui`'s options


def parse_ignore(text: str) -> tuple[tuple[str, ...], str | None]:
    """Key regexes separated by spaces (quote one holding a space), or why they are wrong."""
    try:
        words = shlex.split(text)
    except ValueError as e:
        return (), f"ignore: {e}"
    for word in words:
        try:
            re.compile(word)
        except re.error as e:
            return (), f"ignore: {word!r} is not a regular expression ({e})"
    return tuple(words), None


def ignore_text(patterns: Iterable[str]) -> str:
    """The ignore field's text for patterns (parse_ignore's inverse)."""
    return " ".join(shlex.quote(p) for p in patterns)


class ReplayRun:
    """One replay of the open captures: comparisons keyed by (file index, pair id), put on the
    rows they belong to as they arrive (rows listed later get theirs through attach)."""

    def __init__(self, request: ReplayRequest, rows: Iterable[Row], total: int | None) -> None:
        self.request = request
        self.total = total  # pairs to replay, when known
        self.state = RUNNING
        self.results: dict[tuple[int, int], Comparison] = {}
        self.failed = 0
        self._rows = {_key(r): r for r in rows if r.is_pair}

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def record(self, src: int, comparison: Comparison) -> Row | None:
        """Keep a comparison; the row it belongs to (now showing it), if listed."""
        key = (src, comparison.recorded.id)
        previous = self.results.get(key)
        if previous is not None and not previous.passed:
            self.failed -= 1
        self.results[key] = comparison
        self.failed += not comparison.passed
        row = self._rows.get(key)
        if row is not None:
            row.replay = comparison
        return row

    def attach(self, rows: Iterable[Row]) -> None:
        """Rows listed after the run started: give them their results."""
        for r in rows:
            if r.is_pair:
                key = _key(r)
                self._rows[key] = r
                r.replay = self.results.get(key)

    def clear(self) -> None:
        """Take this run's results off the rows (a new run starts)."""
        for r in self._rows.values():
            r.replay = None

    async def run(self, files: list[tuple[int, Path]], on_result: Callable[[Row | None], None]):
        """Replay each capture in turn, calling on_result with each row that got its result;
        ReplayFailure (one line) when one cannot be replayed. Keeps `state` up to date."""
        try:
            await _replay_files(self, files, on_result)
        except ReplayFailure:
            self.state = FAILED
            raise
        except asyncio.CancelledError:
            self.state = STOPPED
            raise
        self.state = DONE

    def summary(self) -> str:
        """A finished run in one sentence."""
        done = len(self.results)
        if not self.failed:
            return f"{done} pairs replayed: all passed"
        return f"{done} pairs replayed: {self.failed} failed (the filter replay:fail lists them)"

    def progress(self, hint: bool = True) -> str:
        """One line for the status bar: "replaying 37/60 · 2 failed", "replayed 60: all passed"."""
        done = len(self.results)
        failed = f" · {self.failed} failed" if self.failed else ""
        if self.state == RUNNING:
            of = f"/{self.total}" if self.total is not None else ""
            return f"replaying {done}{of}{failed}" + (" (r stops)" if hint else "")
        if self.state == DONE:
            return f"replayed {done}: " + (f"{self.failed} failed" if self.failed else "all passed")
        return f"replay {self.state} after {done}{failed}"


def _key(row: Row) -> tuple[int, int]:
    return (row.src, int(row.summary.get("id") or 0))


async def _replay_files(
    run: ReplayRun, files: list[tuple[int, Path]], on_result: Callable[[Row | None], None]
) -> None:
    from gwsproxy.capture.format import CaptureError
    from gwsproxy.errors import one_line
    from gwsproxy.gws.session import GwsError
    from gwsproxy.replay.regress import ReplayConfig, replay

    request = run.request
    target = request.target.strip().rstrip("/")
    for src, path in files:
        config = ReplayConfig(
            str(path), target, request.user, request.password, ignore=request.ignore
        )
        if request.access is not None:
            config = dataclasses.replace(config, access=request.access)
        where = f"{path.name}: " if len(files) > 1 else ""
        try:
            # mypy cannot infer a lambda with a default argument
            await replay(config, progress=lambda c, src=src: on_result(run.record(src, c)))  # type: ignore[misc]
        except (GwsError, CaptureError) as e:
            raise ReplayFailure(where + one_line(e)) from None
        except OSError as e:
            raise ReplayFailure(f"{where}{one_line(e.strerror or e)}") from None
        except Exception as e:  # noqa: BLE001 - a replay must never end the inspector
            raise ReplayFailure(f"{where}{type(e).__name__}: {one_line(e)}") from None
