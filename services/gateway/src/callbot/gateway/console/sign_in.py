"""Signing in to the console with an API key, and signing out."""

from __future__ import annotations

import logging
import math
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import Response

from callbot.gateway.console.sessions import COOKIE_NAME
from callbot.gateway.console.web import PREFIX, Changing, Console, redirect, render_public
from callbot.gateway.deps import Resources

log = logging.getLogger(__name__)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if target and target.startswith(f"{PREFIX}/") and not target.startswith("//"):
        return target
    return f"{PREFIX}/live"


def _same_origin(request: Request) -> bool:
    """A form posted from another site signs nobody in (login CSRF)."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


@router.get("/sign-in")
async def sign_in_form(next: str | None = None) -> Response:
    return render_public("sign_in.html", next=_safe_next(next), error=None)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    console: Console,
    resources: Resources,
    api_key: Annotated[str, Form(max_length=512)] = "",
    next: Annotated[str | None, Form(max_length=2048)] = None,
) -> Response:
    if not _same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "sign in from the console's own page")
    # The address as uvicorn saw it: behind a proxy, FORWARDED_ALLOW_IPS makes it the client's.
    address = request.client.host if request.client else "unknown"
    wait_s = math.ceil(console.sign_ins.retry_after_s(address))
    if wait_s > 0:
        log.warning("console sign-in refused: too many failures", extra={"client": address})
        refused = render_public(
            "sign_in.html",
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            next=_safe_next(next),
            error=f"Too many failed sign-ins from this address; try again in {wait_s} s.",
        )
        refused.headers["Retry-After"] = str(wait_s)
        return refused
    opened = console.sessions.sign_in(api_key.strip(), resources.settings.api_keys)
    if opened is None:
        console.sign_ins.failed(address)
        log.warning("console sign-in with a wrong API key", extra={"client": address})
        return render_public(
            "sign_in.html",
            status_code=status.HTTP_401_UNAUTHORIZED,
            next=_safe_next(next),
            error="That is not one of this gateway's API keys (CALLBOT_API_KEYS).",
        )
    console.sign_ins.succeeded(address)
    session, cookie = opened
    log.info("console sign-in", extra={"actor": session.actor})
    response = redirect(_safe_next(next))
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=console.sessions.ttl_s,
        path=PREFIX,
        secure=console.cookie_secure,
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/sign-out")
async def sign_out(console: Console, session: Changing) -> Response:
    log.info("console sign-out", extra={"actor": session.actor})
    response = redirect(f"{PREFIX}/sign-in")
    response.delete_cookie(
        COOKIE_NAME, path=PREFIX, secure=console.cookie_secure, httponly=True, samesite="strict"
    )
    return response
