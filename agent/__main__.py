"""`python -m agent`: the `bucketreel-agent` command line (agent/cli/)."""

from __future__ import annotations

import sys

from agent.cli import EXIT_ALREADY_RUNNING, EXIT_CONFIG, build_parser, main

__all__ = ["EXIT_ALREADY_RUNNING", "EXIT_CONFIG", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
