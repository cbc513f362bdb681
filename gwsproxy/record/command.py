"""The recording edges: `gwsproxy record` (mitmproxy in-process with the addon) and `import`.

Both feed the same GwsRecorder, so a live recording and an imported flow dump pair alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from gwsproxy import tls
from gwsproxy.errors import GwsProxyError, listen_problem, one_line, url_problem
from gwsproxy.record import shutdown
from gwsproxy.record.addon import GwsRecorder


class RecordError(GwsProxyError):
    """Something the user can fix before anything listens."""


DEFAULT_CONFDIR = "~/.mitmproxy"  # mitmproxy's own default
DEFAULT_TIMEOUT = 10.0  # seconds a request waits for its notification (the addon's default too)


@dataclass(frozen=True, slots=True)
class RecordConfig:
    upstreams: tuple[str, ...]  # URL or URL@PORT: the GWS (each node of a cluster) to record
    output: str
    host: str = "127.0.0.1"
    port: int = 8080  # the first listen port; more listeners take the next ones
    modes: tuple[str, ...] = ("reverse",)  # "reverse" (one per upstream) or mitmproxy specs
    timeout: float = DEFAULT_TIMEOUT
    fsync: bool = False
    mask_keys: tuple[str, ...] = ()
    upstream_ca: tuple[str, ...] = ()  # CA files trusted besides the usual ones
    insecure: bool = False  # no check of the upstream's certificate at all
    client_cert: str | None = None  # mitmproxy's client_certs: file or folder
    sets: tuple[str, ...] = ()  # mitmproxy NAME=VALUE options, applied last
    confdir: str = DEFAULT_CONFDIR  # mitmproxy's CA and its config.yaml


@dataclass(frozen=True, slots=True)
class Listen:
    """One mitmproxy mode: its spec, where it listens and what it forwards to."""

    spec: str
    host: str
    port: int
    target: str  # the upstream URL, or how it proxies

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def check_upstream(url: str) -> str:
    problem = url_problem(url)
    if problem:
        raise RecordError(f"--upstream: {problem}")
    return url.strip().rstrip("/")


def _split_port(upstream: str) -> tuple[str, int | None]:
    """URL@PORT: the URL and the port to listen on for it (None: the next free one)."""
    url, at, port = upstream.rpartition("@")
    if at and port.isdigit() and "/" not in port:
        if not 0 < int(port) < 65536:
            raise RecordError(f"--upstream {upstream}: {port} is not a port (1-65535)")
        return url, int(port)
    return upstream, None


def listens(config: RecordConfig) -> list[Listen]:
    """mitmproxy's modes for `config`: each `--upstream` in reverse mode, each other mode as
    mitmproxy spells it; a mode without its own `@PORT` takes --port, then the next ones."""
    from mitmproxy.proxy.mode_specs import ProxyMode, RegularMode, ReverseMode, UpstreamMode

    specs: list[tuple[str, int | None]] = []
    for mode in config.modes:
        if mode == "reverse":
            if not config.upstreams:
                raise RecordError("reverse mode needs --upstream URL (the GWS to record)")
            for upstream in config.upstreams:
                url, port = _split_port(upstream)
                specs.append((f"reverse:{check_upstream(url)}", port))
        else:
            specs.append((mode, None))
    found: list[Listen] = []
    auto = config.port
    for spec, port in specs:
        try:
            parsed = ProxyMode.parse(spec)
        except ValueError as e:
            raise RecordError(f"--mode {spec}: {e} (mitmproxy's --mode syntax)") from None
        if port is None and parsed.custom_listen_port is None:
            port, auto = auto, auto + 1
        if port is not None:
            spec = f"{spec}@{port}"
            parsed = ProxyMode.parse(spec)
        if isinstance(parsed, RegularMode):
            target = "(as an HTTP proxy)"
        elif isinstance(parsed, ReverseMode):
            target = f"-> {parsed.data}"
        elif isinstance(parsed, UpstreamMode):
            target = f"(as an HTTP proxy, through the proxy {parsed.data})"
        else:
            target = f"(as {parsed.description})"
        listen_port = parsed.listen_port(config.port)
        found.append(Listen(spec, parsed.listen_host(config.host), listen_port or 0, target))
    ports = [listen.port for listen in found]
    twice = {p for p in ports if ports.count(p) > 1}
    if twice:
        raise RecordError(f"port {min(twice)} is given to two listeners: give each its own @PORT")
    return found


def check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise RecordError(listen_problem(e, host, port)) from None


class Counter:
    """A live one-line counter on the terminal (pairs, open, unmatched, and requests that never
    reached GWS), a summary at the end."""

    def __init__(self, recorder: GwsRecorder, out: TextIO) -> None:
        self.recorder = recorder
        self.out = out
        self._task: asyncio.Task[None] | None = None

    def line(self) -> str:
        c = self.recorder.counts()
        return (
            f"pairs {c.get('pairs', 0)}  open {c.get('open', 0)}"
            f"  unmatched {c.get('unsolicited', 0)}  failed {c.get('failed', 0)}"
            f"  raw {c.get('raw', 0)}"
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


class UpstreamTlsHint:
    """The first TLS failure towards GWS, said in one line with the option that fixes it
    (mitmproxy's own warning for every connection is held back: one line, not a flood)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.told = False

    def tls_failed_server(self, data: Any) -> None:
        if self.told:
            return
        self.told = True
        conn = data.conn
        host, port = conn.address or ("?", 0)
        why = conn.error or "the TLS handshake failed"
        fix = ""
        if "certificate" in why.lower():
            fix = "; trust its CA with --upstream-ca CA.pem (or skip the check: --insecure)"
        clear = "\r\033[K" if self.out.isatty() else ""
        self.out.write(f"{clear}upstream https://{conn.sni or host}:{port}: {why}{fix}\n")
        self.out.flush()


class _NoHandshakeWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Server TLS handshake failed.")


def _mitmproxy_options(config: RecordConfig, scratch: Path) -> dict[str, Any]:
    """The mitmproxy options `config` asks for (besides the modes and the gws_* ones)."""
    opts: dict[str, Any] = {}
    if config.insecure:
        opts["ssl_insecure"] = True
    elif config.upstream_ca:
        bundle = tls.bundle_with_defaults(config.upstream_ca, scratch / "upstream-ca.pem")
        opts["ssl_verify_upstream_trusted_ca"] = str(bundle)
    if config.client_cert:
        path = Path(config.client_cert).expanduser()
        if not path.exists():
            raise RecordError(f"--client-cert {config.client_cert}: no such file or folder")
        opts["client_certs"] = str(path)
    return opts


def read_config_file(opts: Any, confdir: Path) -> None:
    """mitmproxy's config.yaml (or .yml) in `confdir`, read as mitmdump reads it (scripts
    relative to it; options of addons not loaded yet kept for them), but for gws_capture:
    `-o` says where the capture goes."""
    from mitmproxy import exceptions, optmanager

    for path in (confdir / "config.yaml", confdir / "config.yml"):
        if not path.is_file():
            continue
        try:
            data = optmanager.parse(path.read_text(encoding="utf8"))
            data.pop("gws_capture", None)
            scripts = data.get("scripts")
            if scripts is not None:
                data["scripts"] = [
                    str(optmanager.relative_path(Path(p), relative_to=path.absolute().parent))
                    for p in scripts
                ]
            opts.update_defer(**data)
        except (OSError, UnicodeDecodeError, exceptions.OptionsError) as e:
            raise RecordError(f"{path}: {one_line(e)}") from None


def configure(master: Any, config: RecordConfig, scratch: Path) -> list[Listen]:
    """Set mitmproxy's options as mitmdump would: its config.yaml in --confdir first, then
    ours, then each --set, and the capture last (nothing is created before every option is
    known to be good). RecordError (one line) for anything mitmproxy refuses."""
    from mitmproxy import exceptions

    found = listens(config)
    for listen in found:
        check_port_free(listen.host, listen.port)
    opts = master.options
    named: set[str] = set()
    for spec in config.sets:
        name, eq, _value = spec.partition("=")
        if not eq or not name:
            raise RecordError(f"--set {spec}: expected NAME=VALUE (a mitmproxy option)")
        if name not in opts:
            raise RecordError(f"--set {spec}: no option {name} (mitmdump --options lists them)")
        named.add(name)
    read_config_file(opts, Path(config.confdir).expanduser())
    ours = {
        "listen_host": config.host,
        "listen_port": config.port,
        "mode": [listen.spec for listen in found],
        "termlog_verbosity": "warn",
        # mitmproxy reads a request before it connects to GWS, so a request made while GWS
        # is down is recorded (failed, with why) instead of being dropped unread.
        "connection_strategy": "lazy",
        **_mitmproxy_options(config, scratch),
    }
    # The addon's own defaults are the command's: a config file may set these unless given.
    if config.timeout != DEFAULT_TIMEOUT:
        ours["gws_timeout"] = str(config.timeout)
    if config.fsync:
        ours["gws_fsync"] = True
    if config.mask_keys:
        ours["gws_mask_keys"] = list(config.mask_keys)
    try:
        opts.update(**{k: v for k, v in ours.items() if k not in named})
    except exceptions.OptionsError as e:
        raise RecordError(one_line(e)) from None
    if config.sets:
        try:  # at once: mitmproxy gathers a list option given several times
            opts.set(*config.sets)
        except exceptions.OptionsError as e:
            raise RecordError(f"--set {' --set '.join(config.sets)}: {one_line(e)}") from None
    if "gws_capture" not in named:
        try:
            opts.update(gws_capture=config.output)
        except exceptions.OptionsError as e:
            raise RecordError(one_line(e)) from None
    return found


def recording_master(config: RecordConfig, out: TextIO) -> tuple[Any, GwsRecorder]:
    """mitmproxy's DumpMaster with the recorder, its counter and the TLS hint (in a loop)."""
    from mitmproxy import options
    from mitmproxy.tools.dump import DumpMaster

    master = DumpMaster(
        options.Options(confdir=config.confdir), with_termlog=True, with_dumper=False
    )
    recorder = GwsRecorder()
    master.addons.add(recorder, Counter(recorder, out), UpstreamTlsHint(out))
    return master, recorder


async def run_record(config: RecordConfig, out: TextIO = sys.stderr) -> str:
    """Proxy until SIGINT/SIGTERM; returns the capture's path."""
    if not config.timeout > 0:
        raise RecordError(f"--timeout {config.timeout:g} must be a positive number of seconds")
    master, recorder = recording_master(config, out)
    quiet = _NoHandshakeWarnings()
    server_log = logging.getLogger("mitmproxy.proxy.server")
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gwsproxy-")))
        found = configure(master, config, scratch)
        path = recorder.path or config.output
        if len(found) == 1:
            out.write(f"recording {found[0].url} {found[0].target} into {path}  (Ctrl-C stops)\n")
        else:
            out.write(f"recording into {path}  (Ctrl-C stops)\n")
            for listen in found:
                out.write(f"  {listen.url} {listen.target}\n")
        if master.options.ssl_insecure:
            out.write(
                "warning: --insecure: the upstream's certificate is not checked, anyone on the"
                " way to GWS can read and change the traffic\n"
            )
        regular = [listen for listen in found if listen.spec.startswith("regular")]
        if regular:
            ca = "gwsproxy ca" + (
                "" if config.confdir == DEFAULT_CONFDIR else f" --confdir {config.confdir}"
            )
            out.write(
                f"point clients at the proxy: chromium --proxy-server={regular[0].url}"
                " --proxy-bypass-list='<-loopback>' (Chromium bypasses proxies for 127.0.0.1"
                f" otherwise); for HTTPS they must trust mitmproxy's CA: {ca}\n"
            )
        out.flush()
        server_log.addFilter(quiet)
        stack.callback(server_log.removeFilter, quiet)
        # The first SIGINT/SIGTERM stops in order (the addon's done() ends the connections and
        # closes the capture), a second one ends the process at once.
        shutdown.stop_on_signals(master.shutdown)
        await master.run()
    return str(path)


@dataclass(slots=True)
class ImportResult:
    """What an import read and wrote. Every reader (mitmproxy dumps, HARs) fills one, and
    `import` says it the same way: where reading stopped and why, the entries passed over."""

    source: str
    path: str = ""  # the capture written
    entries: int = 0  # entries (flows) read whole
    skipped: list[str] = field(default_factory=list)  # "where: why" of each entry passed over
    stopped: str | None = None  # where reading stopped before the end of the file
    why: str | None = None  # and why
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the file held besides, or lacked

    def stop(self, where: str, why: str) -> None:
        self.stopped, self.why = where, why

    @property
    def usable(self) -> bool:
        """Anything kept: a pair, a notification, a raw record of GWS traffic."""
        c = self.counts
        return c.get("pairs", 0) + c.get("unsolicited", 0) + c.get("raw", 0) > 0

    def reading(self) -> str:
        """How reading went, in one line ('' when the whole file was read)."""
        parts = []
        if self.stopped:
            parts.append(f"stopped reading {self.source} at {self.stopped}: {self.why}")
            parts.append(f"kept the {self.entries} entries read before it")
        if self.skipped:
            shown = "; ".join(self.skipped[:3])
            more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            parts.append(f"passed over {len(self.skipped)} unreadable entries ({shown}{more})")
        return ", ".join(parts)

    def told(self) -> list[str]:
        """What to tell the user besides the counts: how reading went, what the file lacked."""
        reading = self.reading()
        return ([reading] if reading else []) + self.notes

    def nothing_usable(self) -> RecordError:
        """The error when nothing usable was read (the import then writes no capture)."""
        if self.entries == 0:
            why = [f"{self.why} (at {self.stopped})"] if self.why else []
            if self.skipped:
                why.append(f"{len(self.skipped)} unreadable entries, first {self.skipped[0]}")
            return RecordError(
                f"nothing read from {self.source}: {'; '.join(why) or 'it holds no entries'}"
            )
        said = "; ".join(self.told())
        return RecordError(
            f"{self.source}: {self.entries} entries read, no GWS user-data traffic among them"
            + (f" ({said})" if said else "")
            + "; no capture written"
        )


class _Cut(Exception):
    """The framing of a dump is broken at this point: nothing after it can be found."""


def _dump_frame(f: BinaryIO, number: int) -> tuple[int, bytes] | None:
    """The next top-level tnetstring of a mitmproxy dump (type byte, payload), None at the end."""
    start = f.tell()
    c = f.read(1)
    if c == b"":
        return None
    length = b""
    while c.isdigit() and len(length) <= 12:
        length += c
        c = f.read(1)
    if c != b":" or not length:
        f.seek(start)
        raise _Cut(f"found {f.read(16)!r} where a flow should start (a tnetstring's length)")
    size = int(length)
    payload = f.read(size)
    kind = f.read(1)
    if len(payload) < size or not kind:
        short = size + 1 - len(payload) - len(kind)
        raise _Cut(f"the file ends {short} bytes short of the end of flow {number} (cut short)")
    return kind[0], payload


def _dump_flows(f: BinaryIO, result: ImportResult) -> Iterator[Any]:
    """The flows of a `mitmdump -w` file, one at a time. A flow whose framing is whole but
    whose content cannot be read is passed over (said in `result.skipped`); reading stops,
    said in `result.stopped`, where the framing itself is broken: truncated or not a dump."""
    from mitmproxy import flow
    from mitmproxy.io import compat, tnetstring

    number = 0
    while True:
        start = f.tell()
        number += 1
        try:
            frame = _dump_frame(f, number)
        except _Cut as e:
            result.stop(f"byte {start} (flow {number})", str(e))
            return
        if frame is None:
            return
        try:
            state = tnetstring.parse(frame[0], memoryview(frame[1]))
            if not isinstance(state, dict):
                raise ValueError(f"a {type(state).__name__}, not a flow")
            item = flow.Flow.from_state(compat.migrate_flow(state))
        except Exception as e:  # noqa: BLE001 - mitmproxy raises many types for a bad flow
            result.skipped.append(f"flow {number} at byte {start}: {str(e) or type(e).__name__}")
            continue
        result.entries += 1
        yield item


def import_flows(
    flows_path: str, output: str, timeout: float = 10.0, progress: Any = None
) -> ImportResult:
    """A capture from a mitmproxy flow dump: each flow becomes events as it is read (the live
    recorder's own code), spilled to disk, then recorded in time order; `progress(read, size)`
    hears how far the dump has been read.

    Reads what can be read (see ImportResult); raises RecordError, writing nothing, when
    nothing usable was read."""
    from mitmproxy import http

    from gwsproxy.record.core import Recording
    from gwsproxy.record.spill import Spill

    result = ImportResult(flows_path)
    events = GwsRecorder()  # flows -> events, as when recording live; the spill is its sink
    events.at_once = True
    try:
        f = open(flows_path, "rb")  # noqa: SIM115 - closed by the `with` below
    except FileNotFoundError:
        raise RecordError(f"{flows_path}: no such file") from None
    with f, Spill() as spill:
        events.sink = spill  # type: ignore[assignment]  # it takes events as a sink does
        size = os.fstat(f.fileno()).st_size
        for n, flow in enumerate(_dump_flows(f, result), 1):
            if progress is not None and n % 256 == 0:
                progress(f.tell(), size)
            if isinstance(flow, http.HTTPFlow):
                _flow_events(events, spill, flow)
        if result.entries == 0:
            if result.stopped == "byte 0 (flow 1)":
                raise RecordError(f"{flows_path} is not a mitmproxy flow dump: {result.why}")
            raise result.nothing_usable()
        recording = Recording(timeout)
        result.path = path = recording.open(output, upstream=f"import:{flows_path}")
        last = spill.last()
        for t, recorded in spill.replay():
            recording.advance(t)
            recording.handle(recorded)
        # As a recorder stops: what is still open when the file ends is incomplete, not timed out.
        recording.close(time.time() if last is None else last)
    result.counts = recording.counts()
    if not result.usable:
        os.unlink(path)
        raise result.nothing_usable()
    return result


def _flow_events(events: GwsRecorder, spill: Any, flow: Any) -> None:
    """One flow's events into the spill, each keyed by when it happened in the flow (ties:
    requests before answers before WebSocket messages)."""
    spill.key = (flow.request.timestamp_start, 0)
    events.request(flow)
    if flow.response is not None:
        spill.key = (flow.response.timestamp_end or flow.response.timestamp_start, 1)
        events.response(flow)
    elif flow.error is not None:
        spill.key = (flow.error.timestamp, 1)
        events.error(flow)
    if flow.websocket is not None:
        for message in flow.websocket.messages:
            spill.key = (message.timestamp, 2)
            events.frame(flow, message)


def import_file(
    path: str, output: str, timeout: float = 10.0, progress: Any = None
) -> ImportResult:
    """`gwsproxy import`: a HAR or a mitmproxy dump, told apart by content. `progress(read,
    size)` hears how far the file has been read. Raises RecordError, writing nothing, when
    nothing usable was read."""
    from gwsproxy.record import har

    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except OSError as e:
        raise RecordError(f"{path}: {e.strerror or e}") from None
    if os.path.exists(time.strftime(output)):
        # A recorder continues an existing capture; an import is a conversion of its own.
        raise RecordError(f"{output} exists: import writes a new capture, choose another -o")
    if not har.is_har(head):
        return import_flows(path, output, timeout, progress)
    done = har.import_har(path, output, timeout, progress)
    result = ImportResult(path, done.path, done.entries, counts=done.counts())
    result.notes = done.summary()
    if not result.usable:
        os.unlink(done.path)
        raise result.nothing_usable()
    return result
