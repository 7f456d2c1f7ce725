"""The `Idempotency-Key` of `POST /v1/calls`: persistence, the only MongoDB
writer, keeps one claim per key and grants it once.

gateway holds no state: before placing a call with a key it asks persistence
to claim the key for a fresh `call_id`. The claim is one atomic insert keyed
by the key's digest, so of any number of concurrent claims exactly one wins;
the others learn the winner's `call_id` and answer with that call. A claim
lives `ttl_s` (24 h; a TTL index removes it, and an expired claim is taken
over by the next claim of its key). When Twilio refuses the call or is not
reached, gateway releases the claim so a retry may place it. The claim keeps
the digest of the request that won it; gateway compares a later request's
with it (a retry, or the key reused for another call).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from callbot.common.contracts import (
    CallClaim,
    CallClaimed,
    CallClaimRelease,
    CallClaimReleased,
    utcnow,
)
from callbot.common.mongo import Document
from callbot.persistence.store import Clock

log = logging.getLogger(__name__)

# A key released between our failed insert and our read is claimed again.
_CLAIM_ATTEMPTS = 3


class HeldClaim(NamedTuple):
    """Who holds a key: the call it placed and the digest of its request."""

    call_id: str
    request_digest: str


class CallClaimStore(Protocol):
    async def ensure_indexes(self) -> None: ...

    async def claim(
        self, key: str, call_id: str, *, now: datetime, ttl_s: int, request_digest: str = ""
    ) -> HeldClaim:
        """Who holds the key: `call_id` itself when this claim won."""
        ...

    async def release(self, key: str, call_id: str) -> bool:
        """Drop the key's claim if `call_id` holds it."""
        ...


class MongoCallClaims:
    def __init__(self, claims: AsyncCollection[Document]) -> None:
        self._claims = claims

    async def ensure_indexes(self) -> None:
        await self._claims.create_index("expires_at", expireAfterSeconds=0)

    async def claim(
        self, key: str, call_id: str, *, now: datetime, ttl_s: int, request_digest: str = ""
    ) -> HeldClaim:
        fields = {
            "call_id": call_id,
            "request_digest": request_digest,
            "claimed_at": now,
            "expires_at": now + timedelta(seconds=ttl_s),
        }
        won = HeldClaim(call_id, request_digest)
        for _attempt in range(_CLAIM_ATTEMPTS):
            try:
                await self._claims.insert_one({"_id": key, **fields})
                return won
            except DuplicateKeyError:
                pass
            # The TTL monitor runs once a minute: an expired claim may still be there.
            if await self._claims.find_one_and_update(
                {"_id": key, "expires_at": {"$lte": now}}, {"$set": fields}
            ):
                return won
            held = await self._claims.find_one({"_id": key})
            if held is not None:
                return HeldClaim(str(held["call_id"]), str(held.get("request_digest", "")))
        raise RuntimeError(f"claim of key {key[:12]}… kept changing hands; retry")

    async def release(self, key: str, call_id: str) -> bool:
        result = await self._claims.delete_one({"_id": key, "call_id": call_id})
        return result.deleted_count == 1


class InMemoryCallClaims:
    def __init__(self) -> None:
        self._claims: dict[str, tuple[HeldClaim, datetime]] = {}

    async def ensure_indexes(self) -> None:
        return None

    async def claim(
        self, key: str, call_id: str, *, now: datetime, ttl_s: int, request_digest: str = ""
    ) -> HeldClaim:
        held = self._claims.get(key)
        if held is not None and held[1] > now:
            return held[0]
        won = HeldClaim(call_id, request_digest)
        self._claims[key] = (won, now + timedelta(seconds=ttl_s))
        return won

    async def release(self, key: str, call_id: str) -> bool:
        held = self._claims.get(key)
        if held is None or held[0].call_id != call_id:
            return False
        del self._claims[key]
        return True


async def claim_call(
    request: CallClaim, *, claims: CallClaimStore, clock: Clock = utcnow
) -> CallClaimed:
    held = await claims.claim(
        request.key,
        request.call_id,
        now=clock(),
        ttl_s=request.ttl_s,
        request_digest=request.request_digest,
    )
    won = held.call_id == request.call_id
    log.info(
        "idempotency key claimed" if won else "idempotency key already held",
        extra={"call_id": held.call_id, "key": request.key[:12]},
    )
    return CallClaimed(
        key=request.key, call_id=held.call_id, won=won, request_digest=held.request_digest
    )


async def release_call_claim(
    request: CallClaimRelease, *, claims: CallClaimStore
) -> CallClaimReleased:
    released = await claims.release(request.key, request.call_id)
    log.info("idempotency key released", extra={"call_id": request.call_id, "released": released})
    return CallClaimReleased(key=request.key, released=released)
