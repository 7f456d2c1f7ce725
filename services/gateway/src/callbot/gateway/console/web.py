"""The console's HTTP glue: templates (autoescaped), the security headers of
every page, and the dependencies that require a session and, for every
change, the session's CSRF token."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from callbot.gateway.console.sessions import (
    COOKIE_NAME,
    CSRF_FIELD,
    CSRF_HEADER,
    ConsoleSession,
)
from callbot.gateway.console.state import ConsoleState
from callbot.gateway.deps import Resources
from callbot.gateway.resources import GatewayResources

PREFIX = "/console"
HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

# Scripts, styles and media from the console itself only: even a value that
# slipped past escaping could not run inline script or load anything foreign.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; media-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every value is escaped, whatever the template's name
    # Stored documents hold only the fields their calls reached: a missing one shows empty.
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["when"] = _when


class SignInRequired(Exception):
    """No valid session: a page redirects to the sign-in form, anything else is a 401."""


async def sign_in_required(request: Request, _exc: Exception) -> Response:
    if request.method == "GET" and "text/event-stream" not in request.headers.get("accept", ""):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(
            f"{PREFIX}/sign-in?next={quote(target, safe='')}", status.HTTP_303_SEE_OTHER
        )
    return PlainTextResponse(
        "sign in to the console first", status.HTTP_401_UNAUTHORIZED, headers=SECURITY_HEADERS
    )


async def get_console(request: Request) -> ConsoleState:
    console: ConsoleState = request.app.state.console
    return console


Console = Annotated[ConsoleState, Depends(get_console)]


async def require_session(
    request: Request, console: Console, resources: Resources
) -> ConsoleSession:
    session = console.sessions.read(request.cookies.get(COOKIE_NAME), resources.settings.api_keys)
    if session is None:
        raise SignInRequired
    return session


Session = Annotated[ConsoleSession, Depends(require_session)]


async def require_csrf(request: Request, console: Console, session: Session) -> ConsoleSession:
    """The session, if the request carries its CSRF token (form field or header)."""
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        form = await request.form(max_files=1, max_fields=50)
        field = form.get(CSRF_FIELD)
        token = field if isinstance(field, str) else None
    if not console.sessions.csrf_valid(session, token):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "missing or wrong CSRF token: reload the page and submit the form again",
        )
    return session


Changing = Annotated[ConsoleSession, Depends(require_csrf)]


class Page:
    """Renders the console's pages for one signed-in request."""

    def __init__(
        self, request: Request, console: Console, resources: Resources, session: Session
    ) -> None:
        self.request = request
        self.console = console
        self.resources: GatewayResources = resources
        self.session = session

    def render(self, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = templates.get_template(template).render(
            prefix=PREFIX,
            path=self.request.url.path,
            csrf=self.console.sessions.csrf_token(self.session),
            **context,
        )
        return HTMLResponse(html, status_code, headers=SECURITY_HEADERS)


SignedPage = Annotated[Page, Depends(Page)]


def render_public(template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page shown without a session (the sign-in form)."""
    html = templates.get_template(template).render(prefix=PREFIX, path="", csrf="", **context)
    return HTMLResponse(html, status_code, headers=SECURITY_HEADERS)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status.HTTP_303_SEE_OTHER, headers=SECURITY_HEADERS)
