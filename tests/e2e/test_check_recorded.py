"""`gwsproxy check` on real recordings: simulated agents through `gwsproxy record` against the
simulator, once as it should behave and once storing integers as strings on sms (`--coerce sms`,
a GWS bug on purpose)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from gwsproxy.sim.agents import LoadConfig, run_load

if TYPE_CHECKING:
    from conftest import Procs

HOST = "127.0.0.1"


def record_sms(procs: Procs, tmp_path: Path, name: str, *sim_options: str) -> Path:
    """Two agents' sms operations, recorded through `gwsproxy record`; the capture's path."""
    sim = procs.sim("--agents", "2", *sim_options)
    path = tmp_path / f"{name}.gwscap"
    record, port = procs.record(sim.url, path)
    config = LoadConfig(target=f"http://{HOST}:{port}", agents=2, ops=20, media=("sms",))
    report = asyncio.run(run_load(config))
    assert report.notified == report.sent == 40, report.as_dict()
    assert record.signal(signal.SIGINT) == 0, record.describe()
    return path


def test_check_fails_a_coercing_gws_and_passes_the_plain_one(procs: Procs, tmp_path: Path) -> None:
    coerced = record_sms(procs, tmp_path, "coerced", "--coerce", "sms")
    plain = record_sms(procs, tmp_path, "plain")

    exported = procs.run(procs.cli("export", str(coerced)))
    assert exported.returncode == 0, exported.stderr
    pairs = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(pairs) == 40 and {p["status"] for p in pairs} == {"matched"}
    rows = [p for p in pairs if p["verdict"] == "coerced"]
    assert rows, Counter(p["verdict"] for p in pairs)
    for p in rows:
        for f in p["findings"]:
            assert (f["kind"], f["expected_type"], f["actual_type"]) == ("coerced", "int", "str")
            assert f["actual"] == str(f["expected"])

    report = tmp_path / "coerced.xml"
    gate = procs.run(procs.cli("check", str(coerced), "--report", str(report)))
    assert gate.returncode == 1, gate.stdout + gate.stderr
    fails = [line for line in gate.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == min(len(rows), 20)
    assert all(line.endswith(": coerced") and " on sms " in line for line in fails), fails
    assert f'failures="{len(rows)}"' in report.read_text()

    ok = procs.run(procs.cli("check", str(plain)))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "40 passed, 0 failed" in ok.stdout
