"""Serving the app on a socket, and draining it on SIGTERM (or SIGINT).

A replica told to stop (a deploy, a scale-down, `systemctl stop`) must not drop requests:

1. it marks itself draining: `GET /healthz` (readiness) answers 503 at once, so the load
   balancer's health check takes the replica out of rotation; it still serves whatever
   arrives for `drain_seconds` (the time the balancer needs to notice: its check interval
   times its fall count);
2. it stops listening (new connections are refused: a balancer retries them elsewhere) and
   closes idle keep-alive connections;
3. it waits up to `shutdown_timeout` seconds for the requests in flight to finish (aiohttp
   cancels whatever is still running then), closes the database and the storage pool, and
   the process exits 0.

`GET /livez` (liveness) keeps answering 200 until the socket closes: draining is not dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from broker.errors import BrokerError
from broker.web.appkeys import DRAIN

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    drain_seconds: float,
    shutdown_timeout: float,
    access_log_class: type[AbstractAccessLogger],
) -> None:
    """Serve `app` until SIGTERM or SIGINT, then drain (see the module's doc) and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(
        app, access_log_class=access_log_class, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()  # the cleanup contexts: database, services, background tasks
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:  # the port is taken, or the address is not this machine's
            raise BrokerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        log.info("serving on http://%s:%s", host, port)
        await stop.wait()
        app[DRAIN].draining = True
        log.info(
            "draining: /healthz answers 503; serving %ss more, then up to %ss for the "
            "requests in flight", drain_seconds, shutdown_timeout,
        )
        stop.clear()
        if drain_seconds > 0:
            # A second signal ends the drain period early (an impatient operator).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=drain_seconds)
    finally:
        await runner.cleanup()  # stop listening, finish in-flight requests, close resources
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    log.info("drained: stopped")
