"""Draining on SIGTERM, and readiness (`/healthz`) versus liveness (`/livez`).

A request is held in flight by a PostgreSQL lock the test takes on the `devices` table (the
device guard reads it), and is seen waiting for it in `pg_locks`: no sleep decides anything.
PostgreSQL only for that reason; the draining itself does not depend on the database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import _start
from tests.support.api import Api, Device, Reply, enroll, make_tenant, now_iso
from tests.support.broker import (
    BrokerCommandError,
    BrokerProcess,
    base_env,
    parse_env_file,
    run_cli,
)
from tests.support.postgres import SUPERUSER, PostgresServer
from tests.support.procs import pid_alive
from tests.support.replicas import until
from tests.support.s3 import S3Endpoint

DEADLINE = 20.0


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


@contextmanager
def devices_locked(server: PostgresServer, database: str) -> Iterator[Callable[[], None]]:
    """`LOCK TABLE devices` in an open transaction of psql's; yields `release` (COMMIT)."""
    psql = subprocess.Popen(
        [str(server.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", server.host,
         "-p", str(server.port), "-U", SUPERUSER, "-d", database],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"},
    )
    assert psql.stdin is not None
    psql.stdin.write("BEGIN;\nLOCK TABLE devices IN ACCESS EXCLUSIVE MODE;\n")
    psql.stdin.flush()

    def release() -> None:
        if psql.stdin is not None and not psql.stdin.closed:
            psql.stdin.write("COMMIT;\n")
            psql.stdin.close()
        psql.wait(30)

    try:
        until("the test's lock on devices", lambda: locks(server, database, granted=True) > 0)
        yield release
    finally:
        if psql.poll() is None:
            release()


def locks(server: PostgresServer, database: str, *, granted: bool) -> int:
    counts = server.psql(
        "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted)"
        " FROM pg_locks WHERE relation = 'devices'::regclass", database=database,
    )
    held, waiting = (int(n) for n in counts.strip().split("|"))
    return held if granted else waiting


class InFlight:
    """A device's request (start a recording) on a thread of its own."""

    def __init__(self, api: Api, token: str) -> None:
        self.reply: Reply | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(api, token), daemon=True)
        self._thread.start()

    def _run(self, api: Api, token: str) -> None:
        try:
            self.reply = api.call("POST", "/api/v1/recordings", {"started_at": now_iso()},
                                  token=token)
        except Exception as err:  # the test asserts on it
            self.error = err

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive(), "the request did not end"


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def exited(broker: BrokerProcess) -> bool:
    return not pid_alive(broker.pid)


@dataclass(frozen=True)
class Rig:
    """A broker of its own on a database of its own, with an enrolled device."""

    broker: BrokerProcess
    api: Api
    device: Device
    server: PostgresServer
    database: str

    @contextmanager
    def request_in_flight(self) -> Iterator[tuple[InFlight, Callable[[], None]]]:
        """A device request held by the test's lock on `devices`, seen waiting for it;
        yields it and the lock's `release`."""
        with devices_locked(self.server, self.database) as release:
            request = InFlight(self.api, self.device.access_token)
            until("the request waiting in the database",
                  lambda: locks(self.server, self.database, granted=False) > 0)
            yield request, release


@pytest.fixture
def rig(
    shared_database: str, postgres_server: PostgresServer, s3_endpoint: S3Endpoint,
    session_tmp: Path, request: pytest.FixtureRequest,
) -> Iterator[Rig]:
    env: dict[str, str] = request.param
    with ExitStack() as stack:
        broker = _start("the broker", stack, BrokerProcess(
            shared_database, extra_env=env, log_dir=session_tmp / "logs"
        ))
        api = Api(broker.url)
        device = enroll(api, broker, make_tenant(broker, s3_endpoint))
        yield Rig(broker, api, device, postgres_server, database_name(shared_database))


