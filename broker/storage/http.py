"""The broker's HTTP client for the one request it sends a bucket on the device path: the
completion's (and the custody check's, and the storage watch's) `HeadObject`.

botocore would send it from a storage-pool thread: a thread hop and botocore's whole request
pipeline per completion (≈ 20 % of the broker's busy samples). Here it is signed by the
tenant's botocore client (a presigned URL: the same endpoint resolution, addressing style
and credentials, a local computation for static keys) and sent on the event loop with one
aiohttp session the app opens and closes (`BucketHTTP.opened`), connections kept alive.

- No redirect is followed and no environment proxy used (`trust_env` stays off): a custom
  endpoint is reached at the address it was checked at (`broker.storage.endpoint`): the
  request goes to that IP literal, with the signed `Host` header and, for https, the
  checked host name for SNI and certificate verification (part of aiohttp's connection key,
  so a kept-alive connection is never shared across names).
- Outside an app (the admin commands, a test's own loop) each request has its own session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

KEEPALIVE_SECONDS = 30.0
CONNECTIONS = 100  # across every bucket; per host unlimited (aiohttp's default)


class NoAnswer(Exception):
    """The bucket did not answer: no connection, or no reply within the socket timeouts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # the failure's class name, e.g. ClientConnectorError


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]


class BucketHTTP:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[None]:
        """The shared session for the life of the app (its cleanup context)."""
        self._session = _new_session(keepalive=True)
        self._loop = asyncio.get_running_loop()
        try:
            yield
        finally:
            session, self._session, self._loop = self._session, None, None
            await session.close()

    async def head(
        self, url: str, headers: Mapping[str, str], *, connect_to: str | None,
        server_hostname: str | None, connect: float, read: float,
    ) -> Reply:
        """Send `HEAD url` (already signed: `url` is used exactly as encoded). `connect_to`:
        an IP literal to connect to instead of the URL's host, whose signed `Host` header is
        kept. Raises NoAnswer when the bucket does not answer."""
        target = URL(url, encoded=True)
        sent = dict(headers)
        if connect_to is not None:
            sent["Host"] = target.raw_authority
            target = target.with_host(connect_to)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
        try:
            async with self._session_for_call() as session, session.head(
                target, headers=sent, allow_redirects=False, timeout=timeout,
                server_hostname=server_hostname,
            ) as response:
                return Reply(response.status, response.headers.copy())
        except (aiohttp.ClientError, TimeoutError) as exc:  # the socket timeouts: both
            raise NoAnswer(type(exc).__name__) from None

    @contextlib.asynccontextmanager
    async def _session_for_call(self) -> AsyncIterator[aiohttp.ClientSession]:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            yield self._session
            return
        async with _new_session(keepalive=False) as session:
            yield session


def _new_session(*, keepalive: bool) -> aiohttp.ClientSession:
    connector = (
        aiohttp.TCPConnector(limit=CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS)
        if keepalive else aiohttp.TCPConnector(force_close=True)
    )
    # No cookies kept between tenants' buckets; no automatic decompression to pay for.
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
        trust_env=False,
    )
