"""The agent's home directory on each OS, through `platformdirs`.

- Windows: `%LOCALAPPDATA%\\bucketreel` (local, never roamed to other machines);
- macOS: `~/Library/Application Support/bucketreel`;
- Linux and other POSIX: `$XDG_CONFIG_HOME/bucketreel`, else `~/.config/bucketreel` (as
  before: existing installations keep their files). A relative `$XDG_CONFIG_HOME` is ignored,
  as the XDG spec says.

The credential, the signing key, the lock, the status file and the spool live below it (the
spool is wiped at every start, so it needs no cache directory of its own).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

APP = "bucketreel"


class NoHomeDirectory(Exception):
    """No home directory can be found (no $HOME and no passwd entry, no known folder)."""


def default_home(env: Mapping[str, str], platform: str = sys.platform) -> Path:
    """Where the agent keeps its files by default on `platform` (not created here)."""
    try:
        if platform == "win32":
            from platformdirs.windows import Windows

            return Path(Windows(APP, appauthor=False, roaming=False).user_data_dir)
        if platform == "darwin":
            from platformdirs.macos import MacOS

            return Path(MacOS(APP, appauthor=False).user_data_dir)
    except (OSError, RuntimeError, NotImplementedError) as exc:
        raise NoHomeDirectory(str(exc)) from exc
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / APP
    try:
        return Path.home() / ".config" / APP
    except RuntimeError as exc:
        raise NoHomeDirectory(str(exc)) from exc
