"""What each Locust user of `gwsproxy swarm` replays, as whom, when, and what its outcome counts as.

Pure: a capture's pairs (`replay.regress.load_pairs`) become one script per recorded agent, in
recorded order; global user numbers (0, 1, 2 ...) get a script each, the recorded agent's own
for the first of them and new identities for the rest (`Identities`); an op's pair is judged by
`verdict.judge`, and fails the run on the verdicts `gwsproxy check` fails on (`verdict.FAIL_ON`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gwsproxy import gws
from gwsproxy.correlate import Pair
from gwsproxy.errors import GwsProxyError
from gwsproxy.gws.options import secret_lines
from gwsproxy.replay.regress import Recorded, load_pairs
from gwsproxy.verdict import FAIL_ON, VerdictName, judge


class SwarmError(GwsProxyError):
    """Something `gwsproxy swarm` was given cannot be used, in one line."""


@dataclass(frozen=True, slots=True)
class Op:
    """One recorded user-data request, as a Locust user sends it again."""

    method: str
    path: str
    body: bytes
    content_type: str
    at: float  # seconds after its agent's first op, as recorded
    media: str
    operation: str
    interaction_id: str

    @property
    def name(self) -> str:
        """Its Locust name: the stats group it counts in."""
        return f"{self.operation} {self.media}"


@dataclass(frozen=True, slots=True)
class Script:
    """One recorded agent's ops in recorded order."""

    agent: str  # the recorded user; "" when the capture's scope names none (a cookie, a client)
    ops: tuple[Op, ...]


def scripts_of(pairs: Iterable[Recorded]) -> list[Script]:
    """One script per recorded scope, in order of each scope's first pair (pairs by id)."""
    by_scope: dict[str, list[Recorded]] = {}
    for r in sorted(pairs, key=lambda r: r.outcome.id):
        by_scope.setdefault(r.scope, []).append(r)
    scripts = []
    for scope, recs in by_scope.items():
        start = recs[0].t
        ops = tuple(
            Op(
                r.method,
                r.path,
                r.body,
                r.content_type or "application/json",
                max(0.0, r.t - start),
                r.outcome.media,
                r.outcome.operation,
                r.outcome.interaction_id,
            )
            for r in recs
        )
        agent = scope.removeprefix("user:") if scope.startswith("user:") else ""
        scripts.append(Script(agent, ops))
    return scripts


def load_scripts(path: str) -> list[Script]:
    """The capture's scripts; SwarmError when it holds no pair (CaptureError if unreadable)."""
    scripts = scripts_of(load_pairs(path))
    if not scripts:
        raise SwarmError(f"{path}: no user-data pairs to replay")
    return scripts


def due(op: Op, speed: float) -> float:
    """Seconds after its user's start at which `op` is sent: the recorded pacing divided by
    `speed` (0: no pacing, each op as soon as the one before it is done)."""
    return op.at / speed if speed > 0 else 0.0


# ---- who replays which script ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assignment:
    """A Locust user's part: its global number, whom it logs in as, which script it replays."""

    number: int  # 0, 1, 2 ... over every worker
    user: str
    password: str
    script: int  # index into the scripts
    recorded: bool  # the recorded agent itself; else a new identity, on its own interactions


@dataclass(frozen=True, slots=True)
class Identities:
    """Users beyond the capture's agents repeat its scripts under new identities: the next
    unused line of a credentials file, else `pattern` with {n} the user's number from 1."""

    pattern: str = "agent{n}"
    password: str = "password"
    credentials: tuple[tuple[str, str], ...] = ()  # (user, password) in file order

    def assign(self, number: int, scripts: Sequence[Script]) -> Assignment:
        if not scripts:
            raise SwarmError("no scripts to assign")
        index = number % len(scripts)
        agent = scripts[index].agent
        known = dict(self.credentials)
        if number < len(scripts) and agent:
            return Assignment(number, agent, known.get(agent, self.password), index, True)
        agents = {s.agent for s in scripts}
        spare = [(u, p) for u, p in self.credentials if u not in agents]
        if spare:
            user, password = spare[(number - len(scripts)) % len(spare)]
            return Assignment(number, user, password, index, False)
        user = identity(self.pattern, number + 1)
        return Assignment(number, user, known.get(user, self.password), index, False)


