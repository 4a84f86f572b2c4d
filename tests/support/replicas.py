"""Broker replicas: several `bucketreel-broker serve` processes on one PostgreSQL database,
sharing one set of secrets (as every replica of a deployment does), each on a port of its
own that it keeps across restarts (the load balancer knows it)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager

from .broker import BrokerProcess
from .procs import free_port


@contextmanager
def run_replicas(
    database_url: str,
    count: int,
    *,
    extra_env: Mapping[str, str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
) -> Iterator[list[BrokerProcess]]:
    """`count` replicas serving `database_url` until the block ends (stopped by their PIDs)."""
    with ExitStack() as stack:
        first = stack.enter_context(BrokerProcess(
            database_url, extra_env=extra_env, log_dir=log_dir, port=free_port()
        ))
        shared = {**first.secrets, **(extra_env or {})}
        replicas = [first]
        for _ in range(count - 1):
            replicas.append(stack.enter_context(BrokerProcess(
                database_url, extra_env=shared, log_dir=log_dir, port=free_port()
            )))
        yield replicas


def until(what: str, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for `condition` (polled every 50 ms); fail saying `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
