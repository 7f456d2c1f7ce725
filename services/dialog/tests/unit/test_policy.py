"""Ending rules, no-input counting, limits and value recording: the pure policy."""

from __future__ import annotations

from datetime import timedelta

from dialog_doubles import T0, make_agent, make_session, said

from callbot.common.calls import user_turn
from callbot.dialog.domain.actions import (
    EndCall,
    ModelAnswer,
    RecordData,
    UnusableToolCall,
    parse_tool_call,
)
from callbot.dialog.domain.policy import (
    answer_without_model,
    apply_model_answer,
    fallback,
    greet,
    leave_voicemail,
)
from callbot.dialog.domain.session import Ending, Exchange

GREETING = said(0, "Hi Ada, what is your full name?")


def ended_by(exchange: Exchange) -> str | None:
    return exchange.ending.ended_by if exchange.ending else None


def test_greeting_is_turn_zero_rendered_with_recipient_data() -> None:
    exchange = greet(make_session(), T0)
    assert [(t.seq, t.role) for t in exchange.turns] == [(0, "assistant")]
    assert exchange.spoken.content == (
        "Hi Ada, this is Ava from Acme Support. What is your full name?"
    )
    assert exchange.ending is None


def test_voicemail_hangs_up_with_the_voicemail_message() -> None:
    exchange = leave_voicemail(make_session(turns=[GREETING]), T0)
    assert exchange.spoken.seq == 1
    assert exchange.spoken.content == "Hello, this is Acme Support. We will call back."
    assert exchange.ending == Ending("voicemail", "answering machine")


def test_recorded_lines_carry_their_file_and_keep_their_text_as_transcript() -> None:
    audio = {
        "greeting": "s3://acme-files/greeting.wav",
        "voicemail_message": "s3://acme-files/vm.mp3",
        "goodbye_message": "s3://acme-files/bye.wav",
    }
    agent = make_agent(audio=audio)
    greeting = greet(make_session(agent), T0).spoken
    assert greeting.audio == audio["greeting"]
    assert greeting.content == "Hi Ada, this is Ava from Acme Support. What is your full name?"
    voicemail = leave_voicemail(make_session(agent, turns=[GREETING]), T0).spoken
    assert voicemail.audio == audio["voicemail_message"]
    # The model's text is spoken, whatever it says; it never carries a recording.
    session = make_session(agent, turns=[GREETING])
    answer = apply_model_answer(session, said(1, "hm"), ModelAnswer(text="goodbye_message"), T0)
    assert (answer.spoken.content, answer.spoken.audio) == ("goodbye_message", None)
    # An ending's line is the recorded one, the limits' goodbye included.
    bye = apply_model_answer(session, said(1, "bye"), ModelAnswer("", (EndCall("bye"),)), T0)
    assert (bye.spoken.content, bye.spoken.audio) == (
        agent.goodbye_message,
        audio["goodbye_message"],
    )
    limited = make_session(make_agent(audio=audio, max_turns=3), turns=[GREETING])
    last = apply_model_answer(limited, said(1, "hm"), ModelAnswer(text="Go on."), T0)
    assert (ended_by(last), last.spoken.audio) == ("max_turns", audio["goodbye_message"])


def test_silence_gets_the_reprompt_until_max_no_input_then_times_out() -> None:
    session = make_session(turns=[GREETING])
    for expected_streak in (1, 2):
        turn = user_turn(session.next_seq, "   ", None, T0)
        exchange = answer_without_model(session, turn, T0)
        assert exchange is not None
        assert exchange.turns[0].no_input
        assert exchange.turns[0].content == ""
        assert exchange.spoken.content == session.agent.reprompt_message
        assert exchange.ending is None
        session.commit(exchange)
        assert session.no_input_streak() == expected_streak

    third = answer_without_model(session, user_turn(session.next_seq, "", None, T0), T0)
    assert third is not None
    assert ended_by(third) == "system_timeout"
    assert third.spoken.content == session.agent.timeout_message


def test_speech_resets_the_no_input_count() -> None:
    session = make_session(
        turns=[GREETING, said(1, "", no_input=True), said(2, "Hello?"), said(3, "yes")]
    )
    assert session.no_input_streak() == 0
    exchange = answer_without_model(session, user_turn(4, "", None, T0), T0)
    assert exchange is not None
    assert exchange.ending is None


def test_a_plain_goodbye_ends_without_the_model() -> None:
    session = make_session(turns=[GREETING])
    exchange = answer_without_model(session, user_turn(1, "ok thanks, bye!", None, T0), T0)
    assert exchange is not None
    assert ended_by(exchange) == "user_goodbye"
    assert exchange.spoken.content == "Thanks for your time. Goodbye!"


def test_thank_you_my_email_is_goes_to_the_model_and_is_recorded() -> None:
    session = make_session(turns=[GREETING], data_collected={"full_name": "Ada Lovelace"})
    turn = user_turn(1, "thank you, my email is ada at example dot com", None, T0)
    assert answer_without_model(session, turn, T0) is None

    answer = ModelAnswer(
        text="Thanks! And your callback number?",
        actions=(RecordData("email", "ada at example dot com"),),
    )
    exchange = apply_model_answer(session, turn, answer, T0)
    assert exchange.ending is None
    assert exchange.data_collected["email"] == "ada@example.com"
    assert exchange.spoken.content == "Thanks! And your callback number?"
    assert not exchange.data_complete