class Plan:
    """The run's scripts and identities, handed out by number (on the master, or the only
    process), and how many users are done with theirs."""

    def __init__(self, scripts: list[Script], identities: Identities) -> None:
        self.scripts = scripts
        self.identities = identities
        self.numbers = itertools.count()
        self.done = 0

    def restart(self) -> None:
        """A new run (the web UI starts one after another): numbers and the count afresh."""
        self.numbers = itertools.count()
        self.done = 0

    def claim(self) -> dict[str, Any]:
        """The next user's part, as a message the master sends a worker (`unpack` reads it)."""
        assignment = self.identities.assign(next(self.numbers), self.scripts)
        script = self.scripts[assignment.script]
        a = assignment
        return {
            "assignment": [a.number, a.user, a.password, a.script, a.recorded],
            "agent": script.agent,
            "ops": [
                [o.method, o.path, o.body, o.content_type, o.at]
                + [o.media, o.operation, o.interaction_id]
                for o in script.ops
            ],
        }


def unpack(data: dict[str, Any]) -> tuple[Assignment, Script]:
    """A `Plan.claim` message (after Locust's msgpack) as the assignment and its script."""
    number, user, password, index, recorded = data["assignment"]
    ops = tuple(
        Op(m, p, bytes(b), c, float(at), media, op, ix)
        for m, p, b, c, at, media, op, ix in data["ops"]
    )
    return Assignment(number, user, password, index, recorded), Script(data["agent"], ops)


def identity(pattern: str, n: int) -> str:
    """`pattern` with `{n}` replaced by n (a pattern without {n} gets n appended)."""
    return pattern.replace("{n}", str(n)) if "{n}" in pattern else f"{pattern}{n}"


def read_credentials(path: str) -> tuple[tuple[str, str], ...]:
    """A file of `USER PASSWORD` lines (blank lines and lines starting with # skipped). Errors
    name the file and the line, never a password."""
    found = []
    for n, words in secret_lines("--credentials", path):
        if len(words) != 2:
            raise SwarmError(f"--credentials {path}: line {n} is not USER PASSWORD")
        found.append((words[0], words[1]))
    if not found:
        raise SwarmError(f"--credentials {path}: no USER PASSWORD line in it")
    return tuple(found)


def adopted(ops: Sequence[Op], own: Mapping[str, Sequence[str]]) -> tuple[tuple[str, str], ...]:
    """For a new identity: each recorded interaction id as one of its own interactions of the
    same media (`own`: media -> interaction ids it listed), in turn; a media it has none of
    keeps the recorded ids. As `--map` pairs, applied before the user's own."""
    maps: dict[str, str] = {}
    taken: dict[str, int] = {}
    for op in ops:
        if op.interaction_id in maps or not own.get(op.media):
            continue
        choices = own[op.media]
        k = taken.get(op.media, 0)
        taken[op.media] = k + 1
        maps[op.interaction_id] = choices[k % len(choices)]
    return tuple((old, new) for old, new in maps.items() if old != new)


def listing_path(media: str) -> str | None:
    """Where an agent lists its interactions of `media` (GET), None for a media GWS lacks."""
    found = gws.MEDIA_BY_NAME.get(media)
    return f"/api/v2/me/{found.collections[0]}" if found is not None else None


# ---- what an op's outcome counts as ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """An op as Locust reports it: the verdict, and why it fails (None: it passed)."""

    verdict: VerdictName
    failure: str | None = None
    keys: tuple[str, ...] = field(default=())


def outcome_of(pair: Pair, timeout: float) -> Outcome:
    """Judge a closed pair as `replay` and `check` do; the failure message names the verdict
    and its reason (the keys coerced or not applied, GWS's refusal, the wait that ran out)."""
    req = pair.request
    before = pair.before
    verdict = judge(str(pair.status), req.operation, req.media, req.requested, before, pair.after)
    name = verdict.name
    if name not in FAIL_ON:
        return Outcome(name)
    if name == VerdictName.COERCED:
        keys = tuple(str(k) for k in verdict.coerced)
    elif name == VerdictName.NOT_APPLIED:
        keys = tuple(str(k) for k in verdict.not_applied)
    else:
        keys = ()
    if keys:
        reason = ", ".join(keys)
    elif name == VerdictName.TIMEOUT:
        reason = f"no notification in {timeout:g} s"
    elif name == VerdictName.REJECTED:
        answer = pair.answer if isinstance(pair.answer, gws.Answer) else None
        code = answer.status_code if answer is not None else None
        message = answer.status_message if answer is not None else None
        reason = f"HTTP {pair.http_status}, statusCode {code}: {message or 'no message'}"
    else:
        note = pair.note
        message = None
        if note is not None and note.is_error:
            message = note.error_message
        reason = message or pair.error or "no reason given"
    return Outcome(name, f"{name}: {reason}", keys)
