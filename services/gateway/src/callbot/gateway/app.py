"""The gateway's FastAPI application, built by `create_app` (uvicorn's factory)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure

from callbot.common.settings import Settings, load_settings
from callbot.common.tracing import instrument_app
from callbot.gateway import (
    agents_api,
    calls_api,
    campaigns_api,
    erasure_api,
    health,
    recordings_api,
    relay_socket,
    results_api,
    status_webhooks,
    voice_webhooks,
)
from callbot.gateway.console import console_running, install_console
from callbot.gateway.domain.webhook_form import MalformedWebhook
from callbot.gateway.reconciler import reconciler_running
from callbot.gateway.request_observer import RequestObserver
from callbot.gateway.resources import check_settings, open_resources

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; connections open in its lifespan. Raises `GatewayMisconfigured`
    when a required setting is missing."""
    settings = settings or load_settings()
    check_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_resources(settings) as resources,
            reconciler_running(resources),
            console_running(resources) as console,
        ):
            app.state.resources = resources
            app.state.console = console
            yield

    app = FastAPI(
        title="callbot gateway",
        version="1.0.0",
        description="Places AI-driven outbound calls through Twilio; reads calls and agents.",
        lifespan=lifespan,
    )
    app.add_middleware(RequestObserver)
    app.add_exception_handler(MalformedWebhook, _malformed_webhook)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ConnectionFailure, _mongodb_unreachable)
    for module in (
        calls_api,
        agents_api,
        voice_webhooks,
        status_webhooks,
        health,
        campaigns_api,
        results_api,
        recordings_api,
        erasure_api,
        relay_socket,
    ):
        app.include_router(module.router)
    install_console(app)
    instrument_app(app)  # the webhook's server span, when tracing is on
    return app


async def _malformed_webhook(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_400_BAD_REQUEST)


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, but each error names its field (`loc`) and says what is
    wrong without repeating what was sent: FastAPI's own handler echoes the
    rejected input (the whole body, for a body-level error), and fails (a 500)
    on bytes that are not UTF-8 and on the `NaN` or lone surrogate
    (`"\\ud800"`) Python's JSON parser lets through."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(
        [{k: v for k, v in error.items() if k not in ("input", "url")} for error in exc.errors()],
        custom_encoder={bytes: _bytes_as_text},
    )
    detail = [{key: _renderable(value) for key, value in error.items()} for error in errors]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _bytes_as_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _renderable(value: Any) -> Any:
    """`value` itself if it is strict JSON, else its repr (ASCII escapes)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return repr(value)
    return value


async def _mongodb_unreachable(_request: Request, exc: Exception) -> JSONResponse:
    """The API reads agents and calls from MongoDB: while it is away, a 503 to
    retry rather than a 500 (Twilio's webhooks never read it)."""
    log.warning("MongoDB unreachable; answering 503", extra={"error": repr(exc)})
    return JSONResponse(
        {"detail": "MongoDB is unreachable; retry later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )
