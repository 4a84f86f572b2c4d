"""A test whose server cannot start fails (never skips) and says what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_missing_xvfb_fails_with_the_install_hint(tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {**os.environ, "PATH": str(empty_bin)}  # no Xvfb on PATH
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
         "tests/test_support_display.py::test_animated_display_changes"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Xvfb not found: run scripts/install.sh" in result.stdout
    assert "1 error" in result.stdout
    assert "skipped" not in result.stdout
