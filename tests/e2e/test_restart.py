"""A recorder restarted on the capture it was writing: one file for the day, a session per run.

The real simulator, agents and recorders (mitmdump with the addon, then `gwsproxy record`): a
clean stop (SIGINT), a crash (kill -9) and restarts on the same path, checked the way a user
would: one file, every operation once with a unique pair id, and `gwsproxy info` showing the
sessions and the gaps between them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.sim.agents import LoadConfig, LoadReport, run_load

if TYPE_CHECKING:
    from conftest import Procs

HOST = "127.0.0.1"
WAIT = 30.0  # seconds any single condition may take on a loaded machine
OPS = 10  # per agent and run
AGENTS = 3


def run_agents(target: str) -> LoadReport:
    report = asyncio.run(run_load(LoadConfig(target=target, agents=AGENTS, ops=OPS, timeout=WAIT)))
    assert report.notified == AGENTS * OPS, report.as_dict()
    return report


def pair_count(path: Path) -> int:
    with CaptureReader(path) as reader:
        return sum(e.kind == Kind.PAIR for e in reader.index())


def children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_restarts_after_a_stop_and_a_crash_continue_one_capture(
    procs: Procs, tmp_path: Path
) -> None:
    sim = procs.sim("--agents", str(AGENTS))
    path = tmp_path / "today.gwscap"
    runs = AGENTS * OPS

    # 1. mitmdump with the addon, stopped cleanly.
    first = procs.mitmdump(sim.url, path)
    run_agents(first.url)
    assert first.signal(signal.SIGINT) == 0, first.describe()
    size = path.stat().st_size

    # 2. mitmdump again on the same file, killed -9 once its worker has written every pair.
    second = procs.mitmdump(sim.url, path)
    run_agents(second.url)
    procs.wait_until(lambda: pair_count(path) == 2 * runs, WAIT, "the second run's pairs")
    assert children(second.pid), "the recording worker process is missing"
    second.kill()
    assert second.popen.returncode == -signal.SIGKILL

    # 3. `gwsproxy record -o` the same file, at once: it waits for the killed proxy's worker to
    # let go of the file before it reads where pair ids go on.
    record, port = procs.record(sim.url, path)
    run_agents(f"http://{HOST}:{port}")
    assert record.signal(signal.SIGINT) == 0, record.describe()
    assert "Traceback" not in record.stderr() + first.stderr() + second.stderr()

    # One file; the first run's bytes untouched; three sessions, the crashed one cut short.
    assert sorted(p.name for p in tmp_path.glob("*.gwscap")) == ["today.gwscap"]
    with CaptureReader(path) as reader:
        entries = reader.index()
        sessions = reader.sessions
        assert reader.damage == [] and reader.ended
    assert [s.offset for s in sessions][1] == size
    assert [s.header.get("session") for s in sessions] == [1, 2, 3]
    assert [s.header.get("continues") for s in sessions] == [None, "restart", "restart"]
    assert [s.pairs for s in sessions] == [runs, runs, runs]
    assert [s.ended for s in sessions] == [True, False, True]
    starts_after_end = [b.start > a.end for a, b in zip(sessions, sessions[1:], strict=False)]
    assert starts_after_end == [True, True]

    # Every operation the simulator carried out is in the file once, matched, as it was done;
    # pair ids are unique in the file and run on from one session to the next.
    pairs = [e.summary for e in entries if e.kind == Kind.PAIR]
    assert sorted(p["id"] for p in pairs) == list(range(1, 3 * runs + 1))
    assert {p["status"] for p in pairs} == {"matched"}
    assert [s.last_id for s in sessions] == [runs, 2 * runs, 3 * runs]
    export = procs.run(procs.cli("export", str(path)))
    assert export.returncode == 0, export.stderr
    exported = [json.loads(line) for line in export.stdout.splitlines()]
    assert sorted(o["id"] for o in exported) == list(range(1, 3 * runs + 1))
    log = sim.log()
    assert len(log) == 3 * runs
    assert by_interaction(exported) == by_interaction(log)

    # `gwsproxy info`: the sessions, how each ended, and the gaps between them.
    info = procs.run(procs.cli("info", str(path)), env={**os.environ, "COLUMNS": "120"})
    assert info.returncode == 0 and info.stderr == "", info.stderr
    assert re.search(r"│\s*sessions\s*│\s*3\s*│", info.stdout), info.stdout
    rows = session_rows(info.stdout)
    assert [r[0] for r in rows] == ["1", "2", "3"], info.stdout
    assert [r[3] for r in rows] == [str(runs)] * 3
    assert [r[4] for r in rows] == ["cleanly", "cut short", "cleanly"]
    assert rows[0][5] == "-" and all(re.fullmatch(r"\d+\.\d s", r[5]) for r in rows[1:]), rows
    assert [r[6] for r in rows] == ["-", "restart", "restart"]


def by_interaction(operations: list[dict[str, Any]]) -> dict[str, list[tuple[Any, ...]]]:
    """Each interaction's operations in order: what was asked, what it changed."""
    grouped: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for op in sorted(operations, key=lambda o: o.get("id") or 0):
        grouped[op["interaction_id"]].append((op["operation"], op["before"], op["after"]))
    return dict(grouped)


def session_rows(text: str) -> list[list[str]]:
    """The cells of each row of the `sessions` table in `gwsproxy info`'s output."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "sessions")
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip().strip("│").split("│")])
    return rows
