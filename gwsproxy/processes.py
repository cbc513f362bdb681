"""gwsproxy's own commands as child processes: start, wait until they listen, stop them.

Used where the real command must run beside the caller: the demo and the pytest plugin.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from gwsproxy.errors import GwsProxyError


class ProcessError(GwsProxyError):
    """A child command did not start; the message says which and why, in one line."""


def gwsproxy_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gwsproxy.cli", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().strip().splitlines() if proc.stderr else []
            raise ProcessError(f"{what} exited: {err[-1] if err else proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ProcessError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGINT (a recorder then writes its END record), then SIGKILL if it does not go."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def recording_proxy(upstream: str, output: str) -> Iterator[str]:
    """`gwsproxy record` in front of `upstream` writing `output`; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        gwsproxy_command("record", "--upstream", upstream, "-p", str(port), "-o", output),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, proc, "the recording proxy")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