def test_collecting_the_last_required_field_completes_the_call() -> None:
    session = make_session(
        turns=[GREETING], data_collected={"full_name": "Ada", "email": "ada@example.com"}
    )
    turn = user_turn(1, "415 555 2671", None, T0)
    answer = ModelAnswer(text="Great.", actions=(RecordData("callback_phone", "415 555 2671"),))
    exchange = apply_model_answer(session, turn, answer, T0)
    assert exchange.ending == Ending("system_complete", "all required data collected")
    assert exchange.spoken.content == "Thank you, Ada, I have everything. Goodbye!"
    assert exchange.data_complete
    assert exchange.data_collected["callback_phone"] == "+14155552671"


def test_optional_fields_do_not_hold_the_call_open() -> None:
    agent = make_agent(
        data_to_fill=[
            {"name": "email", "description": "email address", "type": "email"},
            {"name": "note", "description": "note", "required": False},
        ]
    )
    session = make_session(agent=agent, turns=[GREETING])
    answer = ModelAnswer(text="", actions=(RecordData("email", "a@b.co"),))
    exchange = apply_model_answer(session, user_turn(1, "a@b.co", None, T0), answer, T0)
    assert ended_by(exchange) == "system_complete"


def test_an_invalid_value_is_not_stored_and_is_asked_again() -> None:
    session = make_session(turns=[GREETING])
    answer = ModelAnswer(text="Got it!", actions=(RecordData("email", "ada at example"),))
    exchange = apply_model_answer(session, user_turn(1, "ada at example", None, T0), answer, T0)
    assert "email" not in exchange.data_collected
    assert exchange.spoken.content == (
        "Sorry, I didn't get a valid email address. Could you tell me your email address?"
    )
    assert [r.field for r in exchange.rejections] == ["email"]
    session.commit(exchange)
    assert session.rejections == exchange.rejections


def test_end_call_tool_ends_with_the_goodbye_message() -> None:
    session = make_session(turns=[GREETING])
    answer = ModelAnswer(text="Bye!", actions=(EndCall("callee is busy"),))
    exchange = apply_model_answer(session, user_turn(1, "I'm busy", None, T0), answer, T0)
    assert exchange.ending == Ending("user_goodbye", "callee is busy")
    assert exchange.spoken.content == "Thanks for your time. Goodbye!"


def test_malformed_and_unknown_tool_calls_do_not_crash_or_store() -> None:
    assert isinstance(parse_tool_call("record_data", '{"field": "email", '), UnusableToolCall)
    assert isinstance(parse_tool_call("record_data", "[1]"), UnusableToolCall)
    assert isinstance(parse_tool_call("transfer", "{}"), UnusableToolCall)
    assert parse_tool_call("record_data", '{"field": "email", "value": "a@b.co"}') == (
        RecordData("email", "a@b.co")
    )
    session = make_session(turns=[GREETING])
    answer = ModelAnswer(
        text="Could you spell that?",
        actions=(RecordData("shoe_size", "42"), parse_tool_call("record_data", "{oops")),
    )
    exchange = apply_model_answer(session, user_turn(1, "42", None, T0), answer, T0)
    assert exchange.data_collected == {}
    assert exchange.spoken.content == "Could you spell that?"
    assert len(exchange.rejections) == 2


def test_a_model_that_only_records_gets_the_next_field_asked() -> None:
    session = make_session(turns=[GREETING])
    answer = ModelAnswer(text="", actions=(RecordData("full_name", "Ada Lovelace"),))
    exchange = apply_model_answer(session, user_turn(1, "Ada Lovelace", None, T0), answer, T0)
    assert exchange.spoken.content == "Thank you. Could you tell me your email address?"


def test_reaching_max_turns_ends_the_call() -> None:
    session = make_session(
        agent=make_agent(max_turns=4), turns=[GREETING, said(1, "hi"), said(2, "Name?")]
    )
    exchange = apply_model_answer(
        session, user_turn(3, "why?", None, T0), ModelAnswer(text="Because."), T0
    )
    assert exchange.spoken.seq == 4
    assert ended_by(exchange) == "max_turns"
    assert exchange.spoken.content == "Thanks for your time. Goodbye!"


def test_one_turn_below_max_turns_goes_on() -> None:
    session = make_session(
        agent=make_agent(max_turns=6), turns=[GREETING, said(1, "hi"), said(2, "Name?")]
    )
    exchange = apply_model_answer(
        session, user_turn(3, "why?", None, T0), ModelAnswer(text="Because."), T0
    )
    assert exchange.ending is None


def test_max_duration_counts_from_the_greeting() -> None:
    session = make_session(turns=[GREETING])
    late = T0 + timedelta(seconds=300)
    exchange = apply_model_answer(
        session, user_turn(1, "hmm", None, late), ModelAnswer(text="So?"), late
    )
    assert ended_by(exchange) == "max_duration"
    in_time = T0 + timedelta(seconds=299)
    exchange = fallback(session, user_turn(1, "hmm", None, in_time), in_time)
    assert exchange.ending is None


def test_fallback_keeps_the_user_turn_and_the_call() -> None:
    session = make_session(turns=[GREETING])
    exchange = fallback(session, user_turn(1, "my name is Ada", None, T0), T0)
    assert [(t.seq, t.role, t.content) for t in exchange.turns] == [
        (1, "user", "my name is Ada"),
        (2, "assistant", session.agent.fallback_message),
    ]
    assert exchange.ending is None
