"""The locustfile of `gwsproxy swarm`: a capture replayed as load, each Locust user one agent.

    locust -f gwsproxy/swarm/locustfile.py --capture FILE --host URL [LOCUST OPTIONS]

(`gwsproxy swarm FILE --target URL [LOCUST OPTIONS]` runs just that.) Each user logs in, opens
CometD (long polling or WebSocket) and replays one recorded agent's user-data operations in
order, paced as recorded (divided by --speed). Each operation is reported twice: "GWS" from the
POST to its notification, failing on the verdicts `gwsproxy check` fails on (the verdict and
why in the message), and "HTTP" for the answer alone (unless --no-answer-times).

Who replays what is decided in one place, the master (or the only process, without workers):
users number themselves 0, 1, 2 ... by asking it, and it hands each its script (so workers
need no capture) and identity; users beyond the capture's agents repeat its scripts as new
identities (`--identity agent{n}`, `--credentials FILE`), each on its own interactions. A user
stops after its script (unless --repeat); a headless run quits once every user is done.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
import uuid
from typing import Any

import gevent
from gevent.event import AsyncResult
from locust import User, constant, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

from gwsproxy import gws
from gwsproxy.correlate import Closed, Correlator, Pair
from gwsproxy.errors import GwsProxyError, one_line
from gwsproxy.gws.options import access_of
from gwsproxy.replay.regress import mapped, parse_maps
from gwsproxy.swarm.client import HttpError, Session, SessionError
from gwsproxy.swarm.command import add_options
from gwsproxy.swarm.plan import (
    Assignment,
    Identities,
    Op,
    Plan,
    Script,
    SwarmError,
    adopted,
    due,
    listing_path,
    load_scripts,
    outcome_of,
    read_credentials,
    unpack,
)

log = logging.getLogger("gwsproxy.swarm")

CLAIM, SCRIPT, DONE = "gwsproxy_claim", "gwsproxy_script", "gwsproxy_done"
CLAIM_TIMEOUT = 60.0  # seconds a worker's user waits for the master to hand out its script


class VerdictFailure(Exception):
    """An operation's verdict that fails it: the verdict and its reason."""

    def __repr__(self) -> str:  # Locust's failure tables show the repr: just the message
        return str(self)


# ---- options ----------------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    add_options(parser.add_argument_group("gwsproxy swarm"))


# ---- the plan: on the master, or the only process ---------------------------------------------


_plan: Plan | None = None
_waiting: dict[str, AsyncResult] = {}  # on a worker: claims sent to the master


def _fail(message: str) -> None:
    print(f"gwsproxy swarm: {message}", file=sys.stderr)
    sys.exit(2)


@events.init.add_listener
def _init(environment: Any, **_: Any) -> None:
    global _plan
    runner = environment.runner
    options = environment.parsed_options
    if options is None:
        return
    if isinstance(runner, WorkerRunner):
        runner.register_message(SCRIPT, _on_script)
        return
    try:
        if not options.capture:
            raise SwarmError("give the capture: --capture FILE")
        parse_maps(options.map)
        access_of(options)
        if options.insecure:
            log.warning("--insecure: the GWS's certificate is not checked")
        credentials = read_credentials(options.credentials) if options.credentials else ()
        identities = Identities(options.identity, options.password, credentials)
        _plan = Plan(load_scripts(options.capture), identities)
    except GwsProxyError as e:
        _fail(str(e))
    if isinstance(runner, MasterRunner):
        runner.register_message(CLAIM, _on_claim)
        runner.register_message(DONE, _on_done)


@events.test_start.add_listener
def _test_start(environment: Any, **_: Any) -> None:
    """A new run (the web UI starts one after another): numbers and the done count afresh."""
    if _plan is not None:
        _plan.restart()


def _on_claim(environment: Any, msg: Any, **_: Any) -> None:
    assert _plan is not None
    reply = {"token": msg.data["token"], **_plan.claim()}
    environment.runner.send_message(SCRIPT, reply, client_id=msg.node_id)


def _on_script(environment: Any, msg: Any, **_: Any) -> None:
    waiting = _waiting.pop(msg.data["token"], None)
    if waiting is not None:
        waiting.set(msg.data)


def _on_done(environment: Any, msg: Any, **_: Any) -> None:
    _one_done(environment)


def _one_done(environment: Any) -> None:
    """A user finished its script: once every user has, a headless run quits (the web UI's
    stops)."""
    assert _plan is not None
    _plan.done += 1
    runner = environment.runner
    if _plan.done >= runner.target_user_count:
        log.info("every user replayed its script: stopping")
        headless = getattr(environment.parsed_options, "headless", False)
        # Locust writes --csv files every CSV_STATS_INTERVAL_SEC, not at the end: one more
        # write first, or a short run's last second is missing from them.
        gevent.spawn_later(CSV_STATS_INTERVAL_SEC + 0.25, runner.quit if headless else runner.stop)


def _claim(environment: Any) -> tuple[Assignment, Script]:
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        assert _plan is not None
        return unpack(_plan.claim())
    token = uuid.uuid4().hex
    waiting = AsyncResult()
    _waiting[token] = waiting
    runner.send_message(CLAIM, {"token": token})
    return unpack(waiting.get(timeout=CLAIM_TIMEOUT))


