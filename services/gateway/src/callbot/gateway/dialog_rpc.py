"""Asking dialog what to say, within the turn deadline.

`ask` never raises for dialog's sake: a timeout, a broker away, an invalid
reply or an `RpcFailure` all return None, logged and counted, and the caller
answers Twilio with a fallback reply instead. The call never dies because
dialog was slow.
"""

from __future__ import annotations

import logging

from callbot.common.contracts import (
    DIALOG_RESPONSE_ADAPTER,
    DialogReply,
    DialogStart,
    DialogTurn,
    RpcFailure,
)
from callbot.common.messaging import (
    RpcBadReply,
    RpcClient,
    RpcError,
    RpcTimeout,
    RpcUnavailable,
)
from callbot.gateway.metrics import DIALOG_FALLBACKS

log = logging.getLogger(__name__)

_REASONS: dict[type[RpcError], str] = {
    RpcTimeout: "timeout",
    RpcUnavailable: "unavailable",
    RpcBadReply: "bad_reply",
}


class DialogRpc:
    def __init__(self, rpc: RpcClient, queue: str, deadline_s: float) -> None:
        self._rpc = rpc
        self._queue = queue
        self._deadline_s = deadline_s

    async def ask(self, request: DialogStart | DialogTurn) -> DialogReply | None:
        """dialog's reply, or None when the caller must fall back."""
        try:
            response = await self._rpc.call(
                self._queue, request, DIALOG_RESPONSE_ADAPTER, timeout_s=self._deadline_s
            )
        except RpcError as exc:
            _count_fallback(request, _REASONS.get(type(exc), "error"), str(exc))
            return None
        if isinstance(response, RpcFailure):
            _count_fallback(request, "rpc_failure", f"{response.code}: {response.message}")
            return None
        return response


def _count_fallback(request: DialogStart | DialogTurn, reason: str, detail: str) -> None:
    DIALOG_FALLBACKS.labels(request.type, reason).inc()
    log.warning(
        "dialog gave no usable reply; answering Twilio with the fallback TwiML",
        extra={"method": request.type, "reason": reason, "detail": detail},
    )
