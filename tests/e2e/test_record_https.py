"""`gwsproxy record` in front of a GWS served over HTTPS with its own CA (`gwsproxy sim --tls`),
and with mitmproxy's other ways: several upstreams into one capture, `--set`, `--confdir`.

Real processes: the simulator, the recorder, `gwsproxy load` (the agents talk plain HTTP to
the recorder in reverse mode; the recorder speaks TLS to GWS), `gwsproxy export`."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gwsproxy import gws

if TYPE_CHECKING:
    from conftest import Process, Procs

HOST = "127.0.0.1"

HINT = "trust its CA with --upstream-ca CA.pem (or skip the check: --insecure)"
INSECURE = "warning: --insecure: the upstream's certificate is not checked"


def load(procs: Procs, target: str, transport: str, *args: str) -> None:
    done = procs.run(
        procs.cli("load", "--target", target, "--transport", transport, *args), timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def exported(procs: Procs, path: Path) -> list[dict[str, Any]]:
    done = procs.run(procs.cli("export", str(path)))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def get(url: str) -> int:
    """GET url as agent1: the HTTP status (mitmproxy's 502 included)."""
    request = urllib.request.Request(
        url + "/api/v2/me", headers={"Authorization": gws.basic_authorization("agent1", "password")}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def stopped(record: Process) -> str:
    assert record.signal(signal.SIGINT) == 0, record.describe()
    err = record.stderr()
    assert "Traceback" not in err, err
    return err


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
def test_an_https_gws_is_recorded_trusting_the_ca_given(
    procs: Procs, tmp_path: Path, transport: str
) -> None:
    sim = procs.sim("--tls", "--csrf", "--agents", "3")  # a session cookie and CSRF, as GWS
    assert sim.url.startswith("https://") and sim.ca is not None and sim.ca.exists()
    path = tmp_path / "https.gwscap"
    record, port = procs.record(sim.url, path, "--upstream-ca", str(sim.ca))
    load(procs, f"http://{HOST}:{port}", transport, "--agents", "3", "--ops", "8")
    err = stopped(record)
    assert f"-> {sim.url} into" in err
    assert HINT not in err, err

    pairs = exported(procs, path)
    assert len(pairs) == len(sim.log()) == 24
    assert {p["status"] for p in pairs} == {"matched"}, [p["status"] for p in pairs]
    info = procs.run(procs.cli("info", str(path)))
    assert info.returncode == 0 and "24" in info.stdout, info.stdout + info.stderr
    agents = ("agent1", "agent2", "agent3")
    procs.assert_no_secrets(path, sim.session_secrets(), users=agents)


def test_without_the_ca_the_first_certificate_failure_is_said_once(
    procs: Procs, tmp_path: Path
) -> None:
    sim = procs.sim("--tls")
    record, port = procs.record(sim.url, tmp_path / "refused.gwscap")
    assert [get(f"http://{HOST}:{port}") for _ in range(4)] == [502] * 4
    procs.wait_until(lambda: HINT in record.stderr(), 10, "the certificate hint")
    err = stopped(record)
    lines = [line for line in err.splitlines() if "upstream-ca" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"upstream {sim.url}: Certificate verify failed: "), lines[0]
    assert "TLS handshake failed" not in err, err  # mitmproxy's own line per connection


@pytest.mark.parametrize("how", ["--insecure", "--set", "config.yaml"])
def test_insecure_skips_the_check_and_says_so(procs: Procs, tmp_path: Path, how: str) -> None:
    sim = procs.sim("--tls")
    args = {"--insecure": ["--insecure"], "--set": ["--set", "ssl_insecure=true"]}.get(how)
    if args is None:  # mitmproxy's own config file, in the --confdir given
        confdir = tmp_path / "mitmproxy"
        confdir.mkdir()
        (confdir / "config.yaml").write_text("ssl_insecure: true\n")
        args = ["--confdir", str(confdir)]
    record, port = procs.record(sim.url, tmp_path / "insecure.gwscap", *args)
    assert get(f"http://{HOST}:{port}") == 200
    err = stopped(record)
    assert err.count(INSECURE) == 1, err
    assert HINT not in err


def test_a_cluster_of_upstreams_is_recorded_into_one_capture(procs: Procs, tmp_path: Path) -> None:
    first, second = procs.sim("--agents", "2"), procs.sim("--agents", "2", "--seed", "2")
    # Two simulators know the same agent names and count referenceIds alike; in a cluster an
    # agent sticks to one node and the ids differ: move the second one's count on first.
    load(procs, second.url, "long-polling", "--agents", "2", "--ops", "5")
    other = procs.free_port()
    path = tmp_path / "cluster.gwscap"
    record, port = procs.record(first.url, path, "--upstream", f"{second.url}@{other}")
    procs.wait_until(lambda: procs.accepts(other), 30, "the second listener")
    load(procs, f"http://{HOST}:{port}", "long-polling", "--agents", "2", "--ops", "5")
    load(procs, f"http://{HOST}:{other}", "websocket", "--agents", "2", "--ops", "5")
    err = stopped(record)
    assert f"http://{HOST}:{port} -> {first.url}" in err, err
    assert f"http://{HOST}:{other} -> {second.url}" in err, err

    pairs = exported(procs, path)
    assert len(pairs) == len(first.log()) + len(second.log()) - 10 == 20
    assert {p["status"] for p in pairs} == {"matched"}, [
        (p["status"], p["interaction_id"]) for p in pairs
    ]
    references = {p["reference_id"] for p in pairs if p["media"] != "voice"}
    assert references <= {op["reference_id"] for op in first.log() + second.log()[10:]}


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("nosuch=1", "no option nosuch (mitmdump --options lists them)"),
        ("listen_port=x", "Not an integer: x"),
    ],
)
def test_a_bad_set_stops_before_anything_listens(
    procs: Procs, tmp_path: Path, spec: str, said: str
) -> None:
    path = tmp_path / "never.gwscap"
    command = procs.cli("record", "--upstream", "http://127.0.0.1:9", "-o", str(path))
    done = procs.run([*command, "-p", str(procs.free_port()), "--set", spec])
    assert done.returncode == 2
    assert done.stderr.strip() == f"gwsproxy record: --set {spec}: {said}"
    assert not path.exists()
