"""A TCP relay on loopback that a test can cut and restore, like a network going away.

    with cuttable_relay("127.0.0.1", port) as relay:
        ...relay.url...        # http://127.0.0.1:<port>, forwarded to the target
        relay.cut()            # open connections are reset, new ones are reset on accept
        relay.restore()        # connections are relayed again

While cut, the listening socket stays open (so no other process can take the port) but every
connection is aborted at once (a TCP reset): clients see "connection reset" / "connection
refused"-like failures immediately, as when a route or firewall drops the traffic. Nothing is
forwarded while cut. Counts of relayed bytes and of refused connections are kept.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class RelayStats:
    relayed: int = 0  # connections relayed
    refused: int = 0  # connections reset because the relay was cut
    to_server: int = 0
    to_client: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class CuttableRelay:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.stats = RelayStats()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="cuttable-relay", daemon=True)
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._port = 0
        self._cut = False
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def is_cut(self) -> bool:
        return self._cut

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the cuttable relay did not start")

    def stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> None:
        """Reset every open connection; from now on reset every new one."""
        asyncio.run_coroutine_threadsafe(self._set_cut(True), self._loop).result(10)

    def restore(self) -> None:
        """Relay connections again."""
        asyncio.run_coroutine_threadsafe(self._set_cut(False), self._loop).result(10)

    # -- the event loop's side ------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _set_cut(self, cut: bool) -> None:
        self._cut = cut
        if cut:
            for writer in list(self._open):
                writer.transport.abort()
            self._open.clear()

    async def _shutdown(self) -> None:
        await self._set_cut(True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            with self.stats.lock:
                self.stats.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        if self._cut:  # cut while we were connecting
            up_writer.transport.abort()
            writer.transport.abort()
            return
        with self.stats.lock:
            self.stats.relayed += 1
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, up=True),
                self._pipe(up_reader, writer, up=False),
            )
        finally:
            self._open.discard(writer)
            self._open.discard(up_writer)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if self._cut:
                    break
                with self.stats.lock:
                    if up:
                        self.stats.to_server += len(chunk)
                    else:
                        self.stats.to_client += len(chunk)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if self._cut:
                writer.transport.abort()
            else:
                writer.close()


@contextmanager
def cuttable_relay(target_host: str, target_port: int) -> Iterator[CuttableRelay]:
    relay = CuttableRelay(target_host, target_port)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()
