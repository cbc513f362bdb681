"""The command-line options of our GWS clients beyond the user's password (bearer tokens, extra
headers, TLS): one definition for `replay`, `load`, `tui` and `swarm`, and how they become an
`Access`. Light to import: the CLI builds its parser with them for every command."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gwsproxy.errors import GwsProxyError

if TYPE_CHECKING:
    from gwsproxy.gws.session import Access


class OptionError(GwsProxyError):
    """An access option, or a file it names, that cannot be used, in one line."""


def add_access_options(p: Any) -> None:
    """How our clients reach a GWS beyond Basic: bearer tokens, headers, TLS (the options of
    `replay`, `load`, `tui` and `swarm`, on an argparse parser or group)."""
    p.add_argument(
        "--bearer", metavar="TOKEN", help="OAuth 2 bearer token instead of Basic (every user)"
    )
    p.add_argument(
        "--bearer-file",
        metavar="FILE",
        help="a file of one bearer token, or of USER TOKEN lines (a token per user)",
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="send this header too, e.g. x-api-key:KEY (repeatable)",
    )
    p.add_argument(
        "--cacert",
        action="append",
        default=[],
        metavar="FILE",
        help="trust this CA (PEM) besides the system's (repeatable)",
    )
    p.add_argument(
        "--insecure", action="store_true", help="do not check the GWS's certificate (warns)"
    )


def access_of(args: Any) -> Access:
    """Those options (an argparse namespace) as an Access (a TLS context only with --cacert or
    --insecure: else the client's default checks); GwsProxyError for a bad value. The caller
    warns of --insecure."""
    from gwsproxy.gws.session import Access
    from gwsproxy.tls import client_context

    if args.bearer is not None and args.bearer_file is not None:
        raise OptionError("--bearer and --bearer-file: give one of them")
    bearer, bearers = args.bearer, dict[str, str]()
    if args.bearer is not None and not args.bearer.strip():
        raise OptionError("--bearer: the token is empty")
    if args.bearer_file is not None:
        bearer, bearers = read_bearer_file(args.bearer_file)
    headers = parse_headers(args.header)  # (a value may be a secret: never shown)
    tls = client_context(args.cacert, args.insecure) if args.cacert or args.insecure else None
    return Access(bearer, bearers, headers, tls)


def secret_lines(option: str, path: str) -> list[tuple[int, list[str]]]:
    """The lines of a file of secrets (tokens, passwords) given to `option`, as (line number,
    words); blank lines and lines starting with # skipped. Errors name the option, the file
    and why, never what is in it."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeError) as e:
        why = e.strerror.lower() if isinstance(e, OSError) and e.strerror else "not text"
        raise OptionError(f"{option} {path}: {why}") from None
    found = [(n, line.split()) for n, line in enumerate(lines, 1)]
    return [(n, words) for n, words in found if words and not words[0].startswith("#")]


def parse_headers(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """`--header NAME:VALUE` options; OptionError for a bad one (never its value: a secret?)."""
    headers = []
    for item in items:
        name, sep, value = item.partition(":")
        if not sep:
            raise OptionError("--header: expected NAME:VALUE, one has no ':'")
        if not name.strip() or any(c.isspace() for c in name.strip()):
            raise OptionError(f"--header {name.strip()!r}: not a header name")
        headers.append((name.strip(), value.strip()))
    return tuple(headers)


def read_bearer_file(path: str) -> tuple[str | None, dict[str, str]]:
    """A file of one token (for every user), or of lines `USER TOKEN` (blank lines and lines
    starting with # skipped). Errors name the file and line, never a token."""
    found = secret_lines("--bearer-file", path)
    if len(found) == 1 and len(found[0][1]) == 1:
        return found[0][1][0], {}
    tokens: dict[str, str] = {}
    for n, words in found:
        if len(words) != 2:
            raise OptionError(f"--bearer-file {path}: line {n} is not USER TOKEN")
        tokens[words[0]] = words[1]
    if not tokens:
        raise OptionError(f"--bearer-file {path}: no token in it")
    return None, tokens
