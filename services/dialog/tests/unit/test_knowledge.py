"""Knowledge: passages split from documents, the query, the budget, BM25
ranking, the per-version index (built once, shared, dropped, partial), and
the passages reaching the model and the stored turn. Object storage is the
in-memory fake: no I/O."""

from __future__ import annotations

import asyncio

from dialog_doubles import ScriptedModel, make_agent, make_call, said

from callbot.common.contracts import AgentUpdated, CallTurnRecorded, DialogStart, DialogTurn
from callbot.common.messaging import Deadline
from callbot.common.object_storage import InMemoryObjectStore, ObjectLocation
from callbot.dialog.agent_cache import AgentCache
from callbot.dialog.domain.passages import (
    MAX_CHARS,
    Passage,
    knowledge_message,
    retrieval_query,
    split_passages,
    within_budget,
)
from callbot.dialog.handlers import DialogPorts, handle_event, handle_request
from callbot.dialog.knowledge import RETRY_PARTIAL_S, AgentKnowledge, KnowledgeIndex
from callbot.dialog.sessions import SessionRegistry
from callbot.dialog.store import InMemoryDialogStore
from callbot.testkit.documents import text_pdf

BUCKET = "acme-files"
HOURS = f"s3://{BUCKET}/hours.md"
DELIVERY = f"s3://{BUCKET}/delivery.pdf"
HOURS_MD = """# Acme

A hardware shop in the old town.

## Opening hours

The shop opens at 8:30 on weekdays
and at 10:00 on Saturdays.

Closed on Sundays.

## Returns

Items can be returned within 30 days.
"""


def test_markdown_headings_start_passages_and_travel_with_them() -> None:
    passages = split_passages(HOURS, [("", HOURS_MD)])
    assert [(p.id, p.title, p.text) for p in passages] == [
        (f"{HOURS}#0", "hours.md / Acme", "A hardware shop in the old town."),
        (
            f"{HOURS}#1",
            "hours.md / Opening hours",
            # Lines of a paragraph are joined; paragraphs that fit stay together.
            "The shop opens at 8:30 on weekdays and at 10:00 on Saturdays.\nClosed on Sundays.",
        ),
        (f"{HOURS}#2", "hours.md / Returns", "Items can be returned within 30 days."),
    ]


def test_long_paragraphs_are_split_at_sentences_then_words() -> None:
    sentence = "The warranty covers parts and labour for two years. "
    endless = "x" * (MAX_CHARS + 50)
    passages = split_passages(DELIVERY, [("page 2", sentence * 40 + endless)])
    assert all(len(p.text) <= MAX_CHARS for p in passages)
    assert passages[0].title == "delivery.pdf / page 2"
    assert "".join(p.text.replace("\n", "") for p in passages).replace(" ", "") == (
        (sentence * 40 + endless).replace(" ", "")
    )


def test_the_query_is_the_callee_words_and_their_utterance_before() -> None:
    turns = [
        said(0, "Hi, this is Ava from Acme. How can I help?"),
        said(1, "When do you open?"),
        said(2, "We open at 8:30."),
        said(3, "", no_input=True),
    ]
    heard = said(4, "And on Saturdays?")
    assert retrieval_query(turns, heard) == "When do you open?\nAnd on Saturdays?"


def test_the_budget_keeps_the_best_passages_that_fit_and_clips_a_lone_one() -> None:
    big = Passage("d#0", "doc", "word " * 300)
    small = Passage("d#1", "doc", "short passage")
    assert within_budget([small, big, small], token_budget=50) == [small, small]
    [clipped] = within_budget([big, small], token_budget=50)
    assert clipped.id == "d#0"
    assert len(clipped.title) + len(clipped.text) <= 50 * 4 + 4
    assert clipped.text.endswith(" ...")
    assert "[doc]\nshort passage" in knowledge_message([small])


def test_bm25_ranks_the_passage_that_answers_and_ignores_unrelated_words() -> None:
    passages = split_passages(HOURS, [("", HOURS_MD)])
    index = KnowledgeIndex(passages)
    assert index.search("When does the shop open on Saturday?")[0].id == f"{HOURS}#1"
    assert index.search("Can items be returned?")[0].id == f"{HOURS}#2"
    assert index.search("zebra quantum") == []
    assert KnowledgeIndex([]).search("anything") == []


