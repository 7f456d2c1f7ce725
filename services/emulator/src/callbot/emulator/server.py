"""``TwilioEmulator``: the emulator served by uvicorn inside the current event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import uvicorn

from callbot.emulator.app import build_app
from callbot.emulator.records import CallRecord
from callbot.emulator.scenario import Scenario, parse_scenario
from callbot.emulator.switchboard import Fault, FaultPlan, RecordedRequest, Switchboard
from callbot.emulator.webhooks import TWILIO_WEBHOOK_TIMEOUT_S


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host process.

    uvicorn's own handlers would replace pytest's SIGINT handler while a test runs,
    and the CLI installs its own for a graceful stop.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(frozen=True)
class _Running:
    server: uvicorn.Server
    task: asyncio.Task[None]
    base_url: str


class TwilioEmulator:
    """Fake Twilio REST API plus call player, for in-process tests::

    async with TwilioEmulator("AC...", "token") as twilio:
        twilio.add_scenario({"to": "+15005550006", "steps": [{"say": "Hi"}]})
        client.api.base_url = twilio.base_url
        ...
        call = await twilio.wait_for_call(sid)
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        scenarios: Iterable[Scenario] = (),
        *,
        webhook_timeout_s: float = TWILIO_WEBHOOK_TIMEOUT_S,
    ) -> None:
        self.switchboard = Switchboard(
            account_sid, auth_token, scenarios, webhook_timeout_s=webhook_timeout_s
        )
        self._running: _Running | None = None

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
        if self._running is not None:
            raise RuntimeError(f"the emulator already serves {self._running.base_url}; stop() it")
        # Binding here gives the port the OS picked for port=0, and turns "address in use"
        # into an OSError for the caller instead of uvicorn's sys.exit().
        sock = socket.create_server((host, port))
        # Accepted sockets inherit this (Linux). asyncio sets it only on sockets whose
        # proto is IPPROTO_TCP, and create_server's is 0: without it, every answer on a
        # keep-alive connection waited ~40 ms for the client's delayed ACK (Nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = uvicorn.Config(
            build_app(self.switchboard),
            lifespan="off",
            ws="none",  # importing the websockets implementation warns; nothing here needs it
            log_config=None,  # leave the host's logging configuration alone
            log_level="warning",
            access_log=False,
            # Bounds stop() while a client still long-polls /wait.
            timeout_graceful_shutdown=1,
        )
        server = _EmbeddedServer(config)
        self.switchboard.open()
        task = asyncio.create_task(server.serve(sockets=[sock]), name="twilio-emulator")
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    sock.close()
                    await self.switchboard.close()
                    await task  # raises whatever stopped the startup
                    raise RuntimeError("the emulator's uvicorn server exited during startup")
                await asyncio.sleep(0.005)
        bound_host, bound_port = sock.getsockname()[:2]
        self._running = _Running(server, task, f"http://{_url_host(bound_host)}:{bound_port}")

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``: what replaces ``https://api.twilio.com`` for the client."""
        if self._running is None:
            raise RuntimeError("the emulator is not serving; await start() first")
        return self._running.base_url

    async def stop(self) -> None:
        if self._running is None:
            return
        running, self._running = self._running, None
        running.server.should_exit = True
        await running.task
        await self.switchboard.close()

    def add_scenario(self, scenario: Scenario | Mapping[str, Any]) -> Scenario:
        """Answer calls to ``scenario.to`` (or every other call, without ``to``) this way."""
        if not isinstance(scenario, Scenario):
            scenario = parse_scenario(scenario, source="add_scenario()")
        self.switchboard.scenarios.register(scenario)
        return scenario

    def fail_next_creates(self, *faults: Fault | Mapping[str, Any]) -> None:
        """The next ``calls.create`` requests answer these errors, in order."""
        self.switchboard.inject_faults(
            FaultPlan(calls_create=[Fault.model_validate(fault) for fault in faults])
        )

    @property
    def calls(self) -> dict[str, CallRecord]:
        return {sid: player.record for sid, player in self.switchboard.players.items()}

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self.switchboard.requests)

    async def wait_for_call(self, call_sid: str, timeout_s: float = 30.0) -> CallRecord:
        """The call once fully finished, recording callback included."""
        return await self.switchboard.wait_for_call(call_sid, timeout_s)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
