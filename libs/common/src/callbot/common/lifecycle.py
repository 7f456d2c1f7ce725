"""Running a service process: start, serve until SIGTERM/SIGINT, stop cleanly.

A service implements `start()` (open connections, declare topology, begin
consuming) and `stop()` (stop taking work, finish and ack what is in hand,
close). `run_service` is the one place that wires signals to them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol

import uvloop

log = logging.getLogger(__name__)


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def serve_until_signalled(service: Service) -> None:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    await service.start()
    log.info("service started")
    try:
        await stop_requested.wait()
        log.info("stop requested: finishing work in hand")
    finally:
        await service.stop()
        log.info("service stopped")


def run_service(service: Service) -> None:
    """Run `service` on uvloop until a stop signal (blocking)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_until_signalled(service))
