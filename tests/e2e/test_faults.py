"""Pairing that stays right when the network does not: the recorder under injected faults.

Simulated agents talk to the real `mitmdump` with our addon; a fault proxy (faultproxy.py) sits
between it and the GWS simulator and resets, stalls or refuses connections on cue, the simulator
and the recorder are restarted mid-session. The simulator's own log of the operations it carried
out is the ground truth, and three numbers are asserted after every run:

- wrong pairs: a pair carrying a notification that is not the one its own operation caused;
- missing pairs: a request that reached the recorder but is not in the capture exactly once;
- dishonest pairs: a pair not matched whose status or reason does not say what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from faultproxy import DOWN, UP, FaultProxy

from gwsproxy import gws
from gwsproxy.capture.format import Kind
from gwsproxy.capture.reader import CaptureReader
from gwsproxy.record.records import notification_of
from gwsproxy.sim.agents import Agent, LoadConfig, Sent

if TYPE_CHECKING:
    from conftest import Mitm, Procs, Sim

pytestmark = pytest.mark.e2e

GWS_TIMEOUT = 2.0  # the recorder's notification timeout (gws_timeout)
AGENT_TIMEOUT = 1.0  # agents give up sooner: their next op meets the older one still open
RECORDER: dict[str, Any] = {"options": {"gws_timeout": str(GWS_TIMEOUT)}}
# mitmproxy's default in reverse mode connects to GWS as soon as a client connects: when GWS is
# down it drops the client before reading its request, which then never reaches the recorder.
# Lazily, it reads the request first and answers 502: the recorder sees what GWS never did.
LAZY: dict[str, Any] = {"options": {**RECORDER["options"], "connection_strategy": "lazy"}}
WAIT = 30.0  # seconds any single condition may take on a loaded 2-core machine
AGENTS = 3
MEDIA = ("chat", "voice", "workitem")  # inferred with referenceId, inferred without, exact
TRANSPORTS = ["long-polling", "websocket"]
# The statuses a pair may honestly have, and those that must also say why.
HONEST = {"matched", "error", "timeout", "lost", "ambiguous", "failed", "rejected", "incomplete"}
NEEDS_REASON = {"failed", "lost", "ambiguous"}
# Seeds per scenario and transport: the default keeps the suite at about two minutes on
# 2 cores; GWS_FAULT_SEEDS=10 makes a soak run of it.
SEEDS = int(os.environ.get("GWS_FAULT_SEEDS", "0"))


def seeds(first: int, n: int = 1) -> list[int]:
    return [first + 100 * i for i in range(max(n, SEEDS))]


# ---- the rig: simulator, fault proxy, recorder, agents ----------------------------------------


class Load:
    """Simulated agents running in their own thread (the test steers faults meanwhile)."""

    def __init__(self, target: str, transport: str, seed: int, ops: int, **kw: Any) -> None:
        self.config = LoadConfig(
            target=target,
            agents=AGENTS,
            ops=ops,
            transport=transport,
            seed=seed,
            timeout=AGENT_TIMEOUT,
            media=MEDIA,
            **kw,
        )
        self.agents = [Agent(self.config, n, on_done=self._tick) for n in range(1, AGENTS + 1)]
        self.done = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def _tick(self) -> None:
        self.done += 1

    async def _main(self) -> None:
        try:
            await asyncio.gather(*(a.start() for a in self.agents))
            await asyncio.gather(*(a.run(self.config.ops) for a in self.agents))
        except BaseException as e:  # noqa: BLE001 - reported by wait()
            self.error = e
        finally:
            await asyncio.gather(*(a.close() for a in self.agents), return_exceptions=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def wait(self) -> None:
        self._thread.join(WAIT * 3)
        assert not self._thread.is_alive(), "the agents did not finish (a hang)"
        assert self.error is None, f"the agents failed: {self.error!r}"

    @property
    def journal(self) -> list[tuple[str, Sent]]:
        return [(f"user:{a.name}", s) for a in self.agents for s in a.journal]


@dataclass
class Rig:
    procs: Procs
    seed: int
    sim: Sim
    proxy: FaultProxy  # between the recorder and the simulator
    mitm: Mitm
    captures: list[Path]
    logs: list[list[dict]] = field(default_factory=list)  # of simulators no longer running
    front: FaultProxy | None = None  # between the agents and the recorder, if asked for
    recorder: dict[str, Any] = field(default_factory=lambda: RECORDER)  # its options

    @property
    def target(self) -> str:
        return self.front.url if self.front is not None else self.mitm.url

    def restart_sim(self, while_down: Callable[[], object] = lambda: None) -> None:
        """Kill the simulator and start another on the same port that goes on from its state
        (user data, referenceIds); meanwhile GWS refuses connections, and `while_down` runs.
        CometD clients it forgot: they get `402::Unknown client`."""
        self.proxy.refuse()
        self.proxy.reset_all()
        with urllib.request.urlopen(self.sim.url + "/_sim/state", timeout=WAIT) as r:
            state = json.loads(r.read())
        self.logs.append(state.pop("log"))
        self.sim.kill()
        while_down()
        self.sim = self.procs.sim(*sim_options(self.seed), "-p", str(self.sim.port))
        request = urllib.request.Request(
            self.sim.url + "/_sim/state", data=json.dumps(state).encode(), method="PUT"
        )
        with urllib.request.urlopen(request, timeout=WAIT) as r:
            assert r.status == 200
        self.proxy.resume()

    def restart_recorder(self) -> None:
        """SIGINT the recorder and start another on the same capture (a new session in it once
        the recorder appends; a second file until then); the agents meanwhile are refused."""
        assert self.front is not None, "the rig was built without a front proxy"
        self.front.refuse()
        self.front.reset_all()
        assert self.mitm.signal(signal.SIGINT) == 0, self.mitm.describe()
        path = self.captures[0]
        size = path.stat().st_size
        self.mitm = self.procs.mitmdump(self.proxy.url, path, **self.recorder)
        # A new session begins with a header record; a recorder that refuses an existing
        # capture exits (until the change that appends lands): then a second file it is.
        wait_until(
            lambda: path.stat().st_size > size or not self.mitm.alive(),
            "the restarted recorder to append a session or refuse",
        )
        if not self.mitm.alive():
            assert "already exists" in self.mitm.stdout(), self.mitm.describe()
            path = self.procs.workdir / "restarted.gwscap"
            self.captures.append(path)
            self.mitm = self.procs.mitmdump(self.proxy.url, path, **self.recorder)
        self.front.set_upstream(self.mitm.port)
        self.front.resume()

    def all_ops(self) -> list[dict]:
        return [op for log in self.logs for op in log] + self.sim.log()


def sim_options(seed: int) -> list[str]:
    return ["--agents", str(AGENTS), "--seed", str(seed), "--cometd-timeout", "5"]


@contextlib.contextmanager
def rig(
    procs: Procs,
    seed: int,
    *,
    front: bool = False,
    recorder: dict[str, Any] = RECORDER,
) -> Iterator[Rig]:
    port = procs.free_port()
    with FaultProxy(port) as proxy:
        path = procs.workdir / "faults.gwscap"
        # Both start at once (a second each on a busy machine): the proxy knows the sim's port.
        with ThreadPoolExecutor(1) as pool:
            starting = pool.submit(procs.mitmdump, proxy.url, path, **recorder)
            sim = procs.sim(*sim_options(seed), "-p", str(port))
            mitm = starting.result()
        r = Rig(procs, seed, sim, proxy, mitm, [path], recorder=recorder)
        if front:
            with FaultProxy(mitm.port) as f:
                r.front = f
                yield r
        else:
            yield r


def finish(r: Rig, load: Load) -> Report:
    """Let the agents end, the recorder close every pair (timeouts included), stop it cleanly,
    and check the capture against the simulator's log and the agents' journals."""
    load.wait()
    return settle(r, load.journal)


def settle(r: Rig, journal: list[tuple[str, Sent]]) -> Report:
    """`finish` once the requests in `journal` are all sent."""
    r.proxy.clear()
    if r.front is not None:
        r.front.clear()
    # Every request still open in the recorder closes by gws_timeout (its ticker runs 4 times
    # a second); a clean stop would write what is left as incomplete.
    deadline = max((s.started for _, s in journal), default=time.time()) + GWS_TIMEOUT + 1.0
    sure = sum(1 for _, s in journal if s.http_status is not None)
    maybe = sum(1 for _, s in journal if s.outcome != "unreached")

    def closed() -> bool:
        n = count_pairs(r.captures)
        return n >= maybe or (n >= sure and time.time() > deadline)

    wait_until(closed, f"{sure} to {maybe} pairs in the capture")
    assert r.mitm.signal(signal.SIGINT) == 0, r.mitm.describe()
    ops = r.all_ops()
    outcomes = Counter((s.outcome, s.reason) for _, s in journal)
    print("agents:", dict(outcomes), flush=True)
    report = check(read_pairs(r.captures), ops, journal)
    print(report.table(), flush=True)
    raws = Counter(raw["reason"] for raw in read_summaries(r.captures, Kind.RAW))
    assert not [why for why in raws if "internal error" in why], raws
    return report


def wait_until(condition: Any, what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return value


# ---- reading the captures --------------------------------------------------------------------


@dataclass
class Recorded:
    """A pair as the capture has it, with what the checks need from its body."""

    session: str  # file and session number
    id: int
    scope: str
    interaction_id: str
    operation: str
    requested: Any
    status: str
    error: str | None
    t: float
    t_note: float | None
    before: dict | None
    before_known: bool
    has_note: bool
    note_ref: Any  # the notification's referenceId (None: none, or no notification)
    note_after: dict | None  # the user data the notification shows
    sim_ref: int | None  # the operation the simulator answered for it (X-Sim-Reference)

    @property
    def name(self) -> str:
        return f"{self.session}#{self.id}"

    @property
    def key(self) -> tuple:
        return (self.scope, self.interaction_id, self.operation, canonical(self.requested))


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def count_pairs(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if path.exists():
            with CaptureReader(path) as reader:
                total += sum(1 for e in reader.index() if e.kind == Kind.PAIR)
    return total


def read_pairs(paths: list[Path]) -> list[Recorded]:
    pairs: list[Recorded] = []
    for n, path in enumerate(paths):
        with CaptureReader(path) as reader:
            records = list(reader.records())
            assert not reader.damage, reader.damage
        session = 0  # a restarted recorder appends a session: a header record begins it
        for entry, body in records:
            session += entry.kind == Kind.HEADER
            if entry.kind != Kind.PAIR:
                continue
            assert body is not None, entry
            s = entry.summary
            note = notification_of(body)
            after = None
            if note is not None and not note.is_error:
                after = note.user_data if note.user_data is not None else {}
            pairs.append(
                Recorded(
                    session=f"f{n + 1}s{session}",
                    id=s["id"],
                    scope=s["scope"],
                    interaction_id=s["interaction_id"],
                    operation=s["operation"],
                    requested=body.get("requested"),
                    status=s["status"],
                    error=s.get("error"),
                    t=s["t"],
                    t_note=s.get("t_note"),
                    before=body.get("before"),
                    before_known=s.get("before_known", False),
                    has_note=note is not None,
                    note_ref=note.reference_id if note is not None else None,
                    note_after=after,
                    sim_ref=_sim_reference(body.get("response")),
                )
            )
    return pairs


def read_summaries(paths: list[Path], kind: Kind) -> list[dict]:
    """The summaries of one kind of record (unsolicited notifications, raw messages)."""
    found = []
    for path in paths:
        with CaptureReader(path) as reader:
            found += [e.summary for e in reader.index() if e.kind == kind]
    return found


def _sim_reference(response: dict | None) -> int | None:
    for name, value in (response or {}).get("headers") or []:
        if name.lower() == "x-sim-reference":
            return int(value)
    return None


# ---- the check --------------------------------------------------------------------------------


@dataclass
class Violation:
    kind: str  # wrong, missing, dishonest
    pair: str  # session#id, or "-" for a request missing from the capture
    interaction: str
    status: str
    expected: Any  # referenceId of the pair's own operation
    got: Any  # referenceId of the notification it carries
    detail: str


@dataclass
class Report:
    pairs: list[Recorded]
    ops: list[dict]
    violations: list[Violation]
    unreached: list[Recorded] = field(default_factory=list)  # requests GWS never saw

    def count(self, kind: str) -> int:
        return sum(1 for v in self.violations if v.kind == kind)

    @property
    def wrong(self) -> int:
        return self.count("wrong")

    @property
    def missing(self) -> int:
        return self.count("missing")

    @property
    def dishonest(self) -> int:
        return self.count("dishonest")

    def statuses(self) -> Counter[str]:
        return Counter(p.status for p in self.pairs)

    def table(self) -> str:
        lines = [
            f"{len(self.pairs)} pairs, {len(self.ops)} simulator ops, statuses "
            f"{dict(sorted(self.statuses().items()))}: wrong {self.wrong}, missing "
            f"{self.missing}, dishonest {self.dishonest}"
        ]
        for p in self.unreached:
            lines.append(f"never reached GWS: {p.name} {p.status} ({p.error})")
        if self.violations:
            header = ("kind", "pair", "interaction", "status", "ref expected", "ref got", "why")
            rows = [header] + [
                (
                    v.kind,
                    v.pair,
                    v.interaction,
                    v.status,
                    str(v.expected),
                    str(v.got),
                    v.detail,
                )
                for v in self.violations
            ]
            widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
            for row in rows:
                cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
                lines.append("  ".join([*cells, row[-1]]))
        return "\n".join(lines)

    def assert_clean(self) -> None:
        assert (self.wrong, self.missing, self.dishonest) == (0, 0, 0), "\n" + self.table()


def check(pairs: list[Recorded], ops: list[dict], journal: list[tuple[str, Sent]]) -> Report:
    """Wrong, missing and dishonest pairs of a capture, against the simulator's log of the
    operations it carried out and the agents' journals of what they sent."""
    violations: list[Violation] = []
    by_ref = {op["reference_id"]: op for op in ops}
    assert len(by_ref) == len(ops), "the simulator reused a referenceId"

    def op_key(op: dict) -> tuple:
        scope = f"user:{op['agent']}"
        return (scope, op["interaction_id"], op["operation"], canonical(op["requested"]))

    # Which operation each pair's request became: named by the simulator's answer where the
    # answer came through; else the unclaimed operation with the same request, at or after it.
    own: dict[str, dict | None] = {}
    claimed: set[int] = set()
    for p in pairs:
        if p.sim_ref is not None:
            op = by_ref.get(p.sim_ref)
            assert op is not None and op_key(op) == p.key, (p, op)
            own[p.name] = op
            claimed.add(p.sim_ref)
    unanswered = sorted((p for p in pairs if p.sim_ref is None), key=lambda p: p.t)

    def candidates(p: Recorded) -> list[dict]:
        return [
            op
            for op in ops
            if op["reference_id"] not in claimed
            and op_key(op) == p.key
            and p.t - 0.5 <= op["time"] <= p.t + WAIT
        ]

    # First those whose notification names their operation, then the rest in request order.
    for p in sorted(unanswered, key=lambda p: (p.note_ref is None, p.t)):
        found = candidates(p)
        pick = next((op for op in found if op["reference_id"] == p.note_ref), None)
        if pick is None and p.note_ref is None and p.note_after is not None:
            pick = next((op for op in found if op["after"] == p.note_after), None)
        if pick is None and found:
            # Its own operation by what it asked, whatever notification it carries.
            pick = found[0]
        own[p.name] = pick
        if pick is not None:
            claimed.add(pick["reference_id"])

    for p in pairs:
        op = own.get(p.name)
        expected = None if op is None else op["reference_id"]
        if p.has_note:
            # The notification must be the one the simulator sent for this pair's operation.
            noted = by_ref.get(p.note_ref) if p.note_ref is not None else None
            why = None
            if op is None:
                why = "its request never reached GWS, yet it carries a notification"
            elif p.note_ref is not None and p.note_ref != op["reference_id"]:
                why = "it carries another operation's notification"
            elif p.note_after is not None and p.note_after != op["after"]:
                why = f"after {p.note_after} is not its operation's {op['after']}"
            if why is not None:
                why = f"{p.operation} {canonical(p.requested)}: {why}"
                if noted is not None and noted is not op:
                    why += f" (that of {noted['operation']} {canonical(noted['requested'])})"
                violations.append(
                    Violation(
                        "wrong", p.name, p.interaction_id, p.status, expected, p.note_ref, why
                    )
                )
        honest = _dishonest(p, op)
        if honest is not None:
            violations.append(
                Violation(
                    "dishonest", p.name, p.interaction_id, p.status, expected, p.note_ref, honest
                )
            )

    # Every operation the simulator carried out passed through the recorder: it has a pair.
    for op in ops:
        if op["reference_id"] not in claimed:
            violations.append(
                Violation(
                    "missing",
                    "-",
                    op["interaction_id"],
                    "-",
                    op["reference_id"],
                    None,
                    f"the simulator carried out {op['operation']} {canonical(op['requested'])}"
                    f" for {op['agent']}, no pair records it",
                )
            )
    # Every request the agents sent is in the capture exactly once, if it reached the recorder:
    # surely if it was answered (by GWS or by the recorder itself), maybe if the exchange broke.
    sure: Counter[tuple] = Counter()
    maybe: Counter[tuple] = Counter()
    for scope, s in journal:
        key = (scope, s.interaction_id, s.operation, canonical(s.requested))
        if s.http_status is not None:
            sure[key] += 1
        elif s.outcome != "unreached":
            maybe[key] += 1
    recorded = Counter(p.key for p in pairs)
    for key in sure.keys() | maybe.keys() | recorded.keys():
        n = recorded[key]
        if not sure[key] <= n <= sure[key] + maybe[key]:
            names = [p.name for p in pairs if p.key == key]
            violations.append(
                Violation(
                    "missing",
                    ",".join(names) or "-",
                    key[1],
                    "-",
                    None,
                    None,
                    f"{key[0]} {key[2]} {key[3]}: sent {sure[key]} answered + {maybe[key]} "
                    f"broken, recorded {n} times",
                )
            )
    unreached = [p for p in pairs if own.get(p.name) is None]
    return Report(pairs, ops, violations, unreached)


