"""`gwsproxy import` of mitmproxy dumps that cannot be read to their end: what was read before
is kept, where reading stopped and why is said, and nothing usable is an error.

The dumps are written by mitmproxy's own FlowWriter (what `mitmdump -w` uses), then cut or
spoiled at a byte offset."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from mitmproxy import io
from mitmproxy.test import tflow

from gwsproxy import bayeux, gws
from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.cli import main
from gwsproxy.errors import GwsProxyError
from gwsproxy.record.command import import_flows

T0 = 1_700_000_000.0
AUTH = gws.basic_authorization("agent1", "password")


def _post(path: str, body: dict | list, answer: dict | list, t: float):
    flow = tflow.tflow(resp=True)
    flow.request.method = "POST"
    flow.request.path = path
    flow.request.headers["Authorization"] = AUTH
    flow.request.headers["Content-Type"] = "application/json"
    flow.request.content = json.dumps(body).encode()
    flow.request.timestamp_start, flow.request.timestamp_end = t, t + 0.001
    flow.response.headers["Content-Type"] = "application/json"
    flow.response.content = json.dumps(answer).encode()
    flow.response.timestamp_start, flow.response.timestamp_end = t + 0.002, t + 0.003
    return flow


def gws_flows(pairs: int) -> list:
    """Per pair: an UpdateUserData of chat C<i> and the long poll that brings its notification."""
    flows = []
    for i in range(pairs):
        t = T0 + i
        ud = {"K": i}
        flows.append(
            _post(
                f"/api/v2/me/chats/C{i}",
                {"operationName": "UpdateUserData", "userData": ud},
                {"statusCode": 0},
                t,
            )
        )
        note = {
            "channel": "/v2/me/chats",
            "data": {
                "messageType": "ChatStateChangeMessage",
                "notificationType": "PropertiesUpdated",
                "chat": {"id": f"C{i}", "userData": ud},
            },
        }
        flows.append(
            _post(bayeux.NOTIFICATIONS_PATH, [{"channel": "/meta/connect"}], [note], t + 0.1)
        )
    return flows


def write_dump(path: Path, flows: list) -> list[int]:
    """The dump, and the byte offset at which each flow starts."""
    starts = []
    with open(path, "wb") as f:
        writer = io.FlowWriter(f)
        for flow in flows:
            starts.append(f.tell())
            writer.add(flow)
    return starts


def statuses(path: Path) -> list[str]:
    with CaptureReader(str(path)) as reader:
        return [e.summary["status"] for e in reader.index() if e.kind == Kind.PAIR]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """`gwsproxy ARGS` in this process: its exit status and what it printed."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return Run(code, out, err)


def test_a_whole_dump_imports_every_pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = tmp_path / "flows.mitm"
    write_dump(dump, gws_flows(4))
    result = import_flows(str(dump), str(tmp_path / "out.gwscap"))
    assert result.counts["pairs"] == 4 and result.entries == 8
    assert result.stopped is None and result.skipped == [] and result.reading() == ""
    assert statuses(tmp_path / "out.gwscap") == ["matched"] * 4


