"""`gwsproxy swarm` end to end: Locust headless, a master and two workers as separate processes
on 127.0.0.1, replaying a recorded capture against `gwsproxy sim`.

The capture is captures/examples/sim-mixed.gwscap: 4 agents x 15 operations on every media,
recorded from a simulator with seed 1; a fresh `gwsproxy sim --seed 1` starts with the same
interactions and user data, so every operation applies again as recorded.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gwsproxy.replay.regress import load_pairs

if TYPE_CHECKING:
    from conftest import Process, Procs, Sim

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "captures" / "examples" / "sim-mixed.gwscap"
AGENTS, OPS = 4, 60  # in the capture
SAFETY = "45s"  # -t: a run that does not end by itself would stop here (and fail the test)
WAIT = 60.0


def _swarm(
    procs: Procs, sim: Sim, tmp_path: Path, users: int, *options: str
) -> tuple[Path, Process]:
    """Master + 2 workers, headless; waits for all three to exit: the CSV prefix, the master."""
    port = procs.free_port()
    prefix = tmp_path / "run"
    workers = [
        procs.spawn(
            procs.cli("swarm", "--worker", "--master-host", HOST, "--master-port", str(port)),
            f"worker{i}",
        )
        for i in (1, 2)
    ]
    master = procs.spawn(
        procs.cli(
            *_headless(sim, users, prefix),
            "--master",
            "--expect-workers",
            "2",
            "--master-bind-host",
            HOST,
            "--master-bind-port",
            str(port),
            *options,
        ),
        "master",
    )
    master.popen.wait(WAIT)
    for worker in workers:
        worker.popen.wait(WAIT)
    assert "run time limit reached" not in master.stderr().lower(), master.describe()
    return prefix, master


def _headless(sim: Sim, users: int, prefix: Path) -> list[str]:
    """`gwsproxy swarm` of the capture against sim, headless, all users at once, --csv."""
    started = ["-u", str(users), "-r", str(users), "-t", SAFETY, "--csv", str(prefix)]
    return ["swarm", str(CAPTURE), "--target", sim.url, "--headless", *started]


def _rows(prefix: Path, kind: str) -> list[dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row["Type"] == kind]


def _failures(prefix: Path) -> list[dict[str, str]]:
    with open(f"{prefix}_failures.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
def test_master_and_two_workers_replay_every_op_and_see_every_notification(
    procs: Procs, tmp_path: Path, transport: str
) -> None:
    sim = procs.sim("--seed", "1")
    users = AGENTS + 2  # agent5 and agent6 repeat two scripts, on interactions of their own
    prefix, master = _swarm(procs, sim, tmp_path, users, "--transport", transport)
    assert master.popen.returncode == 0, master.describe()

    expected = OPS + 2 * 15  # every agent's script once, two of them twice
    done = Counter(entry["agent"] for entry in sim.log())
    assert done == {f"agent{n}": 15 for n in range(1, users + 1)}, done
    gws_rows, http_rows = _rows(prefix, "GWS"), _rows(prefix, "HTTP")
    assert sum(int(r["Request Count"]) for r in gws_rows) == expected
    assert sum(int(r["Request Count"]) for r in http_rows) == expected
    assert sum(int(r["Failure Count"]) for r in gws_rows + http_rows) == 0
    assert not _failures(prefix)
    # each operation name of the capture, with its POST-to-notification latency
    names = {f"{p.outcome.operation} {p.outcome.media}" for p in load_pairs(str(CAPTURE))}
    assert {r["Name"] for r in gws_rows} == names
    for row in gws_rows:
        assert float(row["Min Response Time"]) > 0, row
        assert int(row["50%"]) >= 1, row
    # the notification comes after the answer: the GWS time is the longer one
    http = {r["Name"]: float(r["Average Response Time"]) for r in http_rows}
    slower = [r["Name"] for r in gws_rows if float(r["Average Response Time"]) > http[r["Name"]]]
    assert len(slower) == len(gws_rows), slower


def test_coerced_operations_fail_with_their_verdict(procs: Procs, tmp_path: Path) -> None:
    sim = procs.sim("--seed", "1", "--coerce", "sms")
    prefix, master = _swarm(procs, sim, tmp_path, AGENTS)
    assert master.popen.returncode == 1, master.describe()  # Locust: failures exit with 1

    # the sms operations that write an int: the simulator stores it as a string
    coerced = [
        p
        for p in load_pairs(str(CAPTURE))
        if p.outcome.media == "sms"
        and isinstance(p.outcome.requested, dict)
        and any(type(v) is int for v in p.outcome.requested.values())
    ]
    assert coerced
    failures = _failures(prefix)
    assert sum(int(f["Occurrences"]) for f in failures) == len(coerced)
    for failure in failures:
        assert failure["Method"] == "GWS"
        assert failure["Name"].endswith(" sms")
        assert failure["Error"].startswith("coerced: "), failure
    gws_rows = _rows(prefix, "GWS")
    assert sum(int(r["Request Count"]) for r in gws_rows) == OPS
    assert sum(int(r["Failure Count"]) for r in gws_rows) == len(coerced)
    assert len(sim.log()) == OPS


@pytest.mark.parametrize(
    ("transport", "tls"), [("long-polling", False), ("websocket", True)], ids=["http", "https-ws"]
)
def test_one_process_with_csrf_and_an_html_report(
    procs: Procs, tmp_path: Path, transport: str, tls: bool
) -> None:
    """Without workers; a GWS that wants its CSRF token on every POST and the load balancer's
    stickiness cookie with the session's (`sim --csrf`), over HTTPS with its CA trusted by
    --cacert; Locust's HTML report."""
    sim = procs.sim("--seed", "1", "--csrf", *(["--tls"] if tls else []))
    trust = ["--cacert", str(sim.ca)] if tls else []
    assert sim.url.startswith("https://" if tls else "http://")
    html = tmp_path / "report.html"
    run = procs.run(
        procs.cli(
            *_headless(sim, AGENTS, tmp_path / "run"),
            "--html",
            str(html),
            "--transport",
            transport,
            *trust,
        ),
        timeout=WAIT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    csrf = sim.control("csrf")
    assert csrf["posts"] == OPS and csrf["refused"] == 0, csrf
    assert len(sim.log()) == OPS
    rows = _rows(tmp_path / "run", "GWS")
    assert sum(int(r["Request Count"]) for r in rows) == OPS, run.stderr[-5000:]
    assert sum(int(r["Failure Count"]) for r in rows) == 0
    assert "UpdateUserData chat" in html.read_text()


def test_help_lists_the_locustfiles_options_and_locusts(procs: Procs) -> None:
    """Locust prints its help before it loads a locustfile: ours are listed first."""
    run = procs.run(procs.cli("swarm", "--help"), timeout=WAIT)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "usage: gwsproxy swarm FILE --target URL" in out
    for option in ("--speed", "--map", "--transport", "--identity", "--credentials"):
        assert option in out, option
    assert out.index("--speed") < out.index("--run-time")  # then Locust's own
