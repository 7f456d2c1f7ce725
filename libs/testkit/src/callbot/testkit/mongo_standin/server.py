"""The stand-in's TCP server: one asyncio task per client connection."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from pathlib import Path

import bson

from callbot.testkit.mongo_standin.engine import Engine
from callbot.testkit.mongo_standin.wire import (
    HEADER,
    ProtocolError,
    encode_reply,
    parse_body,
    parse_header,
)

log = logging.getLogger(__name__)


class MongoStandin:
    """A MongoDB-wire server over an in-memory engine, for tests only.

    With a `state_file`, the data outlives the process: it is loaded at
    start and written at a clean stop, so a test can stop MongoDB and bring
    the same data back, as a real server's restart would.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, state_file: Path | None = None):
        self.host = host
        self.port = port
        self.state_file = state_file
        self.engine = Engine()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._reply_ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    async def start(self) -> None:
        if self.state_file is not None and self.state_file.exists():
            self.engine.restore(bson.decode_all(self.state_file.read_bytes()))
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("MongoDB stand-in listening", extra={"url": self.url})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self.state_file is not None:
            self.state_file.write_bytes(b"".join(map(bson.encode, self.engine.snapshot())))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                length, request_id, _, op_code = parse_header(header)
                request = parse_body(
                    request_id, op_code, await reader.readexactly(length - HEADER.size)
                )
                reply = self.engine.execute(request.command)
                if request.expects_reply:
                    writer.write(encode_reply(request, next(self._reply_ids), reply))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        except ProtocolError as error:
            log.warning("closing a connection that broke the protocol", extra={"error": str(error)})
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