def _dishonest(p: Recorded, op: dict | None) -> str | None:
    if p.status not in HONEST:
        return f"unknown status {p.status!r}"
    if p.status in ("matched", "error") and not p.has_note:
        return "matched without a notification"
    if p.status in NEEDS_REASON and not p.error:
        return f"{p.status} without a reason"
    if op is None and p.status not in ("failed", "rejected", "incomplete") and not p.error:
        return "its request never reached GWS, and neither status nor reason says so"
    if op is None and p.status == "lost":
        return "its request never reached GWS: it had no notification to lose"
    if op is not None and p.status == "rejected":
        return "GWS carried it out, yet it is recorded as rejected"
    return None


# ---- scenarios ---------------------------------------------------------------------------------


def interaction_ids(load: Load) -> list[str]:
    return sorted(ix.id for a in load.agents for ix in a.interactions)


@pytest.mark.parametrize("seed", seeds(1, 2))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reset_connections_lose_notifications_but_never_shift_pairs(
    procs: Procs, transport: str, seed: int
) -> None:
    """(a) Notifications lost with the connection that carried them (a reset while the
    simulator's answer is on its way), and every connection reset now and then."""
    rng = random.Random(seed)
    with rig(procs, seed) as r:
        load = Load(r.target, transport, seed, ops=15).start()
        wait_until(lambda: all(a.interactions for a in load.agents), "the agents to log in")
        ids = interaction_ids(load)
        total = AGENTS * load.config.ops
        for at in sorted(rng.sample(range(3, total - 10), 5)):
            wait_until(lambda at=at: load.done >= at or load.error, f"{at} ops done")
            if rng.random() < 0.3:
                r.proxy.reset_all()
            else:
                # The next notification about this interaction dies with its connection.
                r.proxy.reset_next(rng.choice(ids).encode(), DOWN)
        report = finish(r, load)
    assert r.proxy.resets > 0
    report.assert_clean()


