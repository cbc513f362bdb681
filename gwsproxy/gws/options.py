"""The command-line options of our GWS clients beyond the user's password (bearer tokens, extra
headers, TLS): one definition for `replay`, `load`, `tui` and `swarm`, and how they become an
`Access`. Light to import: the CLI builds its parser with them for every command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gwsproxy.gws.session import Access


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
    from gwsproxy.gws.session import Access, GwsError, parse_headers, read_bearer_file
    from gwsproxy.tls import client_context

    if args.bearer is not None and args.bearer_file is not None:
        raise GwsError("--bearer and --bearer-file: give one of them")
    bearer, bearers = args.bearer, dict[str, str]()
    if args.bearer is not None and not args.bearer.strip():
        raise GwsError("--bearer: the token is empty")
    if args.bearer_file is not None:
        bearer, bearers = read_bearer_file(args.bearer_file)
    headers = parse_headers(args.header)  # (a value may be a secret: never shown)
    tls = client_context(args.cacert, args.insecure) if args.cacert or args.insecure else None
    return Access(bearer, bearers, headers, tls)
