"""Stopping mitmproxy cleanly: its connections ended in order, no tracebacks; a second signal
ends the process at once.

Left to itself, mitmproxy returns from `Master.run` with its client connections still open, and
`asyncio.run` cancels their tasks; on Python 3.11 each cancelled connection task then prints a
CancelledError traceback ("Exception in callback StreamReaderProtocol.connection_made...").
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Loggers that report a cancelled task as an error: asyncio's default exception handler and
# mitmproxy's own, which replaces it while the master runs.
NOISY_LOGGERS = ("asyncio", "mitmproxy.master")
# A second signal sooner than this after the first is the same Ctrl-C, delivered twice.
DUPLICATE_WINDOW = 1.0
# How long mitmproxy may take to end its connections before the capture is closed regardless.
CONNECTIONS_GRACE = 1.0


class DropCancelled(logging.Filter):
    """Drops records whose exception is a CancelledError: at exit that is no error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


def quiet_cancellations() -> None:
    """From now on, a task cancelled because the process ends is not reported as an error.

    A logging filter rather than a loop exception handler: mitmproxy puts back the previous
    handler when `Master.run` returns, before `asyncio.run` cancels what is left."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropCancelled) for f in logger.filters):
            logger.addFilter(DropCancelled())


def stopping(master: Any) -> bool:
    """Whether mitmproxy's `master` is stopping (it then awaits what its done hooks return),
    as opposed to an addon being removed while the proxy goes on."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    should_exit = getattr(master, "should_exit", None)
    return isinstance(should_exit, asyncio.Event) and should_exit.is_set()


def skip_final_collection() -> None:
    """At interpreter exit, no garbage collection of what is still alive: with mitmproxy loaded
    the interpreter's final collections are most of the time to exit (0.5 s of CPU measured,
    seconds on a busy machine). Only at exit: a program that goes on is not affected."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


async def end_connections(master: Any, timeout: float) -> int:
    """Close mitmproxy's listeners, then end each client connection as mitmproxy ends one whose
    client went away (its flows get their error and disconnect hooks, its server connections
    are closed), and wait for that, at most `timeout` seconds. Returns how many are left."""
    proxyserver = master.addons.get("proxyserver")
    if proxyserver is None:
        return 0
    with contextlib.suppress(Exception):  # it logs its own failures; we stop regardless
        await proxyserver.servers.update([])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    ended: set[asyncio.Task[Any]] = set()
    while proxyserver.connections and loop.time() < deadline:
        for handler in list(proxyserver.connections.values()):
            io = handler.transports.get(handler.client)
            task = io.handler if io is not None else None  # None: not started yet, next round
            if task is not None and task not in ended:
                # What mitmproxy's handler does with a server connection when its client leaves.
                task.cancel()
                ended.add(task)
        await asyncio.sleep(0.005)
    return len(proxyserver.connections)


class SecondSignal:
    """Once armed, SIGINT or SIGTERM ends the process at once: `before(frame)` (best effort,
    `frame` being where the signal interrupted this process), then exit with 128 + signal.

    A signal within DUPLICATE_WINDOW of arming is taken as the first one again: a terminal's
    Ctrl-C reaches every process of its group, and a parent such as `gwsproxy demo` passes it
    on as well, a moment later. Installed with signal.signal, not on the event loop, so that it
    also works while the main thread is blocked, e.g. waiting for the recording worker."""

    def __init__(self, before: Callable[[FrameType | None], None] | None = None) -> None:
        self.before = before
        self.armed_at: float | None = None

    def arm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for sig in SIGNALS:
            if loop is not None:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            signal.signal(sig, self)
        self.armed_at = time.monotonic()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.armed_at is None or time.monotonic() - self.armed_at < DUPLICATE_WINDOW:
            return
        if self.before is not None:
            with contextlib.suppress(BaseException):
                self.before(frame)
        exit_now(signum)


def exit_now(signum: int) -> NoReturn:
    """Exit without unwinding (no traceback, no waiting), saying so in one line."""
    with contextlib.suppress(BaseException):
        name = signal.Signals(signum).name
        sys.stdout.flush()
        sys.stderr.write(f"gwsproxy: {name} again: stopped at once\n")
        sys.stderr.flush()
    os._exit(128 + signum)


def stop_on_signals(stop: Callable[[], None]) -> SecondSignal:
    """SIGINT/SIGTERM call `stop` (an orderly stop, on the event loop); from then on another one
    ends the process at once (see SecondSignal)."""
    loop = asyncio.get_running_loop()
    force = SecondSignal()

    def first(signum: int) -> None:
        if force.armed_at is not None:  # two signals came in one turn of the loop
            force(signum, None)
            return
        stop()
        force.arm()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, first, sig)
    return force


def interrupted_in(frame: FrameType | None, *modules: str) -> bool:
    """Whether `frame` (where a signal interrupted the main thread) or a caller of it runs code
    of one of `modules` (module names, or packages: their submodules count)."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if any(name == m or name.startswith(m + ".") for m in modules):
            return True
        frame = frame.f_back
    return False
