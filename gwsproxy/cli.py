"""The `gwsproxy` command line: one console script, a subcommand per job.

Bad input ends in one line on stderr saying what is wrong and what to do, and exit status 2:
every stage raises a GwsProxyError for it, and `main` alone prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rich.console import Console

from gwsproxy import bayeux
from gwsproxy.errors import GwsProxyError, listen_problem, url_problem
from gwsproxy.gws.options import add_access_options

if TYPE_CHECKING:  # each command imports its stage only when it runs
    from gwsproxy.gws.session import Access
    from gwsproxy.sim.agents import LoadConfig
    from gwsproxy.sim.server import RunningSim, SimConfig, Simulator
    from gwsproxy.tls import ServerCert

EXIT_USAGE = 2


def _console(stderr: bool = False) -> Console:
    """rich's Console for our output. Only a terminal wraps lines: to a pipe or a file (where
    rich assumes 80 columns) a line stays one line, for grep and logs; tables keep rich's width."""
    console = Console(stderr=stderr)
    console.soft_wrap = not console.is_terminal
    return console


def _positive(kind: type) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} must not be negative")
        return value

    return parse


def _port(text: str) -> int:
    value = _positive(int)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0-65535)")
    return int(value)


def _rate(text: str) -> float:
    value = _positive(float)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} is a rate between 0 and 1")
    return value


def _speed(text: str) -> float:
    """`--speed`: a factor that divides recorded delays; 0 or `max` means no delay at all."""
    if text.strip().lower() in ("max", "inf", "0"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'max'") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number, 0 or 'max'")
    return value


