"""The `run` settings: defaults < agent.toml < flags; bad files are refused with exit 78."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config
from agent.__main__ import EXIT_CONFIG, main
from agent.config import Settings, SettingsFileError, load_file, resolve, with_policy

GOOD = """\
fps = 2
segment_seconds = 30.5
monitor = 0
crf = 23
idle_seconds = 0
spool_limit = "500M"
heartbeat_seconds = 15
drain_seconds = 5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_every_key_is_read_and_checked(tmp_path: Path) -> None:
    values = load_file(write(tmp_path, GOOD), required=True)
    assert resolve(values, {}) == Settings(
        fps=2.0, segment_seconds=30.5, monitor=0, crf=23, idle_seconds=0.0,
        spool_limit=500 * 1024**2, heartbeat_seconds=15.0, drain_seconds=5.0,
    )
    assert isinstance(resolve(values, {}).fps, float)
    assert load_file(write(tmp_path, "spool_limit = 1048576\n"), required=True) == {
        "spool_limit": 1048576
    }


def test_defaults_then_file_then_flags(tmp_path: Path) -> None:
    assert resolve({}, {}) == Settings()
    values = load_file(write(tmp_path, "fps = 2\ncrf = 30\n"), required=True)
    settings = resolve(values, {"fps": 5.0, "crf": None, "monitor": None})
    assert (settings.fps, settings.crf, settings.monitor) == (5.0, 30, Settings().monitor)


def test_absent_default_file_is_fine_but_a_named_one_must_exist(tmp_path: Path) -> None:
    assert load_file(tmp_path / "agent.toml", required=False) == {}
    with pytest.raises(SettingsFileError, match="no such settings file"):
        load_file(tmp_path / "agent.toml", required=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fsp = 2\n", "unknown key 'fsp'"),
        ("[run]\nfps = 2\n", "unknown key 'run'"),
        ('fps = "fast"\n', "fps: must be a number"),
        ("fps = true\n", "fps: must be a number"),
        ("monitor = 1.5\n", "monitor: must be an integer"),
        ("fps = 0\n", "fps: must be more than 0"),
        ("crf = 52\n", "crf: must be at least 0 and at most 51"),
        ("spool_limit = -1\n", "spool_limit: must be a size"),
        ('spool_limit = "lots"\n', "spool_limit: not a size"),
        ("fps = \n", "not valid TOML"),
    ],
)
def test_bad_files_are_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsFileError, match=message) as caught:
        load_file(path, required=False)
    assert str(path) in str(caught.value)


def test_the_command_exits_78_on_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUCKETREEL_AGENT_HOME", str(tmp_path))
    write(tmp_path, "fps = 2\nwhatever = 1\n")
    assert main(["run"]) == EXIT_CONFIG
    assert "unknown key 'whatever'" in capsys.readouterr().err
    assert main(["run", "--config", str(tmp_path / "missing.toml")]) == EXIT_CONFIG
    assert "no such settings file" in capsys.readouterr().err
    assert not (tmp_path / "spool").exists()  # refused before anything else happened


def test_flags_keep_their_checks() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "--fps", "0"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        main(["run", "--spool-limit", "lots"])


def test_broker_policy_overrides_the_file_but_never_a_flag() -> None:
    settings = Settings(fps=2.0, segment_seconds=60.0, idle_seconds=300.0)
    policy = {"fps": 4, "segment_seconds": 10, "idle_seconds": 0}
    applied = with_policy(settings, policy, {"fps": None, "segment_seconds": 60.0})
    assert (applied.fps, applied.segment_seconds, applied.idle_seconds) == (4.0, 60.0, 0.0)
    # a value the agent would refuse is ignored, not fatal
    assert with_policy(settings, {"fps": -1, "idle_seconds": None}, {}) == settings
    # the quality level: the policy's, unless the agent's own flag names one
    assert with_policy(settings, {"quality": "compact"}, {}).quality == "compact"
    assert with_policy(settings, {"quality": "compact"}, {"quality": "high"}).quality == "standard"
    assert with_policy(settings, {"quality": "ultra"}, {}) == settings
    assert set(config.POLICY_KEYS) <= set(config.RANGES)


def test_each_setting_is_declared_once_and_shown_everywhere() -> None:
    """SETTINGS drives the file's keys, the flags and the defaults; the examples follow."""
    import dataclasses
    import re

    from agent.__main__ import build_parser

    assert set(config.RANGES) == set(config.SETTINGS)
    defaults = {f.name: f.default for f in dataclasses.fields(config.Settings)}
    assert defaults == {key: s.default for key, s in config.SETTINGS.items()}
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    flags = {a.dest: a for a in run._actions}
    for key in config.SETTINGS:
        assert key in flags, f"--{key.replace('_', '-')} is not a flag of run"
        assert flags[key].help == config.flag_help(key)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = config.__doc__ or ""
    for key in config.SETTINGS:
        assert re.search(rf"^\s*{key} = ", documented, re.M), f"{key}: not in config's docstring"
        assert re.search(rf"^\s*{key} = ", readme, re.M), f"{key}: not in the README's example"
