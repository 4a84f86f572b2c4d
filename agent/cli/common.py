"""What the command groups share."""

from __future__ import annotations

import sys

PROG = "bucketreel-agent"


def tell(text: str) -> None:
    """A line for the person at the terminal (standard error, never the output)."""
    print(text, file=sys.stderr, flush=True)
