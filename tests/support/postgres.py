"""A throwaway PostgreSQL server from Debian's packages, in a temp dir, on a free port.

PostgreSQL refuses to run as root: when the tests run as root, the data dir is given to the
`postgres` system user and the server runs through `setpriv`, which execs, so the PID held is
the postmaster's own. It is stopped with SIGINT (fast shutdown) and its dir removed.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .procs import (
    INSTALL_HINT,
    ManagedProcess,
    MissingDependencyError,
    Probe,
    ProcessStartError,
    free_port,
    require_executable,
)

PG_ROOT = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
DEFAULT_DATABASE = "bucketreel"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def find_bin_dir() -> Path:
    """Debian's newest /usr/lib/postgresql/<version>/bin that has initdb and postgres."""
    found: list[tuple[tuple[int, ...], Path]] = []
    for bin_dir in PG_ROOT.glob("*/bin"):
        version = bin_dir.parent.name
        if not re.fullmatch(r"\d+(\.\d+)*", version):
            continue
        if all((bin_dir / tool).is_file() for tool in ("initdb", "postgres", "pg_isready")):
            found.append((tuple(int(part) for part in version.split(".")), bin_dir))
    if not found:
        raise MissingDependencyError(
            f"PostgreSQL server binaries (initdb, postgres) not found in {PG_ROOT}/*/bin: "
            f"{INSTALL_HINT}"
        )
    return max(found)[1]


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    bin_dir: Path
    data_dir: Path
    pid: int

    def url(self, database: str = DEFAULT_DATABASE, user: str = SUPERUSER) -> str:
        """SQLAlchemy async URL (asyncpg) for `database` as `user` (trust auth, no password)."""
        return f"postgresql+asyncpg://{user}@{self.host}:{self.port}/{database}"

    @property
    def database_url(self) -> str:
        """`postgresql+asyncpg://postgres@127.0.0.1:PORT/bucketreel`."""
        return self.url()

    def dsn(self, database: str = DEFAULT_DATABASE, user: str = SUPERUSER) -> str:
        """libpq/asyncpg DSN (`postgresql://...`) for `database` as `user`."""
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser; returns psql's unaligned, tuples-only output."""
        return self._client(
            "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql
        )

    def create_role(self, name: str, *, superuser: bool = False) -> str:
        """A login role (no password: trust auth). Non-superusers are subject to RLS."""
        kind = "SUPERUSER" if superuser else "NOSUPERUSER NOBYPASSRLS"
        self.psql(f"CREATE ROLE {_check_identifier(name)} LOGIN {kind}")
        return name

    def create_database(self, name: str, *, owner: str = SUPERUSER) -> str:
        """Create database `name` owned by `owner`; returns its URL as that owner."""
        self._client(
            "createdb", "-O", _check_identifier(owner), "--encoding=UTF8",
            _check_identifier(name),
        )
        return self.url(name, owner)

    def _client(self, tool: str, *args: str) -> str:
        argv = [str(self.bin_dir / tool), "-h", self.host, "-p", str(self.port), "-U", SUPERUSER]
        result = subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=60, env=_clean_env(),
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _as_system_user(argv: list[str]) -> list[str]:
    """Prefix `argv` so it runs as `postgres` when we are root (setpriv execs: same PID)."""
    if os.geteuid() != 0:
        return argv
    setpriv = require_executable("setpriv", "setpriv (util-linux) not found: " + INSTALL_HINT)
    return [setpriv, "--reuid=" + SYSTEM_USER, "--regid=" + SYSTEM_USER, "--init-groups", "--",
            *argv]


def _prepare_dir(base: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise MissingDependencyError(
            "the 'postgres' system user is missing (Debian's postgresql package creates it): "
            + INSTALL_HINT
        ) from None
    os.chown(base, entry.pw_uid, entry.pw_gid)


@contextmanager
def run_postgres(
    *,
    log_dir: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
    settings: Mapping[str, str] | None = None,
) -> Iterator[PostgresServer]:
    """Run a fresh PostgreSQL cluster with database `bucketreel` until the block ends.
    `settings` adds server settings (`-c NAME=VALUE`), e.g. the benchmark's
    `shared_preload_libraries=pg_stat_statements`."""
    extra = [arg for name, value in (settings or {}).items() for arg in ("-c", f"{name}={value}")]
    bin_dir = find_bin_dir()
    base = Path(tempfile.mkdtemp(prefix="bucketreel-pg-"))
    try:
        _prepare_dir(base)
        data_dir = base / "data"
        initdb = subprocess.run(
            _as_system_user([
                str(bin_dir / "initdb"), "-D", str(data_dir), "--auth=trust", "-U", SUPERUSER,
                "--encoding=UTF8", "--no-locale", "--no-sync",
            ]),
            capture_output=True, text=True, timeout=180, env=_clean_env(), cwd=base, check=False,
        )
        if initdb.returncode != 0:
            raise ProcessStartError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        for attempt in range(3):  # the port could be taken between free_port() and bind()
            port = free_port()
            proc = ManagedProcess(
                "postgres",
                _as_system_user([
                    str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port),
                    "-k", str(base),
                    "-c", "listen_addresses=127.0.0.1",
                    "-c", "fsync=off",
                    "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off",
                    "-c", "max_connections=200",
                    *extra,
                ]),
                env=_clean_env(), cwd=base, log_dir=log_dir,
                stop_signal=signal.SIGINT, stop_timeout=30.0,
            )
            with proc:
                try:
                    proc.wait_ready(_ready_probe(bin_dir, port), timeout=timeout)
                except ProcessStartError as err:
                    if attempt == 2 or "could not bind" not in str(err):
                        raise
                    continue
                server = PostgresServer("127.0.0.1", port, bin_dir, data_dir, proc.pid)
                server.create_database(DEFAULT_DATABASE)
                yield server
                return
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _ready_probe(bin_dir: Path, port: int) -> Probe:
    def probe() -> bool:
        result = subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "2",
             "-U", SUPERUSER, "-d", "postgres"],
            env=_clean_env(), timeout=10, check=False,
        )
        return result.returncode == 0

    return probe

