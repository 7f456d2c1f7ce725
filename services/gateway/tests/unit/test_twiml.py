"""TwiML rendering and the fallback replies: parsed XML, and the exact bytes
the twilio library would write for the same reply."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.twiml.voice_response import Gather, VoiceResponse

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument, Turn
from callbot.common.contracts import DialogReply, DialogTurn, GatherSpec, utcnow
from callbot.gateway.domain.fallback import (
    GREETING_FALLBACK,
    TURN_FALLBACK,
    greeting_fallback,
    turn_fallback,
    turn_fallback_spoken,
    voicemail_fallback,
    voicemail_hangup,
)
from callbot.gateway.domain.twiml import render_reply_twiml

ACTION = "https://gw.test/voice/process-speech?call_id=c1&seq=3"


def _reply(**overrides: object) -> DialogReply:
    values: dict[str, object] = {
        "call_id": "c1",
        "say": "Is <this> a good time & place?",
        "voice": "Polly.Amy",
        "language": "en-GB",
        "action": "gather",
        "next_seq": 3,
        "gather": GatherSpec(
            speech_timeout="2", timeout_s=7, hints=("yes", "no"), speech_model="phone_call"
        ),
    }
    return DialogReply.model_validate({**values, **overrides})


def test_gather_reply_nests_say_inside_a_speech_gather() -> None:
    root = ET.fromstring(render_reply_twiml(_reply(), ACTION))
    assert root.tag == "Response"
    [gather] = list(root)
    assert gather.tag == "Gather"
    assert gather.attrib == {
        "input": "speech",
        "action": ACTION,
        "method": "POST",
        "actionOnEmptyResult": "true",
        "speechTimeout": "2",
        "timeout": "7",
        "language": "en-GB",
        "hints": "yes,no",
        "speechModel": "phone_call",
    }
    [say] = list(gather)
    assert say.tag == "Say"
    assert say.text == "Is <this> a good time & place?"
    assert say.attrib == {"voice": "Polly.Amy", "language": "en-GB"}


def test_gather_without_hints_or_model_leaves_those_attributes_out() -> None:
    reply = _reply(gather=GatherSpec())
    [gather] = list(ET.fromstring(render_reply_twiml(reply, ACTION)))
    assert "hints" not in gather.attrib
    assert "speechModel" not in gather.attrib
    assert gather.attrib["speechTimeout"] == "auto"


def test_hangup_reply_says_then_hangs_up() -> None:
    root = ET.fromstring(render_reply_twiml(_reply(action="hangup", say="Goodbye!"), ACTION))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == "Goodbye!"
    assert root[0].attrib == {"voice": "Polly.Amy", "language": "en-GB"}


def test_empty_say_renders_no_say_element() -> None:
    root = ET.fromstring(render_reply_twiml(_reply(action="hangup", say=""), ACTION))
    assert [child.tag for child in root] == ["Hangup"]
    [gather] = list(ET.fromstring(render_reply_twiml(_reply(say=""), ACTION)))
    assert list(gather) == []


def test_greeting_fallback_listens_for_turn_one() -> None:
    reply = greeting_fallback("c1")
    assert (reply.action, reply.next_seq, reply.say) == ("gather", 1, GREETING_FALLBACK)


def test_turn_fallback_takes_the_reply_seq_and_listens_after_it() -> None:
    reply = turn_fallback("c1", 5)
    assert (reply.action, reply.next_seq, reply.say) == ("gather", 7, TURN_FALLBACK)


def test_a_turn_fallback_after_a_streamed_start_stores_both_as_heard() -> None:
    turn = DialogTurn(call_id="c1", seq=3, speech="It's Ada.")
    heard, line = turn_fallback_spoken(turn, utcnow(), sent="Thank you, ").turns
    assert (heard.seq, heard.content) == (3, "It's Ada.")
    assert (line.seq, line.content, line.fallback) == (4, f"Thank you, {TURN_FALLBACK}", True)
    # Nothing went out: the fallback line alone.
    assert turn_fallback_spoken(turn, utcnow()).line.content == TURN_FALLBACK


def test_voicemail_hangup_hangs_up_silently() -> None:
    reply = voicemail_hangup("c1")
    assert (reply.action, reply.say, reply.ended_by) == ("hangup", "", "voicemail")
    root = ET.fromstring(render_reply_twiml(reply, ACTION))
    assert [child.tag for child in root] == ["Hangup"]


VOICEMAIL_AGENT = Agent.model_validate(
    {
        "agent_id": "survey",
        "name": "Survey bot",
        "greeting": "Hello {recipient.name}!",
        "prompt": "You run a short survey.",
        "voice": "Polly.Amy",
        "language": "en-GB",
        "voicemail_message": "Hi {recipient.name}, {agent.name} about {variables.order}.",
        "audio": {"voicemail_message": "s3://agent-files/survey/voicemail.mp3"},
    }
)
MESSAGE = "Hi Ada, Survey bot about A-7."


def _call(*turns: Turn, **overrides: object) -> CallDocument:
    values: dict[str, object] = {
        "call_id": "c1",
        "recipient": {"name": "Ada"},
        "variables": {"order": "A-7"},
        "turns": turns,
    }
    return CallDocument.model_validate({**values, **overrides})


def test_voicemail_fallback_is_the_agents_message_rendered_for_the_call() -> None:
    at = utcnow()
    reply, spoken = voicemail_fallback(VOICEMAIL_AGENT, _call(), at)
    assert (reply.say, reply.play, reply.voice, reply.language) == (
        MESSAGE,
        "s3://agent-files/survey/voicemail.mp3",
        "Polly.Amy",
        "en-GB",
    )
    assert (reply.action, reply.ended_by, reply.next_seq) == ("hangup", "voicemail", 1)
    # Stored as the machine heard it: the line (its recording too), marked fallback.
    assert spoken.turns == (
        Turn(
            seq=0,
            role="assistant",
            content=MESSAGE,
            at=at,
            audio="s3://agent-files/survey/voicemail.mp3",
            fallback=True,
        ),
    )


def test_voicemail_fallback_takes_the_seq_dialogs_message_takes() -> None:
    greeting = Turn(seq=0, role="assistant", content="Hello!", at=utcnow())
    # After the greeting (asynchronous detection), where dialog puts its message.
    _, spoken = voicemail_fallback(VOICEMAIL_AGENT, _call(greeting), utcnow())
    assert spoken.line.seq == 1
    # dialog's message is stored already: gateway's takes its seq, not the next.
    message = Turn(seq=1, role="assistant", content=MESSAGE, at=utcnow())
    stored = _call(greeting, message, ended_by="voicemail", ending_seq=1)
    _, spoken = voicemail_fallback(VOICEMAIL_AGENT, stored, utcnow())
    assert spoken.line.seq == 1


# The renderer writes the XML itself (see twiml.py); the twilio library's
# VoiceResponse is the reference it must match byte for byte, for any text.
_ANY_TEXT = st.text(st.characters(exclude_categories=()) | st.sampled_from('<>&"\r\n\t'))


def _library_twiml(reply: DialogReply, action_url: str, audio_url: str | None = None) -> str:
    response = VoiceResponse()
    spec = reply.gather
    if reply.action == "hangup":
        if audio_url is not None:
            response.play(audio_url)
        elif reply.say:
            response.say(reply.say, voice=reply.voice, language=reply.language)
        response.hangup()
        return str(response.to_xml())
    gather = Gather(
        input="speech",
        action=action_url,
        method="POST",
        action_on_empty_result=True,
        speech_timeout=spec.speech_timeout,
        timeout=spec.timeout_s,
        language=reply.language,
        hints=",".join(spec.hints) or None,
        speech_model=spec.speech_model,
    )
    if audio_url is not None:
        gather.play(audio_url)
    elif reply.say:
        gather.say(reply.say, voice=reply.voice, language=reply.language)
    response.append(gather)
    return str(response.to_xml())


@settings(max_examples=300, deadline=None)
@given(
    say=_ANY_TEXT,
    voice=_ANY_TEXT,
    language=_ANY_TEXT,
    action=st.sampled_from(["gather", "hangup"]),
    action_url=_ANY_TEXT,
    speech_timeout=_ANY_TEXT,
    timeout_s=st.integers(min_value=0, max_value=600),
    hints=st.lists(_ANY_TEXT, max_size=4),
    speech_model=st.none() | _ANY_TEXT,
    audio_url=st.none() | _ANY_TEXT,
)
def test_rendering_matches_the_twilio_library_byte_for_byte(
    say: str,
    voice: str,
    language: str,
    action: str,
    action_url: str,
    speech_timeout: str,
    timeout_s: int,
    hints: list[str],
    speech_model: str | None,
    audio_url: str | None,
) -> None:
    gather = GatherSpec(
        speech_timeout=speech_timeout,
        timeout_s=timeout_s,
        hints=tuple(hints),
        speech_model=speech_model,
    )
    reply = _reply(say=say, voice=voice, language=language, action=action, gather=gather)
    rendered = render_reply_twiml(reply, action_url, audio_url)
    assert rendered == _library_twiml(reply, action_url, audio_url)


def test_a_recorded_line_is_played_inside_the_gather_or_before_the_hang_up() -> None:
    url = "https://bucket.s3.amazonaws.com/acme/vm.wav?X-Amz-Signature=ab&X-Amz-Expires=900"
    [gather] = list(ET.fromstring(render_reply_twiml(_reply(), ACTION, url)))
    assert [(child.tag, child.text) for child in gather] == [("Play", url)]
    hangup = ET.fromstring(render_reply_twiml(_reply(action="hangup"), ACTION, url))
    assert [(child.tag, child.text) for child in hangup] == [("Play", url), ("Hangup", None)]
