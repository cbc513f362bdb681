"""Simulated GWS agents: log in, change user data on their interactions, await the notifications.

`run_load` drives many of them against a GWS (the simulator, or a proxy in front of it) and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from rich.table import Table

from gwsproxy import bayeux, gws
from gwsproxy.correlate import Closed, Correlator, Pair, Status
from gwsproxy.errors import one_line, url_problem
from gwsproxy.gws.session import Access, GwsError, GwsSession
from gwsproxy.lenient import Unreadable

log = logging.getLogger(__name__)

# Keys the agents write; a small vocabulary, so updates often overwrite and deletes find keys.
KEYS = (
    "CustomerSegment",
    "ServiceType",
    "Subject",
    "OrderId",
    "Priority",
    "Language",
    "Region",
    "CaseNote",
    "Score",
    "CallbackNumber",
)
WORDS = ("gold", "silver", "billing", "sales", "support", "urgent", "en-US", "fr-FR", "north")
DEFAULT_MEDIA_TYPE = "promotion"  # open media objects without mediaType: the docs' example
MAX_PAUSE = 1.0  # seconds an agent waits at most after ops that failed in a row


@dataclass(frozen=True, slots=True)
class LoadConfig:
    target: str
    agents: int = 10
    ops: int = 50  # per agent
    transport: str = "long-polling"
    seed: int = 0
    timeout: float = 10.0  # seconds from request to notification before an op times out
    password: str = "password"
    media: tuple[str, ...] | None = None  # media names (gws.MEDIA_BY_NAME); None: all
    in_flight: int = 1  # ops in flight per agent
    think: float = 0.0  # seconds an agent pauses between its ops
    fallback: bool = False  # a WebSocket that keeps failing gives way to long polling
    access: Access = field(default_factory=Access)  # bearer tokens, extra headers, TLS


@dataclass(slots=True)
class LoadReport:
    """What the agents saw. Each sent op ends as exactly one of answered-then-(notified, errors,
    timeouts), rejected or failed (no HTTP answer at all)."""

    agents: int = 0
    sent: int = 0
    answered: int = 0  # statusCode 0
    rejected: int = 0  # non-zero statusCode (or HTTP >= 400 without one)
    notified: int = 0  # a matching change notification arrived
    errors: int = 0  # a matching Error / voice ErrorMessage notification arrived
    timeouts: int = 0  # answered, but no notification in time
    unsolicited: int = 0  # change notifications that matched no op
    failed: int = 0  # no HTTP answer (connection lost, HTTP timeout)
    latencies: list[float] = field(default_factory=list)  # request to notification, seconds
    elapsed: float = 0.0

    @property
    def ops_per_second(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def p50_latency(self) -> float | None:
        return _percentile(self.latencies, 0.50)

    @property
    def p95_latency(self) -> float | None:
        return _percentile(self.latencies, 0.95)

    @property
    def max_latency(self) -> float | None:
        return max(self.latencies) if self.latencies else None

    def add(self, other: LoadReport) -> None:
        """Fold another agent's counts into this one (elapsed is the caller's business)."""
        self.agents += other.agents
        self.sent += other.sent
        self.answered += other.answered
        self.rejected += other.rejected
        self.notified += other.notified
        self.errors += other.errors
        self.timeouts += other.timeouts
        self.unsolicited += other.unsolicited
        self.failed += other.failed
        self.latencies.extend(other.latencies)

    def as_dict(self) -> dict[str, Any]:
        """Counts and latency summary, JSON-ready (the raw latency list is left out)."""
        return {
            "agents": self.agents,
            "sent": self.sent,
            "answered": self.answered,
            "rejected": self.rejected,
            "notified": self.notified,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "unsolicited": self.unsolicited,
            "failed": self.failed,
            "elapsed": round(self.elapsed, 6),
            "ops_per_second": round(self.ops_per_second, 3),
            "latency_p50": _round(self.p50_latency),
            "latency_p95": _round(self.p95_latency),
            "latency_max": _round(self.max_latency),
        }

    def table(self) -> Table:
        table = Table(title="Simulated agents", show_header=False, title_justify="left")
        table.add_column("what", style="bold")
        table.add_column("value", justify="right")
        rows = [
            ("agents", str(self.agents)),
            ("ops sent", str(self.sent)),
            ("answered (statusCode 0)", str(self.answered)),
            ("rejected", _flag(self.rejected)),
            ("notified", str(self.notified)),
            ("error notifications", _flag(self.errors)),
            ("timeouts", _flag(self.timeouts)),
            ("unsolicited notifications", str(self.unsolicited)),
            ("failed (no HTTP answer)", _flag(self.failed)),
            ("elapsed", f"{self.elapsed:.2f} s"),
            ("ops per second", f"{self.ops_per_second:.1f}"),
            ("latency p50", _ms(self.p50_latency)),
            ("latency p95", _ms(self.p95_latency)),
            ("latency max", _ms(self.max_latency)),
        ]
        for name, value in rows:
            table.add_row(name, value)
        return table


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]  # nearest rank


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def _flag(count: int) -> str:
    return f"[red]{count}[/red]" if count else "0"


# ---- one agent ---------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Interaction:
    """An interaction the agent works on (its user data: the Correlator's snapshot of it)."""

    id: str
    media: gws.Media
    media_type: str | None = None  # open media only: part of the URL


@dataclass(slots=True)
class Sent:
    """One op as its agent saw it, for whoever checks a recording of the traffic afterwards.

    outcome: notified, error (an Error notification), timeout (answered, no notification of
    its own in time), rejected (a non-zero statusCode, or HTTP >= 400 without one), failed (the
    HTTP exchange broke: it may or may not have reached the target), unreached (no connection
    to the target at all)."""

    interaction_id: str
    operation: str
    requested: dict[str, Any] | list[str] | None  # as gws.UserDataRequest.requested
    started: float  # time.time()
    outcome: str = "open"
    http_status: int | None = None
    reason: str | None = None


class Agent:
    """One agent: an HTTP session with its credentials, a CometD client, its open ops.

    Its notifications are paired with its ops by the recorder's Correlator (on the agent's
    monotonic clock), so the agents count by the rules a recording of their traffic follows."""

    def __init__(
        self, config: LoadConfig, number: int, *, on_done: Callable[[], None] | None = None
    ) -> None:
        self.config = config
        self.name = f"agent{number}"
        self.rng = random.Random(config.seed + number)
        self.report = LoadReport(agents=1)
        self.interactions: list[Interaction] = []
        self.journal: list[Sent] = []  # every op sent, in order, with how it ended
        self._base = config.target.rstrip("/")
        self._on_done = on_done
        self._session: GwsSession | None = None
        self._listener: asyncio.Task[None] | None = None
        self._scope = f"user:{self.name}"
        self._correlator = Correlator(config.timeout)
        # Open ops by their key for the Correlator: the interaction, and what gets their pair.
        self._open: dict[int, tuple[str, asyncio.Future[Pair]]] = {}
        self._keys = itertools.count(1)

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- setting up ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, list the interactions, open CometD and subscribe; GwsError if impossible."""
        config = self.config
        self._session = GwsSession(
            self._base,
            self.name,
            config.password,
            transport=config.transport,
            timeout=config.timeout,
            access=config.access,
        )
        try:
            with self._session.errors():
                await self._session.login()
                await self._list_interactions()
            await self._session.listen()
            if self._session.cometd is not None:
                self._session.cometd.fallback = config.fallback
        except BaseException:
            await self.close()
            raise
        self._listener = asyncio.create_task(self._listen(), name=f"{self.name} notifications")

    async def _list_interactions(self) -> None:
        assert self._session is not None
        names = self.config.media or tuple(m.name for m in gws.MEDIA)
        for media in (gws.MEDIA_BY_NAME[n] for n in names):
            collection = media.collections[0]
            url = f"{self._base}/api/v2/me/{collection}"
            status, reason, doc, _ = await self._session.get(url)
            if status in (401, 403):
                raise GwsError(f"{self.name}: {status} {reason} at {url}")
            if status >= 400 or not isinstance(doc, dict):
                # A GWS without this media (or one that is down) leaves the others to work on.
                log.info("%s: no %s interactions: %s %s", self.name, media.name, status, reason)
                continue
            items = doc.get(collection)
            found = items if isinstance(items, list) else gws.interactions_in(doc)
            for item in found:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str | int):
                    continue
                user_data = item.get("userData")  # voice omits emptied user data
                user_data = dict(user_data) if isinstance(user_data, dict) else {}
                media_type = None
                if media.name == "openmedia":
                    media_type = item.get("mediaType")
                    media_type = media_type if isinstance(media_type, str) else DEFAULT_MEDIA_TYPE
                self.interactions.append(Interaction(str(item["id"]), media, media_type))
                self._correlator.observe(str(item["id"]), user_data)
        if not self.interactions:
            raise GwsError(f"{self.name}: no interactions to work on at {self._base}")

    async def close(self) -> None:
        cometd = self._session.cometd if self._session is not None else None
        if cometd is not None:
            await cometd.close()
        if self._listener is not None:
            # The closed client ends its message stream; what was queued still gets counted.
            await asyncio.wait({self._listener}, timeout=1.0)
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for _, done in self._open.values():
            done.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- working --------------------------------------------------------------------------------

    async def run(self, ops: int) -> LoadReport:
        """Send `ops` random user-data operations, `in_flight` at a time; returns this agent's
        report (also kept in `self.report`)."""
        remaining = ops

        async def worker() -> None:
            nonlocal remaining
            failures = 0
            while remaining > 0:
                remaining -= 1
                sent = await self._one()
                if self._on_done is not None:
                    self._on_done()
                # A GWS (or proxy) that is down is not hammered: back off, as a desktop would.
                failures = failures + 1 if sent.outcome in ("failed", "unreached") else 0
                pause = min(MAX_PAUSE, 0.1 * 2 ** (failures - 1)) if failures else 0.0
                pause = max(pause, self.config.think)
                if pause > 0:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(worker() for _ in range(max(1, min(self.config.in_flight, ops)))))
        return self.report

    async def _one(self) -> Sent:
        assert self._session is not None
        session = self._session
        ix = self._pick()
        body = self._operation(ix)
        request = _request(self._target(ix), body)
        url = f"{self._base}/api/v2/me/{request.target.collection}/{quote(ix.id, safe='')}"
        key = next(self._keys)
        done: asyncio.Future[Pair] = asyncio.get_running_loop().create_future()
        self._open[key] = (ix.id, done)
        self.report.sent += 1
        sent = Sent(ix.id, request.operation, request.requested, time.time())
        self.journal.append(sent)
        started = time.monotonic()
        # Open before sending: the notification may overtake the HTTP answer.
        self._settle(self._correlator.request(key, self._scope, request, started))
        try:
            status, raw = await session.post(url, json.dumps(body).encode())
        except (aiohttp.ClientError, OSError) as exc:  # OSError: TimeoutError and resets too
            log.info("%s: %s on %s failed: %s", self.name, request.operation, ix.id, one_line(exc))
            unreached = isinstance(exc, aiohttp.ClientConnectorError)
            return self._give_up(key, sent, "unreached" if unreached else "failed", one_line(exc))
        sent.http_status = status
        answer = gws.parse_answer(raw)
        if isinstance(answer, Unreadable) and status in (502, 504):
            # A proxy's Bad Gateway: the exchange broke beyond it, GWS may have seen it or not.
            return self._give_up(key, sent, "failed", f"HTTP {status} from a proxy")
        self._settle(self._correlator.answer(key, answer, status, time.monotonic()))
        if done.done() and done.result().status == Status.REJECTED:
            sent.outcome = "rejected"
            self.report.rejected += 1
            return sent
        self.report.answered += 1
        if not done.done():
            deadline = started + self.config.timeout
            delay = max(0.0, deadline - time.monotonic())
            timer = asyncio.get_running_loop().call_later(delay, self._expire, deadline)
            try:
                await done
            finally:
                timer.cancel()
        pair = done.result()
        if pair.status == Status.MATCHED:
            sent.outcome = "notified"
            self.report.notified += 1
        elif pair.status == Status.ERROR:
            sent.outcome = "error"
            self.report.errors += 1
        else:  # timed out, or its notification was lost or could not be told from another's
            sent.outcome = "timeout"
            self.report.timeouts += 1
            return sent
        assert pair.t_note is not None
        self.report.latencies.append(pair.t_note - pair.t_request)
        return sent

    def _pick(self) -> Interaction:
        # Prefer an idle interaction: two ops racing on one interaction blur the inferred match.
        busy = {ix_id for ix_id, _ in self._open.values()}
        idle = [ix for ix in self.interactions if ix.id not in busy]
        return self.rng.choice(idle or self.interactions)

    def _target(self, ix: Interaction) -> gws.Target:
        # Every spelling GWS accepts gets exercised (smsessions, facebooksession, tweets, ...).
        collection = self.rng.choice(ix.media.collections)
        if ix.media_type is not None:
            collection += "/" + quote(ix.media_type, safe="")
        return gws.Target(ix.media.name, collection, ix.id)

    def _operation(self, ix: Interaction) -> dict[str, Any]:
        rng = self.rng
        existing = list(self._correlator.snapshots.get(ix.id) or ())
        media = ix.media.name
        if existing and rng.random() < 0.25:
            if media == "voice":
                if rng.random() < 0.1:  # rarely: it wipes the call's whole user data
                    return {"operationName": gws.DELETE}
                return {"operationName": gws.DELETE_PAIR, "key": rng.choice(existing)}
            if media == "im":
                return {"operationName": gws.DELETE, "key": rng.choice(existing)}
            keys = rng.sample(existing, k=min(len(existing), rng.randint(1, 2)))
            return {"operationName": gws.DELETE, "keys": keys}
        user_data: dict[str, Any] = {}
        for _ in range(rng.randint(1, 3)):
            overwrite = existing and rng.random() < 0.3
            key = rng.choice(existing) if overwrite else rng.choice(KEYS)
            user_data[key] = (
                rng.randint(0, 999_999)
                if rng.random() < 0.5
                else f"{rng.choice(WORDS)}-{rng.randint(0, 999)}"
            )
        operation = gws.UPDATE if rng.random() < 0.6 else gws.ATTACH
        return {"operationName": operation, "userData": user_data}

    # ---- notifications --------------------------------------------------------------------------

    async def _listen(self) -> None:
        assert self._session is not None and self._session.cometd is not None
        async for message in self._session.cometd.messages():
            note = gws.parse_notification(message)
            # Status changes, new messages and the like answer no user-data request.
            if note is None or not note.reports_change:
                continue
            self._settle(self._correlator.notification(self._scope, note, time.monotonic()))

    def _settle(self, closed: list[Closed]) -> None:
        """Hand each closed pair to the op waiting for it; count what answered no op."""
        for item in closed:
            if isinstance(item, Pair):
                _, done = self._open.pop(item.key)
                if not done.done():  # (cancelled when the agent closed)
                    done.set_result(item)
            else:
                self.report.unsolicited += 1

    def _expire(self, deadline: float) -> None:
        """An op's time is up: the Correlator closes it (and any older ones still open)."""
        self._settle(self._correlator.expire(deadline))

    def _give_up(self, key: int, sent: Sent, outcome: str, reason: str) -> Sent:
        """An op without an HTTP answer: the agent stops waiting for it, so whatever comes for
        it later is unsolicited to the agent (even if the request reached GWS)."""
        sent.outcome, sent.reason = outcome, reason
        self.report.failed += 1
        self._settle(self._correlator.failed(key, reason, time.monotonic(), reached=False))
        return sent


def _request(target: gws.Target, body: dict[str, Any]) -> gws.UserDataRequest:
    """The request an op's body makes, as the recorder reads it."""
    keys = body.get("keys")
    return gws.UserDataRequest(
        target,
        body["operationName"],
        user_data=body.get("userData"),
        keys=tuple(keys) if keys is not None else None,
        key=body.get("key"),
    )


# ---- many agents ------------------------------------------------------------------------------


async def run_load(
    config: LoadConfig, *, progress: Callable[[int], None] | None = None
) -> LoadReport:
    """Start `config.agents` agents, let each send `config.ops` ops, and report.

    `progress` is called with the number of ops finished so far (of agents x ops).
    Raises GwsError (one line) when the configuration is wrong or the agents cannot start.
    """
    _check(config)
    finished = 0

    def tick() -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(finished)

    agents = [Agent(config, n, on_done=tick) for n in range(1, config.agents + 1)]
    report = LoadReport()
    try:
        outcomes = await asyncio.gather(*(a.start() for a in agents), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        started = time.monotonic()
        await asyncio.gather(*(a.run(config.ops) for a in agents))
        report.elapsed = time.monotonic() - started
    finally:
        await asyncio.gather(*(a.close() for a in agents), return_exceptions=True)
    for agent in agents:  # after close: late notifications are counted as unsolicited
        report.add(agent.report)
    return report


def _check(config: LoadConfig) -> None:
    problem = url_problem(config.target)
    if problem:
        raise GwsError(f"bad target: {problem}")
    if config.transport not in bayeux.TRANSPORTS:
        choose = " or ".join(bayeux.TRANSPORTS)
        raise GwsError(f"unknown transport {config.transport!r}: choose {choose}")
    if config.agents < 1 or config.ops < 0 or config.in_flight < 1:
        raise GwsError("agents and in_flight must be at least 1, ops at least 0")
    if config.timeout <= 0 or config.think < 0:
        raise GwsError("timeout must be positive and think not negative")
    unknown = [m for m in config.media or () if m not in gws.MEDIA_BY_NAME]
    if unknown:
        choices = ", ".join(gws.MEDIA_BY_NAME)
        raise GwsError(f"unknown media {', '.join(unknown)}: choose from {choices}")
