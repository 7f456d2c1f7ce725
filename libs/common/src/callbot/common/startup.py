"""Start-up against dependencies that may not answer: fail fast and clearly.

Every service needs RabbitMQ and MongoDB to start. When one does not answer,
the service says so once, at the first failure, naming the dependency and its
host:port (never the credentials), keeps trying quietly for
`STARTUP_TIMEOUT_S`, then says in one line why it gives up and exits non-zero.
Once started, outages are waited out by the robust connections instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

from pymongo import AsyncMongoClient
from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

from callbot.common.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Per attempt, so the first failure is reported at once even when the host
# silently drops packets.
ATTEMPT_TIMEOUT_S = 3.0
_MAX_PAUSE_S = 2.0
_DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671, "mongodb": 27017}


class StartupFailed(Exception):
    """A dependency cannot be used: the message says which, where, and what to set."""


class DependencyRefused(Exception):
    """A dependency answered but refused us (wrong credentials): retrying cannot help."""


def address_of(url: str) -> str:
    """`host:port` of a broker or database URL (every host of a MongoDB seed
    list), without the user name or password."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts:
        return "(no host)"
    port = _DEFAULT_PORTS.get(parts.scheme)
    if port is not None and "," not in hosts and not hosts.endswith("]") and ":" not in hosts:
        return f"{hosts}:{port}"
    return hosts


def _scrubbed(text: str, url: str) -> str:
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


def _reason(exc: BaseException, url: str) -> str:
    reason = str(exc).splitlines()[0] if str(exc) else ""
    # PyMongo appends its timeouts and the whole topology description.
    reason = reason.split(" (configured timeouts")[0]
    reason = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    return _scrubbed(reason[:300], url)


async def wait_until_reachable(
    what: str,
    url: str,
    setting: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    budget_s: float,
    retry_on: tuple[type[BaseException], ...],
) -> T:
    """`attempt()` until it succeeds, for at most `budget_s`; raises `StartupFailed`."""
    address = address_of(url)
    retried: tuple[type[BaseException], ...] = (TimeoutError, *retry_on)
    deadline = time.monotonic() + budget_s
    pause = 0.2
    reported = False
    while True:
        left = deadline - time.monotonic()
        try:
            return await asyncio.wait_for(attempt(), max(0.1, min(ATTEMPT_TIMEOUT_S, left)))
        except DependencyRefused as exc:
            raise StartupFailed(
                f"{what} at {address} refused us: {_scrubbed(str(exc), url)}; check {setting}"
            ) from None
        except retried as exc:
            reason = _reason(exc, url) if not isinstance(exc, TimeoutError) else "no answer"
            if time.monotonic() >= deadline:
                raise StartupFailed(
                    f"{what} at {address} still unreachable after {budget_s:g} s ({reason}); "
                    f"giving up: check {setting}, or raise STARTUP_TIMEOUT_S"
                ) from None
            if not reported:
                reported = True
                log.warning(
                    f"{what} at {address} unreachable ({reason}); retrying for up to "
                    f"{budget_s:g} s (STARTUP_TIMEOUT_S); check {setting}",
                    extra={"dependency": what, "address": address},
                )
        await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        pause = min(pause * 2, _MAX_PAUSE_S)


async def wait_for_mongodb(settings: Settings) -> None:
    """MongoDB answers a ping (within `STARTUP_TIMEOUT_S`), else `StartupFailed`."""
    url = settings.mongodb_url.get_secret_value()
    timeout_ms = 1000

    async def ping() -> None:
        await _refused_fast(url)
        try:
            client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
                url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
            )
        except ConfigurationError as exc:
            raise DependencyRefused(f"MONGODB_URL is not usable: {exc}") from None
        try:
            await client.admin.command("ping")
        except OperationFailure as exc:
            raise DependencyRefused(str(exc)) from None
        finally:
            await client.close()

    await wait_until_reachable(
        "MongoDB",
        url,
        "MONGODB_URL",
        ping,
        budget_s=settings.startup_timeout_s,
        retry_on=(PyMongoError, OSError),
    )


async def _refused_fast(url: str) -> None:
    """A plain TCP connect to a single-host URL: a refused port is known at once,
    where the driver's server selection would wait out its timeout first."""
    parts = urlsplit(url)
    if parts.scheme != "mongodb" or "," in parts.netloc or not parts.hostname:
        return
    _reader, writer = await asyncio.open_connection(
        parts.hostname, parts.port or _DEFAULT_PORTS["mongodb"]
    )
    writer.close()


async def run_until_started_or_signalled(
    start: Awaitable[None], stop_requested: asyncio.Event
) -> bool:
    """Await `start` unless a stop is requested first (then cancel it).
    True when started; raises what `start` raised."""
    starting = asyncio.ensure_future(start)
    stopping = asyncio.ensure_future(stop_requested.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if starting.done():
        starting.result()
        return True
    starting.cancel()
    await asyncio.gather(starting, return_exceptions=True)
    return False