@pytest.mark.parametrize(
    "rig", [{"BUCKETREEL_DRAIN_SECONDS": "300", "BUCKETREEL_SHUTDOWN_TIMEOUT": "60"}],
    indirect=True,
)
def test_sigterm_turns_readiness_off_first_then_finishes_the_request_in_flight(
    rig: Rig,
) -> None:
    broker, api = rig.broker, rig.api
    assert api.call("GET", "/healthz").status == 200
    with rig.request_in_flight() as (request, release):
        os.kill(broker.pid, signal.SIGTERM)
        # readiness goes first: the balancer takes the replica out, it still serves
        until("/healthz saying 503", lambda: api.call("GET", "/healthz").status == 503)
        health = api.call("GET", "/healthz")
        assert health.body["error"] == "service_unavailable", health.body
        assert "draining" in health.body["message"]
        assert health.headers["Retry-After"] == "1"
        assert api.call("GET", "/livez").status == 200  # draining is not dead
        assert request.running()

        os.kill(broker.pid, signal.SIGTERM)  # a second signal ends the drain period early
        until("the port closed", lambda: refused(broker.port))
        assert request.running()  # the listener closed; the request in flight goes on
        assert not exited(broker)
        release()
        request.join()
    assert request.error is None, request.error
    assert request.reply is not None
    assert request.reply.status == 201, request.reply.body  # it completed, then the exit
    until("the broker's exit", lambda: exited(broker))
    assert broker.stop() == 0


@pytest.mark.parametrize(
    "rig", [{"BUCKETREEL_DRAIN_SECONDS": "0", "BUCKETREEL_SHUTDOWN_TIMEOUT": "1"}],
    indirect=True,
)
def test_a_request_stuck_past_the_bound_does_not_hold_the_exit(rig: Rig) -> None:
    count = "SELECT count(*) FROM recordings"
    before = rig.server.psql(count, database=rig.database)
    with rig.request_in_flight() as (request, _release):
        os.kill(rig.broker.pid, signal.SIGTERM)
        until("the broker's exit, the lock still held", lambda: exited(rig.broker))
        request.join()
    assert rig.broker.stop() == 0
    # the request was cut off: it got no success, and its transaction was rolled back
    assert request.reply is None or request.reply.status >= 500, request.reply
    assert rig.server.psql(count, database=rig.database) == before


def test_readiness_needs_the_database_not_behind_the_code(
    shared_database: str, postgres_server: PostgresServer, session_tmp: Path
) -> None:
    """A replica whose database is behind its code (restored from an old backup, never
    migrated) is not ready; one whose database a newer release migrated already (a rolling
    upgrade) stays ready; liveness cares about neither."""
    with ExitStack() as stack:
        broker = _start("the broker", stack, BrokerProcess(
            shared_database, log_dir=session_tmp / "logs"
        ))
        api = Api(broker.url)
        database = database_name(shared_database)
        postgres_server.psql("CREATE TABLE kept AS SELECT version_num FROM alembic_version",
                             database=database)

        moves = {
            "0001": "UPDATE alembic_version SET version_num = '0001'",
            "later": "UPDATE alembic_version SET version_num = '9999_a_later_release'",
            "head": "UPDATE alembic_version SET version_num = (SELECT version_num FROM kept)",
        }

        def at(revision: str) -> None:
            postgres_server.psql(moves[revision], database=database)

        try:
            at("0001")
            reply = api.call("GET", "/healthz")
            assert reply.status == 503, reply.body
            assert "is at migration 0001" in reply.body["message"]
            assert "bucketreel-broker migrate" in reply.body["message"]
            assert api.call("GET", "/livez").status == 200
            at("later")
            assert api.call("GET", "/healthz").status == 200
        finally:
            at("head")
        assert api.call("GET", "/healthz").status == 200


def test_a_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    env = base_env()
    env.update(parse_env_file(run_cli(["gen-secrets"], env)))
    env["BUCKETREEL_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BrokerCommandError) as failed:
            run_cli(["serve", "--port", str(port)], env, timeout=60)
    message = str(failed.value)
    assert "exited with code 1" in message
    assert f"bucketreel-broker: error: cannot listen on 127.0.0.1:{port}: " in message
    assert "address already in use" in message
    assert "Traceback" not in message
