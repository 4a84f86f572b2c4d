"""Where the agent keeps its files. Pure path arithmetic: nothing here touches the disk.

- config dir: `$BUCKETREEL_AGENT_HOME`, else the OS's place (`agent.platform.dirs`):
  `%LOCALAPPDATA%\\bucketreel` on Windows, `~/Library/Application Support/bucketreel` on
  macOS, `$XDG_CONFIG_HOME/bucketreel` or `~/.config/bucketreel` on Linux;
- device credential: `<config dir>/device.json`;
- spool dir: `$BUCKETREEL_AGENT_SPOOL`, else `<config dir>/spool`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from agent.errors import ConfigError
from agent.platform.dirs import NoHomeDirectory, default_home

HOME_ENV = "BUCKETREEL_AGENT_HOME"
SPOOL_ENV = "BUCKETREEL_AGENT_SPOOL"
CREDENTIAL_FILE = "device.json"


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _absolute(value: str, name: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ConfigError(f"${name} must be an absolute path, not {value!r}")
    return path


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The agent's configuration directory (not created here)."""
    e = _env(env)
    if home := e.get(HOME_ENV):
        return _absolute(home, HOME_ENV)
    try:
        return default_home(e)
    except NoHomeDirectory as exc:
        raise ConfigError(
            f"cannot find a home directory ({exc}); set ${HOME_ENV} to a directory"
        ) from exc


def credential_path(env: Mapping[str, str] | None = None) -> Path:
    """The device credential file."""
    return config_dir(env) / CREDENTIAL_FILE


def spool_dir(env: Mapping[str, str] | None = None) -> Path:
    """The spool directory (wiped at every start)."""
    e = _env(env)
    if spool := e.get(SPOOL_ENV):
        return _absolute(spool, SPOOL_ENV)
    return config_dir(env) / "spool"
