"""Session-scoped real servers for the whole suite (see tests/support/).

Fixtures:
  s3_endpoint      S3Endpoint: moto's S3 API on a free loopback port (.client(), .create_bucket())
  postgres_server  PostgresServer: a throwaway cluster, started only when a test asks for it
  xvfb             XDisplay: Xvfb 1280x720x24 with an animator keeping the picture changing
  xdisplay         str: that display's DISPLAY string, e.g. ":3"
  still_xvfb       XDisplay: another Xvfb whose picture never changes (no animator)
  database_url     str: SQLAlchemy async URL, parametrized "sqlite" / "postgresql"
  broker           BrokerProcess: migrated and serving, once per database_url param
Tests marked `@pytest.mark.display` get DISPLAY set to the suite's animated display.

A server that cannot start makes the test fail (never skip) with what is missing.
Servers are stopped by their own PID and every temp dir (tmp_path's too) is removed at the end.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support import contract, s3_operations
from tests.support.api import Api, Tenant, make_tenant
from tests.support.broker import BrokerCommandError, BrokerProcess
from tests.support.display import XDisplay, run_xvfb
from tests.support.postgres import PostgresServer, run_postgres
from tests.support.procs import MissingDependencyError, ProcessStartError
from tests.support.s3 import S3Endpoint, run_moto

T = TypeVar("T")

DISPLAY_SIZE = (1280, 720)
BROKER_DB_ROLE = "bucketreel_app"
# Variables from the caller's environment that could leak a real service into the suite.
_OUTSIDE_ENV = ("DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY")
_OUTSIDE_ENV_PREFIXES = ("BUCKETREEL_", "AWS_", "PG")


_OWN_BASETEMP = "_bucketreel_basetemp"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Put tmp_path dirs in a fresh dir of this run, removed at the end (unless --basetemp)."""
    if config.option.basetemp is None:
        path = tempfile.mkdtemp(prefix="bucketreel-pytest-")
        config.option.basetemp = path
        setattr(config, _OWN_BASETEMP, path)


def pytest_unconfigure(config: pytest.Config) -> None:
    path = getattr(config, _OWN_BASETEMP, None)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def _start(what: str, stack: ExitStack, manager: AbstractContextManager[T]) -> T:
    """Enter `manager`; if it cannot start, fail (not skip) with what is missing."""
    try:
        return stack.enter_context(manager)
    except (MissingDependencyError, ProcessStartError, BrokerCommandError) as err:
        message = f"{what} could not start: {err}"
    pytest.fail(message, pytrace=False)  # outside `except`: no chained traceback noise


def sqlite_broker(
    stack: ExitStack, session_tmp: Path, name: str, what: str, extra_env: dict[str, str]
) -> BrokerProcess:
    """One more broker process, on a SQLite database of its own (`name`), with `extra_env`
    settings; stopped when `stack` closes."""
    database = session_tmp / name
    database.mkdir()
    return _start(
        what, stack,
        BrokerProcess(
            f"sqlite+aiosqlite:///{database / 'broker.db'}",
            extra_env=extra_env, log_dir=session_tmp / "logs",
        ),
    )


@pytest.fixture(scope="session", autouse=True)
def _hermetic_environment() -> Iterator[None]:
    """Nothing from the caller's environment (a display, AWS or PG settings) reaches tests."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name in _OUTSIDE_ENV or name.startswith(_OUTSIDE_ENV_PREFIXES):
                patch.delenv(name)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="session")
def session_tmp() -> Iterator[Path]:
    """A temp dir for the whole session (server logs, SQLite files); removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="bucketreel-tests-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _broker_s3_operations(session_tmp: Path) -> Iterator[None]:
    """DESIGN G2/G3 over the whole run: nothing the broker did or signed in S3 lists or
    deletes, outside the self-check's probes (see tests/support/s3_operations.py)."""
    recorder = s3_operations.Recorder()
    logger = logging.getLogger("broker.storage.s3")
    level = logger.level
    logger.addHandler(recorder)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)
    seen = recorder.operations + s3_operations.from_broker_logs(session_tmp)
    broker_ran = any(session_tmp.rglob("broker-*.log"))
    if broker_ran and not seen:
        pytest.fail("brokers ran but logged no S3 operation: the operation log is broken")
    bad = s3_operations.violations(seen)
    if bad:
        pytest.fail(f"the broker performed or signed S3 operations it must not: {bad}")


