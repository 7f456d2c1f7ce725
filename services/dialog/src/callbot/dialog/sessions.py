"""Live sessions: a bounded LRU+TTL cache, rebuilt from the call document on a miss.

The call document (written by persistence from our `call.turn` events) is the
truth. A request's `seq` says how many turns must exist before it: when the
session here is behind (another replica served the last turns, or this one
just started), the document is polled until persistence has caught up, for a
short while, and then we go on with what is there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument, Turn
from callbot.common.contracts import DialogStart
from callbot.dialog.agent_cache import AgentCache
from callbot.dialog.domain.past_calls import PastConversation, summarise_past_calls
from callbot.dialog.domain.session import Session, document_next_seq
from callbot.dialog.metrics import CACHE_LOOKUPS, SESSIONS_LIVE
from callbot.dialog.store import DialogStore
from callbot.dialog.ttl_cache import TtlLruCache

log = logging.getLogger(__name__)

# Idle time after which a session is dropped; a later turn rebuilds it.
SESSION_TTL_S = 1800.0
# gateway usually publishes call.created long before the callee answers.
START_DOCUMENT_WAIT_S = 1.0
POLL_INTERVAL_S = 0.05


class CallNotFound(LookupError):
    """No call document to rebuild a session from."""


@dataclass
class _CallLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holders: int = 0


class SessionRegistry:
    def __init__(
        self,
        store: DialogStore,
        agents: AgentCache,
        *,
        max_size: int,
        ttl_s: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._agents = agents
        self._sessions: TtlLruCache[str, Session] = TtlLruCache(max_size, ttl_s, clock)
        self._locks: dict[str, _CallLock] = {}

    @asynccontextmanager
    async def exclusive(self, call_id: str) -> AsyncIterator[None]:
        """One request per call at a time in this replica (a duplicate waits,
        then finds the answer already recorded)."""
        entry = self._locks.setdefault(call_id, _CallLock())
        entry.holders += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.holders -= 1
            if entry.holders == 0:
                del self._locks[call_id]

    def keep(self, session: Session) -> None:
        self._sessions.put(session.call_id, session)
        SESSIONS_LIVE.set(len(self._sessions))

    def heard_interruption(self, call_id: str, line: Turn) -> None:
        """Cut the held session's line to what the callee heard (no-op when this
        replica holds no session: a rebuild reads the cut line from the document)."""
        session = self._sessions.get(call_id)
        if session is not None:
            session.heard_interruption(line)

    def evict(self, call_id: str) -> Session | None:
        """Drop the call's session; returns it when this replica held it."""
        session = self._sessions.pop(call_id)
        SESSIONS_LIVE.set(len(self._sessions))
        return session

    async def for_start(self, request: DialogStart) -> Session:
        cached = self._sessions.get(request.call_id)
        if cached is not None:
            CACHE_LOOKUPS.labels("session", "hit").inc()
            return cached
        CACHE_LOOKUPS.labels("session", "miss").inc()
        document = await self._poll_call(
            request.call_id, lambda found: found is not None, START_DOCUMENT_WAIT_S
        )
        agent = await self._agents.get(request.agent_id)
        if document is None:
            log.warning(
                "call document not stored yet; greeting without recipient data or variables",
                extra={"agent_id": request.agent_id},
            )
            session = Session(call_id=request.call_id, agent=agent)
        else:
            session = Session.from_document(document, agent, ())
        to = (document.to if document else None) or request.to
        session.past_conversations = await self._past_conversations(agent, to, request.call_id)
        session.known_data = await self._known_data(agent, to)
        if not agent.reconfirm_known_data:
            # What earlier calls collected counts as collected: not asked again.
            session.data_collected = {**session.known_data, **session.data_collected}
        self.keep(session)
        return session

    async def for_turn(self, call_id: str, seq: int, wait_s: float) -> Session:
        """The session with every turn before `seq`, waiting up to `wait_s` for them."""
        cached = self._sessions.get(call_id)
        if cached is not None and cached.next_seq >= seq:
            CACHE_LOOKUPS.labels("session", "hit").inc()
            return cached
        CACHE_LOOKUPS.labels("session", "miss" if cached is None else "behind").inc()
        document = await self._poll_call(
            call_id,
            lambda found: found is not None and document_next_seq(found) >= seq,
            wait_s,
        )
        if cached is not None:
            session = cached
            if document is not None:
                session.catch_up(document)
        else:
            session = await self._rebuild(call_id, document)
        if session.next_seq < seq:
            log.warning(
                "call document still behind the request after waiting; answering with the "
                "turns it has",
                extra={"seq": seq, "turns_before": session.next_seq, "waited_s": wait_s},
            )
        self.keep(session)
        return session

    async def _rebuild(self, call_id: str, document: CallDocument | None) -> Session:
        if document is None or document.agent_id is None:
            raise CallNotFound(
                f"call {call_id!r} has no session here and no call document with an agent_id "
                "to rebuild one from"
            )
        agent = await self._agents.get(document.agent_id)
        past = await self._past_conversations(agent, document.to, call_id)
        session = Session.from_document(document, agent, past)
        session.known_data = await self._known_data(agent, document.to)
        return session

    async def _known_data(self, agent: Agent, to: str | None) -> dict[str, Any]:
        """The recipient's values for the agent's fields, from earlier calls."""
        if not to:
            return {}
        recipient = await self._store.load_recipient(agent.agent_id, to)
        if recipient is None:
            return {}
        known = recipient.known_data()
        return {item.name: known[item.name] for item in agent.data_to_fill if item.name in known}

    async def _past_conversations(
        self, agent: Agent, to: str | None, call_id: str
    ) -> tuple[PastConversation, ...]:
        if not to or agent.past_calls == 0:
            return ()
        documents = await self._store.load_past_calls(agent.agent_id, to, call_id, agent.past_calls)
        return summarise_past_calls(documents, agent.past_calls_token_budget)

    async def _poll_call(
        self, call_id: str, ready: Callable[[CallDocument | None], bool], wait_s: float
    ) -> CallDocument | None:
        give_up_at = time.monotonic() + wait_s
        while True:
            document = await self._store.load_call(call_id)
            if ready(document) or time.monotonic() + POLL_INTERVAL_S >= give_up_at:
                return document
            await asyncio.sleep(POLL_INTERVAL_S)