@pytest.mark.parametrize("seed", seeds(3))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_stall_beyond_the_timeout_closes_pairs_as_timeout_never_late_matched(
    procs: Procs, transport: str, seed: int
) -> None:
    """(b) An agent's notifications held up longer than gws_timeout, then all delivered."""
    rng = random.Random(seed)
    with rig(procs, seed) as r:
        load = Load(r.target, transport, seed, ops=12).start()
        wait_until(lambda: all(a.interactions for a in load.agents), "the agents to log in")
        agent = rng.choice(load.agents)
        wait_until(lambda: load.done >= 5 or load.error, "5 ops done")
        # Everything the simulator sends that agent from its next notification on is held.
        r.proxy.stall(DOWN, pattern=rng.choice(agent.interactions).id.encode())
        wait_until(lambda: r.proxy.stalled() or load.error, "a stalled notification")
        held = time.time()
        wait_until(lambda: time.time() > held + GWS_TIMEOUT + 1.0, "the stall to outlast")
        r.proxy.release()
        report = finish(r, load)
    assert report.statuses()["timeout"] > 0, report.table()
    report.assert_clean()


@pytest.mark.parametrize("seed", seeds(4))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_stall_within_the_timeout_still_matches_everything(
    procs: Procs, transport: str, seed: int
) -> None:
    """(b) Notifications held up for less than gws_timeout (and than the agents' patience)."""
    with rig(procs, seed) as r:
        load = Load(r.target, transport, seed, ops=10).start()
        for at in (5, 12, 20):
            wait_until(lambda at=at: load.done >= at or load.error, f"{at} ops done")
            r.proxy.stall(DOWN, pattern=b"/v2/me/", seconds=AGENT_TIMEOUT / 2)
        report = finish(r, load)
    assert set(report.statuses()) == {"matched"}, report.table()
    report.assert_clean()


