""".github/workflows/agent.yml, read as data: the runners, the steps, and that the tests it
picks exist and need none of the suite's servers (it runs them with `--noconftest`).

Parsing is all that can be checked here: the workflow itself runs on GitHub's hosted
runners, never in this project's CI.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "agent.yml"
CONFTESTS = (ROOT / "tests" / "conftest.py", ROOT / "tests" / "agent" / "conftest.py")


def workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def job() -> dict[str, Any]:
    jobs = workflow()["jobs"]
    assert len(jobs) == 1
    found: dict[str, Any] = next(iter(jobs.values()))
    return found


def run_lines() -> str:
    return "\n".join(step.get("run", "") for step in job()["steps"])


def selected_tests() -> list[str]:
    env = job()["env"]
    return shlex.split(env["PORTABLE_TESTS"]) + shlex.split(env["POSIX_TESTS"])


def test_it_runs_on_the_three_hosted_oses_and_two_pythons() -> None:
    data = workflow()
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request", "workflow_dispatch"} <= set(triggers)
    matrix = job()["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "windows-latest", "macos-latest"}
    assert set(matrix["python"]) == {"3.11", "3.12"}
    assert job()["strategy"]["fail-fast"] is False


def test_it_builds_checks_the_version_tests_and_captures() -> None:
    lines = run_lines()

    assert "python build/build_agent.py" in lines
    assert '"$bin" --version' in lines
    assert "python -m pytest -p no:cacheprovider --noconftest $tests" in lines
    assert "xvfb-run -a" in lines
    assert "python build/smoke_binary.py" in lines
    assert (ROOT / "build" / "smoke_binary.py").is_file()


def is_fixture(node: ast.FunctionDef) -> bool:
    return any("fixture" in ast.unparse(d) for d in node.decorator_list)


def conftest_fixtures() -> set[str]:
    names: set[str] = set()
    for path in CONFTESTS:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and is_fixture(node):
                names.add(node.name)
    return names


@pytest.mark.parametrize("path", selected_tests())
def test_each_selected_test_file_needs_no_conftest(path: str) -> None:
    file = ROOT / path
    assert file.is_file(), f"{path} is in the workflow but not in the tree"
    tree = ast.parse(file.read_text())
    fixtures = conftest_fixtures()

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            assert not node.module.startswith(("tests.support", "tests.conftest", "broker")), (
                f"{path} imports {node.module}"
            )
        if isinstance(node, ast.Attribute) and node.attr == "display":
            assert ast.unparse(node) != "pytest.mark.display", f"{path} needs the Xvfb display"
        if isinstance(node, ast.FunctionDef) and (
            node.name.startswith("test_") or is_fixture(node)
        ):
            used = {arg.arg for arg in node.args.args} & fixtures
            assert not used, f"{path}::{node.name} uses conftest fixtures {used}"