def _store() -> InMemoryObjectStore:
    store = InMemoryObjectStore()
    store.objects[ObjectLocation(BUCKET, "hours.md")] = (HOURS_MD.encode(), "text/markdown")
    delivery = text_pdf([["Delivery", "We deliver within two working days."]])
    store.objects[ObjectLocation(BUCKET, "delivery.pdf")] = (delivery, "application/pdf")
    return store


class CountingStore(InMemoryObjectStore):
    gets: int = 0

    async def get(self, location: ObjectLocation) -> bytes:
        self.gets += 1
        await asyncio.sleep(0.01)
        return await super().get(location)


async def test_an_agent_version_is_indexed_once_for_concurrent_turns_and_dropped_on_update() -> (
    None
):
    store = CountingStore(objects=_store().objects)
    knowledge = AgentKnowledge(store, BUCKET)
    agent = make_agent(knowledge=[HOURS, DELIVERY])

    found = await asyncio.gather(
        *(knowledge.passages(agent, "deliver in how many days", 10.0) for _ in range(5))
    )
    assert store.gets == 2  # each document read once, for five concurrent turns
    assert all(result and result[0].title == "delivery.pdf / page 1" for result in found)
    await knowledge.passages(agent, "open", 10.0)
    assert store.gets == 2
    knowledge.drop(agent.agent_id)
    await knowledge.passages(agent, "open", 10.0)
    assert store.gets == 4


async def test_a_document_that_cannot_be_read_is_left_out_and_tried_again_later() -> None:
    now = [0.0]
    store = _store()
    store.objects[ObjectLocation(BUCKET, "delivery.pdf")] = (b"not a pdf", "application/pdf")
    knowledge = AgentKnowledge(store, BUCKET, clock=lambda: now[0])
    agent = make_agent(knowledge=[HOURS, DELIVERY, f"s3://elsewhere/{'x.md'}"])

    found = await knowledge.passages(agent, "when does the shop open", 10.0)
    assert found is not None
    assert found[0].id == f"{HOURS}#1"  # the readable document still answers
    assert not await knowledge.passages(agent, "deliver", 10.0)
    # Fixed in the bucket: the partial index is rebuilt once RETRY_PARTIAL_S passed.
    good = text_pdf([["Delivery", "We deliver within two working days."]])
    store.objects[ObjectLocation(BUCKET, "delivery.pdf")] = (good, "application/pdf")
    now[0] += RETRY_PARTIAL_S + 1
    assert await knowledge.passages(agent, "deliver", 10.0)


async def test_a_turn_does_not_wait_for_an_index_past_its_share_of_the_time() -> None:
    store = _store()
    release = asyncio.Event()

    class SlowStore(InMemoryObjectStore):
        async def get(self, location: ObjectLocation) -> bytes:
            await release.wait()
            return await super().get(location)

    knowledge = AgentKnowledge(SlowStore(objects=store.objects), BUCKET)
    agent = make_agent(knowledge=[HOURS])
    assert await knowledge.passages(agent, "open", 0.05) is None  # not ready: no passages
    release.set()
    assert await knowledge.passages(agent, "open", 10.0)  # the same build, finished


async def test_passages_reach_the_model_and_the_stored_turn() -> None:
    store = InMemoryDialogStore()
    store.agents["acme"] = make_agent(knowledge=[HOURS], knowledge_token_budget=60)
    store.calls["call-1"] = make_call()
    model = ScriptedModel()
    agents = AgentCache(store)
    events: list[object] = []

    class Sink:
        async def publish(self, event: object, *, timeout_s: float = 1.0) -> None:
            events.append(event)

    knowledge = AgentKnowledge(_store(), BUCKET)
    ports = DialogPorts(
        sessions=SessionRegistry(store, agents, max_size=10),
        agents=agents,
        model=model,
        events=Sink(),
        knowledge=knowledge,
    )
    start = DialogStart(call_id="call-1", agent_id="acme", call_sid="CA1")
    await handle_request(start, Deadline.after(4), ports)
    turn = DialogTurn(call_id="call-1", seq=1, speech="When does the shop open?")
    await handle_request(turn, Deadline.after(4), ports)

    [passages] = model.passages
    # Best first; the returns passage shares no word with the question.
    assert [passage.id for passage in passages] == [f"{HOURS}#1", f"{HOURS}#0"]
    recorded = [e for e in events if isinstance(e, CallTurnRecorded)][-1]
    assert recorded.turns[-1].passages == (f"{HOURS}#1", f"{HOURS}#0")
    await handle_event(AgentUpdated(agent_id="acme", version=2), ports)
    assert knowledge._built(("acme", 1)) is None
