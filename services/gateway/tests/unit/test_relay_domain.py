"""ConversationRelay's TwiML and WebSocket messages (pure)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from twilio.request_validator import RequestValidator

from callbot.common.transport import ConversationRelayTransport
from callbot.gateway.domain.relay import (
    RELAY_MESSAGE_ADAPTER,
    RelayDtmf,
    RelayEnd,
    RelayInterrupt,
    RelayPrompt,
    RelaySetup,
    RelayText,
    relay_socket_url,
    render_relay_twiml,
    signed_socket_url,
)


def test_the_twiml_connects_the_call_to_the_socket_with_the_agents_options() -> None:
    twiml = render_relay_twiml(
        socket_url="wss://callbot.example.com/relay",
        call_id="c1",
        transport=ConversationRelayTransport(
            tts_provider="ElevenLabs",
            interruptible="speech",
            dtmf_detection=False,
            welcome_greeting=True,
        ),
        language="en-GB",
        greeting='Hello "Ada" & co',
        action_url="https://callbot.example.com/voice/relay-ended?call_id=c1",
    )
    assert twiml == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Connect action="https://callbot.example.com/voice/relay-ended?call_id=c1">'
        '<ConversationRelay dtmfDetection="false" interruptible="speech" language="en-GB"'
        ' ttsProvider="ElevenLabs" url="wss://callbot.example.com/relay"'
        ' welcomeGreeting="Hello &quot;Ada&quot; &amp; co">'
        '<Parameter name="call_id" value="c1" /></ConversationRelay></Connect></Response>'
    )


def test_without_welcome_greeting_the_greeting_travels_as_a_parameter() -> None:
    twiml = render_relay_twiml(
        socket_url="wss://callbot.example.com/relay",
        call_id="c1",
        transport=ConversationRelayTransport(),
        language="en-US",
        greeting="Hi Ada",
    )
    assert "welcomeGreeting" not in twiml
    assert twiml.endswith(
        '<Parameter name="call_id" value="c1" /><Parameter name="greeting" value="Hi Ada" />'
        "</ConversationRelay></Connect></Response>"
    )


def test_twilios_messages_parse_as_documented() -> None:
    setup = RELAY_MESSAGE_ADAPTER.validate_json(
        json.dumps(
            {
                "type": "setup",
                "sessionId": "VX1",
                "accountSid": "AC1",
                "callSid": "CA1",
                "from": "+15005550006",
                "to": "+15005550001",
                "direction": "outbound-api",
                "customParameters": {"call_id": "c1"},
            }
        )
    )
    assert setup == RelaySetup(
        type="setup", sessionId="VX1", callSid="CA1", customParameters={"call_id": "c1"}
    )
    prompt = RELAY_MESSAGE_ADAPTER.validate_json(
        '{"type": "prompt", "voicePrompt": "my email is", "lang": "en-US", "last": false}'
    )
    assert isinstance(prompt, RelayPrompt)
    assert prompt.last is False
    interrupt = RELAY_MESSAGE_ADAPTER.validate_json(
        '{"type": "interrupt", "utteranceUntilInterrupt": "Could you", '
        '"durationUntilInterruptMs": 640}'
    )
    assert interrupt == RelayInterrupt(
        type="interrupt", utteranceUntilInterrupt="Could you", durationUntilInterruptMs=640
    )
    assert RELAY_MESSAGE_ADAPTER.validate_json('{"type": "dtmf", "digit": "5"}') == RelayDtmf(
        type="dtmf", digit="5"
    )


@pytest.mark.parametrize(
    "raw", ['{"type": "media"}', '{"type": "prompt"}', "not json", '{"type": "dtmf"}']
)
def test_an_unknown_or_incomplete_message_is_refused(raw: str) -> None:
    with pytest.raises(ValidationError):
        RELAY_MESSAGE_ADAPTER.validate_json(raw)


def test_our_messages_are_written_as_twilio_expects() -> None:
    assert json.loads(RelayText(token="Hello ", last=False).to_text()) == {
        "type": "text",
        "token": "Hello ",
        "last": False,
    }
    assert json.loads(RelayEnd().to_text()) == {"type": "end"}
    assert json.loads(RelayEnd(handoff_data='{"ended_by": "agent"}').to_text()) == {
        "type": "end",
        "handoffData": '{"ended_by": "agent"}',
    }


def test_the_socket_url_is_the_public_url_with_its_websocket_scheme() -> None:
    assert relay_socket_url("https://callbot.example.com", "c 1") == (
        "wss://callbot.example.com/relay?call_id=c+1"
    )
    assert relay_socket_url("http://127.0.0.1:8080", "c1") == "ws://127.0.0.1:8080/relay?call_id=c1"
    assert signed_socket_url("https://callbot.example.com", "/relay", "") == (
        "wss://callbot.example.com/relay"
    )


def test_a_handshake_signed_by_twilio_checks_out_against_the_socket_url() -> None:
    validator = RequestValidator("token")
    url = relay_socket_url("https://callbot.example.com", "c1")
    signature = validator.compute_signature(url, {})
    # What gateway checks: the public socket URL it rebuilt from path and query.
    rebuilt = signed_socket_url("https://callbot.example.com", "/relay", "call_id=c1")
    assert validator.validate(rebuilt, {}, signature)
    assert not validator.validate(
        relay_socket_url("https://callbot.example.com", "c2"), {}, signature
    )
    assert not validator.validate(rebuilt, {}, RequestValidator("other").compute_signature(url, {}))
