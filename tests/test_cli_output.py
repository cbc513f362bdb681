"""What the command line writes when its output is no terminal, and where `replay` writes.

Output to a pipe or a file is not wrapped (rich assumes 80 columns there): a line stays one
line. `replay` makes its default output folder (./captures/) when it is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gwsproxy.cli import main
from gwsproxy.processes import gwsproxy_command

EXAMPLES = Path(__file__).parent.parent / "captures" / "examples"
SMS = EXAMPLES / "seed-sms-update.gwscap"
MIXED = EXAMPLES / "sim-mixed.gwscap"


def test_replay_makes_its_default_output_folder_and_its_lines_are_not_wrapped(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    simulator: Callable[..., str],
) -> None:
    url = simulator(seed_from=str(SMS), coerce=("sms",))
    monkeypatch.chdir(tmp_path)  # no captures/ here
    assert main(["replay", str(SMS), "--target", url]) == 1  # the coerced pair fails
    out = capsys.readouterr().out
    made = list((tmp_path / "captures").glob("replay-*.gwscap"))
    assert len(made) == 1, list(tmp_path.rglob("*"))
    lines = out.splitlines()
    summary = [line for line in lines if line.startswith("0 passed, 1 failed in")]
    # Longer than rich's 80 columns, and still one line with the whole path on it.
    assert len(summary) == 1 and summary[0].endswith(f"new capture: captures/{made[0].name}")
    assert len(summary[0]) > 80, summary
    fail = [line for line in lines if line.startswith("FAIL pair 1 UpdateUserData on sms")]
    assert len(fail) == 1 and fail[0].endswith("user data changed differently"), lines


@pytest.mark.e2e  # the point is a real pipe
def test_info_through_a_pipe_keeps_long_lines_whole_and_tables_narrow(tmp_path: Path) -> None:
    long = tmp_path / ("a-capture-with-a-name-longer-than-a-terminal-is-wide-" * 2 + ".gwscap")
    shutil.copy(MIXED, long)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    run = subprocess.run(
        gwsproxy_command("info", str(long)),
        capture_output=True,  # stdout is a pipe, as in `gwsproxy info FILE | cat`
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=60,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == str(long)  # the header line, unbroken
    tables = [line for line in lines if line[:1] in "┌│┏┃┡├└"]
    assert tables and max(map(len, tables)) <= 80, tables
