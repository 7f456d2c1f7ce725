"""FastAPI dependencies: the gateway's resources, the API key check, and the
authenticated Twilio webhook."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from callbot.gateway.resources import GatewayResources
from callbot.gateway.webhook_request import TwilioWebhook, read_twilio_webhook

_bearer = HTTPBearer(auto_error=False, description="One of the keys in CALLBOT_API_KEYS.")


async def get_resources(request: Request) -> GatewayResources:
    # async: FastAPI runs a plain `def` dependency in its threadpool, a thread
    # hop on every request (docs/performance.md).
    resources: GatewayResources = request.app.state.resources
    return resources


Resources = Annotated[GatewayResources, Depends(get_resources)]


def require_api_key(
    resources: Resources,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller's API key (one of `CALLBOT_API_KEYS`), else 401."""
    presented = credentials.credentials if credentials is not None else ""
    # Compare against every key in constant time: no early exit that times a guess.
    matches = [secrets.compare_digest(presented, key) for key in resources.settings.api_keys]
    if not presented or not any(matches):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or unknown API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return presented


ApiKey = Annotated[str, Depends(require_api_key)]


async def twilio_webhook(request: Request, resources: Resources) -> TwilioWebhook:
    return await read_twilio_webhook(
        request,
        resources.validator,
        resources.urls,
        resources.settings.max_webhook_body_bytes,
    )


Webhook = Annotated[TwilioWebhook, Depends(twilio_webhook)]
