"""`gwsproxy swarm FILE --target URL [LOCUST OPTIONS]`: Locust with the shipped locustfile.

Nothing of Locust is imported here: its gevent monkey patching belongs to its own process.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gwsproxy import bayeux
from gwsproxy.gws.options import add_access_options
from gwsproxy.swarm.plan import SwarmError

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USAGE = "gwsproxy swarm FILE --target URL [LOCUST OPTIONS]"
# Locust runs that need no capture here: a worker gets its scripts from the master.
NO_CAPTURE = ("--worker", "-h", "--help", "-V", "--version")


def add_options(group: Any) -> None:
    """The locustfile's own options, on Locust's parser (and on `gwsproxy swarm --help`'s:
    Locust prints its help before it loads a locustfile, so it cannot list them)."""
    group.add_argument("--capture", metavar="FILE", help="the capture to replay (master only)")
    group.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="divide the recorded pauses by this (0: no pauses) (default 1)",
    )
    group.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="replace in paths and bodies, e.g. an interaction id (repeatable)",
    )
    group.add_argument(
        "--transport",
        choices=bayeux.TRANSPORTS,
        default="long-polling",
        help="CometD transport (default long-polling)",
    )
    group.add_argument(
        "--timeout", type=float, default=10.0, help="seconds from POST to notification (10)"
    )
    group.add_argument("--password", default="password", help="every agent's password")
    group.add_argument(
        "--identity",
        default="agent{n}",
        help="users beyond the capture's agents log in as this ({n}: the user's number from 1)",
    )
    group.add_argument(
        "--credentials", metavar="FILE", help="USER PASSWORD lines: passwords, and new identities"
    )
    group.add_argument(
        "--repeat", action="store_true", help="a user starts its script again when done"
    )
    group.add_argument(
        "--no-answer-times",
        action="store_true",
        help="report no HTTP answer entries: Locust's Aggregated row is then the POST to "
        "notification times alone",
    )
    add_access_options(group)


def locust_command(args: Sequence[str]) -> list[str]:
    """The Locust command line: FILE becomes --capture FILE, --target URL becomes --host URL,
    everything else is Locust's (and the locustfile's options). SwarmError for a missing FILE."""
    rest = list(args)
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    if rest and not rest[0].startswith("-"):
        capture = rest.pop(0)
        if not os.path.isfile(capture):
            raise SwarmError(f"{capture}: no such capture file")
        command += ["--capture", capture]
    elif not any(a in NO_CAPTURE for a in rest):
        raise SwarmError(f"give the capture: {USAGE}")
    for i, arg in enumerate(rest):
        if arg == "--target":
            rest[i] = "--host"
        elif arg.startswith("--target="):
            rest[i] = "--host=" + arg.removeprefix("--target=")
    return command + rest


def run(args: Sequence[str]) -> int:
    """Replace this process with Locust (its signals, output and exit status are the run's)."""
    command = locust_command(args)
    if any(a in ("-h", "--help") for a in args):
        parser = argparse.ArgumentParser(prog="gwsproxy swarm", usage=USAGE, add_help=False)
        add_options(parser.add_argument_group("the locustfile's options (then Locust's own)"))
        parser.print_help()
        print()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
    return 0  # not reached
