"""`DELETE /v1/recipients/{agent_id}/{to}`: erase a recipient's data on request.

persistence does the erasing (it alone writes MongoDB, and erases recordings
before the documents that point at them); gateway asks it and answers with
what was erased and the audit record's id. Erasing again is harmless.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel

from callbot.common.contracts import (
    PERSISTENCE_RESPONSE_ADAPTER,
    RecipientErase,
    RecipientErased,
    RpcFailure,
)
from callbot.common.messaging import RpcError, RpcTimeout
from callbot.gateway.deps import ApiKey, Resources

# Erasing walks every call of the recipient, and their recordings.
ERASE_TIMEOUT_S = 30.0

router = APIRouter(tags=["recipients"])


class ErasureResult(BaseModel):
    agent_id: str
    to: str
    audit_id: str
    calls_erased: int
    objects_erased: int
    opted_out: bool


@router.delete("/v1/recipients/{agent_id}/{to}")
async def erase_recipient(
    agent_id: Annotated[str, Path(min_length=1, max_length=64)],
    to: Annotated[str, Path(min_length=1, max_length=32)],
    api_key: ApiKey,
    resources: Resources,
    reason: Annotated[str, Query(max_length=500)] = "",
) -> ErasureResult:
    """Erase the recipient's calls, recordings, transcripts, summaries and
    collected data everywhere; the opt-out alone is kept, so they are not
    called again. An audit record says who asked (a digest of the API key)."""
    request = RecipientErase(
        agent_id=agent_id,
        to=to,
        requested_by=f"api-key:{hashlib.sha256(api_key.encode()).hexdigest()[:16]}",
        reason=reason,
    )
    try:
        reply = await resources.rpc.call(
            resources.topology.persistence_rpc_queue,
            request,
            PERSISTENCE_RESPONSE_ADAPTER,
            timeout_s=ERASE_TIMEOUT_S,
        )
    except RpcTimeout as exc:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT,
            f"persistence did not confirm the erasure within {ERASE_TIMEOUT_S:.0f}s; "
            "it may be partly done: send the DELETE again",
        ) from exc
    except RpcError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    if isinstance(reply, RpcFailure):
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            f"persistence could not erase: {reply.message}; send the DELETE again",
        )
    if not isinstance(reply, RecipientErased):
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"persistence answered {reply.type}")
    return ErasureResult(agent_id=agent_id, to=to, **reply.model_dump(exclude={"type"}))
