"""dialog as a running service: real RabbitMQ, the MongoDB fixture, the scripted LLM."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aio_pika.abc import AbstractRobustConnection
from dialog_doubles import make_agent
from dialog_harness import Caller, CountingStore, TurnWriter, seed_agent, seed_call, wait_until
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.contracts import CallEnding, CallTurnRecorded, RpcFailure, utcnow
from callbot.common.messaging import RpcClient, Topology
from callbot.common.mongo import CALLS, Document
from callbot.common.settings import Settings
from callbot.dialog.service import DialogService
from callbot.dialog.store import MongoDialogStore
from callbot.testkit.fake_openai import FakeOpenAI, Rule, RuleMatch, ScriptedResponse

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]


@dataclass
class Running:
    caller: Caller
    fake: FakeOpenAI
    writer: TurnWriter
    store: CountingStore
    database: AsyncDatabase[Document]


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


async def _start_dialog(settings: Settings, store: CountingStore) -> DialogService:
    service = DialogService(settings, store=store)
    await service.start()
    return service


@pytest.fixture
async def running(
    settings: Settings,
    amqp_connection: AbstractRobustConnection,
    topology: Topology,
    mongo_db: AsyncDatabase[Document],
    fake_llm: FakeOpenAI,
) -> AsyncIterator[Running]:
    await seed_agent(mongo_db, make_agent())
    writer = TurnWriter(mongo_db)
    await writer.start(amqp_connection, topology)
    store = CountingStore(MongoDialogStore(mongo_db))
    service = await _start_dialog(
        settings.model_copy(update={"openai_base_url": fake_llm.base_url}), store
    )
    client = RpcClient(await amqp_connection.channel(publisher_confirms=False))
    await client.start()
    yield Running(Caller(client, topology), fake_llm, writer, store, mongo_db)
    await service.stop()
    await writer.stop()


def _record(field: str, value: str) -> dict[str, object]:
    return {"name": "record_data", "arguments": {"field": field, "value": value}}


async def test_full_conversation_collects_three_fields_and_completes(running: Running) -> None:
    fake = running.fake
    fake.when(last_user_regex="Ada").reply_tool_calls(
        _record("full_name", "Ada Lovelace"), text="Thanks Ada. What is your email?"
    )
    fake.when(last_user_regex="example").reply_tool_calls(
        _record("email", "ada at example dot com"), text="And a callback number?"
    )
    fake.when(last_user_regex="415").reply_tool_calls(_record("callback_phone", "415 555 2671"))
    await seed_call(running.database, "call-1")

    greeting = await running.caller.start("call-1")
    assert (greeting.action, greeting.next_seq) == ("gather", 1)
    first = await running.caller.turn("call-1", 1, "It's Ada Lovelace")
    assert (first.say, first.next_seq) == ("Thanks Ada. What is your email?", 3)
    second = await running.caller.turn("call-1", 3, "ada at example dot com")
    assert second.say == "And a callback number?"
    last = await running.caller.turn("call-1", 5, "415 555 2671")
    assert (last.action, last.ended_by) == ("hangup", "system_complete")
    assert last.say == "Thank you, Ada, I have everything. Goodbye!"

    await running.writer.wait_for_turns("call-1", 7)
    stored = await running.database[CALLS].find_one({"_id": "call-1"})
    assert stored is not None
    assert stored["data_collected"] == {
        "full_name": "Ada Lovelace",
        "email": "ada@example.com",
        "callback_phone": "+14155552671",
    }
    assert [turn["seq"] for turn in stored["turns"]] == list(range(7))
    await wait_until(lambda: any(isinstance(e, CallEnding) for e in running.writer.events))


async def test_goodbye_through_end_call(running: Running) -> None:
    running.fake.when(last_user_regex="busy").reply_tool_calls(
        {"name": "end_call", "arguments": {"reason": "callee is busy"}}
    )
    await seed_call(running.database, "call-1")
    await running.caller.start("call-1")
    reply = await running.caller.turn("call-1", 1, "I'm busy right now, please call another time")
    assert (reply.action, reply.ended_by) == ("hangup", "user_goodbye")
    assert reply.say == "Thanks for your time. Goodbye!"
    await wait_until(
        lambda: any(
            isinstance(e, CallEnding) and e.reason == "callee is busy"
            for e in running.writer.events
        )
    )


async def test_a_reply_with_a_lone_surrogate_is_spoken_and_stored_with_a_replacement_char(
    running: Running,
) -> None:
    # model_construct: the fake's own validation refuses what a real model can send.
    reply_text = ScriptedResponse.model_construct(
        text="Thanks \ud800 Ada. What is your email?", tool_calls=[], error=None, delay_s=0.0
    )
    running.fake.add_rules([Rule.model_construct(match=RuleMatch(), response=reply_text, times=1)])
    await seed_call(running.database, "call-1")
    await running.caller.start("call-1")
    reply = await running.caller.turn("call-1", 1, "It's Ada Lovelace")
    assert reply.say == "Thanks \ufffd Ada. What is your email?"
    await running.writer.wait_for_turns("call-1", 3)
    stored = await running.database[CALLS].find_one({"_id": "call-1"})
    assert stored is not None
    assert stored["turns"][2]["content"] == reply.say


async def test_tool_arguments_mongodb_cannot_store_are_refused_or_mended(
    running: Running,
) -> None:
    # Arguments are a JSON string: these escapes decode to lone surrogates.
    running.fake.when(last_user_regex="Ada").reply_tool_calls(
        {"name": "record_data", "arguments": '{"field": "full_name", "value": "Ada \\ud800"}'},
        text="Thanks.",
    )
    running.fake.when(last_user_regex="busy").reply_tool_calls(
        {"name": "end_call", "arguments": '{"reason": "callee is busy \\udc00"}'}
    )
    await seed_call(running.database, "call-1")
    await running.caller.start("call-1")
    refused = await running.caller.turn("call-1", 1, "It's Ada Lovelace")
    assert refused.action == "gather"
    assert "full name" in refused.say  # asked again: the value was not recorded
    ended = await running.caller.turn("call-1", 3, "I'm busy, goodbye")
    assert (ended.action, ended.ended_by) == ("hangup", "user_goodbye")

    await running.writer.wait_for_turns("call-1", 5)
    stored = await running.database[CALLS].find_one({"_id": "call-1"})
    assert stored is not None
    assert stored.get("data_collected", {}) == {}
    await wait_until(
        lambda: any(
            isinstance(e, CallEnding) and e.reason == "callee is busy \ufffd"
            for e in running.writer.events
        )
    )


async def test_llm_error_then_success_within_the_budget(running: Running) -> None:
    running.fake.when().reply_error(500)
    running.fake.set_default({"text": "Sorry for the wait. What is your full name?"})
    await seed_call(running.database, "call-1")
    await running.caller.start("call-1")
    reply = await running.caller.turn("call-1", 1, "hello")
    assert reply.say == "Sorry for the wait. What is your full name?"
    assert len(running.fake.requests) == 2


async def test_llm_slower_than_the_budget_gives_the_fallback_line(running: Running) -> None:
    running.fake.when(times=None).reply_text("Too late.", delay_s=3.0)
    await seed_call(running.database, "call-1")
    await running.caller.start("call-1")
    started = time.monotonic()
    reply = await running.caller.turn("call-1", 1, "my name is Ada")
    elapsed = time.monotonic() - started
    assert reply.say == make_agent().fallback_message
    assert reply.action == "gather"
    assert elapsed < 2.0  # the agent's llm.timeout_s is 1 s
    # the callee's turn is kept: it is recorded and the next request carries it
    await running.writer.wait_for_turns("call-1", 3)
    user_turns = [
        turn.content
        for e in running.writer.events
        if isinstance(e, CallTurnRecorded)
        for turn in e.turns
        if turn.role == "user"
    ]
    assert user_turns == ["my name is Ada"]


async def test_a_turn_for_a_call_nobody_knows_is_answered_not_found(running: Running) -> None:
    reply = await running.caller.turn_response("nobody-knows-this-call", 3, "Hello?")

    assert isinstance(reply, RpcFailure)
    assert reply.code == "not_found"
    assert "nobody-knows-this-call" in reply.message
    assert running.writer.events == []


async def test_a_start_for_an_agent_nobody_knows_is_answered_not_found(running: Running) -> None:
    reply = await running.caller.start_response("call-of-nobody", agent_id="nobody")

    assert isinstance(reply, RpcFailure)
    assert reply.code == "not_found"
    assert "'nobody'" in reply.message


async def test_agent_cache_hit_on_the_second_call(running: Running) -> None:
    for call_id in ("call-1", "call-2"):
        await seed_call(running.database, call_id)
        await running.caller.start(call_id)
        await running.caller.turn(call_id, 1, "hello")
    assert running.store.reads["agent"] == 1


async def test_past_conversation_is_in_the_second_calls_llm_request(running: Running) -> None:
    running.fake.when(last_user_regex="Tuesday").reply_text("Noted, Tuesday afternoons.")
    await seed_call(running.database, "call-1")
    await running.caller.start("call-1")
    await running.caller.turn("call-1", 1, "Call me back on Tuesday afternoon")
    await running.writer.wait_for_turns("call-1", 3)
    # persistence finalizes the first call on Twilio's terminal status
    await running.database[CALLS].update_one(
        {"_id": "call-1"}, {"$set": {"status": "completed", "ended_by": "callee_hangup"}}
    )

    await seed_call(running.database, "call-2", created_at=utcnow())
    await running.caller.start("call-2")
    await running.caller.turn("call-2", 1, "hello again")

    last_request = running.fake.requests[-1].body["messages"]
    past_context = [m["content"] for m in last_request if "Earlier calls" in str(m["content"])]
    assert len(past_context) == 1
    assert "user: Call me back on Tuesday afternoon" in past_context[0]
    assert "assistant: Noted, Tuesday afternoons." in past_context[0]
    assert running.store.reads["past_calls"] == 2  # once per call, never per turn


async def test_two_replicas_alternating_turns_give_the_model_the_whole_history(
    running: Running, settings: Settings
) -> None:
    second_store = CountingStore(MongoDialogStore(running.database))
    second = await _start_dialog(
        settings.model_copy(update={"openai_base_url": running.fake.base_url}), second_store
    )
    try:
        await seed_call(running.database, "call-1")
        reply = await running.caller.start("call-1")
        await running.writer.wait_for_turns("call-1", 1)
        utterances = ["first thing", "second thing", "third thing", "fourth thing"]
        for number, speech in enumerate(utterances, start=1):
            running.fake.when(last_user_regex=speech).reply_text(f"Answer {number}.")
            reply = await running.caller.turn("call-1", reply.next_seq, speech)
            assert reply.say == f"Answer {number}."
            await running.writer.wait_for_turns("call-1", 1 + 2 * number)
    finally:
        await second.stop()

    # RabbitMQ hands the requests to the two replicas in turn: each served a
    # turn whose earlier turns the other one had served, and read them back
    assert running.store.reads["call"] >= 2
    assert second_store.reads["call"] >= 2
    history = [
        (m["role"], m["content"])
        for m in running.fake.requests[-1].body["messages"]
        if m["role"] in ("user", "assistant")
    ][2:]  # after the two few-shot examples
    greeting = "Hi Ada, this is Ava from Acme Support. What is your full name?"
    assert history == [
        ("assistant", greeting),
        ("user", "first thing"),
        ("assistant", "Answer 1."),
        ("user", "second thing"),
        ("assistant", "Answer 2."),
        ("user", "third thing"),
        ("assistant", "Answer 3."),
        ("user", "fourth thing"),
    ]
