"""`Idempotency-Key` claims through persistence's RPC queue (persistence alone
writes MongoDB; gateway keeps no state)."""

from __future__ import annotations

import logging

from fastapi import status

from callbot.common.contracts import (
    PERSISTENCE_RESPONSE_ADAPTER,
    CallClaim,
    CallClaimed,
    CallClaimRelease,
    RpcFailure,
)
from callbot.common.messaging import RpcClient, RpcError
from callbot.gateway.call_placing import CallRefused

log = logging.getLogger(__name__)

CLAIM_TIMEOUT_S = 5.0


class PersistenceCallClaims:
    def __init__(self, rpc: RpcClient, queue: str) -> None:
        self._rpc = rpc
        self._queue = queue

    async def claim(self, key: str, call_id: str, ttl_s: int, request_digest: str) -> CallClaimed:
        try:
            reply = await self._rpc.call(
                self._queue,
                CallClaim(key=key, call_id=call_id, ttl_s=ttl_s, request_digest=request_digest),
                PERSISTENCE_RESPONSE_ADAPTER,
                timeout_s=CLAIM_TIMEOUT_S,
            )
        except RpcError as exc:
            # The claim may have been made without its answer reaching us: undo it,
            # so the client's retry with the same key is not refused for a day.
            await self.release(key, call_id)
            raise _unavailable(str(exc)) from exc
        if isinstance(reply, CallClaimed):
            return reply
        message = reply.message if isinstance(reply, RpcFailure) else f"unexpected {reply.type}"
        raise _unavailable(message)

    async def release(self, key: str, call_id: str) -> None:
        """Best effort: a claim left behind only makes retries with that key wait."""
        try:
            await self._rpc.call(
                self._queue,
                CallClaimRelease(key=key, call_id=call_id),
                PERSISTENCE_RESPONSE_ADAPTER,
                timeout_s=CLAIM_TIMEOUT_S,
            )
        except RpcError as exc:
            log.warning(
                "could not release an Idempotency-Key claim; retries with that key will "
                "get 409 until it expires (24 h)",
                extra={"call_id": call_id, "error": str(exc)},
            )


def _unavailable(reason: str) -> CallRefused:
    return CallRefused(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"the Idempotency-Key could not be checked (persistence: {reason}); no call was "
        "placed: retry with the same key",
        headers={"Retry-After": "2"},
    )