def _unmatched(text: str) -> str:
    """`--unmatched`: `404`, `closest` or `forward:URL` (an http or https base URL)."""
    if text in ("404", "closest"):
        return text
    if text.startswith("forward:"):
        url = text.removeprefix("forward:")
        problem = url_problem(url)
        if problem:
            raise argparse.ArgumentTypeError(f"forward: {problem}")
        return "forward:" + url.strip().rstrip("/")
    raise argparse.ArgumentTypeError(f"{text!r}: choose 404, closest or forward:URL")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gwsproxy",
        description="Record, inspect and replay GWS user-data requests and their notifications.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser("sim", help="run the built-in GWS simulator")
    _sim_options(sim, port=8090)
    sim.set_defaults(run=cmd_sim)

    load = sub.add_parser("load", help="simulated agents sending user-data operations to a GWS")
    load.add_argument("--target", required=True, help="GWS base URL, e.g. http://127.0.0.1:8090")
    _load_options(load)
    add_access_options(load)
    load.set_defaults(run=cmd_load)

    record = sub.add_parser("record", help="record GWS traffic through mitmproxy into a capture")
    record.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="URL[@PORT]",
        help="the GWS to record, e.g. https://gws:8443 (reverse mode); again for each node of a"
        " cluster, each on its own port (--port, --port+1, ... or @PORT), into one capture",
    )
    record.add_argument(
        "-p", "--port", type=_port, default=8080, help="(first) port to listen on (8080)"
    )
    record.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    record.add_argument(
        "-o",
        "--output",
        default="captures/gws-%Y%m%d-%H%M%S.gwscap",
        help="capture file (strftime)",
    )
    record.add_argument(
        "--mode",
        action="append",
        metavar="MODE",
        help="reverse (default: to each --upstream), regular (an HTTP proxy), or any mitmproxy"
        " mode such as upstream:http://proxy:3128 or reverse:URL@PORT; repeatable",
    )
    record.add_argument(
        "--timeout", type=_positive(float), default=10.0, help="notification timeout (s)"
    )
    record.add_argument("--fsync", action="store_true", help="fsync after every record")
    record.add_argument(
        "--mask-key", action="append", default=[], metavar="KEY", help="mask this user-data key"
    )
    record.add_argument(
        "--upstream-ca",
        action="append",
        default=[],
        metavar="FILE",
        help="trust this CA (PEM) for the upstream, besides the usual ones; repeatable",
    )
    record.add_argument(
        "--insecure", action="store_true", help="do not check the upstream's certificate at all"
    )
    record.add_argument(
        "--client-cert",
        metavar="FILE",
        help="client certificate for the upstream (PEM, or a folder)",
    )
    record.add_argument(
        "--set",
        action="append",
        default=[],
        dest="sets",
        metavar="NAME=VALUE",
        help="any mitmproxy option (applied last); repeatable",
    )
    record.add_argument(
        "--confdir",
        default="~/.mitmproxy",
        metavar="DIR",
        help="mitmproxy's folder: its CA, and its config.yaml read first (~/.mitmproxy)",
    )
    record.set_defaults(run=cmd_record)

    imp = sub.add_parser(
        "import", help="a capture from a HAR file or a mitmproxy flow dump (mitmdump -w)"
    )
    imp.add_argument("flows", metavar="FILE", help="the HAR file or flow dump (told by content)")
    imp.add_argument("-o", "--output", required=True, help="capture file to write")
    imp.add_argument(
        "--timeout", type=_positive(float), default=10.0, help="notification timeout (s)"
    )
    imp.set_defaults(run=cmd_import)

    ca = sub.add_parser(
        "ca", help="where mitmproxy's CA certificate is, and how to make a client trust it"
    )
    ca.add_argument(
        "--confdir", default="~/.mitmproxy", help="mitmproxy's confdir (default: ~/.mitmproxy)"
    )
    ca.add_argument(
        "--proxy", default="http://127.0.0.1:8080", help="the proxy to name in the examples"
    )
    ca.set_defaults(run=cmd_ca)

    tui = sub.add_parser("tui", help="inspect captures in a terminal UI")
    tui.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="captures, HAR files or mitmproxy dumps (merged by time)",
    )
    tui.add_argument(
        "--follow", action="store_true", help="tail a capture that is still being written"
    )
    tui.add_argument(
        "--replay-target", metavar="URL", help="default GWS URL for replay (r) in the inspector"
    )
    add_access_options(tui)  # for its replay
    tui.set_defaults(run=cmd_tui)

    info = sub.add_parser("info", help="a capture's counts, time span, sessions and damage")
    info.add_argument("file", help="capture file")
    info.set_defaults(run=cmd_info)

    export = sub.add_parser(
        "export", help="captures' pairs as JSON lines or Parquet, or one capture as a HAR file"
    )
    export.add_argument("files", nargs="+", metavar="FILE", help="capture files")
    export.add_argument(
        "--format",
        choices=("jsonl", "har", "parquet"),
        default="jsonl",
        help="jsonl (one object per pair), har (HAR 1.2: browsers, mitmproxy; one FILE) or "
        "parquet (one file per capture in the directory -o DIR: DuckDB, Polars, Spark)",
    )
    export.add_argument(
        "-o", "--output", default="-", help="output file (default stdout); for parquet a directory"
    )
    export.set_defaults(run=cmd_export)

    query = sub.add_parser(
        "query",
        help='SQL over captures with DuckDB: the table `pairs` (`gwsproxy query "SQL" FILE...`)',
    )
    query.add_argument("sql", metavar="SQL", help="a DuckDB query over the table pairs")
    query.add_argument("files", nargs="+", metavar="FILE", help="capture files")
    query.add_argument(
        "--format",
        choices=("table", "csv", "jsonl"),
        default="table",
        help="table (rich on a terminal, aligned text to a pipe), csv or jsonl",
    )
    query.set_defaults(run=cmd_query)

    serve = sub.add_parser("serve", help="a mock GWS from a capture (REST and CometD)")
    serve.add_argument("file", help="capture file to answer from")
    serve.add_argument(
        "-p", "--port", type=_port, default=8090, help="port to listen on (default 8090; 0: any)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help="divide recorded delays by X (default 1; 0 or 'max': no delay)",
    )
    serve.add_argument(
        "--unmatched",
        type=_unmatched,
        default="404",
        metavar="404|closest|forward:URL",
        help="answer to a request no recorded pair matches (default 404)",
    )
    serve.add_argument(
        "--match",
        choices=("first", "last"),
        default="first",
        help="among equal recorded requests, use the first or the last unused one (first)",
    )
    _tls_options(serve)
    serve.set_defaults(run=cmd_serve)

    rep = sub.add_parser("replay", help="re-send a capture to a GWS and compare the changes")
    rep.add_argument("file", help="capture file")
    rep.add_argument("--target", required=True, help="GWS base URL, e.g. http://127.0.0.1:8090")
    rep.add_argument("--user", help="replay every agent as this user (default: the capture's)")
    rep.add_argument("--password", default="password", help="password (default 'password')")
    rep.add_argument(
        "--map", action="append", default=[], metavar="OLD=NEW", help="replace in paths and bodies"
    )
    rep.add_argument(
        "--ignore", action="append", default=[], metavar="KEY_REGEX", help="keys not compared"
    )
    rep.add_argument("--report", metavar="FILE", help="write junit (.xml) or JSON report")
    rep.add_argument(
        "-o",
        "--output",
        default="captures/replay-%Y%m%d-%H%M%S.gwscap",
        help="capture of the replay",
    )
    rep.add_argument("--rate", type=_positive(float), default=0.0, help="requests/s (0: no limit)")
    rep.add_argument(
        "--transport", choices=bayeux.TRANSPORTS, default="long-polling", help="CometD"
    )
    rep.add_argument(
        "--timeout", type=_positive(float), default=10.0, help="notification timeout (s)"
    )
    add_access_options(rep)
    rep.set_defaults(run=cmd_replay)

    swarm = sub.add_parser(
        "swarm",
        help="replay a capture as load with Locust (one machine or many)",
        description="gwsproxy swarm FILE --target URL [LOCUST OPTIONS]: every option after "
        "FILE goes to Locust (--headless -u N -r R -t 30s --csv PREFIX --html FILE, --master, "
        "--worker --master-host H) and to gwsproxy's locustfile (--speed, --map, --transport, "
        "--timeout, --identity, --credentials ...): `gwsproxy swarm --help` lists them all.",
        prefix_chars="+",  # every option is Locust's: none is parsed here
        add_help=False,
    )
    swarm.add_argument("locust", nargs=argparse.REMAINDER, help="FILE and Locust's options")
    swarm.set_defaults(run=cmd_swarm)

    from gwsproxy.verdict import FAIL_ON

    chk = sub.add_parser(
        "check", help="a CI gate: exit 1 if a pair's verdict is one to fail on, else 0"
    )
    chk.add_argument("files", nargs="+", metavar="FILE", help="capture files")
    chk.add_argument(
        "--fail-on",
        default=",".join(FAIL_ON),
        metavar="VERDICTS",
        help="verdicts that fail, separated by commas (default: %(default)s)",
    )
    chk.add_argument(
        "--ignore", action="append", default=[], metavar="KEY_REGEX", help="keys not judged"
    )
    chk.add_argument("--report", metavar="FILE", help="write junit (.xml) or JSON report")
    chk.set_defaults(run=cmd_check)

    demo = sub.add_parser(
        "demo", help="simulator + recording proxy + simulated agents + the inspector, live"
    )
    _load_options(demo, agents=4, ops=25)
    demo.add_argument(
        "-o", "--output", default="captures/demo-%Y%m%d-%H%M%S.gwscap", help="capture file"
    )
    demo.add_argument(
        "--no-tui", action="store_true", help="run a bounded demo and print a summary (no TTY)"
    )
    demo.set_defaults(run=cmd_demo)
    return parser


