"""The built-in GWS simulator: interactions on every media, user-data operations, notifications.

The embedded upstream for demos, tests and benchmarks; binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import string
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

from gwsproxy import gws
from gwsproxy.bayeux.server import BayeuxServer
from gwsproxy.gws.server import CSRF_HEADER, error_answer, known_session, logged_in, serve
from gwsproxy.lenient import Parsed, loads
from gwsproxy.tls import ServerCert

PASSWORD = "password"
SEED_FILES = ("seed_000_sms.txt", "seed_003_facebook.txt")
# The keys the seed documents' UpdateUserData added: absent before it, so replaying the
# documented request against the simulator yields the documented notification.
SEED_UPDATE_KEYS = ("UserData1", "UserData2")
STICKY = "AWSELB"  # the stickiness cookie a load balancer in front of GWS sets (csrf mode)
CSRF_REFUSED = "Missing or invalid Csrf token"


@dataclass(slots=True)
class Interaction:
    id: str
    media: gws.Media
    agents: tuple[str, ...]
    pairs: list[tuple[str, Any]]  # voice keeps duplicate keys, so pairs rather than a dict
    fields: dict[str, Any] = field(default_factory=dict)

    def user_data(self) -> dict[str, Any]:
        return dict(self.pairs)

    def snapshot(self, base_url: str) -> dict[str, Any]:
        obj: dict[str, Any] = {"id": self.id, **self.fields}
        obj.setdefault("uri", f"{base_url}/api/v2/{self.media.collections[0]}/{self.id}")
        return gws.with_user_data(obj, self.pairs, self.media.name)


@dataclass(frozen=True, slots=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 8090
    agents: int = 10
    per_agent: int = 1  # generated interactions per agent and media
    shared: int = 0  # chats shared by two neighbouring agents (notifications go to both)
    delay: float = 0.02  # seconds from HTTP answer to notification
    jitter: float = 0.02
    faults: float = 0.0  # rate of Error notifications (the change is then not applied)
    seed: int = 0
    cometd_timeout: float = 30.0
    # Sessions as deployments have them. csrf: a token per HTTP session (from GET /api/v2/me)
    # on every user-data POST, and a load balancer's stickiness cookie; bearer: a token per
    # agent instead of Basic; api_key: an x-api-key header every request must carry.
    csrf: bool = False
    bearer: bool = False
    api_key: str | None = None
    seed_from: str | None = None  # a capture: start with the interactions it saw
    coerce: tuple[str, ...] = ()  # media whose int values come back as strings (a GWS bug)
    tls: ServerCert | None = None  # serve HTTPS (and wss: CometD) with this certificate


class Fail(Exception):
    """Answer with a GWS error: HTTP status, statusCode, statusMessage."""

    def __init__(self, http: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http, self.code, self.message = http, code, message


class Simulator:
    """GWS state and its HTTP API; notifications go out through a BayeuxServer."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.agents = {f"agent{i}": PASSWORD for i in range(1, config.agents + 1)}
        seeded = seed_from_capture(config.seed_from) if config.seed_from else None
        self.sessions: dict[str, str] = {}  # JSESSIONID -> agent
        self.csrf: dict[str, str] = {}  # JSESSIONID -> its CSRF token
        self.interactions: dict[str, Interaction] = {}
        self.bayeux = BayeuxServer(timeout=config.cometd_timeout, authenticate=self.agent_of)
        self.reference = 0
        self.ops = 0
        self.log: deque[dict[str, Any]] = deque(maxlen=100_000)
        self._published: dict[str, float] = {}  # interaction -> when its last notification goes
        self.base_url = f"{'https' if config.tls else 'http'}://{config.host}:{config.port}"
        if seeded is None:
            self._seed_interactions()
        else:
            interactions, first_reference = seeded
            for ix in interactions:
                self._add(ix)
                self.agents.update({a: PASSWORD for a in ix.agents})
            # so that a replay in the recorded order meets the recorded referenceIds
            self.reference = max(0, first_reference - 1)
        # bearer mode: token -> agent
        self.bearer = {secrets.token_urlsafe(24): a for a in sorted(self.agents)}
        self.sticky: dict[str, str] = {}  # csrf mode: JSESSIONID -> its stickiness cookie
        self.refuse_csrf = False  # POST /_sim/csrf {"refuse": true}: refuse every token
        self.posts = 0  # user-data POSTs received
        self.csrf_refused = 0  # of which refused for their CSRF token

    # ---- state ----------------------------------------------------------------------------------

    def _seed_interactions(self) -> None:
        names = sorted(self.agents)
        for filename in SEED_FILES:
            parsed = loads(resources.files("gwsproxy.data").joinpath(filename).read_bytes())
            assert isinstance(parsed, Parsed), filename
            note = gws.parse_notification(parsed.value)
            assert note is not None and note.interaction is not None and note.user_data
            media = gws.MEDIA_BY_NAME[note.media]
            pairs = [(k, v) for k, v in note.user_data.items() if k not in SEED_UPDATE_KEYS]
            fields = {k: v for k, v in note.interaction.items() if k not in ("id", "userData")}
            self._add(Interaction(note.interaction_id or "", media, (names[0],), pairs, fields))
        for agent in names:
            for media in gws.MEDIA:
                for _ in range(self.config.per_agent):
                    self._add(self._generate(media, (agent,)))
        for i in range(min(self.config.shared, len(names) - 1)):
            self._add(self._generate(gws.MEDIA_BY_NAME["chat"], (names[i], names[i + 1])))

    def _add(self, interaction: Interaction) -> None:
        self.interactions[interaction.id] = interaction

    def _generate(self, media: gws.Media, agents: tuple[str, ...]) -> Interaction:
        rng = self.rng
        ident = "".join(rng.choices(string.digits + string.ascii_uppercase, k=16))
        pairs: list[tuple[str, Any]] = [
            ("CustomerSegment", rng.choice(["default", "gold", "silver"])),
            ("ServiceType", rng.choice(["default", "sales", "support"])),
            ("ServiceObjective", rng.randint(0, 60)),
            ("Subject", rng.choice(["Customer support", "Billing", "Order status"])),
            ("RTenant", "Environment"),
        ]
        fields: dict[str, Any] = {
            "state": "Established" if media.name == "voice" else "Processing",
            "participants": [{"nickname": a, "type": "Agent"} for a in agents],
        }
        if media.name == "openmedia":
            fields["mediaType"] = "promotion"
        return Interaction(ident, media, agents, pairs, fields)

    # ---- auth -----------------------------------------------------------------------------------

    def agent_of(self, request: web.Request) -> str | None:
        """The agent behind a request: Basic auth (a bearer token in bearer mode), else the
        session cookie; None without the x-api-key an API key mode wants."""
        key = self.config.api_key
        if key is not None and request.headers.get("x-api-key") != key:
            return None
        auth = request.headers.get("Authorization", "")
        if auth:
            if self.config.bearer:
                scheme, _, token = auth.partition(" ")
                return self.bearer.get(token.strip()) if scheme.lower() == "bearer" else None
            found = gws.basic_credentials(auth)
            return found[0] if found and self.agents.get(found[0]) == found[1] else None
        return self.sessions.get(self._session_of(request) or "")

    def _session_of(self, request: web.Request) -> str | None:
        """The request's known JSESSIONID. In csrf mode only with its stickiness cookie: a
        request that lost it lands, behind a load balancer, on a node that never saw the
        session (the session and its CSRF token are then unknown, as on another node)."""
        session = known_session(request, self.sessions)
        if session is None:
            return None
        if self.config.csrf and request.cookies.get(STICKY) != self.sticky.get(session):
            return None
        return session

    def tokens_text(self) -> str:
        """Bearer mode: `USER TOKEN` lines, for the file `gwsproxy sim --bearer` writes."""
        return "".join(f"{agent} {token}\n" for token, agent in self.bearer.items())

    # ---- HTTP -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.bayeux.add_routes(app)
        app.router.add_get("/api/v2/me", self.me)
        app.router.add_get("/api/v2/me/{collection:.+}", self.get)
        app.router.add_post("/api/v2/me/{collection:.+}/{id}", self.post)
        app.router.add_get("/_sim/log", self.get_log)
        app.router.add_get("/_sim/state", self.get_state)
        app.router.add_put("/_sim/state", self.put_state)
        app.router.add_get("/_sim/csrf", self.get_csrf)
        app.router.add_post("/_sim/csrf", self.post_csrf)
        return app

    async def me(self, request: web.Request) -> web.Response:
        agent = self.agent_of(request)
        if agent is None:
            return error_answer(401, 20, "Not authenticated")
        # csrf mode: a known session without its stickiness cookie gets a new one here
        known = self._session_of(request)
        response, session = logged_in(request, agent, agent, self.sessions, self.csrf, known)
        if self.config.csrf and session not in self.sticky:
            self.sticky[session] = secrets.token_hex(8)
            response.set_cookie(STICKY, self.sticky[session])
        return response

    def _csrf_refusal(self, request: web.Request) -> web.Response | None:
        """csrf mode: GWS's 403 for a POST without its session's token, else None."""
        if not self.config.csrf:
            return None
        session = self._session_of(request)
        token = self.csrf.get(session) if session else None
        if self.refuse_csrf or token is None or request.headers.get(CSRF_HEADER) != token:
            self.csrf_refused += 1
            return error_answer(403, 3, CSRF_REFUSED)
        return None

    async def get_csrf(self, request: web.Request) -> web.Response:
        """For tests: user-data POSTs received and refused for their CSRF token, and each HTTP
        session's secrets (JSESSIONID, stickiness cookie, CSRF token) to look for in captures."""
        sessions = [[s, self.sticky.get(s), self.csrf.get(s)] for s in self.sessions]
        counts = {"posts": self.posts, "refused": self.csrf_refused, "refuse": self.refuse_csrf}
        return web.json_response({**counts, "sessions": sessions})

    async def post_csrf(self, request: web.Request) -> web.Response:
        """For tests: `{"expire": true}` makes every session's token stale (a GET /api/v2/me
        gives the session a new one), `{"refuse": true|false}` refuses every token or not."""
        order = await request.json()
        if order.get("expire"):
            self.csrf.clear()
        if "refuse" in order:
            self.refuse_csrf = bool(order["refuse"])
        return await self.get_csrf(request)

    async def get(self, request: web.Request) -> web.Response:
        agent = self.agent_of(request)
        if agent is None:
            return error_answer(401, 20, "Not authenticated")
        path = request.match_info["collection"]
        head, _, tail = path.rpartition("/")
        ix = self.interactions.get(tail)
        if head and ix is not None and agent in ix.agents:
            return web.json_response(
                {"statusCode": 0, ix.media.object_key: ix.snapshot(self.base_url)}
            )
        media = gws.media_of(path.split("/", 1)[0])
        listing = not head or (media == "openmedia" and head == "openmedia")
        if media == gws.UNKNOWN or not listing:
            return error_answer(404, 6, f"no such resource: {path}")
        found = [
            i.snapshot(self.base_url)
            for i in self.interactions.values()
            if i.media.name == media and agent in i.agents
        ]
        return web.json_response({"statusCode": 0, path: found}, dumps=json.dumps)

    async def get_log(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.log))

    async def get_state(self, request: web.Request) -> web.Response:
        """What a restarted simulator needs to go on where this one stopped (GWS keeps user
        data and the referenceId sequence across a restart; CometD clients it forgets), and
        the log, read at the same moment."""
        interactions = {i.id: [list(p) for p in i.pairs] for i in self.interactions.values()}
        state = {"reference": self.reference, "interactions": interactions, "log": list(self.log)}
        return web.json_response(state)

    async def put_state(self, request: web.Request) -> web.Response:
        """Take over a `GET /_sim/state` of a simulator with the same seed (for restart tests)."""
        state = await request.json()
        self.reference = max(self.reference, int(state["reference"]))
        for ident, pairs in state["interactions"].items():
            if ident in self.interactions:
                self.interactions[ident].pairs = [(k, v) for k, v in pairs]
        return web.json_response({"statusCode": 0})

    async def post(self, request: web.Request) -> web.Response:
        self.posts += 1
        agent = self.agent_of(request)
        if agent is None:
            return error_answer(401, 20, "Not authenticated")
        refusal = self._csrf_refusal(request)
        if refusal is not None:
            return refusal
        body = await request.read()
        classified = gws.classify_request("POST", request.path, body)
        try:
            if isinstance(classified, gws.BadRequest):
                raise Fail(400, 1, f"the body is not readable JSON: {classified.reason}")
            if classified is None:
                raise Fail(400, 2, "not a user-data operation the simulator knows")
            return self._operate(agent, classified)
        except Fail as fail:
            return error_answer(fail.http, fail.code, fail.message)

    def _operate(self, agent: str, req: gws.UserDataRequest) -> web.Response:
        ix = self.interactions.get(req.interaction_id)
        if ix is None or agent not in ix.agents or req.media not in (ix.media.name, gws.UNKNOWN):
            raise Fail(404, 6, f"interaction {req.interaction_id} not found")
        _check(req, ix.media.name)  # raises Fail before anything changes
        before = ix.user_data()
        after = gws.apply_user_data(ix.pairs, req.operation, req.requested, ix.media.name)
        self.reference += 1
        self.ops += 1
        reference = self.reference
        faulted = self.rng.random() < self.config.faults
        if not faulted:
            ix.pairs = _coerced(after, req) if ix.media.name in self.config.coerce else after
        data = self._notification(ix, reference, faulted)
        self.log.append(
            {
                "agent": agent,
                "interaction_id": ix.id,
                "media": ix.media.name,
                "operation": req.operation,
                "reference_id": reference,
                "requested": req.requested,
                "before": before,
                "after": ix.user_data(),
                "error": faulted,
                "time": time.time(),
            }
        )
        loop = asyncio.get_running_loop()
        # Jitter must not reorder one interaction's notifications: a later one carries the
        # newer user data, and clients (and the proxy's snapshots) rely on that order.
        when = loop.time() + self.config.delay + self.rng.uniform(0, self.config.jitter)
        when = max(when, self._published.get(ix.id, 0.0) + 1e-6)
        self._published[ix.id] = when
        loop.call_at(when, self.bayeux.publish, ix.media.channel, data, ix.agents)
        answer: dict[str, Any] = {"statusCode": 0}
        if ix.media.reference_in_answer:
            answer["referenceId"] = reference
        # Not a GWS header: names the operation for tests, whatever the body carries.
        return web.json_response(answer, headers={"X-Sim-Reference": str(reference)})

    def _notification(self, ix: Interaction, reference: int, faulted: bool) -> dict[str, Any]:
        media = ix.media
        if faulted and media.name == "voice":
            return {
                "messageType": gws.VOICE_ERROR,
                "errorMessage": "Simulated T-Server error",
                "call": {"id": ix.id},
            }
        changed = "AttachedDataChanged" if media.name in ("voice", "im") else "PropertiesUpdated"
        data: dict[str, Any] = {
            "messageType": media.message_type,
            "notificationType": "Error" if faulted else changed,
        }
        if media.name != "voice":  # voice notifications carry no referenceId [doc]
            data["referenceId"] = reference
        if faulted:
            data["errorMessage"] = "Simulated interaction server error"
        data[media.object_key] = ix.snapshot(self.base_url)
        return data


