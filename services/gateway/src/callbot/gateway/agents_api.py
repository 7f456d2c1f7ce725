"""`/v1/agents`: reading an agent, and saving one through persistence (the
only writer of MongoDB)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from callbot.common.agents import Agent
from callbot.common.contracts import PERSISTENCE_RESPONSE_ADAPTER, AgentSave, RpcFailure
from callbot.common.mcp_servers import McpServerList
from callbot.common.messaging import RpcError, RpcTimeout
from callbot.gateway.deps import Resources, require_api_key
from callbot.gateway.mcp_check import mcp_errors

# Saving an agent is not on a call's critical path; persistence may be busy.
AGENT_SAVE_TIMEOUT_S = 5.0

router = APIRouter(prefix="/v1/agents", tags=["agents"], dependencies=[Depends(require_api_key)])

AgentId = Annotated[str, Path(min_length=1, max_length=64)]


class AgentDefinition(Agent):
    """An agent as a client writes it: the id comes from the URL, and
    persistence sets the version and the timestamps. The `Agent` validators
    (template placeholders, field names) run on it as they do on `Agent`."""

    agent_id: SkipJsonSchema[str] = Field(default="", exclude=True)
    mcp: McpServerList = ()  # new saves take well-formed servers only
    version: SkipJsonSchema[int] = Field(default=1, exclude=True)
    created_at: SkipJsonSchema[datetime | None] = Field(default=None, exclude=True)
    updated_at: SkipJsonSchema[datetime | None] = Field(default=None, exclude=True)


class AgentSaveResult(BaseModel):
    agent_id: str
    version: int


_FAILURE_STATUS = {
    "bad_request": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "not_found": status.HTTP_404_NOT_FOUND,
    "internal": status.HTTP_502_BAD_GATEWAY,
}


@router.get("/{agent_id}", responses={404: {"description": "No such agent."}})
async def get_agent(agent_id: AgentId, resources: Resources) -> Agent:
    agent = await resources.documents.agent(agent_id)
    if agent is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"agent {agent_id!r} not found")
    return agent


@router.put(
    "/{agent_id}",
    responses={
        422: {
            "description": "The definition is invalid (e.g. an unknown template placeholder, "
            "an MCP server that is not allowed or cannot be reached)."
        },
        503: {"description": "persistence could not be reached."},
        504: {"description": "persistence did not answer in time; retry (a PUT is idempotent)."},
    },
)
async def save_agent(
    agent_id: AgentId, definition: AgentDefinition, resources: Resources
) -> AgentSaveResult:
    try:
        agent = Agent.model_validate({**definition.model_dump(), "agent_id": agent_id})
    except ValidationError as exc:
        # The id in the URL is the only part not validated with the body.
        raise RequestValidationError(exc.errors(include_url=False)) from None
    mcp_problems = await mcp_errors(definition.mcp, resources.mcp)
    if mcp_problems:
        raise RequestValidationError(mcp_problems)
    try:
        reply = await resources.rpc.call(
            resources.topology.persistence_rpc_queue,
            AgentSave(agent=agent),
            PERSISTENCE_RESPONSE_ADAPTER,
            timeout_s=AGENT_SAVE_TIMEOUT_S,
        )
    except RpcTimeout as exc:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT,
            f"persistence did not confirm the save within {AGENT_SAVE_TIMEOUT_S:.0f}s; "
            "the agent may or may not be saved: retry the PUT",
        ) from exc
    except RpcError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    if isinstance(reply, RpcFailure):
        raise HTTPException(_FAILURE_STATUS[reply.code], f"persistence: {reply.message}")
    return AgentSaveResult(agent_id=reply.agent_id, version=reply.version)
