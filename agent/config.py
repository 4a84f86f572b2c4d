"""The `run` settings: defaults < the TOML file < command-line flags.

The file is `<config dir>/agent.toml` (absent: defaults only) or the one `--config PATH`
names (it must exist). It is flat, one key per setting, the flag's name with underscores:

    fps = 1
    segment_seconds = 60
    monitor = 1
    crf = 28
    idle_seconds = 300
    spool_limit = "2G"        # or a number of bytes
    heartbeat_seconds = 60
    drain_seconds = 60
    capture_blocked_seconds = 120   # no picture this long: capture blocked (0: never)

An unknown key, a value of the wrong type or out of range is a `SettingsFileError` naming
the file and the key (`bucketreel-agent` exits 78). The broker may push a policy (fps,
segment_seconds, idle_seconds) that overrides the file but never a flag (`with_policy`).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from agent.delivery import DEFAULT_DRAIN_SECONDS
from agent.encode import DEFAULT_CRF
from agent.errors import ConfigError
from agent.health import DEFAULT_BLOCKED_SECONDS
from agent.heartbeat import DEFAULT_INTERVAL
from agent.idle import DEFAULT_IDLE_SECONDS
from agent.spool import DEFAULT_LIMIT
from shared.wire import MAX_HEARTBEAT_SECONDS, MAX_IDLE_SECONDS, POLICY_KEYS, POLICY_RANGES, Range

CONFIG_FILE = "agent.toml"
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class SettingsFileError(ConfigError):
    """The settings file is missing (when named), unreadable, or holds a bad key or value."""


# `kind` is float, int, or str for a size. The keys the broker's policy may set take the
# policy's ranges (shared.wire), except that the agent's own idle time may have a fraction.
RANGES: dict[str, Range] = {
    "fps": POLICY_RANGES["fps"],
    "segment_seconds": POLICY_RANGES["segment_seconds"],
    "monitor": Range(int, 0, 64),
    "crf": Range(int, 0, 51),
    "idle_seconds": Range(float, 0, MAX_IDLE_SECONDS),
    "spool_limit": Range(str),
    "heartbeat_seconds": Range(float, 1, MAX_HEARTBEAT_SECONDS),
    "drain_seconds": Range(float, 0, 86400),
    "capture_blocked_seconds": Range(float, 0, 86400),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    fps: float = 1.0
    segment_seconds: float = 60.0
    monitor: int = 1
    crf: int = DEFAULT_CRF
    idle_seconds: float = DEFAULT_IDLE_SECONDS
    spool_limit: int = DEFAULT_LIMIT
    heartbeat_seconds: float = DEFAULT_INTERVAL
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    capture_blocked_seconds: float = DEFAULT_BLOCKED_SECONDS


def parse_size(text: str) -> int:
    """A byte count: `2G`, `500M`, `64K`, `1048576` (binary units, an optional `B`/`iB`)."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in _SIZE_UNITS else ""
    number = value[: len(value) - len(unit)].strip()
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (e.g. 2G, 500M)") from None
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"not a size: {text!r} (e.g. 2G, 500M)")
    return int(amount * _SIZE_UNITS[unit])


def check_value(key: str, value: object) -> Any:
    """A file's (or the broker's) value for `key`, checked; ValueError says what is wrong."""
    bound = RANGES[key]
    if bound.kind is str:  # a size: a number of bytes or a string like "2G"
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str):
            return parse_size(value)
        raise ValueError('must be a size: a number of bytes or a string like "2G"')
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be {'an integer' if bound.kind is int else 'a number'}")
    if bound.kind is int and not isinstance(value, int):
        raise ValueError("must be an integer")
    return bound.kind(bound.check(value))


def load_file(path: Path, *, required: bool) -> dict[str, Any]:
    """The checked settings `path` holds ({} when it is absent and not `required`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise SettingsFileError(f"{path}: no such settings file") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsFileError(f"{path}: cannot read it: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsFileError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in RANGES:
            known = ", ".join(RANGES)
            raise SettingsFileError(f"{path}: unknown key {key!r} (known keys: {known})")
        try:
            values[key] = check_value(key, value)
        except ValueError as exc:
            raise SettingsFileError(f"{path}: {key}: {exc}") from None
    return values


def resolve(file_values: Mapping[str, Any], flags: Mapping[str, Any]) -> Settings:
    """Defaults, overridden by the file, overridden by the flags given (None: not given)."""
    chosen = {**file_values, **{k: v for k, v in flags.items() if v is not None}}
    return Settings(**{f.name: chosen[f.name] for f in fields(Settings) if f.name in chosen})


def with_policy(
    settings: Settings, policy: Mapping[str, Any], flags: Mapping[str, Any]
) -> Settings:
    """`settings` with the broker's policy applied, except where a flag was given.

    A policy value out of range or of the wrong type is ignored (ValueError is not raised:
    a bad policy must not stop a recording).
    """
    changes: dict[str, Any] = {}
    for key in POLICY_KEYS:
        value = policy.get(key)
        if value is None or flags.get(key) is not None:
            continue
        try:
            changes[key] = check_value(key, value)
        except ValueError:
            continue
    return replace(settings, **changes)
