"""Process fixtures for the end-to-end tests: real subprocesses on 127.0.0.1 only.

`procs` starts the GWS simulator (`gwsproxy sim`, through gwsproxy.processes), `mitmdump` with
or without our addon, and any other command, each on a free loopback port; whatever a test
started is killed at teardown, whether the test passed or not.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import ssl
import stat
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gwsproxy.capture import CaptureReader
from gwsproxy.processes import (
    START_TIMEOUT,
    ProcessError,
    accepts,
    free_port,
    gwsproxy_command,
    mitmdump_path,
    start_sim,
)

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addons" / "gws_recorder.py"
HOST = "127.0.0.1"
STOP_TIMEOUT = 30.0


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def await_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """`wait_until` for coroutines: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Process:
    """A subprocess whose stdout and stderr go to files (no pipe can fill up and block it)."""

    command: list[str]
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stdout(self) -> str:
        return self.stdout_path.read_text("utf-8", "replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace")

    def describe(self) -> str:
        return (
            f"`{' '.join(self.command)}` (exit {self.popen.poll()})\n"
            f"stdout: {self.stdout()[-2000:]!r}\nstderr: {self.stderr()[-4000:]!r}"
        )

    def signal(self, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig` and wait for the exit status (mitmdump runs its `done` hooks on it)."""
        if self.alive():
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"did not exit within {timeout:g} s of signal {sig}: {self.describe()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits for it to be gone."""
        if self.alive():
            self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(STOP_TIMEOUT)


@dataclass
class Sim(Process):
    """The GWS simulator subprocess."""

    url: str = ""
    port: int = 0
    ca: Path | None = None  # the CA to trust when it serves HTTPS (`--tls`)

    def log(self) -> list[dict[str, Any]]:
        """Every user-data operation the simulator carried out, in order."""
        return self.control("log")  # type: ignore[no-any-return]

    def control(self, what: str, order: dict[str, Any] | None = None) -> Any:
        """GET /_sim/WHAT (the log, the state, the CSRF sessions), or POST an order to it."""
        context = ssl.create_default_context(cafile=str(self.ca)) if self.ca else None
        data = None if order is None else json.dumps(order).encode()
        url = f"{self.url}/_sim/{what}"
        with urllib.request.urlopen(url, data=data, timeout=30, context=context) as r:
            return json.loads(r.read())

    def session_secrets(self, csrf: dict[str, Any] | None = None) -> set[str]:
        """The cookie values and CSRF tokens a `sim --csrf` gave out: now, or in an earlier
        /_sim/csrf answer."""
        state = self.control("csrf") if csrf is None else csrf
        return {value for session in state["sessions"] for value in session if value}


@dataclass
class Mitm(Process):
    """A mitmdump subprocess in reverse mode."""

    port: int = 0
    upstream: str = ""
    capture: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@dataclass
class Procs:
    """Starts processes for one test and kills every one of them at teardown."""

    workdir: Path
    started: list[Process] = field(default_factory=list)

    def _logs(self, name: str) -> tuple[Path, Path]:
        n = len(self.started)
        return self.workdir / f"{n:02d}-{name}.stdout", self.workdir / f"{n:02d}-{name}.stderr"

    def spawn(self, command: Sequence[str], name: str) -> Process:
        out, err = self._logs(name)
        with open(out, "wb") as o, open(err, "wb") as e:
            popen = subprocess.Popen(
                list(command), stdout=o, stderr=e, stdin=subprocess.DEVNULL, cwd=ROOT
            )
        process = Process(list(command), popen, out, err)
        self.started.append(process)
        return process

    def run(
        self, command: Sequence[str], timeout: float = 60.0, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion (killed if it overstays)."""
        return subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )

    def sim(self, *options: str) -> Sim:
        """`gwsproxy sim` on a free port with fast notifications, once it announced its URL."""
        out, err = self._logs("sim")
        try:
            running = start_sim(
                "--delay", "0.01", "--jitter", "0.01", *options, output=out, errors=err
            )
        except ProcessError as e:
            pytest.fail(f"{e}\nstdout: {out.read_text()!r}\nstderr: {err.read_text()!r}")
        process = running.process
        sim = Sim(list(process.args), process, out, err, running.url, running.port, running.ca)
        self.started.append(sim)
        return sim

    def mitmdump(
        self,
        upstream: str,
        capture: Path | None = None,
        *,
        options: dict[str, str | Sequence[str]] | None = None,
        args: Sequence[str] = (),
        addon: bool = True,
    ) -> Mitm:
        """mitmdump in reverse mode to `upstream`, with our addon writing `capture` (unless
        addon=False), listening on a free port; waits until that port accepts connections.

        A list value in `options` becomes one `--set name=value` per item (mitmproxy's syntax
        for Sequence[str] options)."""
        for _attempt in range(3):
            port = free_port()
            command = [
                mitmdump_path(),
                "-q",
                "--listen-host",
                HOST,
                "-p",
                str(port),
                "--mode",
                f"reverse:{upstream}",
            ]
            if addon:
                command += ["-s", str(ADDON)]
                if capture is not None:
                    command += ["--set", f"gws_capture={capture}"]
            for name, value in (options or {}).items():
                for item in [value] if isinstance(value, str) else value:
                    command += ["--set", f"{name}={item}"]
            command += list(args)
            p = self.spawn(command, "mitmdump")
            deadline = time.monotonic() + START_TIMEOUT
            while p.alive() and not accepts(port) and time.monotonic() < deadline:
                time.sleep(0.05)
            if p.alive() and accepts(port):
                mitm = Mitm(p.command, p.popen, p.stdout_path, p.stderr_path, port, upstream)
                mitm.capture = capture
                self.started[self.started.index(p)] = mitm
                if capture is not None and addon:
                    # mitmdump may listen for a moment before a bad option makes it exit.
                    wait_until(
                        lambda p=p: capture.exists() or not p.alive(),
                        START_TIMEOUT,
                        f"{capture} to be created",
                    )
                if not p.alive():
                    pytest.fail(f"mitmdump exited at start: {p.describe()}")
                return mitm
            p.kill()
            if "address already in use" not in p.stderr().lower():
                break  # not a port race: no point trying another port
        pytest.fail(f"mitmdump did not start listening: {p.describe()}")

    @staticmethod
    def assert_no_secrets(
        capture: Path, secrets: set[str], users: Sequence[str] = ("agent1",)
    ) -> None:
        """None of `secrets`, nor the simulator's password or a user's Basic header, in any
        record of the capture (bodies decompressed) or in its bytes; the file is mode 0600."""
        assert stat.S_IMODE(capture.stat().st_mode) == 0o600
        with CaptureReader(capture) as reader:
            records = [(entry.summary, body) for entry, body in reader.records()]
        assert len(records) > 2, records  # more than the header and the end
        text = json.dumps(records, default=repr) + capture.read_bytes().decode("latin-1")
        basics = {base64.b64encode(f"{u}:password".encode()).decode() for u in users}
        # the password is the word itself: look for it as a value, not as a parameter's name
        password = {'"password"', "=password", ":password"}
        leaked = sorted(s[:6] + "..." for s in {*secrets, *basics, *password} if s in text)
        assert not leaked, f"in clear in {capture}: {leaked}"

    # Helpers, reachable through the fixture: `from conftest import ...` is ambiguous here.
    def record(self, upstream: str, path: Path, *args: str) -> tuple[Process, int]:
        """`gwsproxy record --upstream UPSTREAM -o PATH` on a free port, once it listens."""
        port = free_port()
        command = self.cli("record", "--upstream", upstream, "-p", str(port), "-o", str(path))
        record = self.spawn([*command, *args], "record")
        wait_until(
            lambda: accepts(port) or not record.alive(), START_TIMEOUT, "gwsproxy record to listen"
        )
        assert record.alive(), record.describe()
        return record, port

    @staticmethod
    def children(pid: int) -> list[int]:
        """The child processes of `pid` (Linux /proc)."""
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
        return found

    @staticmethod
    def running(pid: int) -> bool:
        """Alive and not a zombie."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    free_port = staticmethod(free_port)
    accepts = staticmethod(accepts)
    wait_until = staticmethod(wait_until)
    await_until = staticmethod(await_until)

    cli = staticmethod(gwsproxy_command)

    def stop_all(self) -> None:
        for p in reversed(self.started):
            p.kill()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Start real processes, their output in the test's tmp_path (private: pytest makes it
    0o700); all are killed (SIGKILL) at teardown, whatever happened."""
    running = Procs(tmp_path)
    try:
        yield running
    finally:
        running.stop_all()
