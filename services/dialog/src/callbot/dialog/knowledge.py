"""An agent's documents as knowledge: read once per agent version, split into
passages, indexed with BM25 (bm25s), searched every model turn.

`AgentKnowledge.prepare` starts the build when a call of the agent version
starts (the greeting needs no knowledge, so the callee's first answer usually
finds the index ready); concurrent calls share one build. `passages` waits
for it at most a share of the turn's time: a build not ready by then, or a
document that could not be read, costs that turn its passages, never the
call. An index built without some document is rebuilt after
`RETRY_PARTIAL_S`; a complete one stays until `agent.updated` drops it (a
version's documents are fixed) or the LRU pushes it out.

Reading and indexing documents is CPU work (pypdf, tokenising): it runs in a
thread, off the event loop that serves every call of this replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import bm25s
import snowballstemmer

from callbot.common.agent_documents import DocumentUnreadable, document_text, read_document
from callbot.common.agents import Agent
from callbot.common.object_storage import (
    ObjectLocation,
    ObjectNotFound,
    ObjectStorageError,
    ObjectStore,
)
from callbot.dialog.domain.passages import Passage, split_passages
from callbot.dialog.metrics import KNOWLEDGE_DOCUMENTS
from callbot.dialog.ttl_cache import TtlLruCache

log = logging.getLogger(__name__)

MAX_AGENT_VERSIONS = 128
COMPLETE_TTL_S = 24 * 3600.0
RETRY_PARTIAL_S = 30.0
# Passages ranked per turn; the agent's token budget then keeps the best that fit.
TOP_K = 5
# The share of the turn's remaining time a turn may wait for a build in progress.
WAIT_SHARE = 0.2

_STEMMER = snowballstemmer.stemmer("english")


def _tokens(texts: list[str]) -> list[list[str]]:
    tokenized: list[list[str]] = bm25s.tokenize(
        texts, stopwords="en", stemmer=_STEMMER.stemWords, return_ids=False, show_progress=False
    )
    return tokenized


class KnowledgeIndex:
    """One agent version's passages under BM25 (bm25s' sparse scores)."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.passages = tuple(passages)
        self._retriever = bm25s.BM25()
        if self.passages:
            self._retriever.index(
                _tokens([passage.indexed_text for passage in self.passages]), show_progress=False
            )

    def search(self, query: str, k: int = TOP_K) -> list[Passage]:
        """The passages that share words with `query`, best first."""
        if not self.passages:
            return []
        ids, scores = self._retriever.retrieve(
            _tokens([query]), k=min(k, len(self.passages)), show_progress=False
        )
        return [
            self.passages[int(index)]
            for index, score in zip(ids[0], scores[0], strict=True)
            if score > 0
        ]


@dataclass(frozen=True)
class _Built:
    index: KnowledgeIndex
    complete: bool  # False: some document could not be read; rebuilt later


class AgentKnowledge:
    def __init__(
        self, store: ObjectStore, bucket: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._bucket = bucket
        self._complete: TtlLruCache[tuple[str, int], _Built] = TtlLruCache(
            MAX_AGENT_VERSIONS, COMPLETE_TTL_S, clock
        )
        self._partial: TtlLruCache[tuple[str, int], _Built] = TtlLruCache(
            MAX_AGENT_VERSIONS, RETRY_PARTIAL_S, clock
        )
        self._building: dict[tuple[str, int], asyncio.Task[_Built]] = {}

    def drop(self, agent_id: str) -> None:
        """`agent.updated`: the next call builds the new version's index."""
        for cache in (self._complete, self._partial):
            for key in [key for key in cache.keys_held() if key[0] == agent_id]:
                cache.pop(key)

    def prepare(self, agent: Agent) -> asyncio.Task[_Built] | None:
        """Start building the agent version's index unless it is built or building."""
        key = (agent.agent_id, agent.version)
        if not agent.knowledge or self._built(key) is not None:
            return None
        task = self._building.get(key)
        if task is None:
            task = asyncio.create_task(self._build(agent), name=f"knowledge-{key[0]}-{key[1]}")
            self._building[key] = task
            task.add_done_callback(lambda _done: self._building.pop(key, None))
        return task

    async def passages(self, agent: Agent, query: str, time_left_s: float) -> list[Passage] | None:
        """The passages for `query`, best first; None when the index is not ready in time."""
        key = (agent.agent_id, agent.version)
        built = self._built(key)
        if built is None:
            task = self.prepare(agent)
            if task is None:
                return []
            try:
                built = await asyncio.wait_for(asyncio.shield(task), time_left_s * WAIT_SHARE)
            except TimeoutError:
                log.warning(
                    "knowledge index not ready within the turn; this turn has no passages",
                    extra={"agent_id": agent.agent_id, "version": agent.version},
                )
                return None
        return built.index.search(query)

    def _built(self, key: tuple[str, int]) -> _Built | None:
        return self._complete.get(key) or self._partial.get(key)

    async def _build(self, agent: Agent) -> _Built:
        started = time.perf_counter()
        read = await asyncio.gather(*(self._read(uri) for uri in agent.knowledge))
        passages = [passage for document in read if document for passage in document]
        index = await asyncio.to_thread(KnowledgeIndex, passages)
        built = _Built(index, complete=all(document is not None for document in read))
        key = (agent.agent_id, agent.version)
        (self._complete if built.complete else self._partial).put(key, built)
        log.info(
            "knowledge index built",
            extra={
                "agent_id": agent.agent_id,
                "version": agent.version,
                "documents": len(agent.knowledge),
                "unread": sum(document is None for document in read),
                "passages": len(passages),
                "build_ms": round((time.perf_counter() - started) * 1000),
            },
        )
        return built

    async def _read(self, uri: str) -> list[Passage] | None:
        """The document's passages, or None (logged) when it cannot be read now."""
        location = ObjectLocation.parse(uri)
        outcome = "ok"
        try:
            if location.bucket != self._bucket:
                raise DocumentUnreadable(f"{uri} is not in the agent files bucket {self._bucket!r}")
            data = await read_document(self._store, location)
            sections = await asyncio.to_thread(document_text, location, data)
            return split_passages(uri, [(section.label, section.text) for section in sections])
        except (DocumentUnreadable, ObjectNotFound) as exc:
            outcome, error = "unreadable", str(exc)
        except ObjectStorageError as exc:
            outcome, error = "unavailable", str(exc)
        finally:
            KNOWLEDGE_DOCUMENTS.labels(outcome).inc()
        log.warning(
            "an agent document could not be read; calls go on without it",
            extra={"document": uri, "outcome": outcome, "error": error},
        )
        return None
