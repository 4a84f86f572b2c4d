"""The throwaway PostgreSQL server: SQL works, roles are real, everything goes at the end."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg  # type: ignore[import-untyped,unused-ignore]

from tests.support.postgres import PostgresServer, find_bin_dir, run_postgres
from tests.support.procs import pid_alive


async def fetch(dsn: str, sql: str) -> object:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_uses_debian_binaries() -> None:
    assert str(find_bin_dir()).startswith("/usr/lib/postgresql/")


def test_select_one(postgres_server: PostgresServer) -> None:
    assert postgres_server.database_url == (
        f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_server.port}/bucketreel"
    )
    assert asyncio.run(fetch(postgres_server.dsn(), "SELECT 1")) == 1


def test_database_owned_by_a_plain_role(postgres_server: PostgresServer) -> None:
    postgres_server.create_role("support_test_role")
    url = postgres_server.create_database("support_test_db", owner="support_test_role")
    assert url.endswith(f"@127.0.0.1:{postgres_server.port}/support_test_db")
    dsn = postgres_server.dsn("support_test_db", "support_test_role")
    is_super = asyncio.run(fetch(dsn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
    assert is_super is False


def test_database_url_param(database_url: str) -> None:
    assert database_url.startswith(("sqlite+aiosqlite:///", "postgresql+asyncpg://"))


def test_server_and_its_children_are_gone_after_stop() -> None:
    with run_postgres() as server:
        pid = server.pid
        assert pid_alive(pid)
        if os.geteuid() == 0:
            assert Path(f"/proc/{pid}").stat().st_uid != 0  # runs as postgres, same PID
        assert Path(f"/proc/{pid}/exe").resolve().name == "postgres"
        children = children_of(pid)
        assert children, "postmaster has no background processes?"
        base = server.data_dir.parent
        assert asyncio.run(fetch(server.dsn(), "SELECT 1")) == 1
    assert not pid_alive(pid)
    assert not any(pid_alive(child) for child in children)
    assert not base.exists()
