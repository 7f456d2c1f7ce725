"""Opt-out: the phrases (both paths) and the model's `opt_out` tool."""

from __future__ import annotations

import pytest
from dialog_doubles import T0, make_session, said

from callbot.common.calls import user_turn
from callbot.dialog.domain.actions import ModelAnswer, OptOut, RecordData, parse_tool_call
from callbot.dialog.domain.deterministic import deterministic_answer
from callbot.dialog.domain.opt_out import is_opt_out_request
from callbot.dialog.domain.policy import answer_without_model, apply_model_answer

GREETING = said(0, "Hi Ada, what is your full name?")


@pytest.mark.parametrize(
    "utterance",
    [
        "Take me off your list.",
        "please remove me from your calling list",
        "Don't call me again",
        "don\u2019t call this number",
        "I do not want to be called, stop calling",
        "Never call me, okay?",
        "put me on the do not call list",
    ],
)
def test_a_request_not_to_be_called_again_is_an_opt_out(utterance: str) -> None:
    assert is_opt_out_request(utterance)


@pytest.mark.parametrize(
    "utterance",
    [
        "not now, I'm busy",
        "call me later",
        "call me again tomorrow",
        "my name is Ada Lovelace",
        "no thanks, bye",
        "I don't want to talk right now",
    ],
)
def test_a_refusal_of_this_call_is_not_an_opt_out(utterance: str) -> None:
    assert not is_opt_out_request(utterance)


def test_the_phrase_ends_the_call_with_the_opt_out_line_without_the_model() -> None:
    session = make_session(turns=[GREETING])
    heard = user_turn(1, "Take me off your list please", None, T0)
    exchange = answer_without_model(session, heard, T0)
    assert exchange is not None
    assert exchange.ending is not None
    assert exchange.ending.ended_by == "opt_out"
    assert exchange.spoken.content == session.agent.opt_out_message


def test_the_model_tool_ends_the_call_with_opt_out_and_keeps_recorded_data() -> None:
    session = make_session(turns=[GREETING])
    heard = user_turn(1, "I'm Ada Lovelace and I'd rather you never rang", None, T0)
    answer = ModelAnswer(
        text="Sure.",
        actions=(
            RecordData("full_name", "Ada Lovelace"),
            parse_tool_call("opt_out", '{"reason": "asked"}'),
        ),
    )
    assert answer.actions[1] == OptOut("asked")
    exchange = apply_model_answer(session, heard, answer, T0)
    assert exchange.ending is not None
    assert exchange.ending.ended_by == "opt_out"
    assert exchange.spoken.content == session.agent.opt_out_message
    assert exchange.data_collected["full_name"] == "Ada Lovelace"


def test_the_deterministic_policy_turns_the_opt_out_intent_into_the_opt_out_action() -> None:
    session = make_session(turns=[GREETING])
    heard = user_turn(1, "Stop calling me.", None, T0)
    assert deterministic_answer(session, heard).actions == (OptOut("the callee asked"),)