def _check(req: gws.UserDataRequest, media: str) -> None:
    """Refuse, as GWS does, a request that lacks what its operation needs."""
    op = req.operation
    if op in (gws.UPDATE, gws.ATTACH) and req.user_data is None:
        raise Fail(400, 1, "userData is missing")
    names_keys = bool(req.keys) or req.key is not None
    deletes_all = media == "voice" and req.keys is None and req.key is None
    if op == gws.DELETE and not (names_keys or deletes_all):
        raise Fail(400, 1, "keys are missing")
    if op == gws.DELETE_PAIR:
        if media != "voice":
            raise Fail(400, 2, "DeleteUserDataPair is a voice operation")
        if req.key is None:
            raise Fail(400, 1, "key is missing")


def _coerced(pairs: list[tuple[str, Any]], req: gws.UserDataRequest) -> list[tuple[str, Any]]:
    """The requested int values stored as strings: what a misbehaving GWS would do."""
    names = set(req.user_data or ())
    return [
        (k, str(v) if k in names and isinstance(v, int) and not isinstance(v, bool) else v)
        for k, v in pairs
    ]


def seed_from_capture(path: str) -> tuple[list[Interaction], int]:
    """The interactions a capture saw, with their user data before its first request on each,
    and the first referenceId it recorded (1 if none)."""
    from gwsproxy.capture.format import Kind
    from gwsproxy.capture.reader import CaptureReader

    found: dict[str, Interaction] = {}
    first_reference: int | None = None
    with CaptureReader(path) as reader:
        for entry in reader.iter_entries():
            summary = entry.summary
            if entry.kind != Kind.PAIR or summary.get("media") not in gws.MEDIA_BY_NAME:
                continue
            ref = summary.get("reference_id")
            if isinstance(ref, int) and first_reference is None:
                first_reference = ref
            scope = str(summary.get("scope", ""))
            agent = scope.removeprefix("user:") if scope.startswith("user:") else None
            ident = str(summary.get("interaction_id"))
            ix = found.get(ident)
            if ix is None:
                body = reader.body(entry) or {}
                before = body.get("before") or {}
                media = gws.MEDIA_BY_NAME[summary["media"]]
                fields: dict[str, Any] = {"state": "Processing", "participants": []}
                collection = str(summary.get("collection", ""))
                if media.name == "openmedia" and "/" in collection:
                    fields["mediaType"] = collection.split("/", 1)[1]
                ix = found[ident] = Interaction(ident, media, (), list(before.items()), fields)
            if agent and agent not in ix.agents:
                ix.agents = (*ix.agents, agent)
                ix.fields["participants"].append({"nickname": agent, "type": "Agent"})
    return list(found.values()), first_reference or 1


@dataclass(slots=True)
class RunningSim:
    simulator: Simulator
    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_simulator(config: SimConfig) -> RunningSim:
    """Start the simulator on its host and port (0: any free port) and return its URL."""
    sim = Simulator(config)
    runner, sim.base_url = await serve(sim.app(), config.host, config.port, config.tls)
    return RunningSim(sim, runner, sim.base_url)
