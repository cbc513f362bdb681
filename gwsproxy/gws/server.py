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


def logged_in(
    request: web.Request, name: str, key: str, sessions: dict[str, str], csrf: dict[str, str]
) -> web.Response:
    """The answer to `GET /api/v2/me`: the user, a JSESSIONID (unless the request has a known
    one) and the CSRF header pair GWS announces. `key` is what the session cookie stands for."""
    response = web.json_response({"statusCode": 0, "user": {"userName": name, "id": name}})
    if request.cookies.get("JSESSIONID") not in sessions:
        token = secrets.token_hex(16)
        sessions[token] = key
        response.set_cookie("JSESSIONID", token, httponly=True)
        response.set_cookie("BAYEUX_BROWSER", secrets.token_hex(8))
    response.headers["X-CSRF-HEADER"] = CSRF_HEADER
    response.headers[CSRF_HEADER] = csrf.setdefault(key, secrets.token_hex(12))
    return response


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