@pytest.mark.parametrize("seed", seeds(5))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_simulator_restart_closes_the_requests_it_never_saw_honestly(
    procs: Procs, transport: str, seed: int
) -> None:
    """(c) GWS killed mid-session and started again on the same port: requests sent while it
    is down never reach it and must not be matched to anyone's notification."""
    with rig(procs, seed, recorder=LAZY) as r:
        load = Load(r.target, transport, seed, ops=12).start()
        wait_until(lambda: load.done >= 12 or load.error, "12 ops done")

        def refused() -> list[Sent]:
            """Requests the recorder took and answered 502: GWS was not there."""
            return [s for _, s in load.journal if s.outcome == "failed" and s.http_status]

        # GWS stays down until the agents have sent a few requests into the outage.
        r.restart_sim(lambda: wait_until(lambda: len(refused()) >= AGENTS, "ops in the outage"))
        report = finish(r, load)
    assert report.unreached, "no request in the outage reached the recorder"
    report.assert_clean()


@pytest.mark.parametrize("seed", seeds(6))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_recorder_restart_keeps_every_pair_once(procs: Procs, transport: str, seed: int) -> None:
    """(d) The recorder stopped (SIGINT) mid-session and started again on the same capture."""
    with rig(procs, seed, front=True) as r:
        # Enough ops for after the restart: during it, every agent's are refused (backing off).
        load = Load(r.target, transport, seed, ops=20).start()
        wait_until(lambda: load.done >= 15 or load.error, "15 ops done")
        r.restart_recorder()
        report = finish(r, load)
    sessions = {p.session for p in report.pairs}
    assert len(sessions) >= 2, sessions
    report.assert_clean()


