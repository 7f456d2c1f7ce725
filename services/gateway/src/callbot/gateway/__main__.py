"""`python -m callbot.gateway`: serve HTTP on GATEWAY_HOST:GATEWAY_PORT."""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import uvicorn

from callbot.common.lifecycle import check_dependencies_until_signalled, run_or_exit
from callbot.common.logs import configure_logging
from callbot.common.settings import Settings, load_settings
from callbot.common.tracing import configure_tracing
from callbot.gateway.resources import GatewayMisconfigured, check_settings, wait_for_dependencies

log = logging.getLogger("callbot.common.lifecycle")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves gateway."""
    return {
        "factory": True,
        "host": settings.gateway_host,
        "port": settings.gateway_port,
        "loop": "uvloop",
        "http": "httptools",
        # Behind a proxy: client address from X-Forwarded-For. Signatures are
        # checked against PUBLIC_URL, never the forwarded host.
        "proxy_headers": True,
        "forwarded_allow_ips": "*",
        "access_log": False,  # RequestObserver writes one JSON line per request
        "log_config": None,  # uvicorn's own lines go through our JSON handler
        "timeout_keep_alive": settings.gateway_keepalive_s,
        "timeout_graceful_shutdown": graceful_shutdown_s(settings),
    }


def graceful_shutdown_s(settings: Settings) -> int:
    """How long gateway, told to stop, waits for the requests in flight before
    it closes its connections. A webhook waits at most `DIALOG_DEADLINE_MS`
    for dialog, then answers: that, a margin, and never under 10 s. A
    Kubernetes pod's terminationGracePeriodSeconds must leave room for it."""
    return max(10, math.ceil(settings.dialog_deadline_ms / 1000) + 2)


def main() -> None:
    settings = load_settings()
    configure_logging("gateway", settings.log_level)
    configure_tracing("gateway", settings)
    try:
        check_settings(settings)
    except GatewayMisconfigured as exc:
        sys.exit(str(exc))
    started: list[bool] = []

    async def dependencies_answer() -> None:
        started.append(
            await check_dependencies_until_signalled(lambda: wait_for_dependencies(settings))
        )

    run_or_exit(dependencies_answer)
    if started != [True]:
        log.info("stop requested while starting: start-up abandoned")
        return
    uvicorn.run("callbot.gateway.app:create_app", **uvicorn_options(settings))


if __name__ == "__main__":
    main()
