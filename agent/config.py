"""The `run` settings: defaults < the TOML file < command-line flags.

The file is `<config dir>/agent.toml` (absent: defaults only) or the one `--config PATH`
names (it must exist). It is flat, one key per setting, the flag's name with underscores:

    fps = 1
    segment_seconds = 60
    monitor = 1
    crf = 28
    quality = "standard"      # high, standard, compact or av1 (SVT-AV1)
    idle_seconds = 300
    spool_limit = "2G"        # or a number of bytes
    heartbeat_seconds = 60
    drain_seconds = 60
    capture_blocked_seconds = 120   # no picture this long: capture blocked (0: never)

An unknown key, a value of the wrong type or out of range is a `SettingsFileError` naming
the file and the key (`bucketreel-agent` exits 78). The broker may push a policy (fps,
segment_seconds, idle_seconds, quality) that overrides the file but never a flag
(`with_policy`). `crf`, when given, replaces the CRF of an H.264 quality level.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from agent.delivery import DEFAULT_DRAIN_SECONDS
from agent.encode import DEFAULT_QUALITY, QUALITY
from agent.errors import ConfigError
from agent.health import DEFAULT_BLOCKED_SECONDS
from agent.heartbeat import DEFAULT_INTERVAL
from agent.idle import DEFAULT_IDLE_SECONDS
from agent.spool import DEFAULT_LIMIT
from shared.wire import (
    MAX_HEARTBEAT_SECONDS,
    MAX_IDLE_SECONDS,
    POLICY_KEYS,
    POLICY_RANGES,
    QUALITY_LEVELS,
    Range,
)

CONFIG_FILE = "agent.toml"
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class SettingsFileError(ConfigError):
    """The settings file is missing (when named), unreadable, or holds a bad key or value."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One `run` setting: its range (`kind` float, int, or str for a size), its default, and
    its command-line flag (`--<key with dashes>`: `metavar`, `help`; "{default}" in the help
    is filled in)."""

    range: Range
    default: float | int | str | None  # None: decided elsewhere (crf: by the quality level)
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] = ()  # a name from these, instead of a number or a size


# Every `run` setting, declared once: the settings file's key, the flag with its help, the
# default and the range. The keys the broker's policy may set take the policy's ranges
# (shared.wire), except that the agent's own idle time may have a fraction.
SETTINGS: dict[str, Setting] = {
    "fps": Setting(POLICY_RANGES["fps"], 1.0, "frames per second (default {default:g})"),
    "segment_seconds": Setting(
        POLICY_RANGES["segment_seconds"], 60.0,
        "length of each uploaded segment (default {default:g})", "S",
    ),
    "monitor": Setting(
        Range(int, 0, 64), 1,
        "monitor to record, as mss numbers them: 1 = first (default), 0 = all together", "N",
    ),
    "crf": Setting(
        Range(int, 0, 51), None,
        "H.264 quality, lower is better and larger (default: the quality level's: "
        + ", ".join(f"{e.crf} {name}" for name, e in QUALITY.items() if e.codec == "h264")
        + "); not used by av1 (SVT-AV1)",
    ),
    "quality": Setting(
        Range(str), DEFAULT_QUALITY,
        "picture quality and size: high, standard (default), compact, or av1 (SVT-AV1: "
        "several times the CPU; plays in Chrome, Edge and Firefox, in Safari only with AV1 "
        "hardware); the broker's policy may set it", "LEVEL", QUALITY_LEVELS,
    ),
    "spool_limit": Setting(
        Range(str), DEFAULT_LIMIT,
        "most disk the encrypted spool may use while uploads fail, e.g. 500M (default 2G); at "
        "the limit the oldest segments are dropped and reported as gaps", "SIZE",
    ),
    "drain_seconds": Setting(
        Range(float, 0, 86400), DEFAULT_DRAIN_SECONDS,
        "on stop, how long to keep trying to upload what is pending (default {default:g})", "S",
    ),
    "heartbeat_seconds": Setting(
        Range(float, 1, MAX_HEARTBEAT_SECONDS), DEFAULT_INTERVAL,
        "how often to report status to the broker (default {default:g}); the broker shows a "
        "device silent after three missed beats", "S",
    ),
    "idle_seconds": Setting(
        Range(float, 0, MAX_IDLE_SECONDS), DEFAULT_IDLE_SECONDS,
        "pause after S seconds without keyboard or mouse input, and while the screen is locked "
        "(default {default:g}; 0 never pauses)", "S",
    ),
    "capture_blocked_seconds": Setting(
        Range(float, 0, 86400), DEFAULT_BLOCKED_SECONDS,
        "report the screen capture blocked (and upload nothing) after S seconds of frames "
        "without a picture: one colour, or still while you work (default {default:g}; 0 never)",
        "S",
    ),
}
RANGES: dict[str, Range] = {key: setting.range for key, setting in SETTINGS.items()}


def flag_help(key: str) -> str:
    setting = SETTINGS[key]
    return setting.help.format(default=setting.default)


def _default(key: str) -> Any:
    return SETTINGS[key].default


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    fps: float = _default("fps")
    segment_seconds: float = _default("segment_seconds")
    monitor: int = _default("monitor")
    crf: int | None = _default("crf")  # None: the quality level's
    quality: str = _default("quality")
    idle_seconds: float = _default("idle_seconds")
    spool_limit: int = _default("spool_limit")
    heartbeat_seconds: float = _default("heartbeat_seconds")
    drain_seconds: float = _default("drain_seconds")
    capture_blocked_seconds: float = _default("capture_blocked_seconds")


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
    choices = SETTINGS[key].choices
    if choices:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
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
