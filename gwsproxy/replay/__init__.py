"""Replay: a mock GWS from captures and regression replay against a GWS.

Kept import-light (argparse only): the command line builds its parser from here without loading
aiohttp; `gwsproxy.replay.mock` holds the mock itself.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

UNMATCHED_POLICIES = ("404", "closest")
MATCH_ORDERS = ("first", "last")


def parse_speed(text: str) -> float:
    """`--speed`: a factor that divides recorded delays; 0 or `max` means no delay at all."""
    if text.strip().lower() in ("max", "inf", "0"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'max'") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number, 0 or 'max'")
    return value


def parse_unmatched(text: str) -> str:
    """`--unmatched`: `404`, `closest` or `forward:URL` (an http or https base URL)."""
    if text in UNMATCHED_POLICIES:
        return text
    if text.startswith("forward:"):
        url = text.removeprefix("forward:")
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.hostname:
            return "forward:" + url.rstrip("/")
        raise argparse.ArgumentTypeError(
            f"{url!r} is not a URL to forward to: expected forward:http://HOST:PORT"
        )
    raise argparse.ArgumentTypeError(f"{text!r}: choose 404, closest or forward:URL")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `gwsproxy serve FILE` (also `python -m gwsproxy.replay.mock FILE`)."""
    parser.add_argument("file", help="capture file to answer from")
    parser.add_argument(
        "-p", "--port", type=_port, default=8090, help="port to listen on (default 8090; 0: any)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--speed",
        type=parse_speed,
        default=1.0,
        metavar="X",
        help="divide recorded delays by X (default 1; 0 or 'max': no delay)",
    )
    parser.add_argument(
        "--unmatched",
        type=parse_unmatched,
        default="404",
        metavar="404|closest|forward:URL",
        help="answer to a request no recorded pair matches (default 404)",
    )
    parser.add_argument(
        "--match",
        choices=MATCH_ORDERS,
        default="first",
        help="among equal recorded requests, use the first or the last unused one (first)",
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0-65535)")
    return value
