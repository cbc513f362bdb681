"""Long commands show progress on a terminal and nothing when their output is not one."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

import pytest

from gwsproxy.processes import gwsproxy_command

MIXED = Path(__file__).resolve().parents[2] / "captures" / "examples" / "sim-mixed.gwscap"


def _stderr_on_a_terminal(command: list[str]) -> tuple[int, str]:
    """Run `command` with stderr on a pseudo-terminal (as in a shell); its exit and stderr."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=child
    )
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    return process.wait(60), seen.decode("utf-8", "replace")


@pytest.fixture()
def har(tmp_path: Path) -> Path:
    out = tmp_path / "mixed.har"
    done = subprocess.run(
        gwsproxy_command("export", str(MIXED), "--format", "har", "-o", str(out)),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return out


def test_import_shows_its_progress_on_a_terminal_only(har: Path, tmp_path: Path) -> None:
    code, err = _stderr_on_a_terminal(
        gwsproxy_command("import", str(har), "-o", str(tmp_path / "tty.gwscap"))
    )
    assert code == 0, err
    assert "importing mixed.har" in err
    piped = subprocess.run(
        gwsproxy_command("import", str(har), "-o", str(tmp_path / "pipe.gwscap")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0 and "importing" not in piped.stderr, piped.stderr


def test_export_shows_its_progress_on_a_terminal_only(tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    code, err = _stderr_on_a_terminal(gwsproxy_command("export", str(MIXED), "-o", str(out)))
    assert code == 0, err
    assert "exporting" in err
    piped = subprocess.run(
        gwsproxy_command("export", str(MIXED), "-o", str(tmp_path / "p.jsonl")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
