"""The vault's one exception root, and its exit codes.

`VaultError` and its kinds are what the top-level handler (`shared.vault.__main__`) prints for
a person; each kind carries its exit code. Problems *found* in the bucket are not errors: they
are results (`shared.vault.problems`), and a command that found any exits 1.
"""

from __future__ import annotations

EXIT_CLEAN = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2  # bad arguments, no or refused credentials, no such bucket: nothing was checked
EXIT_BUG = 3  # an unexpected error: never read as a verdict
EXIT_INTERRUPTED = 130


class VaultError(Exception):
    """Something kept the vault from doing what it was asked (never a finding)."""

    exit_code = EXIT_USAGE


class UsageError(VaultError):
    """The command line or a file it names is not usable."""


class CredentialError(VaultError):
    """No credentials, or the bucket refused them (denied, unknown key, expired)."""


class StoreError(VaultError):
    """The bucket could not be read (unreachable, timed out, an unexpected reply)."""


class ExportError(VaultError):
    """The segments could not be remuxed into one file."""
