"""gwsproxy's own commands (and mitmdump) as child processes: start, wait until ready, stop.

Used wherever a real command runs beside the caller: the demo, the pytest plugin, the example
captures, the tests and the benchmarks. Children write to files, never to a pipe that can fill.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gwsproxy.errors import GwsProxyError

START_TIMEOUT = 30.0  # a loaded machine starts mitmproxy slowly (the first start makes its CA)
STOP_TIMEOUT = 15.0
# What `gwsproxy sim` prints once it listens.
SIM_BANNER = re.compile(r"GWS simulator on (?P<url>https?://(?P<host>[^:/\s]+):(?P<port>\d+))")
# The line under it when it serves HTTPS with a throwaway CA (gwsproxy.tls.told).
SIM_TLS = re.compile(r"TLS: trust its CA: (?P<ca>\S+)")

T = TypeVar("T")


class ProcessError(GwsProxyError):
    """A child command did not start; the message says which and why, in one line."""


@dataclass(frozen=True, slots=True)
class SimProcess:
    """A running `gwsproxy sim` and where it listens."""

    process: subprocess.Popen[bytes]
    url: str
    host: str
    port: int
    ca: Path | None = None  # the CA file to trust when it serves HTTPS with `--tls`


def gwsproxy_command(*args: str) -> list[str]:
    """`gwsproxy ARGS` with this Python."""
    return [sys.executable, "-m", "gwsproxy.cli", *args]


def mitmdump_path() -> str:
    """The mitmdump installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).with_name("mitmdump")
    found = str(beside) if beside.exists() else shutil.which("mitmdump")
    if found is None:
        raise ProcessError("mitmdump not found: install gwsproxy's dependencies (make test)")
    return found


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(command: list[str], output: Path, errors: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `command`, its stdout in the file `output`, its stderr in `errors` (else `output`)."""
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(output, "wb"))
        err = files.enter_context(open(errors, "wb")) if errors else subprocess.STDOUT
        return subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL)


def last_line(path: Path) -> str:
    """The last line a child wrote to `path` (why it gave up, as a rule), or "no output"."""
    with contextlib.suppress(OSError):
        lines = path.read_text(errors="replace").strip().splitlines()
        if lines:
            return lines[-1]
    return "no output"


def wait_for(
    ready: Callable[[], T | None],
    process: subprocess.Popen[bytes],
    what: str,
    log: Path,
    timeout: float,
) -> T:
    """Poll `ready` until it returns something true; ProcessError, with the last line of `log`,
    when the child exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        found = ready()
        if found:
            return found
        if process.poll() is not None:
            raise ProcessError(f"{what} exited with {process.returncode}: {last_line(log)}")
        if time.monotonic() > deadline:
            raise ProcessError(f"{what} was not ready within {timeout:g} s: {last_line(log)}")
        time.sleep(0.05)


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int,
    process: subprocess.Popen[bytes],
    what: str,
    log: Path,
    timeout: float = START_TIMEOUT,
) -> None:
    """Until the child listens on 127.0.0.1:port; ProcessError if it exits or takes too long."""
    wait_for(lambda: accepts(port), process, what, log, timeout)


def start_announcing(
    command: list[str],
    banner: re.Pattern[str],
    what: str,
    *,
    output: Path,
    errors: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> tuple[subprocess.Popen[bytes], re.Match[str]]:
    """Start a server that prints `banner` on stdout once it listens: (the process, the match).

    ProcessError, the child stopped, when it exits or stays silent for `timeout` seconds."""
    process = spawn(command, output, errors)
    try:
        found = wait_for(
            lambda: banner.search(output.read_text(errors="replace")),
            process,
            what,
            errors or output,
            timeout,
        )
    except BaseException:
        stop(process)
        raise
    return process, found


def start_sim(
    *options: str, output: Path, errors: Path | None = None, timeout: float = START_TIMEOUT
) -> SimProcess:
    """`gwsproxy sim` on a free 127.0.0.1 port (`options` come last, so they may change that),
    once it has announced its URL; its output goes to the files `output` and `errors`."""
    command = gwsproxy_command("sim", "-p", "0", "--host", "127.0.0.1", *options)
    process, found = start_announcing(
        command, SIM_BANNER, "the simulator", output=output, errors=errors, timeout=timeout
    )
    ca = SIM_TLS.search(output.read_text(errors="replace"))  # printed with the banner, at once
    return SimProcess(
        process, found["url"], found["host"], int(found["port"]), Path(ca["ca"]) if ca else None
    )


def stop(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGINT (a recorder then writes its END record), then SIGKILL if it does not go."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def recording_proxy(upstream: str, output: str) -> Iterator[str]:
    """`gwsproxy record` in front of `upstream` writing `output`; yields its URL."""
    port = free_port()
    command = gwsproxy_command("record", "--upstream", upstream, "-p", str(port), "-o", output)
    with tempfile.TemporaryDirectory(prefix="gwsproxy-record-") as scratch:
        log = Path(scratch) / "record.log"
        process = spawn(command, log)
        try:
            wait_for_port(port, process, "the recording proxy", log)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process)
