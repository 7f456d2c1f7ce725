"""The `Idempotency-Key` claims: one contract for the in-memory fake and
MongoDB. Of any number of concurrent claims of a key exactly one wins; the
others get the winner's call id; an expired or released claim is granted again."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.contracts import utcnow
from callbot.common.mongo import CALL_CLAIMS, Document
from callbot.persistence.call_claims import (
    CallClaimStore,
    HeldClaim,
    InMemoryCallClaims,
    MongoCallClaims,
)

DAY_S = 86_400


class CallClaimsContract:
    @pytest.fixture
    def claims(self) -> CallClaimStore:
        raise NotImplementedError("each store's test class provides it")

    async def test_concurrent_claims_of_a_key_have_one_winner(self, claims: CallClaimStore) -> None:
        now = utcnow()
        holders = await asyncio.gather(
            *(claims.claim("k1", f"call-{n}", now=now, ttl_s=DAY_S) for n in range(10))
        )
        owners = [holder.call_id for holder in holders]
        assert len(set(owners)) == 1
        [winner] = set(owners)
        assert winner in {f"call-{n}" for n in range(10)}
        assert (await claims.claim("k1", "call-late", now=now, ttl_s=DAY_S)).call_id == winner
        other = await claims.claim("k2", "call-other", now=now, ttl_s=DAY_S)
        assert other.call_id == "call-other"

    async def test_an_expired_claim_is_granted_again(self, claims: CallClaimStore) -> None:
        now = utcnow()
        assert (await claims.claim("k1", "first", now=now, ttl_s=DAY_S)).call_id == "first"
        later = now + timedelta(seconds=DAY_S - 1)
        assert (await claims.claim("k1", "second", now=later, ttl_s=DAY_S)).call_id == "first"
        expired = now + timedelta(seconds=DAY_S + 1)
        assert (await claims.claim("k1", "third", now=expired, ttl_s=DAY_S)).call_id == "third"

    async def test_only_the_holder_releases_a_claim(self, claims: CallClaimStore) -> None:
        now = utcnow()
        await claims.claim("k1", "first", now=now, ttl_s=DAY_S)
        assert await claims.release("k1", "someone-else") is False
        assert (await claims.claim("k1", "second", now=now, ttl_s=DAY_S)).call_id == "first"
        assert await claims.release("k1", "first") is True
        assert (await claims.claim("k1", "second", now=now, ttl_s=DAY_S)).call_id == "second"

    async def test_a_later_claim_learns_the_digest_of_the_winners_request(
        self, claims: CallClaimStore
    ) -> None:
        now = utcnow()
        won = await claims.claim("k1", "first", now=now, ttl_s=DAY_S, request_digest="d-first")
        assert won == HeldClaim("first", "d-first")
        later = await claims.claim("k1", "second", now=now, ttl_s=DAY_S, request_digest="d-other")
        assert later == HeldClaim("first", "d-first")
        expired = now + timedelta(seconds=DAY_S + 1)
        taken_over = await claims.claim(
            "k1", "third", now=expired, ttl_s=DAY_S, request_digest="d-third"
        )
        assert taken_over == HeldClaim("third", "d-third")


class TestInMemoryCallClaims(CallClaimsContract):
    @pytest.fixture
    def claims(self) -> CallClaimStore:
        return InMemoryCallClaims()


@pytest.mark.mongo
class TestMongoCallClaims(CallClaimsContract):
    @pytest.fixture
    async def claims(self, mongo_db: AsyncDatabase[Document]) -> CallClaimStore:
        claims = MongoCallClaims(mongo_db[CALL_CLAIMS])
        await claims.ensure_indexes()
        return claims

    async def test_claims_expire_through_a_ttl_index(
        self, claims: CallClaimStore, mongo_db: AsyncDatabase[Document]
    ) -> None:
        indexes = await mongo_db[CALL_CLAIMS].index_information()
        assert any(index.get("expireAfterSeconds") == 0 for index in indexes.values())
