"""`bucketreel-vault`: the customer's own tool for the bucket, without the broker.

One top-level handler: a `VaultError` is printed for a person (no traceback) with its exit
code; problems found are results (exit 1); Ctrl-C exits 130.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from shared.vault.cli import parser
from shared.vault.commands import COMMANDS
from shared.vault.errors import EXIT_INTERRUPTED, VaultError


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except VaultError as exc:
        print(f"bucketreel-vault: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bucketreel-vault: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
