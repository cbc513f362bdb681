"""`gwsproxy check`: the CI gate over recorded verdicts, on captures written from real Correlator
output (no process started)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from gwsproxy import cli, gws
from gwsproxy.capture import CaptureWriter, Kind
from gwsproxy.correlate import Correlator, Pair
from gwsproxy.record.records import pair_record
from gwsproxy.redact import Redactor

T0 = 1_700_000_000.0
SCOPE = "user:agent1"


class Workitems:
    """Workitem pairs (answers carry the referenceId: exact pairing) through a real Correlator."""

    def __init__(self) -> None:
        self.c = Correlator(timeout=10.0)
        self.closed: list[Any] = []
        self.t = T0
        self.ref = 0

    def update(self, iid: str, before: dict[str, Any], asked: dict[str, Any], shown: Any) -> None:
        self.ref += 1
        self.t += 1
        self.c.observe(iid, before)
        path = f"/api/v2/me/workitems/{iid}"
        body = json.dumps({"operationName": "UpdateUserData", "userData": asked}).encode()
        req = gws.classify_request("POST", path, body)
        assert isinstance(req, gws.UserDataRequest)
        key = f"k{self.ref}"
        raw = {"method": "POST", "path": path, "headers": [], "body": body, "repairs": []}
        self.closed += self.c.request(key, SCOPE, req, self.t, raw)
        answer = json.dumps({"statusCode": 0, "referenceId": self.ref}).encode()
        self.closed += self.c.answer(
            key,
            gws.parse_answer(answer),
            200,
            self.t + 0.01,
            {"status": 200, "headers": [], "body": answer},
        )
        if shown is None:
            return  # no notification: a timeout when the capture is closed
        message = {
            "channel": "/v2/me/workitems",
            "data": {
                "messageType": "WorkitemStateChangeMessage",
                "notificationType": "PropertiesUpdated",
                "referenceId": self.ref,
                "workitem": {"id": iid, "userData": shown},
            },
        }
        note = gws.parse_notification(message)
        assert note is not None
        raw_note = {"transport": "long-polling", "raw": json.dumps(message).encode()}
        self.closed += self.c.notification(SCOPE, note, self.t + 0.05, raw_note)

    def unreached(self, iid: str, asked: dict[str, Any], why: str) -> None:
        """A request mitmproxy could not forward (refused, bad certificate): failed."""
        self.t += 1
        path = f"/api/v2/me/workitems/{iid}"
        body = json.dumps({"operationName": "UpdateUserData", "userData": asked}).encode()
        req = gws.classify_request("POST", path, body)
        assert isinstance(req, gws.UserDataRequest)
        key = f"u{self.t}"
        raw = {"method": "POST", "path": path, "headers": [], "body": body, "repairs": []}
        self.closed += self.c.request(key, SCOPE, req, self.t, raw)
        self.closed += self.c.failed(key, why, self.t + 0.01, reached=False)

    def write(self, path: Path) -> Path:
        self.closed += self.c.expire(self.t + 20)  # no notification in 10 s: a timeout
        self.closed += self.c.close(self.t + 30)
        redactor = Redactor()
        with CaptureWriter(path, {"upstream": "http://gws.example:8090", "created": T0}) as w:
            for item in self.closed:
                if isinstance(item, Pair):
                    w.write(Kind.PAIR, *pair_record(item, redactor))
        return path


def applied(path: Path) -> Path:
    wi = Workitems()
    wi.update("WI1", {"a": 1}, {"a": 2}, {"a": 2})
    wi.update("WI2", {}, {"Score": 7}, {"Score": 7})
    return wi.write(path)


def mixed(path: Path) -> Path:
    """applied, coerced, side effects, not applied, timeout: one pair each."""
    wi = Workitems()
    wi.update("WI1", {"a": 1}, {"a": 2}, {"a": 2})
    wi.update("WI2", {"UserData1": 1}, {"UserData1": 987654321}, {"UserData1": "987654321"})
    wi.update("WI3", {"a": 1, "b": 2}, {"a": 5}, {"a": 5})
    wi.update("WI4", {"Disposition": "none", "Tag": 1}, {"Disposition": "sale", "Tag": 2}, {})
    wi.update("WI5", {}, {"k": "v"}, None)
    return wi.write(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_capture_whose_pairs_all_applied_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, str(applied(tmp_path / "ok.gwscap")))
    assert code == 0 and err == ""
    assert "FAIL" not in out and "2 passed, 0 failed" in out


def test_default_gate_fails_coerced_not_applied_and_timeout_not_side_effects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, str(mixed(tmp_path / "mixed.gwscap")))
    assert code == 1
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert [re.search(r"WI\d", line)[0] for line in fails] == ["WI2", "WI4", "WI5"]  # type: ignore[index]
    assert fails[0] == "FAIL pair 2 UpdateUserData on workitem WI2: coerced"
    # replay's style: one line per key under its pair, before, expected and actual with types
    assert "  UserData1: before 1 (int), expected 987654321 (int), actual '987654321' (str)" in out
    assert "  Disposition: before 'none' (str), expected 'sale' (str), actual (absent)" in out
    assert "timeout" in fails[2]
    assert "2 passed, 3 failed" in out


def test_a_request_that_never_reached_gws_fails_the_default_gate_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wi = Workitems()
    wi.update("WI1", {"a": 1}, {"a": 2}, {"a": 2})
    wi.unreached("WI2", {"b": 1}, "Certificate verify failed: self-signed certificate")
    code, out, _ = run(capsys, str(wi.write(tmp_path / "refused.gwscap")))
    assert code == 1
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert fails == [
        "FAIL pair 2 UpdateUserData on workitem WI2: failed"
        " (Certificate verify failed: self-signed certificate)"
    ]
    assert "1 passed, 1 failed" in out and "failed, not applied" in out


def test_fail_on_chooses_the_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(mixed(tmp_path / "mixed.gwscap"))
    code, out, _ = run(capsys, path, "--fail-on", "side-effects")
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith("FAIL")] == [
        "FAIL pair 3 UpdateUserData on workitem WI3: side effects"
    ]
    assert "  b: before 2 (int), expected 2 (int), actual (absent)" in out
    code, out, _ = run(capsys, path, "--fail-on", "rejected, lost")
    assert code == 0 and "5 passed, 0 failed" in out


def test_ignore_leaves_keys_out_of_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(mixed(tmp_path / "mixed.gwscap"))
    code, out, _ = run(capsys, path, "--ignore", "^UserData", "--ignore", "Disposition|Tag")
    assert code == 1  # the timeout still fails
    assert "WI2" not in out and "WI4" not in out and "WI5" in out


def test_reports_like_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(mixed(tmp_path / "mixed.gwscap"))
    ok = str(applied(tmp_path / "ok.gwscap"))
    xml, js = tmp_path / "report.xml", tmp_path / "report.json"
    assert run(capsys, path, ok, "--report", str(xml))[0] == 1
    suite = ET.parse(xml).getroot()
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == (
        "gwsproxy check",
        "7",
        "3",
    )
    failed = [c for c in suite if c.find("failure") is not None]
    assert {c.get("classname") for c in failed} == {"workitem.UpdateUserData"}
    messages = [f.get("message") for c in failed for f in c.iter("failure")]
    assert messages == ["coerced", "not applied", "timeout"]
    assert all(path in (c.get("name") or "") for c in failed)  # two files: each case names its own

    assert run(capsys, path, "--report", str(js))[0] == 1
    doc = json.loads(js.read_text())
    assert (doc["passed"], doc["failed"]) == (2, 3)
    coerced = next(p for p in doc["pairs"] if p["problem"] == "coerced")
    assert coerced["mismatches"] == [
        {"key": "UserData1", "before": "1", "expected": "987654321", "actual": "'987654321'"}
    ]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--fail-on", "coerced,bogus"], "--fail-on 'bogus': not a verdict"),
        (["--ignore", "("], "--ignore '(': not a regular expression"),
    ],
)
def test_bad_options_one_line_exit_2(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, str(applied(tmp_path / "ok.gwscap")), *argv)
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and said in err


def test_bad_files_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "/nonexistent.gwscap")
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1
    assert "/nonexistent.gwscap" in err and "Traceback" not in err
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    code, out, err = run(capsys, str(notes))
    assert (code, out) == (2, "") and "not a gwsproxy capture" in err
