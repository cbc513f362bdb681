"""The shared GWS client session against the simulator's deployment modes, in this process:
cookies kept (JSESSIONID, the stickiness cookie), CSRF on every POST and fetched again once on
a 403, bearer tokens and extra headers; and the command-line options that configure them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from gwsproxy import cli
from gwsproxy.gws.options import OptionError, read_bearer_file
from gwsproxy.gws.session import Access, GwsError, GwsSession
from gwsproxy.sim.agents import LoadConfig, run_load
from gwsproxy.sim.server import STICKY, RunningSim, SimConfig, Simulator, start_simulator

EXAMPLES = Path(__file__).parent.parent / "captures" / "examples"
MIXED = EXAMPLES / "sim-mixed.gwscap"


@pytest_asyncio.fixture
async def running() -> AsyncIterator[Callable[..., object]]:
    started: list[RunningSim] = []

    async def start(**options: object) -> RunningSim:
        config = SimConfig(port=0, delay=0, jitter=0, agents=2, **options)  # type: ignore[arg-type]
        sim = await start_simulator(config)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


def _session(sim: RunningSim, user: str = "agent1", **access: object) -> GwsSession:
    return GwsSession(
        sim.url,
        user,
        "password",
        transport="long-polling",
        timeout=5,
        access=Access(**access),  # type: ignore[arg-type]
    )


def _chat_url(sim: Simulator, agent: str) -> str:
    ix = next(i for i in sim.interactions.values() if i.media.name == "chat" and agent in i.agents)
    return f"{sim.base_url}/api/v2/me/chats/{ix.id}"


UPDATE = json.dumps({"operationName": "UpdateUserData", "userData": {"k": 1}}).encode()


@pytest.mark.asyncio
async def test_csrf_session_keeps_its_cookies_and_sends_the_token(running) -> None:
    sim: RunningSim = await running(csrf=True)
    async with _session(sim) as session:
        await session.login()
        cookies = {c.key: c.value for c in session.http.cookie_jar}
        assert {"JSESSIONID", STICKY} <= set(cookies), cookies
        assert session.csrf == {"X-CSRF-TOKEN": sim.simulator.csrf[cookies["JSESSIONID"]]}
        status, body = await session.post(_chat_url(sim.simulator, "agent1"), UPDATE)
        assert (status, json.loads(body)["statusCode"]) == (200, 0)
    assert (sim.simulator.posts, sim.simulator.csrf_refused) == (1, 0)


@pytest.mark.asyncio
async def test_a_stale_token_is_fetched_again_once_and_the_post_goes_through(running) -> None:
    sim: RunningSim = await running(csrf=True)
    async with _session(sim) as session:
        await session.login()
        old = dict(session.csrf)
        sim.simulator.csrf.clear()  # what POST /_sim/csrf {"expire": true} does
        status, _ = await session.post(_chat_url(sim.simulator, "agent1"), UPDATE)
        assert status == 200
        assert session.csrf != old
    assert (sim.simulator.posts, sim.simulator.csrf_refused, sim.simulator.ops) == (2, 1, 1)


@pytest.mark.asyncio
async def test_a_token_refused_again_is_the_answer_not_a_loop(running) -> None:
    sim: RunningSim = await running(csrf=True)
    sim.simulator.refuse_csrf = True
    async with _session(sim) as session:
        await session.login()
        status, body = await session.post(_chat_url(sim.simulator, "agent1"), UPDATE)
    assert status == 403 and json.loads(body)["statusMessage"] == "Missing or invalid Csrf token"
    assert (sim.simulator.posts, sim.simulator.csrf_refused, sim.simulator.ops) == (2, 2, 0)


@pytest.mark.asyncio
async def test_a_request_that_lost_its_stickiness_cookie_lost_its_session(running) -> None:
    sim: RunningSim = await running(csrf=True)
    async with _session(sim) as session:
        await session.login()
        session.http.cookie_jar.clear(lambda c: c.key == STICKY)
        url = _chat_url(sim.simulator, "agent1")
        first = await session._post(url, UPDATE, "application/json")
        assert first[0] == 403  # the load balancer sent it to a node without the session
        status, _ = await session.post(url, UPDATE)  # a new session and token, then through
        assert status == 200
        assert STICKY in {c.key for c in session.http.cookie_jar}


@pytest.mark.asyncio
async def test_bearer_tokens_per_user_and_basic_refused(running) -> None:
    sim: RunningSim = await running(bearer=True)
    tokens = {agent: token for token, agent in sim.simulator.bearer.items()}
    async with _session(sim, bearers=tokens) as session:
        await session.login()
        status, _ = await session.post(_chat_url(sim.simulator, "agent1"), UPDATE)
        assert status == 200
    async with _session(sim) as basic:
        with pytest.raises(GwsError, match="401 Not authenticated"):
            await basic.login()
    with pytest.raises(GwsError, match="agent9: the bearer file has no token"):
        _session(sim, user="agent9", bearers=tokens)


@pytest.mark.asyncio
async def test_extra_headers_go_on_every_request(running) -> None:
    sim: RunningSim = await running(api_key="k-123")
    async with _session(sim) as without:
        with pytest.raises(GwsError, match="401"):
            await without.login()
    async with _session(sim, headers=(("x-api-key", "k-123"),)) as session:
        await session.open()  # login, and CometD (its handshake is refused without the key)
        status, _ = await session.post(_chat_url(sim.simulator, "agent1"), UPDATE)
        assert status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", [{"csrf": True}, {"bearer": True}])
async def test_load_against_csrf_and_bearer(running, mode: dict[str, bool]) -> None:
    sim: RunningSim = await running(**mode)
    tokens = {agent: token for token, agent in sim.simulator.bearer.items()}
    access = Access(bearers=tokens) if mode.get("bearer") else Access()
    report = await run_load(LoadConfig(sim.url, agents=2, ops=10, timeout=5, access=access))
    assert report.sent == report.notified == 20, report.as_dict()
    assert sim.simulator.csrf_refused == 0


def test_bearer_file_one_token_or_one_per_user(tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.write_text("\n  tok-1  \n")
    assert read_bearer_file(str(one)) == ("tok-1", {})
    many = tmp_path / "many"
    many.write_text("# agents\nagent1 tok-a\n\nagent2 tok-b\n")
    assert read_bearer_file(str(many)) == (None, {"agent1": "tok-a", "agent2": "tok-b"})
    bad = tmp_path / "bad"
    bad.write_text("agent1 tok-a\nagent2 tok-b extra-secret\n")
    with pytest.raises(OptionError) as caught:
        read_bearer_file(str(bad))
    assert str(caught.value) == f"--bearer-file {bad}: line 2 is not USER TOKEN"
    with pytest.raises(OptionError, match="no such file"):
        read_bearer_file(str(tmp_path / "absent"))


def _access(tmp_path: Path, *options: str) -> Access:
    args = cli.build_parser().parse_args(["replay", "x.gwscap", "--target", "http://h", *options])
    return cli._access(args)


def test_client_options_build_one_access(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("agent1 tok-a\n")
    access = _access(
        tmp_path, "--bearer-file", str(tokens), "--header", "x-api-key: k:1", "--header", "A:b"
    )
    assert access.bearers == {"agent1": "tok-a"} and access.bearer is None
    assert access.headers == (("x-api-key", "k:1"), ("A", "b"))
    assert access.tls is None
    assert _access(tmp_path, "--bearer", "tok").authorization("u", "p") == "Bearer tok"
    assert _access(tmp_path).authorization("u", "p").startswith("Basic ")
    load = cli.build_parser().parse_args(["load", "--target", "http://h", "--bearer", "t"])
    assert cli._access(load).bearer == "t"


def test_insecure_warns_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ssl

    access = _access(tmp_path, "--insecure")
    assert access.tls is not None and access.tls.verify_mode == ssl.CERT_NONE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: --insecure" in err


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--header", "x-api-key=sekrit"], "--header: expected NAME:VALUE, one has no ':'"),
        (["--header", ":v"], "--header '': not a header name"),
        (["--bearer-file", "/nonexistent/tokens"], "--bearer-file /nonexistent/tokens: no such"),
        (["--cacert", "/nonexistent/ca.pem"], "--cacert /nonexistent/ca.pem: no such"),
        (["--bearer", "sekrit", "--bearer-file", "f"], "--bearer and --bearer-file: give one"),
    ],
)
@pytest.mark.parametrize("command", ["replay", "load"])
def test_a_bad_client_option_is_one_line_and_exit_2(
    command: str, options: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    head = ["replay", str(MIXED)] if command == "replay" else ["load"]
    assert cli.main([*head, "--target", "http://127.0.0.1:9", *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gwsproxy {command}: {said}") and err.count("\n") == 1, err
    assert "sekrit" not in err


@pytest.mark.asyncio
async def test_a_refreshed_token_reaches_the_cometd_client_too(running) -> None:
    sim: RunningSim = await running(csrf=True)
    async with _session(sim) as session:
        await session.open()
        assert session.cometd is not None and session.cometd.headers == session.csrf
        sim.simulator.csrf.clear()
        status, _ = await session.post(_chat_url(sim.simulator, "agent1"), UPDATE)
        assert status == 200
        assert session.cometd.headers == session.csrf
        assert session.csrf["X-CSRF-TOKEN"] in sim.simulator.csrf.values()


@pytest_asyncio.fixture
async def https_gws(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A GWS login over HTTPS with a throwaway CA: its URL and the CA file."""
    from aiohttp import web

    from gwsproxy.gws.server import known_session, logged_in
    from gwsproxy.tls import server_context, throwaway

    cert = throwaway(tmp_path / "tls")
    sessions: dict[str, str] = {}
    csrf: dict[str, str] = {}

    async def me(request: web.Request) -> web.Response:
        session = known_session(request, sessions)
        return logged_in(request, "agent1", "agent1", sessions, csrf, session)[0]

    app = web.Application()
    app.router.add_get("/api/v2/me", me)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(cert))
    await site.start()
    assert cert.ca is not None
    yield f"https://127.0.0.1:{runner.addresses[0][1]}", cert.ca
    await runner.cleanup()


