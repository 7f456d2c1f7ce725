"""An ASGI app served by uvicorn inside the running event loop.

``EmbeddedServer`` serves one; ``EmbeddedApp`` is the base of the in-process test
doubles (this package's ``TwilioEmulator``, the scripted OpenAI server in callbot's
testkit), which a test starts and stops like any other coroutine.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import socket
from collections.abc import Generator
from types import TracebackType
from typing import ClassVar, Self

import uvicorn
from starlette.types import ASGIApp


class _SignalsLeftToHost(uvicorn.Server):
    """A uvicorn server that leaves signals to its host process.

    uvicorn's own handlers would replace pytest's SIGINT handler while a test runs and
    re-raise captured signals on shutdown; a command line host installs its own for a
    graceful stop.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class EmbeddedServer:
    """A running server; ``await EmbeddedServer.start(app, ...)`` it, ``await stop()`` it."""

    def __init__(
        self, server: uvicorn.Server, task: asyncio.Task[None], sock: socket.socket
    ) -> None:
        self._server = server
        self._task = task
        self.host: str = sock.getsockname()[0]
        self.port: int = sock.getsockname()[1]

    @classmethod
    async def start(cls, app: ASGIApp, host: str, port: int, *, name: str) -> Self:
        """``app`` served on ``host:port`` (port 0: one the OS picks), accepting already.

        ``name`` names the serving task and the errors.
        """
        # Binding here gives the port the OS picked for port=0, and turns "address in use"
        # into an OSError for the caller instead of uvicorn's sys.exit().
        sock = socket.create_server((host, port))
        # Accepted sockets inherit this (Linux). asyncio sets it only on sockets whose
        # proto is IPPROTO_TCP, and create_server's is 0: without it, every answer on a
        # keep-alive connection waited ~40 ms for the client's delayed ACK (Nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = uvicorn.Config(
            app,
            lifespan="off",
            ws="none",  # importing the websockets implementation warns; nothing here needs it
            log_config=None,  # leave the host's logging configuration alone
            log_level="warning",
            access_log=False,
            # Bounds stop() while a client still holds a request open (a long poll, an
            # answer scripted to come late).
            timeout_graceful_shutdown=1,
        )
        server = _SignalsLeftToHost(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=name)
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    sock.close()
                    await task  # raises whatever stopped the startup
                    raise RuntimeError(f"{name}'s uvicorn server exited during startup")
                await asyncio.sleep(0.005)
        return cls(server, task, sock)

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the address bound."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (1 s at most), return when done."""
        self._server.should_exit = True
        await self._task


class EmbeddedApp(abc.ABC):
    """Base of a test double that serves its app in the running event loop::

    async with Double(...) as double:  # or: await double.start() ... await double.stop()
        ...  # point the client under test at double.serving.url
    """

    # Names the serving task and the errors.
    name: ClassVar[str]

    _serving: EmbeddedServer | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._serving is not None:
            raise RuntimeError(f"{self.name} already serves {self._serving.url}; stop() it first")
        app = self._open()
        try:
            self._serving = await EmbeddedServer.start(app, host, port, name=self.name)
        except BaseException:
            await self._close()
            raise

    async def stop(self) -> None:
        if self._serving is None:
            return
        serving, self._serving = self._serving, None
        await serving.stop()
        await self._close()

    @property
    def serving(self) -> EmbeddedServer:
        """The running server; ``RuntimeError`` before ``start()``."""
        if self._serving is None:
            raise RuntimeError(f"{self.name} is not serving; await start() first")
        return self._serving

    @abc.abstractmethod
    def _open(self) -> ASGIApp:
        """The app to serve, ready for its first request."""

    async def _close(self) -> None:  # noqa: B027 (optional hook: most doubles hold nothing)
        """Release what ``_open()`` took, once the server has stopped or failed to start."""
