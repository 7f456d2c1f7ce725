"""Agents kept in memory: one MongoDB read per miss, dropped on `agent.updated`.

The TTL bounds how stale a copy can get if an `agent.updated` event is missed
(e.g. while this replica was reconnecting to the broker).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from callbot.common.agents import Agent
from callbot.dialog.metrics import CACHE_LOOKUPS
from callbot.dialog.store import DialogStore
from callbot.dialog.ttl_cache import TtlLruCache

AGENT_TTL_S = 60.0
MAX_AGENTS = 512


class AgentNotFound(LookupError):
    """No agent with this id is stored."""


class AgentCache:
    def __init__(
        self,
        store: DialogStore,
        *,
        ttl_s: float = AGENT_TTL_S,
        max_size: int = MAX_AGENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._agents: TtlLruCache[str, Agent] = TtlLruCache(max_size, ttl_s, clock)

    async def get(self, agent_id: str) -> Agent:
        cached = self._agents.get(agent_id)
        if cached is not None:
            CACHE_LOOKUPS.labels("agent", "hit").inc()
            return cached
        CACHE_LOOKUPS.labels("agent", "miss").inc()
        agent = await self._store.load_agent(agent_id)
        if agent is None:
            raise AgentNotFound(f"agent {agent_id!r} does not exist in the agents collection")
        self._agents.put(agent_id, agent)
        return agent

    def drop(self, agent_id: str) -> None:
        self._agents.pop(agent_id)
