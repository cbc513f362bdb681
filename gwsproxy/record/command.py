"""The recording edges: `gwsproxy record` (mitmproxy in-process with the addon) and `import`.

Both feed the same GwsRecorder, so a live recording and an imported flow dump pair alike.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from gwsproxy.errors import GwsProxyError, listen_problem, url_problem
from gwsproxy.record import shutdown
from gwsproxy.record.addon import GwsRecorder


class RecordError(GwsProxyError):
    """Something the user can fix before anything listens."""


@dataclass(frozen=True, slots=True)
class RecordConfig:
    upstream: str | None
    output: str
    host: str = "127.0.0.1"
    port: int = 8080
    mode: str = "reverse"
    timeout: float = 10.0
    fsync: bool = False
    mask_keys: tuple[str, ...] = ()


def check_upstream(url: str) -> str:
    problem = url_problem(url)
    if problem:
        raise RecordError(f"--upstream: {problem}")
    return url.strip().rstrip("/")


def check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise RecordError(listen_problem(e, host, port)) from None


class Counter:
    """A live one-line counter on the terminal (pairs, open, unmatched), a summary at the end."""

    def __init__(self, recorder: GwsRecorder, out: TextIO) -> None:
        self.recorder = recorder
        self.out = out
        self._task: asyncio.Task[None] | None = None

    def line(self) -> str:
        c = self.recorder.counts()
        return (
            f"pairs {c.get('pairs', 0)}  open {c.get('open', 0)}"
            f"  unmatched {c.get('unsolicited', 0)}  raw {c.get('raw', 0)}"
        )

    def running(self) -> None:
        if self.out.isatty():
            self._task = asyncio.get_running_loop().create_task(self._show())

    async def _show(self) -> None:
        while True:
            self.out.write("\r" + self.line() + "  ")
            self.out.flush()
            await asyncio.sleep(0.5)

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self.out.write("\r")
        self.out.write(self.line() + "\n")
        self.out.flush()


async def run_record(config: RecordConfig, out: TextIO = sys.stderr) -> str:
    """Proxy until SIGINT/SIGTERM; returns the capture's path."""
    from mitmproxy import exceptions, options
    from mitmproxy.tools.dump import DumpMaster

    if config.mode == "reverse":
        if not config.upstream:
            raise RecordError("reverse mode needs --upstream URL (the GWS to record)")
        mode = f"reverse:{check_upstream(config.upstream)}"
    else:
        mode = "regular"
    if not config.timeout > 0:
        raise RecordError(f"--timeout {config.timeout:g} must be a positive number of seconds")
    check_port_free(config.host, config.port)
    opts = options.Options(listen_host=config.host, listen_port=config.port, mode=[mode])
    master = DumpMaster(opts, with_termlog=True, with_dumper=False)
    recorder = GwsRecorder()
    master.addons.add(recorder, Counter(recorder, out))
    try:
        master.options.update(
            termlog_verbosity="warn",
            # mitmproxy reads a request before it connects to GWS, so a request made while GWS
            # is down is recorded (failed, with why) instead of being dropped unread.
            connection_strategy="lazy",
            gws_capture=config.output,
            gws_timeout=str(config.timeout),
            gws_fsync=config.fsync,
            gws_mask_keys=list(config.mask_keys),
            gws_trim_websocket=True,
        )
    except exceptions.OptionsError as e:
        raise RecordError(str(e)) from None
    path = recorder.path or config.output
    listen = f"http://{config.host}:{config.port}"
    target = f" -> {config.upstream}" if mode != "regular" else " (as an HTTP proxy)"
    out.write(f"recording {listen}{target} into {path}  (Ctrl-C stops)\n")
    out.flush()
    # The first SIGINT/SIGTERM stops in order (the addon's done() ends the connections and
    # closes the capture), a second one ends the process at once.
    shutdown.stop_on_signals(master.shutdown)
    await master.run()
    return str(path)


def import_flows(flows_path: str, output: str, timeout: float = 10.0) -> tuple[str, GwsRecorder]:
    """A capture from a mitmproxy flow dump, events replayed into the recorder in time order."""
    from mitmproxy import http, io

    recorder = GwsRecorder()
    recorder.use_worker = False  # no proxy to keep fast here: record in this process
    recorder.settings["timeout"] = timeout
    events: list[tuple[float, int, Any, Any]] = []
    try:
        with open(flows_path, "rb") as f:
            for flow in io.FlowReader(f).stream():
                if not isinstance(flow, http.HTTPFlow):
                    continue
                events.append((flow.request.timestamp_start, 0, flow, None))
                if flow.response is not None:
                    end = flow.response.timestamp_end or flow.response.timestamp_start
                    events.append((end, 1, flow, None))
                elif flow.error is not None:
                    events.append((flow.error.timestamp, 1, flow, None))
                if flow.websocket is not None:
                    for m in flow.websocket.messages:
                        events.append((m.timestamp, 2, flow, m))
    except FileNotFoundError:
        raise RecordError(f"{flows_path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - mitmproxy raises several types for bad dumps
        if not events:
            raise RecordError(f"{flows_path} is not a mitmproxy flow dump: {e}") from None
    events.sort(key=lambda e: (e[0], e[1]))
    if os.path.exists(time.strftime(output)):
        # A recorder continues an existing capture; an import is a conversion of its own.
        raise RecordError(f"{output} exists: import writes a new capture, choose another -o")
    path = recorder.open(output, upstream=f"import:{flows_path}")
    last = events[-1][0] if events else time.time()
    for t, kind, flow, message in events:
        recorder.advance(t)
        if kind == 0:
            recorder.request(flow)
        elif kind == 1:
            if flow.response is not None:
                recorder.response(flow)
            else:
                recorder.error(flow)
        else:
            recorder.frame(flow, message)
    recorder.advance(last + timeout)
    recorder.close(last + timeout)
    return path, recorder


def import_file(
    path: str, output: str, timeout: float = 10.0, progress: Any = None
) -> tuple[str, Any, list[str]]:
    """`gwsproxy import`: a HAR or a mitmproxy dump, told apart by content. Returns the
    capture's path, what counts() its pairs, and lines to tell the user. `progress(read,
    size)` hears how far a HAR has been read."""
    from gwsproxy.record import har

    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except OSError as e:
        raise RecordError(f"{path}: {e.strerror or e}") from None
    if har.is_har(head):
        result = har.import_har(path, output, timeout, progress)
        return result.path, result, result.summary()
    capture, recorder = import_flows(path, output, timeout)
    return capture, recorder, []
