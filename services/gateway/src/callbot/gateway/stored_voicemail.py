"""The agent's voicemail message when dialog did not give it in time, rendered
from the stored agent and call document (`domain.fallback.voicemail_fallback`).

Read once dialog's deadline has passed, so within `READ_TIMEOUT_S`: Twilio
waits for the answer TwiML. Without the documents (MongoDB away or slow, an
agent deleted) there is no message to leave, and gateway hangs up silently.
"""

from __future__ import annotations

import asyncio
import logging

from callbot.common.contracts import CallFallbackSpoken, DialogReply, utcnow
from callbot.gateway.domain.fallback import voicemail_fallback
from callbot.gateway.placed_calls import READ_TIMEOUT_S
from callbot.gateway.stored_documents import DocumentReader

log = logging.getLogger(__name__)


async def stored_voicemail_fallback(
    documents: DocumentReader, call_id: str, agent_id: str
) -> tuple[DialogReply, CallFallbackSpoken] | None:
    """The voicemail reply gateway gives in dialog's place, and the line the
    machine will hear (`call.fallback`); None when it cannot be rendered."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            agent, call = await asyncio.gather(documents.agent(agent_id), documents.call(call_id))
    except Exception as exc:  # MongoDB away or slow: no message to leave
        log.warning(
            "could not read the agent and the call to leave the voicemail message; "
            "hanging up without it",
            extra={"error": repr(exc), "agent_id": agent_id},
        )
        return None
    if agent is None or call is None:
        log.warning(
            "the agent or the call is not stored; hanging up without a voicemail message",
            extra={"agent_id": agent_id, "agent_found": agent is not None},
        )
        return None
    return voicemail_fallback(agent, call, utcnow())