def _sim_options(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("-p", "--port", type=_port, default=port, help=f"port (default {port}; 0: any)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--agents", type=_positive(int), default=10, help="agents agent1..agentN")
    p.add_argument("--per-agent", type=_positive(int), default=1, help="interactions per media")
    p.add_argument("--shared", type=_positive(int), default=0, help="chats shared by two agents")
    p.add_argument("--delay", type=_positive(float), default=0.02, help="notification delay (s)")
    p.add_argument("--jitter", type=_positive(float), default=0.02, help="added random delay (s)")
    p.add_argument("--faults", type=_rate, default=0.0, help="rate of Error notifications")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--cometd-timeout", type=_positive(float), default=30.0, help="held connect timeout (s)"
    )
    p.add_argument(
        "--seed-from", metavar="CAPTURE", help="start with the interactions a capture saw"
    )
    p.add_argument(
        "--csrf",
        action="store_true",
        help="as GWS with CSRF on: a token per HTTP session (from a GET) on every POST, "
        "and a load balancer's stickiness cookie",
    )
    p.add_argument(
        "--bearer",
        action="store_true",
        help="bearer tokens instead of Basic (USER TOKEN lines in a 0600 file it names)",
    )
    p.add_argument("--api-key", metavar="KEY", help="require this x-api-key header")
    p.add_argument(
        "--coerce",
        action="append",
        default=[],
        metavar="MEDIA",
        help="misbehave: store int values as strings on this media (for regression tests)",
    )
    _tls_options(p)


