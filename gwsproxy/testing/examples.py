"""Small example captures for captures/examples/: the two GWS documentation samples, and a real
recording of simulated agents through mitmdump. Run: python -m gwsproxy.testing.examples OUTDIR

  seed-sms-update.gwscap       the documented UpdateUserData on SMS session 0000Wa9CAM6W00J
  seed-facebook-update.gwscap  the same on Facebook session 0002DaAVKJ0V0095
  sim-mixed.gwscap             4 agents x 15 random operations on every media (5 % faults),
                               simulator -> mitmdump -s addons/gws_recorder.py -> agents
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gwsproxy import gws
from gwsproxy.correlate import Status
from gwsproxy.errors import GwsProxyError
from gwsproxy.lenient import Parsed, loads
from gwsproxy.processes import (
    STOP_TIMEOUT,
    free_port,
    last_line,
    mitmdump_path,
    spawn,
    stop,
    wait_for_port,
)
from gwsproxy.record.core import Recording
from gwsproxy.record.events import REQUEST, RESPONSE, Request, Response
from gwsproxy.sim.agents import LoadConfig, LoadReport, run_load
from gwsproxy.sim.server import SEED_UPDATE_KEYS, SimConfig, start_simulator
from gwsproxy.testing.synthetic import JSON, get_answer, long_poll, request_headers

AGENT, PASSWORD = "agent1", "password"
# The request both seed documents show (seed 000 prints it; seed 003 documents the same body).
DOCUMENTED_USER_DATA = {"UserData1": 987654321, "UserData2": "DATAUPDATE-@123"}
ANSWER = b'{"statusCode": 0}'


class ExampleError(GwsProxyError):
    """Why an example could not be made, in one line."""


@dataclass(frozen=True, slots=True)
class SeedExample:
    filename: str  # the capture to write
    seed: str  # the documentation sample in gwsproxy/data
    collection: str  # as the sample's own docs spell it
    channel: str  # the Bayeux channel the notification is wrapped in


SEEDS = (
    SeedExample("seed-sms-update.gwscap", "seed_000_sms.txt", "smsessions", "/v2/me/smssessions"),
    SeedExample(
        "seed-facebook-update.gwscap",
        "seed_003_facebook.txt",
        "facebooksessions",
        "/v2/me/facebooksession",
    ),
)
SIM_MIXED = "sim-mixed.gwscap"


# ---- the documentation samples, through the recording core without mitmproxy ----------------


def seed_capture(example: SeedExample, path: Path) -> None:
    """One pair: the documented request, `{"statusCode": 0}`, and the sample notification.

    The events the addon would hand over go through the recording core, as in a recording: a
    GET of the interaction, which shows the sample's user data minus the keys the request
    writes (the pair's before), the request, its answer, and the long poll carrying the sample.
    """
    parsed = loads(resources.files("gwsproxy.data").joinpath(example.seed).read_bytes())
    if not isinstance(parsed, Parsed):
        raise ExampleError(f"{example.seed}: {parsed.reason}")
    document = parsed.value  # the sample with its quirks repaired: what a real server sends
    sample = gws.parse_notification(document)
    if sample is None or sample.interaction_id is None or sample.user_data is None:
        raise ExampleError(f"{example.seed} is not a GWS notification with user data")
    media = gws.MEDIA_BY_NAME[sample.media]
    before = {k: v for k, v in sample.user_data.items() if k not in SEED_UPDATE_KEYS}
    identity = (AGENT, None, "127.0.0.1")
    # The sample's URL names another id than its object; the object's id makes them correlate.
    url = f"/api/v2/me/{example.collection}/{sample.interaction_id}"
    body = json.dumps({"operationName": gws.UPDATE, "userData": DOCUMENTED_USER_DATA}).encode()
    headers = request_headers(AGENT, PASSWORD, body)
    answer_headers = [*JSON, (b"Content-Length", str(len(ANSWER)).encode())]
    message = json.dumps({"channel": example.channel, "data": document}).encode()

    t = time.time()
    update = f"{example.seed}#1"
    recording = Recording()
    with _replacing(path) as tmp:
        recording.open(str(tmp), f"example:{example.seed}")
        for event in (
            get_answer(
                "get", identity, media, {"id": sample.interaction_id, "userData": before}, t
            ),
            Request(REQUEST, update, identity, "POST", url, headers, body, t),
            Response(
                RESPONSE, update, identity, "POST", url, 200, answer_headers, ANSWER, t + 0.004
            ),
            long_poll("poll", identity, b"[" + message + b"]", t + 0.031),
        ):
            recording.handle(event)
        recording.close(t + 1.0)
        statuses = recording.correlator.counts.by_status
        if statuses != {Status.MATCHED: 1} or recording.raw:
            raise ExampleError(
                f"{example.seed}: recorded {statuses} and {recording.raw} raw, not one matched pair"
            )


# ---- a real recording: simulator <- mitmdump with the addon <- simulated agents -------------


async def sim_capture(
    path: Path, *, agents: int = 4, ops: int = 15, seed: int = 1, faults: float = 0.05
) -> LoadReport:
    """Record `agents` x `ops` long-polling operations through a real mitmdump into `path`."""
    mitmdump = mitmdump_path()
    addon = _addon_script()
    running = await start_simulator(SimConfig(port=0, faults=faults, seed=seed))
    with (
        _replacing(path) as tmp,
        tempfile.TemporaryDirectory(prefix="gwsproxy-examples-") as scratch,
    ):
        port = free_port()
        log_path = Path(scratch) / "mitmdump.log"
        command = [
            mitmdump,
            "-q",
            "-s",
            str(addon),
            "--mode",
            f"reverse:{running.url}",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(port),
            "--set",
            f"confdir={Path(scratch) / 'mitmproxy'}",  # its CA stays out of ~/.mitmproxy
            "--set",
            f"gws_capture={tmp}",
        ]
        process = spawn(command, log_path)
        try:
            # In a thread: the wait blocks, and this loop runs the simulator.
            await asyncio.to_thread(wait_for_port, port, process, "mitmdump", log_path)
            config = LoadConfig(
                target=f"http://127.0.0.1:{port}",
                agents=agents,
                ops=ops,
                transport="long-polling",
                seed=seed,
            )
            report = await run_load(config)
            # SIGINT: mitmdump shuts down its addons, which close the capture cleanly.
            process.send_signal(signal.SIGINT)
            code = await asyncio.to_thread(process.wait, STOP_TIMEOUT)
            if code != 0:
                raise ExampleError(f"mitmdump exited with {code}: {last_line(log_path)}")
        except subprocess.TimeoutExpired:
            raise ExampleError(f"mitmdump did not stop within {STOP_TIMEOUT:g} s") from None
        finally:
            stop(process)
            await running.stop()
    return report


def _addon_script() -> Path:
    script = Path(__file__).resolve().parents[2] / "addons" / "gws_recorder.py"
    if not script.exists():
        raise ExampleError(f"{script} not found: run from a gwsproxy source checkout")
    return script


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` that replaces it only once everything went well."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---- command line -----------------------------------------------------------------------------


def make_all(outdir: Path) -> list[tuple[Path, Any]]:
    outdir.mkdir(parents=True, exist_ok=True)
    made: list[tuple[Path, Any]] = []
    for example in SEEDS:
        seed_capture(example, outdir / example.filename)
        made.append((outdir / example.filename, "1 pair from the documentation sample"))
    report = asyncio.run(sim_capture(outdir / SIM_MIXED))
    made.append(
        (
            outdir / SIM_MIXED,
            f"{report.sent} ops by {report.agents} agents: {report.notified} notified, "
            f"{report.errors} errors, {report.rejected} rejected, {report.timeouts} timeouts",
        )
    )
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gwsproxy.testing.examples",
        description="Write the example captures (seed-*.gwscap, sim-mixed.gwscap) into OUTDIR.",
    )
    parser.add_argument("outdir", type=Path, metavar="OUTDIR", help="e.g. captures/examples")
    args = parser.parse_args(argv)
    try:
        made = make_all(args.outdir)
    except GwsProxyError as e:
        print(f"gwsproxy.testing.examples: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"gwsproxy.testing.examples: cannot write into {args.outdir}: {e}", file=sys.stderr)
        return 1
    for path, what in made:
        print(f"{path} ({path.stat().st_size:,} bytes): {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