@pytest.mark.asyncio
async def test_cacert_trusts_a_company_ca_and_without_it_one_line_says_so(https_gws) -> None:
    from gwsproxy.tls import client_context

    url, ca = https_gws

    def session(access: Access) -> GwsSession:
        return GwsSession(url, "agent1", "p", transport="long-polling", timeout=5, access=access)

    async with session(Access(tls=client_context([str(ca)]))) as trusting:
        with trusting.errors():
            await trusting.login()
        assert "X-CSRF-TOKEN" in trusting.csrf
    async with session(Access(tls=client_context(insecure=True))) as insecure:
        with insecure.errors():
            await insecure.login()
    async with session(Access()) as default:
        with pytest.raises(GwsError) as caught, default.errors():
            await default.login()
    said = str(caught.value)
    assert said.startswith(f"{url}: certificate not trusted (") and "--cacert FILE" in said
    assert "\n" not in said


def test_replay_of_a_user_the_bearer_file_lacks_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("someone tok-secret\nother tok-2\n")
    sms = EXAMPLES / "seed-sms-update.gwscap"
    argv = ["replay", str(sms), "--target", "http://127.0.0.1:9", "--bearer-file", str(tokens)]
    assert cli.main([*argv, "-o", str(tmp_path / "out.gwscap")]) == 2
    err = capsys.readouterr().err
    # (the blank line before it is the transient progress bar's)
    assert err.strip() == "gwsproxy replay: agent1: the bearer file has no token for this user"
