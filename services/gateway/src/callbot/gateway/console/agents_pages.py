"""Agents: the list, one agent's definition (edited as JSON, saved through
the API's own checks, errors shown by field), and "place a test call"
through the one path that places calls."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from callbot.common.agents import Agent
from callbot.gateway.agents_api import AgentDefinition, store_agent
from callbot.gateway.call_placing import CallRefused
from callbot.gateway.console.web import PREFIX, Changing, Page, SignedPage, redirect
from callbot.gateway.domain.outbound_call import CallRequest

log = logging.getLogger(__name__)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

AgentId = Annotated[str, Path(min_length=1, max_length=64)]
AGENTS_SHOWN = 500
# The emulator's demo callee (examples/calls/demo.yaml): the test call's default
# number when gateway talks to the emulator rather than Twilio.
EMULATOR_DEMO_NUMBER = "+15005550006"
TWILIO_API = "https://api.twilio.com"
EDITABLE_EXCLUDE = {"agent_id", "version", "created_at", "updated_at"}


def editable_json(agent: Agent) -> str:
    return json.dumps(
        agent.model_dump(mode="json", exclude=EDITABLE_EXCLUDE), indent=2, ensure_ascii=False
    )


def field_errors(errors: Any) -> list[str]:
    """`loc: message` lines, as the API's 422 names them."""
    if isinstance(errors, str):
        return [errors]
    lines = []
    for error in errors:
        loc = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        lines.append(f"{loc}: {error.get('msg', error)}" if loc else str(error.get("msg", error)))
    return lines


@router.get("/agents")
async def agents_list(page: SignedPage) -> Response:
    agents = await page.resources.results.agents(AGENTS_SHOWN)
    return page.render("agents.html", agents=agents)


async def _agent_page(
    page: Page,
    agent_id: str,
    *,
    definition: str | None = None,
    errors: list[str] | None = None,
    call_errors: list[str] | None = None,
    saved: int | None = None,
    status_code: int = 200,
) -> Response:
    agent = await page.resources.documents.agent(agent_id)
    if definition is None:
        if agent is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"agent {agent_id!r} not found")
        definition = editable_json(agent)
    emulated = page.resources.settings.twilio_api_base_url != TWILIO_API
    return page.render(
        "agent.html",
        status_code=status_code,
        agent_id=agent_id,
        agent=agent,
        definition=definition,
        errors=errors or [],
        call_errors=call_errors or [],
        saved=saved,
        test_number=EMULATOR_DEMO_NUMBER if emulated else "",
    )


@router.get("/agents/{agent_id}")
async def agent_page(agent_id: AgentId, page: SignedPage, saved: int | None = None) -> Response:
    return await _agent_page(page, agent_id, saved=saved)


@router.post("/agents/{agent_id}")
async def save_agent(
    agent_id: AgentId,
    page: SignedPage,
    session: Changing,
    definition: Annotated[str, Form(max_length=200_000)],
) -> Response:
    try:
        parsed = AgentDefinition.model_validate_json(definition)
        result = await store_agent(agent_id, parsed, page.resources)
    except ValidationError as exc:
        errors = field_errors(exc.errors(include_url=False, include_input=False))
    except RequestValidationError as exc:
        errors = field_errors(exc.errors())
    except HTTPException as exc:
        errors = field_errors(exc.detail)
    else:
        log.info(
            "agent saved from the console", extra={"agent_id": agent_id, "actor": session.actor}
        )
        return redirect(f"{PREFIX}/agents/{agent_id}?saved={result.version}")
    return await _agent_page(page, agent_id, definition=definition, errors=errors, status_code=422)


@router.post("/agents/{agent_id}/test-call")
async def place_test_call(
    agent_id: AgentId,
    page: SignedPage,
    session: Changing,
    to: Annotated[str, Form(max_length=32)],
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        request = CallRequest.model_validate(
            {"agent_id": agent_id, "to": to.strip(), "recipient": {"name": name.strip()}}
        )
        placed = await page.resources.call_placer.place(request)
    except ValidationError as exc:
        call_errors = field_errors(exc.errors(include_url=False, include_input=False))
    except CallRefused as refused:
        call_errors = field_errors(refused.detail)
    else:
        log.info(
            "test call placed from the console",
            extra={"call_id": placed.call_id, "agent_id": agent_id, "actor": session.actor},
        )
        return redirect(f"{PREFIX}/live#call-{placed.call_id}")
    return await _agent_page(page, agent_id, call_errors=call_errors, status_code=422)
