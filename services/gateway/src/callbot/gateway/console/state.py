"""What the console keeps for the life of a gateway process: the session
signer and the live feed. Opened and closed with the gateway's resources."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from callbot.gateway.console.live_feed import LiveFeed
from callbot.gateway.console.sessions import ConsoleSessions
from callbot.gateway.console.sign_in_throttle import SignInThrottle
from callbot.gateway.resources import GatewayResources

log = logging.getLogger(__name__)


@dataclass
class ConsoleState:
    sessions: ConsoleSessions
    live: LiveFeed
    sign_ins: SignInThrottle
    cookie_secure: bool  # Secure cookies when gateway is reached over https


@asynccontextmanager
async def console_running(resources: GatewayResources) -> AsyncIterator[ConsoleState]:
    settings = resources.settings
    secret = settings.console_secret_key.get_secret_value()
    if not secret:
        secret = secrets.token_urlsafe(32)
        log.warning(
            "CONSOLE_SECRET_KEY is unset: console sessions are signed with a key of this "
            "process, so they end when it restarts and do not carry across gateway replicas"
        )
    live = LiveFeed(resources.connection, resources.topology.events_exchange)
    try:
        yield ConsoleState(
            sessions=ConsoleSessions(secret, settings.console_session_ttl_s),
            live=live,
            sign_ins=SignInThrottle(
                settings.console_sign_in_failures, settings.console_sign_in_window_s
            ),
            cookie_secure=settings.public_base_url.startswith("https://"),
        )
    finally:
        await live.close()
