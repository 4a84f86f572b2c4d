"""The broker as a real subprocess, driven through its own CLI (`bucketreel-broker`).

Contract used here:
  bucketreel-broker gen-secrets            -> KEY=value lines (every secret the broker needs)
  bucketreel-broker migrate                -> applies migrations
  bucketreel-broker serve --host H --port P; GET /healthz -> 200 {"status": "ok"}
  bucketreel-broker admin ...              -> one JSON object on stdout
Settings come from the environment: BUCKETREEL_DATABASE_URL plus the generated secrets.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .procs import (
    INSTALL_HINT,
    ManagedProcess,
    MissingDependencyError,
    Probe,
    ProcessStartError,
    free_port,
)

SCRIPT_NAME = "bucketreel-broker"
DATABASE_URL_VAR = "BUCKETREEL_DATABASE_URL"
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BrokerCommandError(RuntimeError):
    """A `bucketreel-broker` command failed; the message carries its exit code and stderr."""


def broker_script() -> Path:
    """The console script installed next to this interpreter (in the venv's bin)."""
    path = Path(sys.executable).parent / SCRIPT_NAME
    if not path.is_file():
        raise MissingDependencyError(
            f"{path} not found (bucketreel is not installed in this environment): {INSTALL_HINT}"
        )
    return path


def parse_env_file(text: str) -> dict[str, str]:
    """Parse `KEY=value` lines (blank lines, `# comments` and an `export ` prefix allowed)."""
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _ENV_KEY.match(key):
            raise ValueError(f"line {number} is not KEY=value: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        result[key] = value
    return result


ALLOWED_ENDPOINT_HOSTS_VAR = "BUCKETREEL_ALLOWED_ENDPOINT_HOSTS"


def base_env() -> dict[str, str]:
    """This process's environment without BUCKETREEL_* and AWS_* settings left from outside."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("BUCKETREEL_", "AWS_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # never probe a cloud metadata service
    return env


def run_cli(
    args: list[str], env: Mapping[str, str], *, stdin: str | None = None, timeout: float = 120.0
) -> str:
    """Run `bucketreel-broker ARGS`; return stdout, or raise BrokerCommandError with stderr."""
    argv = [str(broker_script()), *args]
    try:
        result = subprocess.run(
            argv,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            env=dict(env),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        message = f"{SCRIPT_NAME} {' '.join(args)} timed out after {timeout}s"
        raise BrokerCommandError(message) from err
    if result.returncode != 0:
        raise BrokerCommandError(
            f"{SCRIPT_NAME} {' '.join(args)} exited with code {result.returncode}\n"
            f"--- stderr ---\n{result.stderr.strip()}\n--- stdout ---\n{result.stdout.strip()}"
        )
    return result.stdout


def healthz_probe(url: str) -> Probe:
    """Ready when GET {url}/healthz answers 200 with {"status": "ok"}."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310
                body = json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            err.close()
            return False
        return response.status == 200 and isinstance(body, dict) and body.get("status") == "ok"

    return probe


class BrokerProcess:
    """`bucketreel-broker serve` on a free loopback port, after gen-secrets and migrate.

    >>> with BrokerProcess("sqlite+aiosqlite:////tmp/x/broker.db") as broker:
    ...     tenant = broker.admin("create-tenant", "acme")["tenant_id"]
    """

    def __init__(
        self,
        database_url: str,
        *,
        extra_env: Mapping[str, str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 60.0,
    ) -> None:
        """`port`: 0 picks a free one at each start; a replica behind a load balancer keeps
        the port the balancer knows, across restarts."""
        self.database_url = database_url
        self.fixed_port = port
        self.extra_env = dict(extra_env or {})
        self.log_dir = log_dir
        self.host = host
        self.timeout = timeout
        self.env: dict[str, str] = {}
        self.port = 0
        self.secrets: dict[str, str] = {}
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:43121 (no trailing slash)."""
        if self._process is None:
            raise RuntimeError("the broker is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the broker is not running")
        return self._process.pid

    def start(self) -> Self:
        env = base_env()
        self.secrets = parse_env_file(run_cli(["gen-secrets"], env))
        if not self.secrets:
            raise BrokerCommandError(f"{SCRIPT_NAME} gen-secrets printed no KEY=value lines")
        env.update(self.secrets)
        env[DATABASE_URL_VAR] = self.database_url
        # The suite's moto runs on plain http on the loopback, which the broker refuses for
        # tenants' endpoints unless allowed; tests of that refusal set this to "".
        env[ALLOWED_ENDPOINT_HOSTS_VAR] = "127.0.0.1"
        env.update(self.extra_env)
        self.env = env
        run_cli(["migrate"], env, timeout=300)
        attempts = 1 if self.fixed_port else 3
        for attempt in range(attempts):  # a free port could be taken before bind()
            port = self.fixed_port or free_port(self.host)
            process = ManagedProcess(
                "broker",
                [str(broker_script()), "serve", "--host", self.host, "--port", str(port)],
                env=env, log_dir=self.log_dir, stop_timeout=15.0,
            ).start()
            try:
                process.wait_ready(healthz_probe(f"http://{self.host}:{port}"),
                                   timeout=self.timeout)
            except ProcessStartError as err:
                if attempt == attempts - 1 or "address already in use" not in str(err).lower():
                    raise
                continue
            self._process, self.port = process, port
            return self
        raise AssertionError("unreachable")

    def stop(self) -> int | None:
        process, self._process = self._process, None
        return process.stop() if process is not None else None

    def kill(self) -> int | None:
        """SIGKILL, by its PID (no draining, as when a machine dies); returns its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        os.kill(process.pid, signal.SIGKILL)
        return process.stop()

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 120.0) -> str:
        """Any `bucketreel-broker` command with the broker's env; returns its stdout."""
        return run_cli(list(args), self.env, stdin=stdin, timeout=timeout)

    def admin(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        """`bucketreel-broker admin ARGS` with the broker's env; returns its JSON object."""
        out = self.cli("admin", *args, stdin=stdin)
        try:
            value = json.loads(out)
        except json.JSONDecodeError as err:
            raise BrokerCommandError(
                f"{SCRIPT_NAME} admin {' '.join(args)} did not print JSON: {out!r}"
            ) from err
        if not isinstance(value, dict):
            raise BrokerCommandError(
                f"{SCRIPT_NAME} admin {' '.join(args)} printed {out!r}, not a JSON object"
            )
        return value

    @property
    def log_path(self) -> Path:
        """The file the broker's output goes to (its JSON log lines)."""
        if self._process is None:
            raise RuntimeError("the broker is not running")
        return self._process.log_path

    def log_text(self) -> str:
        """Everything the broker process logged so far."""
        return self._process.log_text() if self._process is not None else ""

    def log_tail(self, lines: int = 60) -> str:
        return self._process.log_tail(lines) if self._process is not None else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
