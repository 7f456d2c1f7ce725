"""Whether callbot placed the call a Twilio callback names, and what becomes
of a callback for a call it never placed (an orphan).

A signed callback can still name a call callbot never placed: a replayed
webhook, another application's call on the same Twilio account pointed at our
URLs, a call whose id was mistyped in a test. Stored, it would create a call
document with no agent and no number, and persistence would announce it on
`call.completed`; so an orphan is answered harmlessly (TwiML that hangs up, or
the callback's usual empty answer), counted and logged as a warning with its
call id, and nothing is asked of dialog or published.

A call is placed once persistence stored its `call.created` (its document has
an `agent_id`). gateway publishes `call.created` as soon as Twilio accepted
the call, and Twilio's first status callback may overtake it, so an unknown
call is looked up again for `ORPHAN_WAIT_MS` before it is called an orphan;
only orphans pay that wait. When MongoDB does not answer within `read_timeout_s`,
the callback is taken as placed (fail open): refusing it would lose a real
call's callbacks for as long as the outage lasts, and an orphan costs less.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from callbot.gateway.metrics import ORPHAN_CALLBACKS

log = logging.getLogger(__name__)

_POLL_S = 0.1
READ_TIMEOUT_S = 1.0


class PlacedCallReader(Protocol):
    async def call_placed(self, call_id: str) -> bool:
        """The call's `call.created` is stored."""
        ...


class PlacedCalls:
    def __init__(
        self,
        reader: PlacedCallReader,
        *,
        wait_s: float,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self._reader = reader
        self._wait_s = wait_s
        self._read_timeout_s = read_timeout_s

    async def placed(self, call_id: str) -> bool:
        """True for a call callbot placed (or when MongoDB cannot say)."""
        give_up_at = time.monotonic() + self._wait_s
        while True:
            try:
                async with asyncio.timeout(self._read_timeout_s):
                    if await self._reader.call_placed(call_id):
                        return True
            except Exception as exc:  # MongoDB away or slow: fail open (module docstring)
                log.warning(
                    "could not tell whether callbot placed this call; taking the callback as "
                    "its own",
                    extra={"error": repr(exc)},
                )
                return True
            if time.monotonic() + _POLL_S > give_up_at:
                return False
            await asyncio.sleep(_POLL_S)


def record_orphan(call_id: str, kind: str, path: str) -> None:
    """Count and log a callback for a call callbot never placed."""
    ORPHAN_CALLBACKS.labels(kind).inc()
    log.warning(
        "callback for a call callbot never placed: answered harmlessly; no call document, no event",
        extra={"call_id": call_id, "callback": kind, "path": path},
    )
