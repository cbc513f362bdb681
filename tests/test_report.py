"""`gwsproxy info` and `gwsproxy export` over a capture written from real Correlator output."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from gwsproxy import cli, gws, report, verdict
from gwsproxy.capture import CaptureWriter, Kind
from gwsproxy.correlate import Correlator, Pair, Unsolicited
from gwsproxy.record.records import pair_record, raw_record, unsolicited_record
from gwsproxy.redact import Redactor

T0 = 1_700_000_000.0
SCOPE = "user:agent1"
FIELDS = {
    "id",
    "scope",
    "media",
    "interaction_id",
    "operation",
    "requested",
    "reference_id",
    "correlation",
    "status",
    "before",
    "after",
    "timings",
}

COLLECTION = {"voice": "calls", "chat": "chats", "workitem": "workitems"}


def _request(c: Correlator, key: str, media: str, iid: str, t: float, op: str, **fields: Any):
    path = f"/api/v2/me/{COLLECTION[media]}/{iid}"
    raw_body = json.dumps({"operationName": op, **fields}).encode()
    req = gws.classify_request("POST", path, raw_body)
    assert isinstance(req, gws.UserDataRequest)
    raw = {"method": "POST", "path": path, "headers": [], "body": raw_body, "repairs": []}
    return c.request(key, SCOPE, req, t, raw)


def _answer(c: Correlator, key: str, body: dict[str, Any], status: int, t: float):
    raw_body = json.dumps(body).encode()
    raw = {"status": status, "headers": [], "body": raw_body}
    return c.answer(key, gws.parse_answer(raw_body), status, t, raw)


def _notify(c: Correlator, channel: str, data: dict[str, Any], t: float):
    message = {"channel": channel, "data": data}
    note = gws.parse_notification(message)
    assert note is not None
    raw = {"transport": "long-polling", "raw": json.dumps(message).encode(), "repairs": []}
    return c.notification(SCOPE, note, t, raw)


def _closed() -> list[Pair | Unsolicited]:
    """A short recording: matched (exact), error, rejected, voice delete-all, timeout, incomplete,
    and one unsolicited notification."""
    c = Correlator(timeout=10.0)
    closed: list[Any] = []
    c.observe("WI1", {"Priority": 1, "Owner": "ann"})
    closed += _request(c, "wi", "workitem", "WI1", T0, "UpdateUserData", userData={"Priority": 5})
    closed += _answer(c, "wi", {"statusCode": 0, "referenceId": 16}, 200, T0 + 0.01)
    closed += _notify(
        c,
        "/v2/me/workitems",
        {
            "messageType": "WorkitemStateChangeMessage",
            "notificationType": "PropertiesUpdated",
            "referenceId": 16,
            "workitem": {"id": "WI1", "userData": {"Priority": 5, "Owner": "ann"}},
        },
        T0 + 0.05,
    )
    closed += _request(c, "ch-err", "chat", "CH1", T0 + 1, "UpdateUserData", userData={"a": 1})
    closed += _answer(c, "ch-err", {"statusCode": 0}, 200, T0 + 1.01)
    closed += _notify(
        c,
        "/v2/me/chats",
        {
            "messageType": "ChatStateChangeMessage",
            "notificationType": "Error",
            "referenceId": 3,
            "errorMessage": "failed",
            "chat": {"id": "CH1", "userData": {"b": 2}},
        },
        T0 + 1.05,
    )
    closed += _request(c, "rej", "voice", "CALL1", T0 + 2, "UpdateUserData", userData={"x": 1})
    closed += _answer(
        c,
        "rej",
        {"statusCode": 4, "statusMessage": "Voice service is not available at this time"},
        503,
        T0 + 2.01,
    )
    c.observe("CALL2", {"x": 1, "y": 2})
    closed += _request(c, "del", "voice", "CALL2", T0 + 3, "DeleteUserData")
    closed += _answer(c, "del", {"statusCode": 0}, 200, T0 + 3.01)
    closed += _notify(
        c,
        "/v2/me/calls",
        {
            "messageType": "CallStateChangeMessage",
            "notificationType": "AttachedDataChanged",
            "call": {"id": "CALL2", "state": "Talking"},
        },
        T0 + 3.05,
    )
    closed += _notify(
        c,
        "/v2/me/chats",
        {
            "messageType": "ChatStateChangeMessage",
            "notificationType": "StatusChange",
            "chat": {"id": "CH9", "state": "Chatting", "userData": {}},
        },
        T0 + 3.5,
    )
    closed += _request(c, "slow", "chat", "CH2", T0 + 4, "UpdateUserData", userData={"k": "v"})
    closed += _answer(c, "slow", {"statusCode": 0}, 200, T0 + 4.01)
    closed += c.expire(T0 + 14)
    closed += _request(c, "last", "chat", "CH3", T0 + 15, "DeleteUserData", keys=["k"])
    closed += c.close(T0 + 15.5)
    return closed


def _write(path: Path) -> dict[str, int]:
    """Write the recording; return the frame offset of each pair by its edge key."""
    redactor = Redactor()
    offsets: dict[str, int] = {}
    with CaptureWriter(path, {"upstream": "http://gws.example:8090", "created": T0}) as w:
        for item in _closed():
            if isinstance(item, Pair):
                offsets[item.key] = w.write(Kind.PAIR, *pair_record(item, redactor))
            else:
                w.write(Kind.NOTIFICATION, *unsolicited_record(item))
        w.write(
            Kind.RAW,
            *raw_record(T0 + 5, "not JSON", "long-polling", b"\xff\xfe[{", SCOPE, path="/x"),
        )
    return offsets


@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "rec.gwscap"
    return path, _write(path)


def _by_operation(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["interaction_id"], o["status"]): o for o in objects}


def test_export_pairs_documented_fields(capture: tuple[Path, dict[str, int]]) -> None:
    path, _ = capture
    objects = list(report.export_pairs(str(path)))
    assert len(objects) == 6
    for o in objects:
        assert set(o) >= FIELDS, FIELDS - set(o)
        assert set(o["timings"]) >= {"request", "answer", "notification", "latency_ms"}
        json.loads(json.dumps(o))  # JSON-serialisable as it is, no default= needed
    got = _by_operation(objects)
    assert set(got) == {
        ("WI1", "matched"),
        ("CH1", "error"),
        ("CALL1", "rejected"),
        ("CALL2", "matched"),
        ("CH2", "timeout"),
        ("CH3", "incomplete"),
    }

    wi = got[("WI1", "matched")]
    assert (wi["media"], wi["operation"]) == ("workitem", "UpdateUserData")
    assert wi["correlation"] == "exact"
    assert wi["scope"] == SCOPE and wi["reference_id"] == 16
    assert wi["requested"] == {"Priority": 5}
    assert wi["before"] == {"Priority": 1, "Owner": "ann"}
    assert wi["after"] == {"Priority": 5, "Owner": "ann"}
    assert wi["timings"]["request"] == T0 and wi["timings"]["notification"] == T0 + 0.05
    assert wi["timings"]["latency_ms"] == pytest.approx(50.0, abs=0.01)

    err = got[("CH1", "error")]
    assert (err["after"], err["correlation"], err["before"]) == (None, "inferred", None)

    rej = got[("CALL1", "rejected")]
    assert rej["after"] is None and rej["correlation"] is None
    assert rej["http_status"] == 503 and rej["status_code"] == 4
    assert rej["timings"]["notification"] is None and rej["timings"]["latency_ms"] is None

    delete_all = got[("CALL2", "matched")]
    assert delete_all["operation"] == "DeleteUserData" and delete_all["requested"] is None
    assert delete_all["before"] == {"x": 1, "y": 2}
    assert delete_all["after"] == {}  # absent userData after a voice delete-all means empty

    timeout = got[("CH2", "timeout")]
    assert timeout["after"] is None and timeout["correlation"] is None
    assert got[("CH3", "incomplete")]["requested"] == ["k"]
    assert got[("CH3", "incomplete")]["after"] is None


def test_info_renders_counts(capture: tuple[Path, dict[str, int]]) -> None:
    path, _ = capture
    console = Console(record=True, width=100)
    console.print(report.info(str(path)))
    text = console.export_text()

    def row(name: str, n: int) -> bool:
        return re.search(rf"│\s*{re.escape(name)}\s*│\s*{n}\s*│", text) is not None

    assert row("pairs", 6) and row("unsolicited", 1) and row("raw (unreadable traffic)", 1)
    assert row("voice", 2) and row("chat", 3) and row("workitem", 1)
    for status, n in (("matched", 2), ("error", 1), ("rejected", 1), ("timeout", 1)):
        assert row(status, n), status
    assert row("incomplete", 1)
    assert row("UpdateUserData", 4) and row("DeleteUserData", 2)
    assert "http://gws.example:8090" in text
    assert "closed cleanly" in text and "damage" not in text


def test_info_shows_damage_and_export_reads_past_it(
    capture: tuple[Path, dict[str, int]],
) -> None:
    path, offsets = capture
    bad = offsets["rej"]
    data = bytearray(path.read_bytes())
    for i in range(bad + 30, bad + 34):  # inside the record's payload: its CRC no longer holds
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    console = Console(record=True, width=100)
    console.print(report.info(str(path)))
    text = console.export_text()
    assert "damage" in text
    assert re.search(rf"│\s*{bad}\s*│\s*\d+\s*│\s*crc mismatch", text), text
    assert re.search(r"│\s*pairs\s*│\s*5\s*│", text)
    statuses = sorted(o["status"] for o in report.export_pairs(str(path)))
    assert statuses == ["error", "incomplete", "matched", "matched", "timeout"]


def test_cli_export_prints_json_lines(
    capture: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = capture
    assert cli.main(["export", str(path)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 6 and err == ""
    objects = [json.loads(line) for line in lines]
    assert all(set(o) >= FIELDS for o in objects)
    assert objects == json.loads(json.dumps(list(report.export_pairs(str(path)))))


def test_cli_export_to_a_file(capture: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    path, _ = capture
    out = tmp_path / "pairs.jsonl"
    assert cli.main(["export", str(path), "-o", str(out)]) == 0
    assert len([json.loads(line) for line in out.read_text().splitlines()]) == 6


def test_cli_info(capture: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]):
    path, _ = capture
    assert cli.main(["info", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "by status" in out and err == ""


@pytest.mark.parametrize("command", ["info", "export"])
def test_cli_missing_file_one_line_exit_2(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([command, "/nonexistent"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "/nonexistent" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["info", "export"])
def test_cli_not_a_capture_one_line_exit_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello\n")
    assert cli.main([command, str(bogus)]) == 2
    _, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "not a gwsproxy capture" in err


def test_info_shows_a_path_with_brackets_verbatim(tmp_path: Path) -> None:
    folder = tmp_path / "run["
    folder.mkdir()
    path = folder / "].gwscap"
    _write(path)
    console = Console(record=True, width=200)
    console.print(report.info(str(path)))
    assert str(path) in console.export_text()


# ---- verdicts and findings (export schema 3) ---------------------------------------------------


def test_export_has_a_verdict_per_pair(capture: tuple[Path, dict[str, int]]) -> None:
    path, _ = capture
    got = {(o["interaction_id"], o["status"]): o for o in report.export_pairs(str(path))}
    assert {k: o["verdict"] for k, o in got.items()} == {
        ("WI1", "matched"): "applied",
        ("CH1", "error"): "error",
        ("CALL1", "rejected"): "rejected",
        ("CALL2", "matched"): "applied",  # voice delete-all: everything gone, as asked
        ("CH2", "timeout"): "timeout",
        ("CH3", "incomplete"): "incomplete",
    }
    assert all(o["findings"] == [] and o["schema"] == 3 for o in got.values())


def _findings(before: Any, requested: Any, after: Any, op: str = "UpdateUserData") -> list:
    v = verdict.judge("matched", op, "chat", requested, before, after)
    found = report.findings(v)
    assert json.loads(json.dumps(found)) == found  # JSON as it is
    return found


def test_findings_of_a_coerced_key_say_both_types() -> None:
    found = _findings({"UserData1": 1}, {"UserData1": 987654321}, {"UserData1": "987654321"})
    assert found == [
        {
            "key": "UserData1",
            "kind": "coerced",
            "expected": 987654321,
            "expected_type": "int",
            "actual": "987654321",
            "actual_type": "str",
        }
    ]


def test_findings_of_a_missing_key_invent_no_value() -> None:
    # An update that never arrived: the key is absent after; nothing stands in for its value.
    (found,) = _findings({}, {"Disposition": "sale"}, {})
    assert found == {
        "key": "Disposition",
        "kind": "not applied",
        "expected": "sale",
        "expected_type": "str",
        "actual_type": "absent",
    }
    # A delete that did not happen: expected absent, the value still there.
    (found,) = _findings({"k": None}, ["k"], {"k": None}, op="DeleteUserData")
    assert found == {
        "key": "k",
        "kind": "not applied",
        "expected_type": "absent",
        "actual": None,
        "actual_type": "null",
    }


def test_findings_of_side_effects_and_nothing_for_applied_keys() -> None:
    found = _findings({"a": 1, "b": [1, 2], "c": "x"}, {"a": 2}, {"a": 2, "b": {"n": 1}, "c": "x"})
    assert found == [
        {
            "key": "b",
            "kind": "side effect",
            "expected": [1, 2],
            "expected_type": "list",
            "actual": {"n": 1},
            "actual_type": "map",
        }
    ]
    assert report.findings(None) == []


def test_findings_values_are_json_safe() -> None:
    found = _findings({}, {"blob": 1}, {"blob": b"\x00\x01"})
    assert found[0]["actual"] == repr(b"\x00\x01") and found[0]["actual_type"] == "bytes"


def test_a_pair_whose_body_cannot_be_read_is_not_judged() -> None:
    """Its summary is sound: a matched pair reads `unreadable`, any other its status."""
    matched = {"id": 1, "status": "matched", "operation": "UpdateUserData", "media": "chat"}
    obj = report.pair_object(matched, {}, "cannot decode the body")
    assert (obj["verdict"], obj["findings"]) == ("unreadable", [])
    timeout = {**matched, "status": "timeout"}
    assert report.pair_object(timeout, {}, "cannot decode the body")["verdict"] == "timeout"


def test_info_counts_verdicts_beside_statuses(
    capture: tuple[Path, dict[str, int]],
) -> None:
    path, _ = capture
    console = Console(record=True, width=100)
    console.print(report.info(str(path)))
    text = console.export_text()
    assert "by verdict" in text and "by status" in text
    # side by side: the status table's rows and the verdict table's share lines
    assert re.search(r"│\s*matched\s*│\s*2\s*│\s*│\s*applied\s*│\s*2\s*│", text), text
    for name in ("error", "rejected", "timeout", "incomplete"):
        assert len(re.findall(rf"│\s*{name}\s*│\s*1\s*│", text)) == 2, name


def test_info_counts_the_requests_that_never_reached_gws_with_why(tmp_path: Path) -> None:
    c = Correlator(timeout=10.0)
    closed: list[Any] = []
    for i, why in enumerate(("[Errno 111] Connect call failed", "Certificate verify failed")):
        closed += _request(c, f"k{i}", "chat", f"CH{i}", T0 + i, "UpdateUserData", userData={})
        closed += c.failed(f"k{i}", why, T0 + i + 0.01, reached=False)
    closed += _request(c, "k2", "chat", "CH2", T0 + 3, "UpdateUserData", userData={})
    closed += c.failed("k2", "[Errno 111] Connect call failed", T0 + 3.01, reached=False)
    path = tmp_path / "refused.gwscap"
    with CaptureWriter(path, {"upstream": "http://gws.example:8090", "created": T0}) as w:
        for item in closed:
            w.write(Kind.PAIR, *pair_record(item, Redactor()))
    console = Console(record=True, width=120)
    console.print(report.info(str(path)))
    text = console.export_text()
    assert re.search(
        r"│ never reached GWS \(failed\)\s*│ 3: \[Errno 111\] Connect call failed and 1 other"
        r" reason\s*│",
        text,
    )
    assert re.search(r"│\s*failed\s*│\s*3\s*│", text)  # by status and by verdict
    exported = list(report.export_pairs(str(path)))
    assert [(o["status"], o["http_status"]) for o in exported] == [("failed", None)] * 3
    assert exported[1]["error"] == "Certificate verify failed"
