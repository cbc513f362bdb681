"""`python -m gwsproxy.tui FILE... [--follow]`: the inspector without the gwsproxy CLI."""

from __future__ import annotations

import argparse
import sys

from gwsproxy.tui.app import run_tui


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gwsproxy.tui", description="Inspect gwsproxy captures."
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="capture files (merged by time)")
    parser.add_argument(
        "--follow", action="store_true", help="tail a capture that is still being written"
    )
    args = parser.parse_args(argv)
    return run_tui(args.files, args.follow)


if __name__ == "__main__":
    sys.exit(main())
