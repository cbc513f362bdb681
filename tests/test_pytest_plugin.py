"""The pytest plugin, driven through pytester: replay items, fixtures and record modes."""

import shutil
from pathlib import Path

import pytest

from gwsproxy.capture.reader import CaptureReader

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).parent.parent / "captures" / "examples"
SMS = EXAMPLES / "seed-sms-update.gwscap"


@pytest.fixture(autouse=True)
def _quiet_ini(pytester):
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def test_replay_items_pass_against_a_simulator_seeded_from_the_capture(pytester, simulator):
    url = simulator(seed_from=str(SMS))
    result = pytester.runpytest("--gws-replay", str(SMS), "--gws-target", url, "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*pair1-sms-UpdateUserData-0000Wa9CAM6W00J PASSED*"])


def test_a_failing_pair_shows_key_before_expected_and_actual(pytester, simulator):
    url = simulator(seed_from=str(SMS), coerce=("sms",))
    result = pytester.runpytest("--gws-replay", str(SMS), "--gws-target", url)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*pair 1 UpdateUserData on sms 0000Wa9CAM6W00J: user data changed differently",
            "*UserData1: before (absent), expected 987654321 (int), actual '987654321' (str)",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_replay_without_a_target_is_a_usage_error(pytester):
    result = pytester.runpytest("--gws-replay", str(SMS))
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--gws-replay needs --gws-target*"])


def test_fixtures_simulator_capture_and_mock(pytester):
    shutil.copy(SMS, pytester.path / "sms.gwscap")
    pytester.makepyfile(
        """
        import base64, json, urllib.request
        import pytest

        AUTH = "Basic " + base64.b64encode(b"agent1:password").decode()
        PATH = "/api/v2/me/smsessions/0000Wa9CAM6W00J"
        BODY = {"operationName": "UpdateUserData",
                "userData": {"UserData1": 987654321, "UserData2": "DATAUPDATE-@123"}}

        def post(url, body):
            req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                headers={"Authorization": AUTH, "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.load(r)

        def test_simulator(gws_simulator):
            assert post(gws_simulator.url + PATH, BODY) == {"statusCode": 0}

        @pytest.mark.gws_capture("sms.gwscap")
        def test_capture(gws_capture):
            (pair,) = gws_capture.where(media="sms")
            assert pair["after"]["UserData1"] == 987654321

        @pytest.mark.gws_capture("sms.gwscap")
        def test_mock(gws_mock):
            assert post(gws_mock.url + PATH, BODY)["statusCode"] == 0
        """
    )
    pytester.runpytest("-q").assert_outcomes(passed=3)


RECORDING_TEST = """
import base64, json, urllib.request

def test_update(gws_recording):
    req = urllib.request.Request(
        gws_recording.url + "/api/v2/me/smsessions/0000Wa9CAM6W00J",
        data=json.dumps({"operationName": "UpdateUserData", "userData": {"K": 1}}).encode(),
        method="POST",
        headers={"Authorization": "Basic " + base64.b64encode(b"agent1:password").decode(),
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.load(r)["statusCode"] == 0
    assert FAIL is False
"""


def _pairs(path: Path) -> int:
    with CaptureReader(str(path)) as reader:
        return sum(e.kind == 2 for e in reader.index())


@pytest.mark.e2e
def test_record_modes_and_a_failed_test_never_saves(pytester):
    capture = pytester.path / "captures" / "test_rec" / "test_update.gwscap"
    pytester.makepyfile(test_rec=RECORDING_TEST.replace("FAIL is False", "True"))
    result = pytester.runpytest_subprocess("-q", "--gws-record-mode", "none")
    result.assert_outcomes(errors=1)  # nothing to replay
    result.stdout.fnmatch_lines(["*no capture at *test_update.gwscap*"])
    assert not capture.exists()

    pytester.runpytest_subprocess("-q").assert_outcomes(passed=1)  # once: records
    assert _pairs(capture) == 1
    recorded = capture.read_bytes()

    pytester.runpytest_subprocess("-q", "--gws-record-mode", "none").assert_outcomes(passed=1)
    assert capture.read_bytes() == recorded  # replayed from the mock, untouched

    pytester.runpytest_subprocess("-q", "--gws-record-mode", "new").assert_outcomes(passed=1)
    assert _pairs(capture.with_suffix(".new.gwscap")) == 1
    assert capture.read_bytes() == recorded

    pytester.makepyfile(test_rec=RECORDING_TEST.replace("FAIL is False", "False"))
    pytester.runpytest_subprocess("-q", "--gws-record-mode", "rewrite").assert_outcomes(failed=1)
    assert capture.read_bytes() == recorded  # the failing test's recording was not saved