class RawBayeux:
    """One agent by hand over long polling, so that the test decides when a connect is held:
    between connects, GWS queues the agent's notifications."""

    def __init__(self, base: str, user: str) -> None:
        self.base = base
        self.headers = {
            "Authorization": gws.basic_authorization(user, "password"),
            "Content-Type": "application/json",
        }
        self.client_id: str | None = None

    def call(self, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=self.headers)
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, json.loads(response.read())

    def bayeux(self, *messages: dict) -> list[dict]:
        for m in messages:
            if self.client_id is not None:
                m.setdefault("clientId", self.client_id)
        return self.call("/api/v2/notifications", list(messages))[1]

    def handshake(self) -> None:
        reply = self.bayeux({"channel": "/meta/handshake", "version": "1.0"})
        self.client_id = reply[0]["clientId"]
        self.bayeux({"channel": "/meta/subscribe", "subscription": "/v2/me/**"})

    def poll(self) -> list[dict]:
        """A connect answered at once, with whatever GWS has queued."""
        reply = self.bayeux({"channel": "/meta/connect", "advice": {"timeout": 0}})
        return [m for m in reply if not m["channel"].startswith("/meta/")]

    def update(self, ix: str, user_data: dict) -> Sent:
        sent = Sent(ix, "UpdateUserData", user_data, time.time())
        body = {"operationName": "UpdateUserData", "userData": user_data}
        sent.http_status, _ = self.call(f"/api/v2/me/chats/{ix}", body)
        sent.outcome = "answered"
        return sent