def _done(environment: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        send_stats = getattr(runner, "_send_stats", None)
        if send_stats is not None:  # this user's last samples reach the master before it quits
            send_stats()
        runner.send_message(DONE, {})
    else:
        _one_done(environment)


# ---- the user ---------------------------------------------------------------------------------


class GwsAgent(User):
    """One recorded agent's session, replaying its operations in order."""

    wait_time = constant(0)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.options = environment.parsed_options
        self.session: Session | None = None
        self.correlator = Correlator(self.options.timeout)
        self.open: dict[int, AsyncResult] = {}
        self.keys = itertools.count(1)
        self.seen: set[str] = set()
        self.maps: tuple[tuple[str, str], ...] = ()
        self.scope = ""
        self.script = Script("", ())
        self.finished = False

    def on_start(self) -> None:
        options = self.options
        assignment, self.script = _claim(self.environment)
        self.scope = f"user:{assignment.user}"
        access = access_of(options)
        try:
            if not self.host:
                raise SwarmError("give the GWS: --target URL (Locust's --host)")
            self.session = Session(
                self.host,
                assignment.user,
                access.authorization(assignment.user, assignment.password),
                transport=options.transport,
                timeout=options.timeout,
                tls=access.tls,
                headers=access.headers,
                on_message=self._notification,
            )
            self.session.login()
            adopt: tuple[tuple[str, str], ...] = ()
            if not assignment.recorded:
                adopt = adopted(self.script.ops, self._own_interactions())
            self.maps = adopt + parse_maps(options.map)
            self.session.listen()
        except (SessionError, GwsProxyError, HttpError, OSError) as exc:
            self._report("GWS", "login", time.monotonic(), 0, VerdictFailure(one_line(exc)))
            self._finish()
            raise StopUser() from None

    def on_stop(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        for waiting in self.open.values():
            if not waiting.ready():
                waiting.set(None)

    @task
    def replay(self) -> None:
        start = time.monotonic()
        for op in self.script.ops:
            delay = start + due(op, self.options.speed) - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            self._one(op)
        if not self.options.repeat:
            self._finish()
            raise StopUser()

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            _done(self.environment)

    def _own_interactions(self) -> dict[str, list[str]]:
        assert self.session is not None
        own: dict[str, list[str]] = {}
        for media in dict.fromkeys(op.media for op in self.script.ops):
            path = listing_path(media)
            if path is None:
                continue
            status, doc = self.session.get(path)
            if status == 200:
                own[media] = [str(i["id"]) for i in gws.interactions_in(doc)]
        return own

    def _one(self, op: Op) -> None:
        assert self.session is not None
        session = self.session
        timeout = self.options.timeout
        path = mapped(self.maps, op.path)
        body = mapped(self.maps, op.body)
        request = gws.classify_request(op.method, path, body)
        if not isinstance(request, gws.UserDataRequest):  # (a --map that broke it): not sent
            why = request.reason if isinstance(request, gws.BadRequest) else "no user-data op"
            self._report("GWS", op.name, time.monotonic(), 0, VerdictFailure(f"not sent: {why}"))
            return
        if request.interaction_id not in self.seen:
            self.seen.add(request.interaction_id)
            try:
                status, doc = session.get(path)
            except HttpError:
                status, doc = 0, None
            for obj in gws.interactions_in(doc) if status == 200 else ():
                self.correlator.observe(str(obj["id"]), obj["userData"])
        key = next(self.keys)
        waiting = AsyncResult()
        self.open[key] = waiting
        started = time.monotonic()
        # Opened before sending: the notification may overtake the HTTP answer.
        self._settle(self.correlator.request(key, self.scope, request, started))
        try:
            status, raw = session.post(path, body, op.content_type)
        except HttpError as exc:
            reason = one_line(exc)
            if not self.options.no_answer_times:
                self._report("HTTP", op.name, started, 0, VerdictFailure(reason))
            self._settle(self.correlator.failed(key, reason, time.monotonic(), reached=False))
        else:
            answered = time.monotonic()
            if not self.options.no_answer_times:
                failure = VerdictFailure(f"HTTP {status}") if status >= 500 else None
                self._report("HTTP", op.name, started, len(raw), failure, answered)
            self._settle(self.correlator.answer(key, gws.parse_answer(raw), status, answered))
        try:
            pair = waiting.get(timeout=max(0.0, started + timeout - time.monotonic()))
        except gevent.Timeout:
            self._settle(self.correlator.expire(started + timeout))  # closes it as a timeout
            if not waiting.ready():  # (the Correlator closes every older op: not expected)
                self.open.pop(key, None)
                late = VerdictFailure(f"timeout: no notification in {timeout:g} s")
                self._report("GWS", op.name, started, len(body), late)
                return
            pair = waiting.get(block=False)
        if pair is None:  # the user is stopping
            return
        outcome = outcome_of(pair, timeout)
        ended = pair.t_note if pair.t_note is not None else time.monotonic()
        failure = VerdictFailure(outcome.failure) if outcome.failure else None
        self._report("GWS", op.name, started, len(body), failure, ended)

    def _report(
        self,
        kind: str,
        name: str,
        started: float,
        length: int,
        failure: Exception | None,
        ended: float | None = None,
    ) -> None:
        ended = time.monotonic() if ended is None else ended
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=(ended - started) * 1000,
            response_length=length,
            exception=failure,
            context={},
        )

    def _notification(self, message: dict[str, Any]) -> None:
        note = gws.parse_notification(message)
        # Status changes, new messages and the like answer no user-data request.
        if note is None or not note.reports_change:
            return
        self._settle(self.correlator.notification(self.scope, note, time.monotonic()))

    def _settle(self, closed: list[Closed]) -> None:
        for item in closed:
            if isinstance(item, Pair):
                waiting = self.open.pop(item.key, None)
                if waiting is not None and not waiting.ready():
                    waiting.set(item)
