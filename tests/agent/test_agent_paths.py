"""Where the agent keeps its files (pure path arithmetic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import paths
from agent.errors import ConfigError


def test_home_env_wins() -> None:
    env = {"BUCKETREEL_AGENT_HOME": "/srv/agent", "XDG_CONFIG_HOME": "/x"}
    assert paths.config_dir(env) == Path("/srv/agent")
    assert paths.credential_path(env) == Path("/srv/agent/device.json")
    assert paths.spool_dir(env) == Path("/srv/agent/spool")


def test_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert paths.config_dir({"XDG_CONFIG_HOME": "/x"}) == Path("/x/bucketreel")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.config_dir({}) == tmp_path / ".config" / "bucketreel"
    # a relative XDG_CONFIG_HOME is ignored, as the XDG spec says
    assert paths.config_dir({"XDG_CONFIG_HOME": "rel"}) == tmp_path / ".config" / "bucketreel"


def test_spool_env() -> None:
    env = {"BUCKETREEL_AGENT_HOME": "/srv/agent", "BUCKETREEL_AGENT_SPOOL": "/run/spool"}
    assert paths.spool_dir(env) == Path("/run/spool")


@pytest.mark.parametrize("name", ["BUCKETREEL_AGENT_HOME", "BUCKETREEL_AGENT_SPOOL"])
def test_relative_overrides_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        paths.spool_dir({"BUCKETREEL_AGENT_HOME": "/a", name: "relative/dir"})


def test_each_os_has_its_own_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agent.platform import dirs

    monkeypatch.setenv("HOME", str(tmp_path))
    assert dirs.default_home({}, "darwin") == (
        tmp_path / "Library" / "Application Support" / "bucketreel"
    )
    # the Linux place is unchanged, so existing installations keep their files
    assert dirs.default_home({}, "linux") == tmp_path / ".config" / "bucketreel"
    assert dirs.default_home({"XDG_CONFIG_HOME": "/x"}, "linux") == Path("/x/bucketreel")
    assert dirs.default_home({"XDG_CONFIG_HOME": "/x"}, "freebsd14") == Path("/x/bucketreel")


def test_windows_uses_local_app_data() -> None:
    from platformdirs.windows import Windows

    from agent.platform import dirs

    # platformdirs asks Windows for the known folder; here only its choice can be checked:
    # local (not roaming) application data, no author level
    chosen = Windows(dirs.APP, appauthor=False, roaming=False)
    assert (chosen.appname, chosen.appauthor, chosen.roaming) == ("bucketreel", False, False)
    with pytest.raises(dirs.NoHomeDirectory):
        dirs.default_home({}, "win32")  # no known-folder API off Windows: a clear error
