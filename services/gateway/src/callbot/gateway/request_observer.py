"""Per-request metrics and one JSON log line per request (uvicorn's access log
is off). A plain ASGI middleware: Starlette's BaseHTTPMiddleware would add a
task and a memory stream to every webhook."""

from __future__ import annotations

import logging
import time

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callbot.gateway.metrics import HTTP_REQUESTS, HTTP_SECONDS

log = logging.getLogger("callbot.gateway.requests")

# Probes and scrapes come every few seconds; logging them would drown the calls.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestObserver:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500  # what the client sees if the app raises before answering

        async def send_observed(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_observed)
        finally:
            elapsed = time.perf_counter() - started
            # The route template, not the path: /v1/calls/{call_id} is one series.
            route: BaseRoute | None = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(endpoint, scope["method"], str(status_code)).inc()
            HTTP_SECONDS.labels(endpoint).observe(elapsed)
            if scope["path"] not in _QUIET_PATHS:
                log.info(
                    "request served",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status_code,
                        "ms": round(elapsed * 1000, 2),
                    },
                )
