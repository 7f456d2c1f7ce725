"""`/v1/agents`: reading an agent, and saving one through persistence (the
only writer of MongoDB)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from callbot.common.agents import (
    Agent,
    AgentAudio,
    DataField,
    FewShotMessage,
    LlmOptions,
    SpeechOptions,
)
from callbot.common.contracts import PERSISTENCE_RESPONSE_ADAPTER, AgentSave, AgentSaved, RpcFailure
from callbot.common.mcp_servers import McpServerList
from callbot.common.messaging import RpcError, RpcTimeout
from callbot.common.object_storage import ObjectStorageUnavailable
from callbot.gateway.agent_files_check import agent_file_errors
from callbot.gateway.deps import Resources, require_api_key
from callbot.gateway.mcp_check import mcp_errors
from callbot.gateway.resources import GatewayResources

# Saving an agent is not on a call's critical path; persistence may be busy.
AGENT_SAVE_TIMEOUT_S = 5.0

router = APIRouter(prefix="/v1/agents", tags=["agents"], dependencies=[Depends(require_api_key)])

AgentId = Annotated[str, Path(min_length=1, max_length=64)]


# A client's agent refuses what it does not know (a typo like `gretting` would
# otherwise be dropped and the agent saved without it); agents read back from
# MongoDB stay lenient (`Agent`), so a field removed later never breaks them.
_FORBID_UNKNOWN = ConfigDict(extra="forbid")


class _DataFieldInput(DataField):
    model_config = _FORBID_UNKNOWN


class _FewShotInput(FewShotMessage):
    model_config = _FORBID_UNKNOWN


class _LlmInput(LlmOptions):
    model_config = _FORBID_UNKNOWN


class _SpeechInput(SpeechOptions):
    model_config = _FORBID_UNKNOWN


class _AudioInput(AgentAudio):
    model_config = _FORBID_UNKNOWN


class AgentDefinition(Agent):
    """An agent as a client writes it: the id comes from the URL (a body's
    `agent_id` must equal it), and persistence sets the version and the
    timestamps. The `Agent` validators (template placeholders, field names) run
    on it as they do on `Agent`; unknown fields are refused."""

    model_config = _FORBID_UNKNOWN

    agent_id: SkipJsonSchema[str] = Field(default="", exclude=True)
    few_shot: tuple[_FewShotInput, ...] = ()
    data_to_fill: tuple[_DataFieldInput, ...] = ()
    llm: _LlmInput = _LlmInput()
    speech: _SpeechInput = _SpeechInput()
    audio: _AudioInput = _AudioInput()
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
            "an MCP server that is not allowed or cannot be reached, a knowledge document "
            "or audio file that cannot be fetched or read)."
        },
        503: {"description": "persistence or object storage could not be reached."},
        504: {"description": "persistence did not answer in time; retry (a PUT is idempotent)."},
    },
)
async def save_agent(
    agent_id: AgentId, definition: AgentDefinition, resources: Resources
) -> AgentSaveResult:
    return await store_agent(agent_id, definition, resources)


async def store_agent(
    agent_id: str, definition: AgentDefinition, resources: GatewayResources
) -> AgentSaveResult:
    """Check and save an agent through persistence: the API and the console alike.
    Raises `RequestValidationError` (what is wrong, by field) or `HTTPException`."""
    if definition.agent_id and definition.agent_id != agent_id:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "agent_id"),
                    "msg": f"agent_id {definition.agent_id!r} differs from the URL's "
                    f"{agent_id!r}: leave it out, or PUT /v1/agents/{definition.agent_id}",
                }
            ]
        )
    try:
        agent = Agent.model_validate({**definition.model_dump(), "agent_id": agent_id})
    except ValidationError as exc:
        # The id in the URL is the only part not validated with the body.
        raise RequestValidationError(
            [
                {**error, "loc": ("path", *error["loc"])}
                for error in exc.errors(include_url=False, include_input=False)
            ]
        ) from None
    ceiling = resources.settings.retention_days
    if ceiling and agent.retention_days is not None and agent.retention_days > ceiling:
        # The recordings bucket's lifecycle rule expires every recording after
        # RETENTION_DAYS: a longer agent retention would keep its documents only.
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "retention_days"),
                    "msg": f"retention_days {agent.retention_days} is longer than this "
                    f"deployment keeps recordings (RETENTION_DAYS={ceiling}): give at most "
                    f"{ceiling}, or raise RETENTION_DAYS",
                }
            ]
        )
    mcp_problems = await mcp_errors(definition.mcp, resources.mcp)
    try:
        file_problems = await agent_file_errors(
            agent, resources.objects, resources.settings.s3_agent_files_bucket
        )
    except ObjectStorageUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"object storage is unreachable, so the agent's files cannot be checked ({exc}); "
            "nothing was saved: retry",
            headers={"Retry-After": "5"},
        ) from exc
    if mcp_problems or file_problems:
        raise RequestValidationError([*mcp_problems, *file_problems])
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
    if not isinstance(reply, AgentSaved):
        if isinstance(reply, RpcFailure):
            raise HTTPException(_FAILURE_STATUS[reply.code], f"persistence: {reply.message}")
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"persistence answered {reply.type}")
    return AgentSaveResult(agent_id=reply.agent_id, version=reply.version)
