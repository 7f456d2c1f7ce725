"""The console: operators' web UI, served by gateway under `/console`.

Server-rendered pages (Jinja2, autoescaped) over the same reads and the same
call-placing, agent-saving and campaign code as the `/v1` API; a session
cookie after sign-in with an API key; the live page fed by server-sent
events from the events exchange. See README.md, "The console".
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from callbot.gateway.console import (
    agents_pages,
    calls_pages,
    campaigns_pages,
    live_pages,
    overview_pages,
    recipients_pages,
    sign_in,
)
from callbot.gateway.console.state import ConsoleState, console_running
from callbot.gateway.console.web import PREFIX, STATIC_DIR, SignInRequired, sign_in_required

__all__ = ["ConsoleState", "console_running", "install_console"]


def install_console(app: FastAPI) -> None:
    app.add_exception_handler(SignInRequired, sign_in_required)
    for module in (
        sign_in,
        overview_pages,
        live_pages,
        calls_pages,
        recipients_pages,
        agents_pages,
        campaigns_pages,
    ):
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="console-static")