def test_a_dump_cut_short_keeps_the_flows_before_the_cut_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump, out = tmp_path / "flows.mitm", tmp_path / "out.gwscap"
    starts = write_dump(dump, gws_flows(5))
    cut = starts[6] + 40  # inside flow 7: the request of the fourth pair
    dump.write_bytes(dump.read_bytes()[:cut])
    run = cli(capsys, "import", str(dump), "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert f"{out}: 3 pairs" in run.stdout, run.stdout
    said = run.stderr.strip()
    assert said.count("\n") == 0, said
    assert f"stopped reading {dump} at byte {starts[6]} (flow 7)" in said, said
    assert "cut short" in said and "kept the 6 entries" in said, said
    assert statuses(out) == ["matched"] * 3


def test_a_spoiled_flow_is_passed_over_and_reading_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump, out = tmp_path / "flows.mitm", tmp_path / "out.gwscap"
    starts = write_dump(dump, gws_flows(4))
    data = bytearray(dump.read_bytes())
    # Flow 3 (the second pair's request) keeps its length, its content is garbage.
    first = data.index(b":", starts[2]) + 1
    data[first : first + 30] = b"x" * 30
    dump.write_bytes(bytes(data))
    result = import_flows(str(dump), str(out))
    assert result.stopped is None and result.entries == 7
    assert len(result.skipped) == 1 and result.skipped[0].startswith(f"flow 3 at byte {starts[2]}")
    # The spoiled request is gone: its notification arrives unsolicited, the rest pair.
    assert result.counts["pairs"] == 3 and result.counts["unsolicited"] == 1
    run = cli(capsys, "import", str(dump), "-o", str(tmp_path / "again.gwscap"))
    assert run.returncode == 0 and "3 pairs" in run.stdout, run.stderr
    assert "passed over 1 unreadable entries (flow 3 at byte" in run.stderr, run.stderr


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "is not a mitmproxy flow dump"),
        (b"", "it holds no entries"),
        (None, "cut short"),  # a dump cut inside its first flow
    ],
    ids=["not-a-dump", "empty", "cut-in-first-flow"],
)
def test_nothing_read_is_an_error_and_writes_no_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, said: str
) -> None:
    dump, out = tmp_path / "flows.mitm", tmp_path / "out.gwscap"
    if content is None:
        write_dump(dump, gws_flows(1))
        content = dump.read_bytes()[:100]
    dump.write_bytes(content)
    run = cli(capsys, "import", str(dump), "-o", str(out))
    assert run.returncode == 2 and run.stdout == "", (run.stdout, run.stderr)
    assert run.stderr.count("\n") == 1 and said in run.stderr, run.stderr
    assert not out.exists()


def test_a_dump_without_gws_traffic_is_an_error_and_writes_no_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump, out = tmp_path / "flows.mitm", tmp_path / "out.gwscap"
    write_dump(dump, [tflow.tflow(resp=True) for _ in range(3)])
    with pytest.raises(GwsProxyError, match="3 entries read, no GWS user-data traffic"):
        import_flows(str(dump), str(out))
    assert not out.exists()


def test_a_har_of_blob_entries_only_is_nothing_usable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Playwright HAR holds `blob:` entries, on which mitmproxy says 'No hostname given'."""
    har = {
        "log": {
            "version": "1.2",
            "entries": [
                {
                    "startedDateTime": "2026-11-30T07:00:00.000Z",
                    "time": 1,
                    "request": {
                        "method": "GET",
                        "url": "blob:http://127.0.0.1/1c7e",
                        "httpVersion": "HTTP/1.1",
                        "headers": [],
                        "queryString": [],
                        "cookies": [],
                        "headersSize": -1,
                        "bodySize": 0,
                    },
                    "response": {
                        "status": 200,
                        "statusText": "OK",
                        "httpVersion": "HTTP/1.1",
                        "headers": [],
                        "cookies": [],
                        "content": {"size": 0, "mimeType": "text/plain"},
                        "redirectURL": "",
                        "headersSize": -1,
                        "bodySize": 0,
                    },
                    "timings": {"send": 0, "wait": 1, "receive": 0},
                }
            ],
        }
    }
    path, out = tmp_path / "session.har", tmp_path / "out.gwscap"
    path.write_text(json.dumps(har))
    run = cli(capsys, "import", str(path), "-o", str(out))
    assert run.returncode == 2 and not out.exists(), run.stderr
    assert "no GWS user-data traffic" in run.stderr
    assert "1 entries skipped: not HTTP (blob:" in run.stderr, run.stderr


def test_an_imported_capture_comes_with_its_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gwsproxy.capture.index import open_index
    from gwsproxy.capture.reader import CaptureReader
    from gwsproxy.record.indexing import index_spec

    dump, out = tmp_path / "flows.mitm", tmp_path / "out.gwscap"
    write_dump(dump, gws_flows(4))
    run = cli(capsys, "import", str(dump), "-o", str(out))
    assert run.returncode == 0, run.stderr
    with CaptureReader(out) as reader:
        index = open_index(reader, index_spec(), save=False)
    # The first open reads no record of the capture, and the verdicts are in the index.
    assert (index.why, index.scanned) == ("", 0)
    assert index.table.column("verdict").drop_null().to_pylist() == ["applied"] * 4