def _tls_options(p: argparse.ArgumentParser) -> None:
    """HTTPS for `sim` and `serve`: a throwaway certificate, or the user's own."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a throwaway CA and certificate (their paths are printed)",
    )
    group.add_argument("--certfile", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--keyfile", metavar="FILE", help="its private key (default: in --certfile)")


def _served_cert(args: argparse.Namespace, private: Path) -> ServerCert | None:
    """The certificate `--tls` or `--certfile` asks for (None: plain HTTP); a throwaway one is
    made in `private`, the server's own folder, removed when it stops."""
    from gwsproxy import tls

    if args.keyfile and not args.certfile:
        raise GwsProxyError("--keyfile goes with --certfile FILE")
    if args.certfile:
        return tls.given(args.certfile, args.keyfile)
    if not args.tls:
        return None
    names: tuple[str, ...] = tls.DEFAULT_NAMES
    if args.host not in (*names, "0.0.0.0", "::", ""):  # a name or address of its own
        names = (*names, args.host)
    return tls.throwaway(private, names)


def _load_options(p: argparse.ArgumentParser, agents: int = 10, ops: int = 50) -> None:
    p.add_argument("--agents", type=_positive(int), default=agents, help="number of agents")
    p.add_argument("--ops", type=_positive(int), default=ops, help="operations per agent")
    p.add_argument(
        "--transport",
        choices=bayeux.TRANSPORTS,
        default="long-polling",
        help="CometD transport",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--timeout", type=_positive(float), default=10.0, help="notification timeout (s)"
    )
    p.add_argument("--think", type=_positive(float), default=0.0, help="pause between ops (s)")


def _access(args: argparse.Namespace) -> Access:
    """The access options (`gws.options`) as the shared GWS client takes them; GwsProxyError
    for a bad value."""
    from gwsproxy.gws.options import access_of

    access = access_of(args)
    if args.insecure:
        print(
            f"gwsproxy {args.command}: warning: --insecure: the GWS's certificate is not checked",
            file=sys.stderr,
        )
    return access


def _sim_config(args: argparse.Namespace) -> SimConfig:
    from gwsproxy.sim.server import SimConfig

    return SimConfig(
        host=args.host,
        port=args.port,
        agents=args.agents,
        per_agent=args.per_agent,
        shared=args.shared,
        delay=args.delay,
        jitter=args.jitter,
        faults=args.faults,
        seed=args.seed,
        seed_from=args.seed_from,
        cometd_timeout=args.cometd_timeout,
        csrf=args.csrf,
        bearer=args.bearer,
        api_key=args.api_key,
        coerce=tuple(args.coerce),
    )


