"""`python -m gwsproxy.testing.examples OUTDIR`: the documentation samples as one applied
pair each, and a real recording (simulator, mitmdump with the addon, simulated agents) of at
least 50 pairs."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.record.records import after_of
from gwsproxy.verdict import VerdictName, judge

ROOT = Path(__file__).resolve().parents[1]
MAX_SIZE = 100 * 1024
pytestmark = pytest.mark.e2e  # runs the command, which records through mitmdump

SEEDS = {
    "seed-sms-update.gwscap": ("sms", "smsessions", "0000Wa9CAM6W00J"),
    "seed-facebook-update.gwscap": ("facebook", "facebooksessions", "0002DaAVKJ0V0095"),
}


@pytest.fixture(scope="module")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("examples")
    done = subprocess.run(
        [sys.executable, "-m", "gwsproxy.testing.examples", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return out


def read(path: Path) -> tuple[list[tuple[dict, dict]], Counter, CaptureReader]:
    with CaptureReader(path) as reader:
        records = list(reader.records())
    kinds = Counter(entry.kind for entry, _ in records)
    pairs = [(entry.summary, body) for entry, body in records if entry.kind == Kind.PAIR]
    return pairs, kinds, reader


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_capture_is_one_applied_pair(outdir: Path, name: str):
    path = outdir / name
    assert path.stat().st_size < MAX_SIZE
    pairs, kinds, reader = read(path)
    assert reader.damage == [] and reader.ended
    assert kinds == {Kind.HEADER: 1, Kind.PAIR: 1, Kind.END: 1}
    ((summary, body),) = pairs
    media, collection, interaction = SEEDS[name]
    assert summary["status"] == "matched"
    assert (summary["media"], summary["collection"], summary["interaction_id"]) == (
        media,
        collection,
        interaction,
    )
    assert summary["operation"] == "UpdateUserData" and summary["before_known"]
    assert body["request"]["path"] == f"/api/v2/me/{collection}/{interaction}"
    assert body["response"]["body"] == b'{"statusCode": 0}'
    assert dict(body["request"]["headers"])["Authorization"].startswith("<redacted ")
    after = after_of(summary, body)
    assert after is not None
    v = judge(
        summary["status"], summary["operation"], media, body["requested"], body["before"], after
    )
    assert v.name == VerdictName.APPLIED, v.changed()
    assert v.summary == "+2 ~0 -0"
    assert after["UserData1"] == 987654321 and type(after["UserData1"]) is int
    assert "UserData1" not in body["before"]


def test_sim_mixed_is_a_clean_recording_of_many_pairs(outdir: Path):
    path = outdir / "sim-mixed.gwscap"
    assert path.stat().st_size < MAX_SIZE
    pairs, kinds, reader = read(path)
    assert reader.damage == [], reader.damage
    assert reader.ended, "the recording did not end cleanly (no END record)"
    assert reader.header["upstream"].startswith("reverse:http://127.0.0.1:")
    assert len(pairs) >= 50
    assert kinds[Kind.RAW] == 0
    media = Counter(s["media"] for s, _ in pairs)
    assert len(media) >= 5, media
    statuses = Counter(s["status"] for s, _ in pairs)
    assert statuses["matched"] >= 40, statuses
    verdicts = Counter(
        judge(
            s["status"], s["operation"], s["media"], b["requested"], b["before"], after_of(s, b)
        ).name
        for s, b in pairs
    )
    assert set(verdicts) <= set(VerdictName)
    assert verdicts[VerdictName.APPLIED] >= 40, verdicts


def test_unwritable_outdir_is_one_line_and_non_zero(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = subprocess.run(
        [sys.executable, "-m", "gwsproxy.testing.examples", str(blocker)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("gwsproxy.testing.examples: cannot write into "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
