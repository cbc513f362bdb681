"""`gwsproxy swarm`'s pure parts: scripts from a capture, who replays which, pacing, adoption,
what an op's pair counts as, the Locust command line; and that Locust stays in its process."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from gwsproxy import gws
from gwsproxy.correlate import Pair, Status
from gwsproxy.errors import GwsProxyError
from gwsproxy.replay.compare import Outcome as RecordedOutcome
from gwsproxy.replay.regress import Recorded
from gwsproxy.swarm.command import LOCUSTFILE, locust_command
from gwsproxy.swarm.plan import (
    Identities,
    Op,
    Plan,
    SwarmError,
    adopted,
    due,
    identity,
    load_scripts,
    outcome_of,
    read_credentials,
    scripts_of,
    unpack,
)
from gwsproxy.verdict import VerdictName

ROOT = Path(__file__).resolve().parents[1]
SIM_MIXED = ROOT / "captures" / "examples" / "sim-mixed.gwscap"


def _recorded(n: int, scope: str, t: float, ix: str = "IX1", media: str = "chat") -> Recorded:
    outcome = RecordedOutcome(n, "matched", gws.UPDATE, media, ix, {"k": n}, {}, {"k": n})
    body = f'{{"operationName": "UpdateUserData", "userData": {{"k": {n}}}}}'.encode()
    path = f"/api/v2/me/chats/{ix}"
    return Recorded(outcome, scope, "POST", path, body, "application/json", t)


def test_one_script_per_agent_in_recorded_order_with_its_pacing() -> None:
    pairs = [
        _recorded(3, "user:agent2", 105.0),
        _recorded(1, "user:agent1", 100.0),
        _recorded(2, "user:agent2", 101.0),
        _recorded(4, "user:agent1", 102.5),
    ]
    scripts = scripts_of(pairs)
    assert [s.agent for s in scripts] == ["agent1", "agent2"]
    assert [op.at for op in scripts[0].ops] == [0.0, 2.5]
    assert [op.at for op in scripts[1].ops] == [0.0, 4.0]
    assert [op.body for op in scripts[1].ops] == [pairs[2].body, pairs[0].body]
    assert scripts[0].ops[0].name == "UpdateUserData chat"


def test_a_recorded_capture_splits_by_agent_keeping_every_op() -> None:
    scripts = load_scripts(str(SIM_MIXED))
    assert [s.agent for s in scripts] == ["agent1", "agent2", "agent3", "agent4"]
    assert sum(len(s.ops) for s in scripts) == 60
    for script in scripts:
        assert [op.at for op in script.ops] == sorted(op.at for op in script.ops)


def test_a_capture_without_pairs_is_a_one_line_error(tmp_path: Path) -> None:
    from gwsproxy.capture.writer import CaptureWriter

    path = tmp_path / "empty.gwscap"
    CaptureWriter(str(path), {"upstream": "test"}).close()
    with pytest.raises(SwarmError, match="no user-data pairs"):
        load_scripts(str(path))


def test_pacing_is_the_recorded_offset_divided_by_speed() -> None:
    op = Op("POST", "/p", b"", "application/json", 3.0, "chat", gws.UPDATE, "IX")
    assert due(op, 1.0) == 3.0
    assert due(op, 2.0) == 1.5
    assert due(op, 0.0) == 0.0  # no pacing at all


def test_users_beyond_the_agents_repeat_scripts_under_new_identities() -> None:
    scripts = scripts_of([_recorded(i, f"user:agent{i}", 100.0) for i in (1, 2, 3)])
    who = [Identities().assign(n, scripts) for n in range(7)]
    assert [(a.user, a.script, a.recorded) for a in who] == [
        ("agent1", 0, True),
        ("agent2", 1, True),
        ("agent3", 2, True),
        ("agent4", 0, False),
        ("agent5", 1, False),
        ("agent6", 2, False),
        ("agent7", 0, False),
    ]
    assert len({a.user for a in who}) == 7  # each user a session of its own
    assert all(a.password == "password" for a in who)


def test_credentials_give_passwords_and_the_new_identities(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    path.write_text("# user password\nagent2 s3cret\nnew1 pw1\n\nnew2 pw2\n")
    ids = Identities("x{n}", "default", read_credentials(str(path)))
    scripts = scripts_of([_recorded(i, f"user:agent{i}", 100.0) for i in (1, 2)])
    got = [(a.user, a.password) for a in (ids.assign(n, scripts) for n in range(5))]
    assert got == [
        ("agent1", "default"),
        ("agent2", "s3cret"),
        ("new1", "pw1"),
        ("new2", "pw2"),
        ("new1", "pw1"),  # the file's identities are used in turn
    ]


def test_bad_credentials_files_name_the_line_never_the_password(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    path.write_text("agent1 hunter2 extra\n")
    with pytest.raises(SwarmError) as caught:
        read_credentials(str(path))
    assert "line 1" in str(caught.value) and "hunter2" not in str(caught.value)
    with pytest.raises(GwsProxyError, match="--credentials .*: no such file"):
        read_credentials(str(tmp_path / "missing"))


def test_the_master_hands_out_numbers_and_whole_scripts_through_msgpack() -> None:
    """What a worker gets is what the master planned, after Locust's msgpack framing."""
    import msgpack

    scripts = load_scripts(str(SIM_MIXED))
    plan = Plan(scripts, Identities())
    got = [unpack(msgpack.unpackb(msgpack.packb(plan.claim()))) for _ in range(6)]
    assert [a.number for a, _ in got] == [0, 1, 2, 3, 4, 5]
    assert [a.user for a, _ in got] == [f"agent{n}" for n in range(1, 7)]
    for assignment, script in got:
        assert script == scripts[assignment.script]  # every op, in order, bytes and all
    plan.restart()
    assert unpack(plan.claim())[0].number == 0


