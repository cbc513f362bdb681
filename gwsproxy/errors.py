"""The error base of every stage, and the one-line messages that several commands share.

Each stage's error derives from GwsProxyError; `gwsproxy` catches it once, prints its one line
and exits 2. Imports nothing of gwsproxy, so any module may use it.
"""

from __future__ import annotations

import errno
from urllib.parse import urlsplit

EXAMPLE_URL = "http://127.0.0.1:8090"


class GwsProxyError(Exception):
    """Something the user can fix, in one line: what is wrong and what to do."""


def one_line(value: object) -> str:
    """An error (or any value) as one line of text: its message with the whitespace runs made
    single spaces, or its type's name when it has no message."""
    text = str(value).strip() or type(value).__name__
    return " ".join(text.split())


def url_problem(text: str) -> str | None:
    """Why `text` is not the http(s) base URL of a GWS, or None when it is one."""
    text = text.strip()
    if not text:
        return f"no URL given: expected one such as {EXAMPLE_URL}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        return f"{text!r} is not a URL: {e}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{text!r} is not an http or https URL such as {EXAMPLE_URL}"
    return None


def listen_problem(error: OSError, host: str, port: int) -> str:
    """Why nothing can listen on host:port, given the OSError that binding it raised."""
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use on {host}: pick another with -p"
    return f"cannot listen on {host}:{port}: {error.strerror or error}"