@pytest.fixture(scope="session", autouse=True)
def _replies_hold_to_the_contract() -> Iterator[None]:
    """Every reply a broker gave the suite's API clients matches the schema its route declares
    in the OpenAPI document (status and body; see tests/support/contract.py)."""
    yield
    from broker.web.openapi import document
    from broker.web.routes import ROUTES

    exchanges = contract.RECORDER.exchanges
    bad = contract.violations(document(ROUTES), exchanges)
    if bad:
        listed = "\n".join(bad[:30])
        pytest.fail(
            f"{len(bad)} kinds of reply break their declared schema "
            f"(of {len(exchanges)} replies):\n{listed}", pytrace=False,
        )


@pytest.fixture(scope="session")
def s3_endpoint(session_tmp: Path) -> Iterator[S3Endpoint]:
    with ExitStack() as stack:
        yield _start("the S3 endpoint (moto server)", stack, run_moto(log_dir=session_tmp / "logs"))


@pytest.fixture(scope="session")
def postgres_server(session_tmp: Path) -> Iterator[PostgresServer]:
    with ExitStack() as stack:
        server = _start("PostgreSQL", stack, run_postgres(log_dir=session_tmp / "logs"))
        server.create_role(BROKER_DB_ROLE)
        yield server


@pytest.fixture(scope="session")
def xvfb(session_tmp: Path) -> Iterator[XDisplay]:
    width, height = DISPLAY_SIZE
    with ExitStack() as stack:
        yield _start("Xvfb", stack, run_xvfb(width, height, log_dir=session_tmp / "logs"))


@pytest.fixture(scope="session")
def xdisplay(xvfb: XDisplay) -> str:
    return xvfb.display


@pytest.fixture(scope="session")
def still_xvfb(session_tmp: Path) -> Iterator[XDisplay]:
    width, height = DISPLAY_SIZE
    with ExitStack() as stack:
        yield _start(
            "Xvfb (still)", stack,
            run_xvfb(width, height, animate=False, log_dir=session_tmp / "logs"),
        )


@pytest.fixture(autouse=True)
def _display_marker(request: pytest.FixtureRequest) -> None:
    """`@pytest.mark.display` tests run with DISPLAY set to the suite's animated display."""
    if request.node.get_closest_marker("display") is None:
        return
    display: str = request.getfixturevalue("xdisplay")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("DISPLAY", display)


@pytest.fixture(scope="module")
def api(broker: BrokerProcess) -> Api:
    """A client of the broker this test runs against (module-wide)."""
    return Api(broker.url)


@pytest.fixture(scope="module")
def tenant(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> Tenant:
    """A tenant with a bucket on the suite's S3 endpoint (module-wide)."""
    return make_tenant(broker, s3_endpoint)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, session_tmp: Path) -> str:
    """A fresh, empty database per param.

    postgresql: a new database owned by a non-superuser login role, so row-level security
    applies to the broker's connection as it would in production.
    """
    if request.param == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="sqlite-", dir=session_tmp))
        return f"sqlite+aiosqlite:///{directory / 'broker.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"broker_{secrets.token_hex(4)}", owner=BROKER_DB_ROLE)


@pytest.fixture(scope="session")
def broker(database_url: str, session_tmp: Path) -> Iterator[BrokerProcess]:
    with ExitStack() as stack:
        yield _start(
            "the broker", stack, BrokerProcess(database_url, log_dir=session_tmp / "logs")
        )
