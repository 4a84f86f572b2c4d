"""HAProxy from the suite's support (tests/support/haproxy.py): it balances, its health check
takes a dead server out, its admin socket says so, and it is stopped by its PID. Missing,
it is a failure that says what to install."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import urllib3

from tests.support.haproxy import run_haproxy
from tests.support.procs import MissingDependencyError, pid_alive


def named(name: str) -> type[http.server.BaseHTTPRequestHandler]:
    """A handler answering every GET with `name`."""

    class Named(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    return Named


@contextmanager
def backend(name: str) -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), named(name))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_it_balances_and_takes_a_dead_server_out(tmp_path: Path) -> None:
    http_pool = urllib3.PoolManager(retries=False, timeout=10)
    with backend("one") as one, backend("two") as two:
        ports = [("one", one.server_address[1]), ("two", two.server_address[1])]
        with run_haproxy(ports, log_dir=tmp_path) as balancer:
            balancer.wait_state("one", "UP")
            balancer.wait_state("two", "UP")
            answers = {http_pool.request("GET", balancer.url + "/").data for _ in range(4)}
            assert answers == {b"one", b"two"}
            two.shutdown()
            two.server_close()
            balancer.wait_state("two", "DOWN")
            answers = {http_pool.request("GET", balancer.url + "/").data for _ in range(4)}
            assert answers == {b"one"}
            pid = balancer.pid
        assert not pid_alive(pid)


def test_missing_haproxy_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    missing = pytest.raises(MissingDependencyError, match=r"haproxy not found .*install.sh")
    with missing, run_haproxy([("one", 1)]):
        pass