def test_a_notification_held_over_a_recorder_restart_is_not_given_to_a_new_request(
    procs: Procs,
) -> None:
    """(d) Deterministically: GWS queues the notification of A (sent through the first
    recorder) until the client connects again, through the restarted recorder, where B on the
    same chat is open. It is A's notification; B must not be paired with it."""
    with rig(procs, seed=8, front=True) as r:
        agent = RawBayeux(r.target, "agent1")
        chat = agent.call("/api/v2/me/chats")[1]["chats"][0]["id"]
        agent.handshake()
        agent.poll()  # from now on no connect is held: GWS queues
        journal = [("user:agent1", agent.update(chat, {"Held": "over the restart"}))]
        wait_until(lambda: len(r.sim.log()) == 1, "GWS to carry out A")
        r.restart_recorder()
        journal.append(("user:agent1", agent.update(chat, {"Fresh": "after the restart"})))
        seen: list[dict] = []

        def both() -> bool:
            seen.extend(agent.poll())
            return len(seen) >= 2

        wait_until(both, "both notifications")
        agent.bayeux({"channel": "/meta/disconnect"})
        assert [m["data"]["referenceId"] for m in seen] == [1, 2], seen
        report = settle(r, journal)
    report.assert_clean()


@pytest.mark.parametrize("seed", seeds(7))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_churn_keeps_scope_open_requests_and_snapshots(
    procs: Procs, transport: str, seed: int
) -> None:
    """(e) Clients that reconnect through new connections, re-handshake after the simulator
    forgot them (402::Unknown client) and, on WebSocket, fall back to long polling: the
    recorder keeps their scope and before-snapshots, and the agents keep working."""
    with rig(procs, seed) as r:
        load = Load(r.target, transport, seed, ops=18, fallback=True).start()
        wait_until(lambda: load.done >= 9 or load.error, "9 ops done")
        r.proxy.reset_all()  # reconnect: the simulator still knows the clients
        wait_until(lambda: load.done >= 21 or load.error, "21 ops done")
        r.restart_sim()  # re-handshake: it does not
        wait_until(
            lambda: all(a._session.cometd.handshakes >= 2 for a in load.agents) or load.error,
            "every agent to handshake again",
        )
        wait_until(lambda: load.done >= 36 or load.error, "36 ops done")
        if transport == "websocket":
            # WebSocket upgrades fail from now on: the clients fall back to long polling.
            r.proxy.reset_next(b"Sec-WebSocket-Key", UP, count=1000)
            r.proxy.reset_all()
            wait_until(
                lambda: all(a._session.cometd.fell_back for a in load.agents) or load.error,
                "every agent to fall back to long polling",
            )
        handshakes = {a.name: a._session.cometd.handshakes for a in load.agents}
        report = finish(r, load)
    report.assert_clean()
    assert all(n >= 2 for n in handshakes.values()), handshakes
    assert {p.scope for p in report.pairs} == {f"user:{a.name}" for a in load.agents}
    assert all(p.before_known for p in report.pairs), [p.name for p in report.pairs]
    # Each pair's before is what the simulator had before the operation, wherever the recorder
    # had seen the interaction's previous state by then: its snapshots survived the churn.
    noted = {p.sim_ref: p.t_note for p in report.pairs if p.status == "matched"}
    previous: dict[int, dict | None] = {}
    last_of: dict[str, dict] = {}
    for op in sorted(report.ops, key=lambda op: op["reference_id"]):
        previous[op["reference_id"]] = last_of.get(op["interaction_id"])
        last_of[op["interaction_id"]] = op

    def seen_before(p: Recorded) -> bool:
        """The notification of the operation before p's on its interaction came before p."""
        prior = previous[p.sim_ref]
        if prior is None:
            return True
        t_note = noted.get(prior["reference_id"])
        return t_note is not None and t_note < p.t

    ops = {op["reference_id"]: op for op in report.ops}
    stale = [
        (p.name, p.interaction_id, p.before, ops[p.sim_ref]["before"])
        for p in report.pairs
        if p.status == "matched"
        and p.sim_ref is not None
        and seen_before(p)
        and p.before != ops[p.sim_ref]["before"]
    ]
    if stale:
        stray = read_summaries(r.captures, Kind.NOTIFICATION)
        near = [
            (q.name, q.status, q.sim_ref, q.note_ref, q.t)
            for q in report.pairs
            if q.interaction_id in {x[1] for x in stale}
        ]
        pytest.fail(f"stale before: {stale}\npairs there: {near}\nunsolicited: {stray}")
    # And every agent still gets its notifications at the end.
    for agent in load.agents:
        assert agent.journal[-1].outcome == "notified" or any(
            s.outcome == "notified" for s in agent.journal[-5:]
        ), [(s.operation, s.outcome) for s in agent.journal[-5:]]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_third_party_cometd_client_rides_out_resets_and_a_gws_restart(
    procs: Procs, transport: str
) -> None:
    """(e) With aiocometd-ng (code nobody here wrote) as the CometD client: its connections
    reset, then GWS restarted (402::Unknown client); every update it gets notified of is
    paired with exactly that notification."""
    with rig(procs, seed=9) as r:
        journal, notified = asyncio.run(third_party_session(r, transport))
        report = settle(r, journal)
    report.assert_clean()
    assert notified >= 9, notified  # three per phase at least
    matched = {p.sim_ref for p in report.pairs if p.status == "matched"}
    assert len(matched) >= notified, report.table()


