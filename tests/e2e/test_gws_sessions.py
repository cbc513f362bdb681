"""`gwsproxy replay` and `gwsproxy load` against a simulator with sessions as deployments have
them: a session cookie with a load balancer's stickiness cookie and CSRF tokens (`sim --csrf`),
bearer tokens and an API key (`sim --bearer --api-key`). The replay's capture keeps none of the
secrets in clear."""

from __future__ import annotations

import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gwsproxy.processes import SimProcess, gwsproxy_command

Procs = Sim = Any  # tests/e2e/conftest.py: the procs fixture and its simulators

EXAMPLES = Path(__file__).resolve().parents[2] / "captures" / "examples"
MIXED = EXAMPLES / "sim-mixed.gwscap"
PAIRS = 60  # in MIXED
API_KEY = "key-5f3a9c1e77"


@pytest.fixture(scope="module")
def clean(sim_factory: Callable[..., SimProcess], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MIXED's 60 operations without its recorded fault notifications: the capture of MIXED
    replayed against a simulator without faults (its -o output)."""
    sim = sim_factory("--seed-from", str(MIXED))
    out = tmp_path_factory.mktemp("clean") / "clean.gwscap"
    command = gwsproxy_command("replay", str(MIXED), "--target", sim.url, "-o", str(out))
    subprocess.run(command, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.exists()
    return out


def _replay(procs: Procs, sim: Sim, capture: Path, out: Path, *options: str) -> Any:
    """`gwsproxy replay` of `capture` against `sim` (trusting its CA when it serves HTTPS)."""
    trust = ["--cacert", str(sim.ca)] if sim.ca else []
    command = gwsproxy_command(
        "replay", str(capture), "--target", sim.url, "-o", str(out), "--timeout", "5", *trust
    )
    return procs.run([*command, *options], timeout=120)


@pytest.mark.parametrize("tls", [(), ("--tls",)], ids=["http", "https"])
def test_replay_with_a_session_cookie_and_csrf_passes_and_keeps_no_secret(
    procs: Procs, clean: Path, tmp_path: Path, tls: tuple[str, ...]
) -> None:
    sim = procs.sim(*tls, "--csrf", "--seed-from", str(clean))
    out = tmp_path / "replay.gwscap"
    done = _replay(procs, sim, clean, out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{PAIRS} passed, 0 failed" in done.stdout
    state = sim.control("csrf")
    assert (state["posts"], state["refused"]) == (PAIRS, 0)
    # every session got its stickiness cookie and its token, and none of them is in the capture
    assert state["sessions"] and all(all(s) for s in state["sessions"]), state
    procs.assert_no_secrets(out, sim.session_secrets(state))


def test_a_token_made_stale_mid_replay_is_fetched_again_once(
    procs: Procs, clean: Path, tmp_path: Path
) -> None:
    sim = procs.sim("--tls", "--csrf", "--seed-from", str(clean))
    out = tmp_path / "replay.gwscap"
    result: dict[str, Any] = {}

    def replay() -> None:
        result["done"] = _replay(procs, sim, clean, out, "--rate", "40")

    runner = threading.Thread(target=replay)
    runner.start()
    procs.wait_until(lambda: len(sim.log()) >= 5, 60, "the replay's first operations")
    before = sim.control("csrf")  # the tokens about to go stale, to look for in the capture
    sim.control("csrf", {"expire": True})
    runner.join(130)
    done = result["done"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{PAIRS} passed, 0 failed" in done.stdout
    after = sim.control("csrf")
    # each session that posted after the expiry was refused once, then went through
    assert 1 <= after["refused"] <= len(after["sessions"]), after
    assert after["posts"] == PAIRS + after["refused"]
    assert len(sim.log()) == PAIRS
    procs.assert_no_secrets(out, sim.session_secrets(before) | sim.session_secrets(after))


def test_a_token_refused_again_is_reported_not_looped(
    procs: Procs, clean: Path, tmp_path: Path
) -> None:
    sim = procs.sim("--csrf", "--seed-from", str(clean))
    sim.control("csrf", {"refuse": True})
    out = tmp_path / "replay.gwscap"
    done = _replay(procs, sim, clean, out, "--rate", "0")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"0 passed, {PAIRS} failed" in done.stdout
    state = sim.control("csrf")
    assert (state["posts"], state["refused"]) == (2 * PAIRS, 2 * PAIRS)  # one retry each
    assert sim.log() == []


def _tokens_file(procs: Procs, sim: Sim) -> Path:
    line = procs.wait_until(
        lambda: next((x for x in sim.stdout().splitlines() if x.startswith("bearer tokens")), None),
        10,
        "the simulator's bearer tokens line",
    )
    path = Path(line.split(": ", 1)[1].split()[0])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path


@pytest.mark.parametrize("tls", [(), ("--tls",)], ids=["http", "https"])
def test_replay_with_bearer_tokens_and_an_api_key(
    procs: Procs, clean: Path, tmp_path: Path, tls: tuple[str, ...]
) -> None:
    sim = procs.sim(*tls, "--bearer", "--api-key", API_KEY, "--seed-from", str(clean))
    tokens = _tokens_file(procs, sim)
    out = tmp_path / "replay.gwscap"
    header = f"x-api-key:{API_KEY}"
    done = _replay(procs, sim, clean, out, "--bearer-file", str(tokens), "--header", header)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{PAIRS} passed, 0 failed" in done.stdout
    secrets = {line.split()[1] for line in tokens.read_text().splitlines()}
    procs.assert_no_secrets(out, {*secrets, API_KEY})
    for text in (done.stdout, done.stderr):
        assert API_KEY not in text and not any(s in text for s in secrets)
    # without the API key, or with Basic, the simulator refuses the login: one line, exit 2
    refused = _replay(procs, sim, clean, tmp_path / "no.gwscap", "--bearer-file", str(tokens))
    assert refused.returncode == 2 and "401 Not authenticated" in refused.stderr, refused.stderr
    basic = _replay(procs, sim, clean, tmp_path / "basic.gwscap", "--header", header)
    assert basic.returncode == 2 and "401 Not authenticated" in basic.stderr, basic.stderr


def test_load_against_csrf_and_bearer(procs: Procs) -> None:
    csrf = procs.sim("--csrf", "--agents", "3")
    load = ["load", "--agents", "3", "--ops", "10", "--timeout", "5"]
    done = procs.run(gwsproxy_command(*load, "--target", csrf.url))
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(csrf.log()) == 30 and csrf.control("csrf")["refused"] == 0
    bearer = procs.sim("--bearer", "--agents", "3")
    tokens = _tokens_file(procs, bearer)
    done = procs.run(gwsproxy_command(*load, "--target", bearer.url, "--bearer-file", str(tokens)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(bearer.log()) == 30