async def _start_sim(config: SimConfig) -> RunningSim:
    from gwsproxy.capture.format import CaptureError
    from gwsproxy.sim.server import start_simulator

    unknown = [m for m in config.coerce if m not in _media_names()]
    if unknown:
        raise GwsProxyError(f"--coerce {unknown[0]}: not a media ({', '.join(_media_names())})")
    try:
        return await start_simulator(config)
    except CaptureError as e:
        raise GwsProxyError(f"--seed-from: {e}") from None
    except OSError as e:
        raise GwsProxyError(listen_problem(e, config.host, config.port)) from None


def _media_names() -> list[str]:
    from gwsproxy.gws import MEDIA

    return [m.name for m in MEDIA]


def _sim_sessions(simulator: Simulator, private: Path) -> None:
    """The lines after the simulator's banner on its sessions (csrf, bearer, API key modes);
    bearer mode writes the agents' tokens into a 0600 file in the run's private folder."""
    config = simulator.config
    if config.bearer:
        path = private / "bearer-tokens"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(simulator.tokens_text())
        print(f"bearer tokens (USER TOKEN lines): {path}  (Basic is refused)", flush=True)
    if config.csrf:
        print("CSRF on: GET /api/v2/me gives the token, every POST must carry it", flush=True)
    if config.api_key is not None:
        print("x-api-key required", flush=True)


@contextlib.contextmanager
def _private_folder(command: str) -> Iterator[Path]:
    """A server's own folder (mode 0700) for its throwaway certificate and tokens, removed when
    it stops."""
    with tempfile.TemporaryDirectory(prefix=f"gwsproxy-{command}-") as folder:
        yield Path(folder)


def cmd_sim(args: argparse.Namespace) -> int:
    with _private_folder("sim") as private:
        return _run_sim(args, private)


def _run_sim(args: argparse.Namespace, private: Path) -> int:
    from gwsproxy.tls import told

    cert = _served_cert(args, private)

    async def main() -> None:
        running = await _start_sim(dataclasses.replace(_sim_config(args), tls=cert))
        print(  # the banner that gwsproxy.processes.SIM_BANNER (and SIM_TLS) reads
            f"GWS simulator on {running.url}  agents agent1..agent{args.agents}, "
            f"password 'password'  (Ctrl-C stops it)" + (f"\n{told(cert)}" if cert else ""),
            flush=True,
        )
        _sim_sessions(running.simulator, private)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):  # an orderly stop, not a cancelled task
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await running.stop()

    asyncio.run(main())
    return 0


def _load_config(args: argparse.Namespace, target: str) -> LoadConfig:
    from gwsproxy.sim.agents import LoadConfig

    return LoadConfig(
        target=target,
        agents=args.agents,
        ops=args.ops,
        transport=args.transport,
        seed=args.seed,
        timeout=args.timeout,
        think=args.think,
        access=_access(args),
    )


def cmd_load(args: argparse.Namespace) -> int:
    from gwsproxy.sim.agents import run_load

    report = asyncio.run(run_load(_load_config(args, args.target.rstrip("/"))))
    _console().print(report.table())
    return 0 if report.timeouts == 0 else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from gwsproxy.demo import DemoConfig, run_demo

    interactive = not args.no_tui and sys.stdin.isatty() and sys.stdout.isatty()
    config = DemoConfig(
        output=args.output,
        agents=args.agents,
        ops=args.ops,
        think=args.think if not interactive or args.think else 0.5,
        transport=args.transport,
        seed=args.seed,
        interactive=interactive,
    )
    return run_demo(config, _console())


