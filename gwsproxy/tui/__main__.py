"""`python -m gwsproxy.tui FILE... [--follow]` is `gwsproxy tui FILE... [--follow]`."""

import sys

from gwsproxy.cli import main

sys.exit(main(["tui", *sys.argv[1:]]))
