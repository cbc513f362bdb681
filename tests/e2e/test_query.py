"""`gwsproxy query` over three captures recorded by three `gwsproxy record` proxies in front of
one `gwsproxy sim` (storing integers as strings on sms: `--coerce sms`), each driven by its own
`gwsproxy load`; the answers agree with each capture's JSONL export."""

from __future__ import annotations

import csv
import io
import json
import signal
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Procs

pytestmark = pytest.mark.e2e

AGENTS, OPS = 2, 10

COERCED_KEYS = """
SELECT media, f.key AS key, count(*) AS coerced
FROM (SELECT media, unnest(findings) AS f FROM pairs)
WHERE f.kind = 'coerced'
GROUP BY ALL ORDER BY media, coerced DESC, key
"""


def test_query_over_three_recorded_captures(procs: Procs, tmp_path: Path) -> None:
    sim = procs.sim("--agents", str(AGENTS), "--coerce", "sms")
    captures = []
    for n in range(3):
        path = tmp_path / f"proxy{n}" / "week.gwscap"  # the same name in three places
        path.parent.mkdir()
        record, port = procs.record(sim.url, path)
        load = procs.run(
            procs.cli(
                "load",
                "--target",
                f"http://127.0.0.1:{port}",
                "--agents",
                str(AGENTS),
                "--ops",
                str(OPS),
                "--seed",
                str(n),
            ),
            timeout=120,
        )
        assert load.returncode == 0, load.stdout + load.stderr
        assert record.signal(signal.SIGINT) == 0, record.describe()
        captures.append(str(path))

    exported = {}
    for path in captures:
        done = procs.run(procs.cli("export", path))
        assert done.returncode == 0, done.stderr
        exported[path] = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(exported[path]) == AGENTS * OPS

    sql = "SELECT capture, verdict, count(*) AS n FROM pairs GROUP BY ALL ORDER BY ALL"
    done = procs.run(procs.cli("query", sql, *captures, "--format", "csv"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress: stderr is no terminal
    got = {
        (r["capture"], r["verdict"]): int(r["n"]) for r in csv.DictReader(io.StringIO(done.stdout))
    }
    assert got == dict(Counter((p, o["verdict"]) for p, objs in exported.items() for o in objs))

    done = procs.run(procs.cli("query", COERCED_KEYS, *captures, "--format", "jsonl"))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    want = Counter(
        (o["media"], f["key"])
        for objs in exported.values()
        for o in objs
        for f in o["findings"]
        if f["kind"] == "coerced"
    )
    assert want, "the coercing simulator made no coerced finding"
    assert {(r["media"], r["key"]): r["coerced"] for r in rows} == dict(want)
    assert {r["media"] for r in rows} == {"sms"}

    done = procs.run(procs.cli("query", "SELECT * FROM nowhere", *captures))
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("gwsproxy query: Catalog Error")
