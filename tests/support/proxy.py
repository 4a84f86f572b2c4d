"""A TCP relay on loopback that counts every byte between a client and the broker.

Used to prove DESIGN G1 from outside the broker: the agent talks to the broker only through
this relay, so whatever media the agent might send the broker would be counted here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class ByteCounts:
    to_server: int = 0
    to_client: int = 0
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, up: int = 0, down: int = 0) -> None:
        with self.lock:
            self.to_server += up
            self.to_client += down


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counts: ByteCounts, up: bool
) -> None:
    try:
        while chunk := await reader.read(65536):
            counts.add(up=len(chunk)) if up else counts.add(down=len(chunk))
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextmanager
def counting_relay(target_host: str, target_port: int) -> Iterator[tuple[str, ByteCounts]]:
    """Yields (`http://127.0.0.1:<port>`, counts) while a relay runs in a background thread."""
    counts = ByteCounts()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    bound: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts.connections += 1
        up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
        await asyncio.gather(
            _pipe(reader, up_writer, counts, up=True),
            _pipe(up_reader, writer, counts, up=False),
        )

    async def serve() -> asyncio.Server:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        bound.append(server.sockets[0].getsockname()[1])
        ready.set()
        return server

    async def shutdown() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(serve())
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.run_until_complete(shutdown())
        loop.close()

    thread = threading.Thread(target=run, name="counting-relay", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the counting relay did not start")
    try:
        yield f"http://127.0.0.1:{bound[0]}", counts
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
