"""The inspector in a real terminal: `gwsproxy tui FILE` inside tmux, driven by keys.

What is asserted is what a user reads on the screen (`tmux capture-pane -p`).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.testing.synthetic import write_capture

TMUX = shutil.which("tmux")
ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 100, 30
TIMEOUT = 20.0  # a loaded 2-core machine starts Python and Textual slowly

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


def tmux(*args: str) -> subprocess.CompletedProcess[str]:
    assert TMUX is not None
    return subprocess.run([TMUX, *args], capture_output=True, text=True, timeout=10)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[str]:
    name = f"gwsproxy-tui-{uuid.uuid4().hex[:8]}"
    yield name
    tmux("kill-session", "-t", name)


def screen(name: str) -> str:
    return tmux("capture-pane", "-p", "-t", name).stdout


def wait_for(name: str, check: Callable[[str], bool], what: str) -> str:
    deadline = time.monotonic() + TIMEOUT
    text = ""
    while time.monotonic() < deadline:
        text = screen(name)
        if check(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"{what} not on screen within {TIMEOUT} s; the screen:\n{text}")


def keys(name: str, *sequence: str, literal: bool = False) -> None:
    tmux("send-keys", "-t", name, *(["-l"] if literal else []), *sequence)


def test_browse_filter_and_diff_in_tmux(session: str, tmp_path: Path) -> None:
    capture = tmp_path / "e2e.gwscap"
    write_capture(capture, 150, seed=11)
    with CaptureReader(capture) as reader:
        summaries = [
            e.summary for e in reader.index() if e.kind in (Kind.PAIR, Kind.NOTIFICATION, Kind.RAW)
        ]
    voice = sum(s.get("media") == "voice" for s in summaries)
    first_interaction = str(summaries[0]["interaction_id"])

    command = f"{shlex.quote(sys.executable)} -m gwsproxy.cli tui {shlex.quote(str(capture))}"
    env = {"PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    started = tmux(
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        str(WIDTH),
        "-y",
        str(HEIGHT),
        "-c",
        str(tmp_path),
        *(a for k, v in env.items() for a in ("-e", f"{k}={v}")),
        command,
    )
    assert started.returncode == 0, started.stderr

    text = wait_for(
        session,
        lambda s: "verdict" in s and f"{len(summaries)} rows" in s.replace(",", ""),
        "the pair list",
    )
    assert first_interaction[:8] in text
    assert "Traceback" not in text
    # "/" and the filter in one write, as a fast typist or a paste sends them: none may be lost.
    keys(session, "/media:voice", literal=True)
    keys(session, "Enter")
    text = wait_for(
        session,
        lambda s: f"{voice} of {len(summaries)} rows" in s.replace(",", ""),
        "the media:voice filter result",
    )
    rows = [line for line in text.splitlines() if line[:2].isdigit() and ":" in line[:8]]
    assert rows and all(" voice " in line for line in rows), rows

    keys(session, "2")
    wait_for(session, lambda s: "POST /api/v2/me/calls/" in s, "the Request tab")
    keys(session, "1")
    text = wait_for(session, lambda s: "before" in s and "after" in s and "change" in s, "the diff")
    assert "Traceback" not in text

    keys(session, "q")
    deadline = time.monotonic() + TIMEOUT
    while tmux("has-session", "-t", session).returncode == 0:
        assert time.monotonic() < deadline, f"q did not quit:\n{screen(session)}"
        time.sleep(0.1)
