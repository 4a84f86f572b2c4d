"""`bucketreel-vault`: the customer's own tool for the bucket, without the broker.

One top-level handler: a `VaultError` is printed for a person (no traceback) with its exit
code; problems found are results (exit 1); a file that cannot be read or written is exit 2;
anything else is a bug, printed with its traceback for a report, exit 3; Ctrl-C exits 130.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from shared.vault.cli import parser
from shared.vault.commands import COMMANDS
from shared.vault.errors import EXIT_BUG, EXIT_INTERRUPTED, EXIT_USAGE, VaultError


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
    except OSError as exc:  # a local file: the export's output, a report, the audit export
        print(f"bucketreel-vault: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # the one broad handler: a bug, not a finding (exit 1 means findings)
        traceback.print_exc()
        print("bucketreel-vault: internal error (a bug): nothing above is a verdict on the "
              "bucket; please report it with the traceback", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
