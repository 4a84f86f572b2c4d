"""The README's settings table says what `Settings.from_env` does: every variable the broker
reads is in it, no other, and each whole-number setting shows its real default and range."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from broker.errors import ConfigError
from broker.settings import NUMBERS, OTHER_VARIABLES, PREFIX, Settings, generate_secrets

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| (?P<names>`BUCKETREEL_[^|]+) \| (?P<default>[^|]+) \| (?P<meaning>.+) \|$")


def table() -> dict[str, tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index("| variable | default | meaning |")
    rows: dict[str, tuple[str, str]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        match = ROW.match(line)
        assert match, f"a row of the README's settings table does not parse: {line}"
        for name in re.findall(r"`(BUCKETREEL_\w+)`", match["names"]):
            rows[name] = (match["default"].strip(), match["meaning"])
    return rows


def test_the_table_names_every_variable_the_broker_reads_and_no_other() -> None:
    declared = {PREFIX + n.upper() for n in NUMBERS} | {PREFIX + n for n in OTHER_VARIABLES}
    assert set(table()) == declared


@pytest.mark.parametrize("name", sorted(NUMBERS))
def test_each_number_shows_its_default_and_range(name: str) -> None:
    spec = NUMBERS[name]
    default, meaning = table()[PREFIX + name.upper()]
    assert default == str(spec.default)
    shown = re.search(r"(\d+)–(\d+)", meaning)
    assert shown, f"{PREFIX}{name.upper()}: the README gives no range"
    assert (int(shown[1]), int(shown[2])) == (spec.lo, spec.hi)
    assert {f.name: f.default for f in fields(Settings)}[name] == spec.default


@pytest.mark.parametrize("name", sorted(NUMBERS))
def test_from_env_holds_each_number_to_its_range(name: str) -> None:
    spec = NUMBERS[name]
    env = {**generate_secrets(), PREFIX + "BROWSER_IDLE_TIMEOUT": "86400"}
    if name == "browser_idle_timeout":
        env.pop(PREFIX + "BROWSER_IDLE_TIMEOUT")
    assert getattr(Settings.from_env(env), name) == spec.default
    assert getattr(Settings.from_env({**env, PREFIX + name.upper(): str(spec.hi)}), name) == (
        spec.hi
    )
    for wrong in (spec.lo - 1, spec.hi + 1):
        with pytest.raises(ConfigError, match=f"{PREFIX}{name.upper()} must be between"):
            Settings.from_env({**env, PREFIX + name.upper(): str(wrong)})


@pytest.mark.parametrize("bad", [
    "arn:aws:iam::BROKER_ACCOUNT_ID:root", "arn:aws:iam::12345:role/x", "bucketreel-broker",
    "arn:aws:iam::123456789012:role/x y",
])
def test_the_brokers_own_arn_must_be_a_real_one(bad: str) -> None:
    env = generate_secrets()
    assert Settings.from_env({**env, f"{PREFIX}BROKER_ARN": "arn:aws:iam::123456789012:root"}
                             ).broker_arn == "arn:aws:iam::123456789012:root"
    with pytest.raises(ConfigError, match="BUCKETREEL_BROKER_ARN must be an IAM user, role"):
        Settings.from_env({**env, f"{PREFIX}BROKER_ARN": bad})
