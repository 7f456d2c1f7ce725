"""The LLM request: system prompt, few-shot, past calls, history, missing fields, in order."""

from __future__ import annotations

from datetime import UTC, datetime

from dialog_doubles import make_agent, make_call, make_session, said

from callbot.common.calls import Turn, user_turn
from callbot.dialog.domain.past_calls import (
    CHARS_PER_TOKEN,
    MAX_CONTEXT_CHARS,
    TURNS_PER_CALL,
    summarise_past_call,
    summarise_past_calls,
)
from callbot.dialog.domain.prompt import NO_INPUT_PLACEHOLDER, build_llm_request, build_tools
from callbot.dialog.domain.session import Rejection


def test_messages_come_in_the_documented_order() -> None:
    past = summarise_past_calls(
        [make_call("old", status="completed", summary="Ada asked to be called after 5 pm.")]
    )
    session = make_session(
        turns=[said(0, "Hi Ada!"), said(1, "Hello"), said(2, "What is your full name?")],
        past_conversations=past,
        data_collected={"callback_phone": "+14155552671"},
    )
    heard = user_turn(3, " Ada Lovelace ", 0.9, datetime.now(UTC))

    request = build_llm_request(session, heard)
    roles_and_contents = [(m["role"], m["content"]) for m in request.messages]

    assert roles_and_contents[0] == (
        "system",
        "You are Ava from Acme Support, calling Ada about your account.",
    )
    assert roles_and_contents[1:3] == [
        ("user", "Sure, it's Grace Hopper."),
        ("assistant", "Thank you, Grace. What email should we use?"),
    ]
    assert roles_and_contents[3][0] == "system"
    assert "Ada asked to be called after 5 pm." in roles_and_contents[3][1]
    assert roles_and_contents[4:8] == [
        ("assistant", "Hi Ada!"),
        ("user", "Hello"),
        ("assistant", "What is your full name?"),
        ("user", "Ada Lovelace"),
    ]
    status = roles_and_contents[8]
    assert status[0] == "system"
    assert "- full_name: full name (string, required)" in status[1]
    assert "- email: email address (email, required)" in status[1]
    assert "callback_phone:" not in status[1]  # collected already
    assert "Already collected: callback_phone=+14155552671." in status[1]
    assert len(roles_and_contents) == 9
    assert request.options.timeout_s == 1.0


def test_no_past_calls_means_no_past_calls_message() -> None:
    session = make_session(agent=make_agent(few_shot=[]), turns=[said(0, "Hi")])
    request = build_llm_request(session, user_turn(1, "hello", None, datetime.now(UTC)))
    assert [m["role"] for m in request.messages] == ["system", "assistant", "user", "system"]


def test_silence_and_rejections_are_spelled_out_for_the_model() -> None:
    session = make_session(
        turns=[said(0, "Hi"), said(1, "", no_input=True), said(2, "Are you there?")],
        rejections=(
            Rejection("email", "ada at", "'ada at' is not a valid email address"),
            Rejection(None, None, "the arguments of record_data were not valid JSON"),
        ),
    )
    messages = build_llm_request(session, user_turn(3, "yes", None, datetime.now(UTC))).messages
    assert messages[-4] == {"role": "user", "content": NO_INPUT_PLACEHOLDER}
    status = messages[-1]["content"]
    assert "The value 'ada at' for email was not recorded" in status
    assert "A tool call failed: the arguments of record_data were not valid JSON." in status


def test_tools_offer_the_agent_fields() -> None:
    record_data, end_call, opt_out = build_tools(make_agent())
    parameters = record_data["function"]["parameters"]
    assert parameters["properties"]["field"]["enum"] == ["full_name", "email", "callback_phone"]
    assert end_call["function"]["name"] == "end_call"
    assert opt_out["function"]["name"] == "opt_out"
    no_fields = build_tools(make_agent(data_to_fill=[]))[0]["function"]["parameters"]
    assert "enum" not in no_fields["properties"]["field"]


def test_past_calls_are_bounded_in_size() -> None:
    long_turns = [
        Turn(seq=seq, role="user", content="word " * 200, at=datetime.now(UTC)) for seq in range(20)
    ]
    conversation = summarise_past_call(make_call("old", turns=long_turns, status="completed"))
    assert len(conversation.lines) == TURNS_PER_CALL
    assert all(len(line) <= 310 for line in conversation.lines)

    many = [make_call(f"old{i}", turns=long_turns, status="completed") for i in range(20)]
    kept = summarise_past_calls(many)
    assert 0 < len(kept) < 20
    assert sum(len(past.describe()) for past in kept) <= MAX_CONTEXT_CHARS


def test_the_past_calls_token_budget_bounds_the_context() -> None:
    calls = [
        make_call(f"old-{n}", status="completed", summary="Ada gave her name. " * 10)
        for n in range(5)
    ]
    everything = summarise_past_calls(calls, token_budget=2000)
    assert len(everything) == 5
    size = len(everything[0].describe())
    two = summarise_past_calls(calls, token_budget=(2 * size + 10) // CHARS_PER_TOKEN)
    assert [past.call_id for past in two] == ["old-0", "old-1"]
