"""A TCP front for tests: what a Kubernetes Service or a load balancer does
for a client, in one small class.

Each connection it accepts goes to the first of its backends that accepts a
connection (a backend that stopped listening is skipped), and bytes are piped
both ways until either side closes. `close()` stops listening and drops every
piped connection, as a node that dies would. It runs on an event loop in a
thread of its own, so sync tests and async tests use it alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

from callbot.testkit.processes import free_port

Address = tuple[str, int]


class TcpFront:
    def __init__(self, backends: Sequence[Address], *, port: int | None = None) -> None:
        self.backends = list(backends)
        self.port = port or free_port()
        self.connections = 0  # accepted so far
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpFront:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def close(self) -> None:
        """Stop listening and drop every connection piped now."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> TcpFront:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None  # start_server runs each client in a task
        self._pipes.add(task)
        try:
            backend = await self._open_backend()
            if backend is None:
                return
            backend_reader, backend_writer = backend
            try:
                await asyncio.gather(_pipe(reader, backend_writer), _pipe(backend_reader, writer))
            finally:
                backend_writer.close()
        finally:
            writer.close()
            self._pipes.discard(task)

    async def _open_backend(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for host, port in self.backends:
            with contextlib.suppress(OSError):
                return await asyncio.open_connection(host, port)
        return None  # no backend listens: the client sees its connection closed


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except OSError:
        pass
    finally:
        # Pass the half-close on (an HTTP client may wait for the EOF).
        with contextlib.suppress(OSError):
            if sink.can_write_eof():
                sink.write_eof()