def test_identity_pattern() -> None:
    assert identity("agent{n}", 7) == "agent7"
    assert identity("load-{n}-x", 12) == "load-12-x"
    assert identity("user", 3) == "user3"


def test_a_new_identity_adopts_its_own_interactions_media_by_media() -> None:
    ops = [
        Op("POST", "/a", b"", "", 0, "chat", gws.UPDATE, "C1"),
        Op("POST", "/b", b"", "", 0, "voice", gws.UPDATE, "V1"),
        Op("POST", "/c", b"", "", 0, "chat", gws.UPDATE, "C2"),
        Op("POST", "/d", b"", "", 0, "chat", gws.UPDATE, "C1"),
        Op("POST", "/e", b"", "", 0, "sms", gws.UPDATE, "S1"),
    ]
    own = {"chat": ["MINE1"], "voice": ["MYCALL"], "sms": []}
    # two recorded chats on one own chat; sms: none of its own, the recorded id stays
    assert adopted(ops, own) == (("C1", "MINE1"), ("V1", "MYCALL"), ("C2", "MINE1"))


def _pair(status: Status, before: dict, after: dict | None, requested: dict) -> Pair:
    request = gws.UserDataRequest(gws.Target("sms", "smsessions", "S1"), gws.UPDATE, requested)
    pair = Pair(1, "k", "user:agent1", request, 0.0, before)
    pair.status = status
    if after is not None:
        pair.note = gws.Notification(
            "/v2/me/sms",
            "SmsSessionStateChangeMessage",
            "PropertiesUpdated",
            1,
            "sms",
            "S1",
            None,
            None,
            after,
            None,
            {},
        )
    return pair


def test_ops_are_judged_by_the_verdicts_check_fails_on() -> None:
    applied = outcome_of(_pair(Status.MATCHED, {}, {"n": 5}, {"n": 5}), 10)
    assert applied.verdict == VerdictName.APPLIED and applied.failure is None
    coerced = outcome_of(_pair(Status.MATCHED, {}, {"n": "5"}, {"n": 5}), 10)
    assert coerced.verdict == VerdictName.COERCED
    assert coerced.failure == "coerced: n"
    timeout = outcome_of(_pair(Status.TIMEOUT, {}, None, {"n": 5}), 2.5)
    assert timeout.failure == "timeout: no notification in 2.5 s"
    rejected = _pair(Status.REJECTED, {}, None, {"n": 5})
    rejected.answer, rejected.http_status = gws.Answer(6, "interaction S1 not found"), 404
    assert outcome_of(rejected, 10).failure == (
        "rejected: HTTP 404, statusCode 6: interaction S1 not found"
    )


def test_the_locust_command_line(tmp_path: Path) -> None:
    capture = tmp_path / "c.gwscap"
    capture.write_bytes(b"")
    command = locust_command([str(capture), "--target", "http://h:1", "--headless", "-u", "3"])
    assert command == [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--capture",
        str(capture),
        "--host",
        "http://h:1",
        "--headless",
        "-u",
        "3",
    ]
    worker = locust_command(["--worker", "--master-host", "10.0.0.1"])
    assert worker[-3:] == ["--worker", "--master-host", "10.0.0.1"]
    with pytest.raises(SwarmError, match="no such capture"):
        locust_command([str(tmp_path / "missing.gwscap"), "--target", "http://h:1"])
    with pytest.raises(SwarmError, match="give the capture"):
        locust_command(["--target", "http://h:1", "--headless"])


def test_the_command_says_what_is_missing_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gwsproxy.cli import main

    assert main(["swarm", str(tmp_path / "nope.gwscap"), "--target", "http://h:1"]) == 2
    assert (
        capsys.readouterr().err
        == f"gwsproxy swarm: {tmp_path / 'nope.gwscap'}: no such capture file\n"
    )
    assert main(["swarm", "--headless"]) == 2
    assert "give the capture" in capsys.readouterr().err


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.add(node.module.split(".")[0])
    return found


def test_locust_and_gevent_stay_in_the_locust_process() -> None:
    """Locust monkey-patches with gevent on import: only the locustfile (and the gevent client
    it uses) may import them, and nothing else of gwsproxy imports those two."""
    package = ROOT / "gwsproxy"
    allowed = {package / "swarm" / "locustfile.py", package / "swarm" / "client.py"}
    for path in package.rglob("*.py"):
        names = _imports(path)
        if path not in allowed:
            assert not names & {"locust", "gevent"}, path
            assert not names & {"gwsproxy.swarm.client", "gwsproxy.swarm.locustfile"}, path
    assert "locust" not in _imports(package / "swarm" / "client.py")
