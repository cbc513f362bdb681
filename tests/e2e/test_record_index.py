"""The recorder keeps the capture's index as it writes (gwsproxy.record.indexing.IndexKeeper):
while it records, the sidecar grows with the pairs and their verdicts, and the first open after
the recording reads the index, not the capture."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gwsproxy import gws
from gwsproxy.capture.format import Kind
from gwsproxy.capture.index import sidecar
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.record.indexing import index_spec
from gwsproxy.sim.agents import LoadConfig, run_load

if TYPE_CHECKING:
    from conftest import Procs

HOST = "127.0.0.1"


def indexed(path: Path) -> Any:
    """The index as the sidecar has it, read without extending it."""
    from gwsproxy.capture.index import open_index

    with CaptureReader(path) as reader:
        return open_index(reader, index_spec(), save=False)


def indexed_pairs(path: Path) -> int:
    """Pairs the sidecar lists (0 while there is none)."""
    if not sidecar(path).exists():
        return 0
    index = indexed(path)
    kinds = index.table.column("kind").to_pylist()[: index.reused]
    return kinds.count(int(Kind.PAIR))


def test_the_recorder_indexes_as_it_records(procs: Procs, tmp_path: Path) -> None:
    # Every media coerces integers: the pairs are judged applied or coerced.
    sim = procs.sim("--agents", "3", *(o for m in gws.MEDIA for o in ("--coerce", m.name)))
    path = tmp_path / "live.gwscap"
    record, port = procs.record(sim.url, path)
    target = f"http://{HOST}:{port}"

    def load(ops: int) -> None:
        report = asyncio.run(run_load(LoadConfig(target=target, agents=3, ops=ops, timeout=10)))
        assert report.notified == 3 * ops, report.as_dict()

    load(10)
    # While it records: the sidecar lists the pairs written so far, with their verdicts.
    procs.wait_until(lambda: indexed_pairs(path) == 30, 20, "the recorder to index 30 pairs")
    load(10)
    assert record.signal(signal.SIGINT) == 0, record.describe()

    # The first open after the recording reads nothing of the capture: all of it is indexed.
    index = indexed(path)
    assert (index.why, index.scanned) == ("", 0), index
    export = procs.run(procs.cli("export", str(path)))
    assert export.returncode == 0, export.stderr
    verdicts = [json.loads(line)["verdict"] for line in export.stdout.splitlines()]
    table = index.table
    kinds = table.column("kind").to_pylist()
    verdict = table.column("verdict").to_pylist()
    listed = [v for k, v in zip(kinds, verdict, strict=True) if k == Kind.PAIR]
    assert listed == verdicts and len(listed) == 60
    assert {"applied", "coerced"} <= set(listed)
    assert kinds[-1] == Kind.END  # the END record too: indexed after the recorder closed
    assert oct(sidecar(path).stat().st_mode & 0o777) == "0o600"
