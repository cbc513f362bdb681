"""The recording core in its own process, so that the proxy spends its CPU on traffic.

mitmproxy runs its hooks and its traffic on one thread; parsing, correlating and writing there
costs the proxy throughput. The addon instead packs each event (`gwsproxy.record.events`) with
msgpack into a pipe; this worker process unpacks and records them, in order.

- Start-up: the parent sends a config object; the worker opens the capture and answers one JSON
  line, {"path": ...} or {"error": ...} (an unwritable path fails before the proxy listens).
  With "append", an existing capture is continued in a new session ("session", its number in
  the file; "first_id", the first pair id, after those already in it; "continues", why).
- The parent never blocks on the pipe: events of one event-loop turn go out in one write, and
  what the pipe cannot take yet waits in a buffer that the loop writes out when the pipe drains.
- The worker runs niced and, once caught up, lets events gather for a moment before it reads:
  a few wake-ups a second instead of one per event, and never the proxy's CPU when it is short.
- The worker reports its counts as a JSON line on stdout after each ADVANCE and at the end.
- Once caught up, now and then, it indexes what it wrote (gwsproxy.record.indexing.IndexKeeper:
  a bounded step, verdicts judged), so that the first open after a recording needs no pass.
- CLOSE: open pairs are written as incomplete, then the END record, then what is left to index.
  End of input without CLOSE (the proxy was killed): the same, without the END record, so the
  capture says it was cut short.
  The worker ignores SIGINT/SIGTERM/SIGHUP: its end comes from the pipe, after the last event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

from gwsproxy.record.core import Recording
from gwsproxy.record.events import ADVANCE, CLOSE, Close, Event
from gwsproxy.record.indexing import IndexKeeper

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
PIPE_SIZE = 1 << 20  # a larger pipe buffer (Linux) so that a burst never has to wait in ours
READ_SIZE = 1 << 20
COALESCE = 0.05  # seconds the worker lets events gather once it has caught up
# Recording is background work: when the CPU is contended, the proxy's traffic goes first and the
# worker catches up in idle time (the pipe and the parent's buffer hold the events meanwhile).
NICE = 5
_ROOT = str(Path(__file__).resolve().parents[2])
_COMMAND = (
    f"import sys; sys.path.insert(0, {_ROOT!r}); from gwsproxy.record.worker import main; main()"
)


class WorkerGone(OSError):
    """The worker process is gone: its pipe is broken."""


class Worker:
    """The parent's end: `handle(event)` like a Recording, without doing the work here."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.path: str = config["path"]
        self._counts: dict[str, int] = {}
        self._out = bytearray()
        self._waiting = False
        self._gone: str | None = None
        self._packer = msgpack.Packer()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _COMMAND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._fd = self.process.stdin.fileno()
        self._rfd = self.process.stdout.fileno()
        self._inbox = bytearray()
        with contextlib.suppress(OSError, AttributeError):
            import fcntl

            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        try:
            self._write_blocking(self._packer.pack(config))
            answer = self._first_report(START_TIMEOUT)
        except BaseException:
            self._kill()
            raise
        if answer is None or "error" in answer:
            self._kill()
            reason = answer["error"] if answer else "the recording worker did not start"
            raise OSError(reason)
        os.set_blocking(self._fd, False)
        os.set_blocking(self._rfd, False)

    def counts(self) -> dict[str, int]:
        """The latest counts the worker reported (pairs, open, unsolicited, failed, raw); after
        close(), its final ones."""
        if not self.process.stdout.closed:  # type: ignore[union-attr]
            self._read_reports()
        return dict(self._counts)

    def handle(self, event: Event) -> None:
        """Queue one event; raises WorkerGone if the worker has died. Events queued in one turn
        of the event loop go out in one write."""
        if self._gone:
            raise WorkerGone(self._gone)
        self._out += self._packer.pack(event)
        if self._waiting:
            return
        try:
            asyncio.get_running_loop().call_soon(self._writable)
        except RuntimeError:  # no event loop: write now
            self._pump()
        else:
            self._waiting = True

    def close(self, now: float) -> None:
        """Hand over CLOSE and wait for the worker to write its last records."""
        try:
            self.handle(Close(CLOSE, now, True))
            os.set_blocking(self._fd, True)
            self._write_blocking(bytes(self._out))
            self._out.clear()
        except OSError as e:
            log.error("gwsproxy: the recording worker is gone (%s); capture %s", e, self.path)
        finally:
            self._unwatch()
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # type: ignore[union-attr]
        os.set_blocking(self._rfd, True)
        self._read_reports()  # until the worker exits
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.error("gwsproxy: the recording worker did not finish; capture %s", self.path)
            self._kill()
        else:
            self.process.stdout.close()  # type: ignore[union-attr]

    # ---- the pipe ---------------------------------------------------------------------------

    def _pump(self) -> None:
        try:
            while self._out:
                n = os.write(self._fd, self._out)
                del self._out[:n]
        except BlockingIOError:
            self._watch()
        except OSError as e:  # EPIPE: the worker died; what it had not read is lost
            self._gone = f"the recording worker exited ({self.process.poll()}): {e}"
            self._out.clear()
            raise WorkerGone(self._gone) from None

    def _watch(self) -> None:
        """Write the rest when the pipe drains: from the event loop, or by waiting if none."""
        if self._waiting:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            select.select([], [self._fd], [], STOP_TIMEOUT)
            self._pump()
            return
        loop.add_writer(self._fd, self._writable)
        self._waiting = True

    def _writable(self) -> None:
        self._unwatch()
        if self.process.stdin.closed:  # type: ignore[union-attr]
            return
        with contextlib.suppress(WorkerGone):  # the next handle() raises it for the recorder
            self._pump()

    def _unwatch(self) -> None:
        if self._waiting:
            self._waiting = False
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_writer(self._fd)

    def _write_blocking(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    # ---- reports ----------------------------------------------------------------------------

    def _first_report(self, timeout: float) -> dict[str, Any] | None:
        ready, _, _ = select.select([self._rfd], [], [], timeout)
        line = self.process.stdout.readline() if ready else b""  # type: ignore[union-attr]
        return json.loads(line) if line.strip() else None

    def _read_reports(self) -> None:
        """Take in what the worker has said (all of it, to its end, when blocking)."""
        while True:
            try:
                data = os.read(self._rfd, 1 << 16)
            except BlockingIOError:
                return
            if not data:
                return
            self._inbox += data
            lines = self._inbox.split(b"\n")
            self._inbox[:] = lines.pop()
            for line in reversed(lines):
                with contextlib.suppress(ValueError):
                    self._counts = json.loads(line)
                    break

    def _kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                pipe.close()  # type: ignore[union-attr]


def main() -> None:
    """The worker process: config, then events from stdin until CLOSE or end of input."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        os.nice(NICE)
    logging.basicConfig(format="gwsproxy worker: %(message)s")
    stdin = sys.stdin.buffer.raw  # type: ignore[union-attr]  # a BufferedReader: it has one
    unpacker = msgpack.Unpacker(max_buffer_size=1 << 30)
    config = None
    recording = Recording()  # until the config says where its pair ids start
    keeper: IndexKeeper | None = None
    last: dict[str, int] = {}

    def report(final: bool = False) -> None:
        nonlocal last
        counts = recording.counts()
        if final or counts != last:
            with contextlib.suppress(BrokenPipeError):  # nobody listens any more: fine
                sys.stdout.write(json.dumps(counts) + "\n")
                sys.stdout.flush()
            last = counts

    while True:
        data = stdin.read(READ_SIZE)
        if not data:  # the proxy is gone without saying CLOSE
            recording.close(clean=False)
            report(final=True)
            if keeper is not None:
                keeper.finish()
            return
        unpacker.feed(data)
        for item in unpacker:
            if config is None:
                config = item
                recording = Recording(first_id=config.get("first_id", 1))
                recording.configure(config["settings"])
                try:
                    recording.open(
                        config["path"],
                        config["upstream"],
                        config["fsync"],
                        config.get("append", False),
                        config.get("session", 1),
                        config.get("continues"),
                    )
                except OSError as e:
                    print(json.dumps({"error": str(e)}), flush=True)
                    sys.exit(2)
                print(json.dumps({"path": config["path"]}), flush=True)
                keeper = IndexKeeper(config["path"])
                continue
            recording.handle(item)
            if item[0] == CLOSE:
                report(final=True)
                if keeper is not None:
                    keeper.finish()
                return
            if item[0] == ADVANCE:
                report()
        if len(data) < READ_SIZE:
            # Caught up: index what was written (now and then), then let events gather in the
            # pipe for a moment and take them in one read, instead of waking up for each (they
            # are safe there even if the proxy dies).
            if keeper is not None:
                keeper.idle(time.monotonic())
            time.sleep(COALESCE)
