"""`gwsproxy swarm FILE --target URL [LOCUST OPTIONS]`: Locust with the shipped locustfile.

Nothing of Locust is imported here: its gevent monkey patching belongs to its own process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gwsproxy.swarm.plan import SwarmError

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USAGE = "gwsproxy swarm FILE --target URL [LOCUST OPTIONS]"
# Locust runs that need no capture here: a worker gets its scripts from the master.
NO_CAPTURE = ("--worker", "-h", "--help", "-V", "--version")


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
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
    return 0  # not reached