def cmd_record(args: argparse.Namespace) -> int:
    from gwsproxy.record.command import RecordConfig, run_record

    config = RecordConfig(
        upstreams=tuple(args.upstream),
        output=args.output,
        host=args.host,
        port=args.port,
        modes=tuple(args.mode or ["reverse"]),
        timeout=args.timeout,
        fsync=args.fsync,
        mask_keys=tuple(args.mask_key),
        upstream_ca=tuple(args.upstream_ca),
        insecure=args.insecure,
        client_cert=args.client_cert,
        sets=tuple(args.sets),
        confdir=args.confdir,
    )
    path = asyncio.run(run_record(config))
    print(f"capture: {path}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from gwsproxy.record.command import import_file
    from gwsproxy.record.indexing import index_file

    # A bar over the file's bytes on a terminal (a missing file is import_file's to say).
    shown = [args.flows] if os.path.isfile(args.flows) else []
    with _progress(f"importing {os.path.basename(args.flows)}", shown, every=1) as advance:
        try:
            result = import_file(
                args.flows,
                args.output,
                args.timeout,
                None if advance is None else lambda read, size: advance(read),
            )
        except OSError as e:
            raise GwsProxyError(str(e)) from None
    for line in result.told():  # where reading stopped and why, what the file lacked
        print(f"gwsproxy import: {line}", file=sys.stderr)
    # Its index too, as a recorder keeps it: the first open of the capture reads no record.
    with _progress("indexing", [result.path], every=1) as progress:
        index_file(result.path, None if progress is None else lambda done, _total: progress(done))
    counts = result.counts
    print(
        f"{result.path}: {counts['pairs']} pairs, {counts['unsolicited']} unsolicited notifications"
    )
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    from gwsproxy.tui.app import run_tui

    access = _access(args)  # a bad option: one line from main, before the inspector starts
    return run_tui(args.files, args.follow, args.replay_target, access)  # prints its own errors


def cmd_ca(args: argparse.Namespace) -> int:
    from gwsproxy.record.ca import authority, how_to_trust

    for line in how_to_trust(authority(args.confdir), args.proxy):
        print(line)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from gwsproxy.report import info

    # Progress shows only while the capture's index is built or extended (gwsproxy.capture.index).
    with _progress("indexing", [args.file], every=1) as progress:
        summary = info(args.file, None if progress is None else lambda done, _total: progress(done))
    _console().print(summary)
    return 0


@contextlib.contextmanager
def _progress(
    label: str, paths: Sequence[str], every: int = 512
) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr over the captures' bytes, when stderr is a terminal;
    yields the callback that takes the bytes read so far (None: no terminal, no progress),
    which redraws on every `every`th call."""
    from gwsproxy.report_parquet import total_bytes

    total = total_bytes(paths)
    console = _console(stderr=True)
    if not console.is_terminal or not paths:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        calls = 0

        def advance(done: int) -> None:
            nonlocal calls
            calls += 1
            if calls % every == 0 or done >= total:
                progress.update(task, completed=done)

        yield advance


def cmd_export(args: argparse.Namespace) -> int:
    from gwsproxy.report import write_jsonl
    from gwsproxy.report_har import write_har

    if args.format == "parquet":
        return _export_parquet(args)
    if args.format == "har" and len(args.files) > 1:
        raise GwsProxyError("--format har takes one FILE (a HAR file holds one capture)")

    def write(out: TextIO) -> None:
        # A bar on the terminal unless the export itself goes there.
        shown = args.files if args.output != "-" or not sys.stdout.isatty() else []
        with _progress("exporting", shown) as progress:
            done = 0
            for path in args.files:
                report = None if progress is None else (lambda n, base=done: progress(base + n))
                (write_har if args.format == "har" else write_jsonl)(path, out, report)
                done += os.path.getsize(path)

    try:
        if args.output == "-":
            write(sys.stdout)
        else:
            with open(args.output, "w", encoding="utf-8") as out:
                write(out)
    except GwsProxyError:  # the capture cannot be read: said by main
        raise
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as e:
        raise GwsProxyError(f"cannot write {args.output}: {e.strerror}") from None
    return 0


def _export_parquet(args: argparse.Namespace) -> int:
    from gwsproxy.report_parquet import export_parquet

    if args.output == "-":
        raise GwsProxyError("--format parquet writes files: give the directory with -o DIR")
    with _progress("exporting", args.files) as progress:
        written = export_parquet(args.files, args.output, progress)
    for target, rows in written:
        print(f"{target}: {rows} pairs")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from gwsproxy import report_parquet as rp

    with _progress("reading", args.files) as progress:
        connection = rp.connect(args.files, progress)
    with connection as con:
        columns, is_json, cursor = rp.run(con, args.sql)
        rows = rp.rows_of(cursor)
        try:
            if args.format == "csv":
                rp.write_csv(columns, rows, sys.stdout)
            elif args.format == "jsonl":
                rp.write_jsonl(columns, is_json, rows, sys.stdout)
            elif _console().is_terminal:
                from rich.markup import escape
                from rich.table import Table

                table = Table(*(escape(c) for c in columns))
                for row in rows:
                    table.add_row(*(escape(rp.text(v)) for v in row))
                _console().print(table)
            else:
                rp.write_aligned(columns, rows, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gwsproxy.replay.mock import MockConfig, serve_main

    config = MockConfig(
        capture=args.file,
        host=args.host,
        port=args.port,
        speed=args.speed,
        unmatched=args.unmatched,
        match=args.match,
    )
    with _private_folder("serve") as private:
        return serve_main(dataclasses.replace(config, tls=_served_cert(args, private)))


def _check_ignore(patterns: list[str]) -> None:
    """`--ignore KEY_REGEX` of replay and check: each must compile."""
    import re

    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as e:
            raise GwsProxyError(f"--ignore {pattern!r}: not a regular expression ({e})") from None


def cmd_replay(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from gwsproxy.replay.regress import (
        ReplayConfig,
        failure_lines,
        load_pairs,
        parse_maps,
        replay,
        write_report,
    )

    maps = parse_maps(args.map)
    _check_ignore(args.ignore)
    config = ReplayConfig(
        capture=args.file,
        target=args.target.rstrip("/"),
        user=args.user,
        password=args.password,
        maps=maps,
        ignore=tuple(args.ignore),
        output=args.output,
        rate=args.rate,
        transport=args.transport,
        timeout=args.timeout,
        access=_access(args),
    )
    console = _console(stderr=True)
    total = len(load_pairs(args.file))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=total)
        result = asyncio.run(replay(config, lambda c: progress.advance(task)))
    out = _console()
    for line in failure_lines(result):
        out.print(line, highlight=False)
    rate = len(result.comparisons) / result.elapsed if result.elapsed else 0.0
    colour = "green" if result.ok else "red"
    out.print(
        f"[{colour}]{result.passed} passed, {len(result.failed)} failed[/] "
        f"in {result.elapsed:.2f} s ({rate:.0f} pairs/s); new capture: {result.output}"
    )
    if args.report:
        write_report(result, args.report)
    return 0 if result.ok else 1


def cmd_check(args: argparse.Namespace) -> int:
    from gwsproxy.replay.check import check, fail_on
    from gwsproxy.replay.regress import failure_lines, write_report

    failing = fail_on(args.fail_on)
    _check_ignore(args.ignore)
    result = check(args.files, failing, args.ignore)
    out = _console()
    for line in failure_lines(result):
        out.print(line, highlight=False)
    colour = "green" if result.ok else "red"
    out.print(
        f"[{colour}]{result.passed} passed, {len(result.failed)} failed[/] "
        f"(failing on: {', '.join(sorted(failing)) or 'nothing'})",
        highlight=False,
    )
    if args.report:
        try:
            write_report(result, args.report)
        except OSError as e:
            raise GwsProxyError(f"cannot write {args.report}: {e.strerror}") from None
    return 0 if result.ok else 1


def cmd_swarm(args: argparse.Namespace) -> int:
    from gwsproxy.swarm.command import run

    return run(args.locust)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except GwsProxyError as e:
        print(f"gwsproxy {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
