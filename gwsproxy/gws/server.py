"""The answers a GWS stand-in gives besides user data: the GWS error answer and the login.

Shared by the simulator and the mock GWS (aiohttp responses); which to give stays with them.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from gwsproxy.tls import ServerCert, server_context

CSRF_HEADER = "X-CSRF-TOKEN"


def error_answer(http: int, code: int, message: str) -> web.Response:
    """A GWS error: HTTP status, and a body of `statusCode` and `statusMessage` only."""
    return web.json_response({"statusCode": code, "statusMessage": message}, status=http)


def known_session(request: web.Request, sessions: dict[str, str]) -> str | None:
    """The request's JSESSIONID when the server knows it."""
    session = request.cookies.get("JSESSIONID")
    return session if session in sessions else None


def logged_in(
    request: web.Request,
    name: str,
    key: str,
    sessions: dict[str, str],
    csrf: dict[str, str],
    session: str | None,
) -> tuple[web.Response, str]:
    """The answer to `GET /api/v2/me` and its HTTP session: the user, a new JSESSIONID when
    the request has no `session` the server knows (`key` is what it stands for), and the CSRF
    header pair GWS announces, the token living with the HTTP session as in GWS."""
    response = web.json_response({"statusCode": 0, "user": {"userName": name, "id": name}})
    if session is None:
        session = secrets.token_hex(16)
        sessions[session] = key
        response.set_cookie("JSESSIONID", session, httponly=True)
        response.set_cookie("BAYEUX_BROWSER", secrets.token_hex(8))
    response.headers["X-CSRF-HEADER"] = CSRF_HEADER
    response.headers[CSRF_HEADER] = csrf.setdefault(session, secrets.token_hex(12))
    return response, session


async def serve(
    app: web.Application, host: str, port: int, tls: ServerCert | None
) -> tuple[web.AppRunner, str]:
    """Listen with `app` on host:port (0: any free port), HTTPS with `tls`: its runner (whose
    cleanup stops it) and its base URL. OSError when the address is taken."""
    context = server_context(tls) if tls else None
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=context).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    name = f"[{host}]" if ":" in host else host
    return runner, f"{'https' if context else 'http'}://{name}:{bound}"
