"""Running a service process: start, serve until SIGTERM/SIGINT, stop cleanly.

A service implements `start()` (open connections, declare topology, begin
consuming) and `stop()` (stop taking work, finish and ack what is in hand,
close). `run_service` is the one place that wires signals to them. A signal
is honoured at any moment, start-up included (waiting for a dependency is
abandoned at once); a dependency that stays away for `STARTUP_TIMEOUT_S` ends
the process with one fatal line and exit status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol

import uvloop

from callbot.common.startup import StartupFailed, run_until_started_or_signalled

log = logging.getLogger(__name__)

# What a service interrupted while starting gets to close what it opened.
ABANDONED_START_CLOSE_S = 0.5
EXIT_STARTUP_FAILED = 1


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (in the running loop)."""
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    return stop_requested


async def serve_until_signalled(service: Service) -> None:
    stop_requested = stop_on_signals()
    try:
        started = await run_until_started_or_signalled(service.start(), stop_requested)
    except BaseException:
        await _close_abandoned(service)
        raise
    if not started:
        log.info("stop requested while starting: start-up abandoned")
        await _close_abandoned(service)
        return
    log.info("service started")
    try:
        await stop_requested.wait()
        log.info("stop requested: finishing work in hand")
    finally:
        await service.stop()
        log.info("service stopped")


async def _close_abandoned(service: Service) -> None:
    """Close what a start-up that did not finish had opened, briefly."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(service.stop(), ABANDONED_START_CLOSE_S)


def run_service(service: Service) -> None:
    """Run `service` on uvloop until a stop signal (blocking)."""
    run_or_exit(lambda: serve_until_signalled(service))


def run_or_exit(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main()` on uvloop; a `StartupFailed` ends the process with one
    fatal line (no traceback) and exit status 1."""
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_awaited(main))
    except StartupFailed as exc:
        log.critical(f"cannot start: {exc}")
        sys.exit(EXIT_STARTUP_FAILED)


async def _awaited(main: Callable[[], Awaitable[None]]) -> None:
    await main()


async def check_dependencies_until_signalled(check: Callable[[], Awaitable[None]]) -> bool:
    """For a service whose server starts elsewhere (gateway's uvicorn): wait
    for its dependencies first, honouring SIGTERM/SIGINT. False when stopped."""
    stop_requested = stop_on_signals()
    loop = asyncio.get_running_loop()
    try:
        return await run_until_started_or_signalled(check(), stop_requested)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