async def third_party_session(r: Rig, transport: str) -> tuple[list[tuple[str, Sent]], int]:
    from aiocometd_auth import BasicAuth
    from aiocometd_ng import Client, ConnectionType

    user = "agent2"
    kind = ConnectionType.WEBSOCKET if transport == "websocket" else ConnectionType.LONG_POLLING
    auth = gws.basic_authorization(user, "password")
    journal: list[tuple[str, Sent]] = []
    notified = 0
    async with aiohttp.ClientSession(headers={"Authorization": auth}) as http:
        async with http.get(r.target + "/api/v2/me/chats") as response:
            chat = (await response.json())["chats"][0]["id"]
        # connection_timeout=0: aiocometd-ng 0.5 passes `loop=` to asyncio.wait_for when its
        # transport reconnects, a TypeError on Python 3.10+ that receive() turns into
        # TransportTimeoutError on the first reconnect. Without the timeout it rides it out.
        client = Client(
            r.target + "/api/v2/notifications",
            [kind],
            extensions=[BasicAuth(user)],
            connection_timeout=0,
        )
        async with client:
            await client.subscribe("/v2/me/**")
            for phase, fault in enumerate((None, r.proxy.reset_all, r.restart_sim)):
                if fault is not None:
                    await asyncio.to_thread(fault)
                done = 0
                for n in range(40):  # after a fault, probes until the client hears again
                    value = f"phase{phase}-{n}"
                    sent = Sent(chat, "UpdateUserData", {"Probe": value}, time.time())
                    journal.append((f"user:{user}", sent))
                    body = {"operationName": "UpdateUserData", "userData": {"Probe": value}}
                    async with http.post(f"{r.target}/api/v2/me/chats/{chat}", json=body) as a:
                        sent.http_status = a.status
                    sent.outcome = "timeout"
                    if await _heard(client, value):
                        sent.outcome = "notified"
                        done += 1
                        if done == 3:
                            break
                notified += done
    return journal, notified


async def _heard(client: Any, value: str) -> bool:
    """Whether the notification showing `value` comes within the agents' patience."""
    deadline = time.monotonic() + AGENT_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(client.receive(), left)
        except TimeoutError:
            return False
        chat = (message.get("data") or {}).get("chat") or {}
        if (chat.get("userData") or {}).get("Probe") == value:
            return True
    return False
