"""HAProxy (Debian's `haproxy` package) in front of broker replicas, on a free loopback port.

The configuration is `config()`: README's "Deployment: replicas behind a load balancer" shows
it (tests/e2e/test_replicas.py checks the README's copy is this one). The balancer's health
check is the broker's readiness probe, `GET /healthz`; a connection a replica refuses (it was
killed, or it is draining) is retried on another replica; a request a replica received is
never replayed. The admin socket (`show servers state`) tells the test what the balancer
thinks of each replica. HAProxy runs in the foreground (`-db`) and is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .procs import (
    INSTALL_HINT,
    ManagedProcess,
    Probe,
    ProcessStartError,
    free_port,
    require_executable,
    tcp_probe,
)

HAPROXY_HINT = "haproxy not found (Debian's `haproxy` package): " + INSTALL_HINT


def config(bind: str, servers: Sequence[tuple[str, str]], stats_socket: str) -> str:
    """haproxy.cfg for broker replicas: `servers` are (name, "host:port") pairs."""
    lines = [
        "global",
        "    maxconn 4096",
        f"    stats socket {stats_socket} mode 600 level admin",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout check 2s",
        "    # A connection a replica refused (killed, or draining after SIGTERM) is tried again",
        "    # on another one; a request a replica may have acted on is never replayed",
        "    # (retry-on's default is conn-failure only).",
        "    retries 3",
        "    option redispatch 1",
        "    # a connection to a replica per request: none lies idle for a replica's exit or",
        "    # drain to cut, so a replica gone is a refused connection, retried elsewhere",
        "    option http-server-close",
        "",
        "frontend broker",
        f"    bind {bind}",
        "    # the client's address for the broker's login limits",
        "    # (BUCKETREEL_CLIENT_ADDRESS_HEADER=X-Forwarded-For)",
        "    option forwardfor",
        "    default_backend replicas",
        "",
        "backend replicas",
        "    balance roundrobin",
        "    # readiness: 200 only while the database answers, its schema not behind the code, and",
        "    # the replica not draining",
        "    option httpchk GET /healthz",
        "    http-check expect status 200",
        "    default-server inter 500ms fall 2 rise 1",
        *(f"    server {name} {address} check" for name, address in servers),
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Balancer:
    host: str
    port: int
    stats_socket: Path
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self, line: str) -> str:
        """One command on HAProxy's admin socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Each replica's state as the balancer sees it: "UP", "DOWN", "MAINT", ..."""
        found: dict[str, str] = {}
        text = self.command("show stat")
        header, *rows = [line for line in text.splitlines() if line]
        columns = header.lstrip("# ").split(",")
        for row in rows:
            values = dict(zip(columns, row.split(","), strict=False))
            if values.get("pxname") == "replicas" and values.get("svname") not in (
                "BACKEND", "FRONTEND",
            ):
                found[values["svname"]] = values["status"].split(" ")[0]
        return found

    def wait_state(self, name: str, state: str, timeout: float = 30.0) -> None:
        """Until the balancer has replica `name` in `state` (its health check decides)."""
        deadline = time.monotonic() + timeout
        while (seen := self.states().get(name)) != state:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"haproxy: replica {name} is {seen}, not {state}, after {timeout} s "
                    f"({self.states()})"
                )
            time.sleep(0.05)


@contextmanager
def run_haproxy(
    servers: Sequence[tuple[str, int]],
    *,
    host: str = "127.0.0.1",
    log_dir: str | os.PathLike[str] | None = None,
    timeout: float = 30.0,
) -> Iterator[Balancer]:
    """HAProxy balancing `servers` ((name, port) on `host`) until the block ends."""
    binary = require_executable("haproxy", HAPROXY_HINT)
    base = Path(tempfile.mkdtemp(prefix="bucketreel-haproxy-"))
    try:
        for attempt in range(3):  # the port could be taken between free_port() and bind()
            port = free_port(host)
            stats = base / "admin.sock"
            path = base / "haproxy.cfg"
            path.write_text(config(
                f"{host}:{port}", [(name, f"{host}:{p}") for name, p in servers], str(stats)
            ))
            proc = ManagedProcess(
                "haproxy", [binary, "-db", "-f", str(path)], cwd=base, log_dir=log_dir,
            )
            with proc:
                try:
                    proc.wait_ready(_ready(host, port, stats), timeout=timeout)
                except ProcessStartError as err:
                    if attempt == 2 or "cannot bind" not in str(err).lower():
                        raise
                    continue
                yield Balancer(host, port, stats, proc.pid)
                return
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _ready(host: str, port: int, stats: Path) -> Probe:
    listening = tcp_probe(host, port)

    def probe() -> bool:
        return stats.exists() and listening()

    return probe
