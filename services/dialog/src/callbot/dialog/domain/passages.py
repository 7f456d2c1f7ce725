"""Knowledge passages: documents split for retrieval, the query a turn asks,
and the passages that fit the agent's budget. Pure: no I/O.

Passages are about `TARGET_CHARS` long: whole paragraphs where they fit
(Markdown headings start a new passage and travel with it, so "Opening
hours" stays attached to the times under it), sentences where a paragraph is
too long, words as the last resort. A passage's id is `<document uri>#<n>`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from callbot.common.calls import Turn
from callbot.dialog.domain.session import Exchange

TARGET_CHARS = 600
MAX_CHARS = 1000
CHARS_PER_TOKEN = 4  # the same estimate as the past calls' budget
# The callee's words now and their utterance before: a follow-up ("and on
# Sundays?") needs what it follows. The agent's own lines are left out: they
# repeat the company's name and the greeting, which would rank the passages
# that mention those above the ones that answer.
QUERY_UTTERANCES = 2

_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Passage:
    id: str  # "<uri>#<n>"
    title: str  # the document's name, with the heading or page it sits under
    text: str

    @property
    def indexed_text(self) -> str:
        """What retrieval matches against: the title's words count too."""
        return f"{self.title}\n{self.text}"


def split_passages(uri: str, sections: Iterable[tuple[str, str]]) -> list[Passage]:
    """A document's passages; `sections` are (label, text), e.g. ("page 2", ...)."""
    name = uri.rsplit("/", 1)[-1]
    passages: list[Passage] = []
    for label, text in sections:
        for heading, body in _chunks(text):
            where = " / ".join(part for part in (name, label, heading) if part)
            passages.append(Passage(f"{uri}#{len(passages)}", where, body))
    return passages


def _chunks(text: str) -> Iterable[tuple[str, str]]:
    """(heading, passage text) in document order."""
    heading = ""
    pending: list[str] = []

    def flush() -> Iterable[tuple[str, str]]:
        if pending:
            yield heading, "\n".join(pending)
            pending.clear()

    for paragraph in _paragraphs(text):
        match = _HEADING.match(paragraph)
        if match:
            yield from flush()
            heading = match["title"]
            continue
        for piece in _pieces(paragraph):
            if pending and sum(map(len, pending)) + len(piece) > TARGET_CHARS:
                yield from flush()
            pending.append(piece)
    yield from flush()


def _paragraphs(text: str) -> Iterable[str]:
    """Blank-line separated blocks, each on one line; a Markdown heading is its own block."""
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if _HEADING.match(stripped):
            if block:
                yield " ".join(block)
                block = []
            yield stripped
        elif stripped:
            block.append(stripped)
        elif block:
            yield " ".join(block)
            block = []
    if block:
        yield " ".join(block)


def _pieces(paragraph: str) -> Iterable[str]:
    """The paragraph, or its sentences (or word runs) when it is longer than MAX_CHARS."""
    if len(paragraph) <= MAX_CHARS:
        yield paragraph
        return
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > MAX_CHARS:
            cut = sentence.rfind(" ", 0, MAX_CHARS)
            cut = cut if cut > 0 else MAX_CHARS
            yield sentence[:cut]
            sentence = sentence[cut:].lstrip()
        if sentence:
            yield sentence


def retrieval_query(turns: Sequence[Turn], heard: Turn) -> str:
    """The callee's new words and what they said just before."""
    said = [turn.content for turn in turns if turn.role == "user" and not turn.no_input]
    return "\n".join([*said[-(QUERY_UTTERANCES - 1) :], heard.content])


def within_budget(ranked: Iterable[Passage], token_budget: int) -> list[Passage]:
    """The best passages, in rank order, whose text fits `token_budget`; the
    best one is clipped to the budget when even it does not fit."""
    budget = token_budget * CHARS_PER_TOKEN
    chosen: list[Passage] = []
    used = 0
    for passage in ranked:
        size = len(passage.title) + len(passage.text)
        if used + size <= budget:
            chosen.append(passage)
            used += size
        elif not chosen:
            room = max(budget - len(passage.title), 0)
            clipped = passage.text[:room].rsplit(" ", 1)[0]
            chosen.append(Passage(passage.id, passage.title, clipped + " ..."))
            break
    return chosen


def knowledge_message(passages: Sequence[Passage]) -> str:
    """The system message that puts the passages in the model's context."""
    quoted = "\n\n".join(f"[{passage.title}]\n{passage.text}" for passage in passages)
    return (
        "Passages from the agent's documents that may answer the callee. Answer from "
        "them when they do; never invent facts they do not state; when they do not "
        "answer, say you will find out.\n\n" + quoted
    )


def with_passages(exchange: Exchange, passages: Sequence[Passage]) -> Exchange:
    """The exchange with the ids of the passages the model had on the line it answered."""
    if not passages:
        return exchange
    ids = tuple(passage.id for passage in passages)
    spoken = exchange.spoken.model_copy(update={"passages": ids})
    return replace(exchange, turns=(*exchange.turns[:-1], spoken))
