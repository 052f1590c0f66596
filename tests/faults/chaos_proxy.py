"""A small asyncio TCP proxy that injects network faults (our stand-in for toxiproxy, which has no
Debian package): latency, a black hole, and connection resets.

    proxy = ChaosProxy(upstream_port=5432).start()   # listens on proxy.port, in a thread
    proxy.latency = 0.5          # every chunk from the server reaches the client 500 ms late
    proxy.blackhole = True       # nothing moves either way; new connections hang before upstream
    proxy.blackhole = False      # held bytes flow again (a healed partition: TCP would retransmit)
    proxy.reset_all()            # RST every open connection (SO_LINGER 0)
    proxy.close()

Latency is applied to the server → client direction only (toxiproxy's default "downstream"), so a
request/response round trip costs `latency` more, and it does not cap throughput: each chunk is
stamped when read and written when its time comes. The black hole holds bytes rather than
dropping them: a partition of seconds heals under TCP (retransmission), so what the client sees
is a connection that stalls, then resumes — only its own timeouts can tell it apart from a slow
server, which is what X4 checks.
"""

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections import deque

from tests.live.conftest import free_port

CHUNK = 65536


class ChaosProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.latency = 0.0
        self._blackhole = False
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.opened = 0
        self.resets = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.flowing = asyncio.Event()  # set while there is no black hole (used on the loop only)

    # --- control (from any thread) ---------------------------------------------------------------
    def start(self) -> "ChaosProxy":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(timeout=10)
        return self

    @property
    def blackhole(self) -> bool:
        return self._blackhole

    @blackhole.setter
    def blackhole(self, value: bool) -> None:
        self._blackhole = value
        self.loop.call_soon_threadsafe(self.flowing.clear if value else self.flowing.set)

    def reset_all(self) -> int:
        return asyncio.run_coroutine_threadsafe(self._reset_all(), self.loop).result(timeout=10)

    def close(self) -> None:
        async def shutdown() -> None:
            if self.server:
                self.server.close()
            await self._reset_all()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    # --- the loop --------------------------------------------------------------------------------
    async def _listen(self) -> None:
        self.flowing.set()
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _reset_all(self) -> int:
        writers = list(self.writers)
        for writer in writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # Linger 0: close() sends RST instead of FIN, as a middlebox dropping state would.
                with contextlib.suppress(OSError):  # closed meanwhile by its peer: nothing to reset
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.writers.difference_update(writers)
        self.resets += len(writers)
        return len(writers)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.writers.add(client_writer)
        self.opened += 1
        try:
            await self.flowing.wait()  # a SYN into the black hole: the connect completes only after
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            self.writers.discard(client_writer)
            return
        self.writers.add(upstream_writer)
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer, delayed=False),
            self._pipe(upstream_reader, client_writer, delayed=True),
            return_exceptions=True,
        )
        for writer in (client_writer, upstream_writer):
            self.writers.discard(writer)
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool) -> None:
        pending: deque[tuple[float, bytes]] = deque()
        arrived = asyncio.Event()
        done = False

        async def pump() -> None:
            nonlocal done
            try:
                while data := await reader.read(CHUNK):
                    pending.append((time.monotonic() + (self.latency if delayed else 0.0), data))
                    arrived.set()
            finally:
                done = True
                arrived.set()

        reading = asyncio.create_task(pump())
        try:
            while True:
                if not pending:
                    if done:
                        break
                    arrived.clear()
                    await arrived.wait()
                    continue
                due, data = pending[0]
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.flowing.wait()
                pending.popleft()
                writer.write(data)
                await writer.drain()
        finally:
            reading.cancel()
            writer.transport.abort()
