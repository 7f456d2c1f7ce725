"""The agent's transport setting: Gather by default, ConversationRelay on request."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from callbot.common.agents import Agent
from callbot.common.transport import ConversationRelayTransport, GatherTransport

BASE = {"agent_id": "demo", "name": "Demo", "greeting": "Hi", "prompt": "Be kind."}


def test_an_agent_without_transport_uses_gather() -> None:
    assert Agent.model_validate(BASE).transport == GatherTransport()


def test_the_transport_may_be_named_alone_or_with_its_options() -> None:
    named = Agent.model_validate({**BASE, "transport": "conversation_relay"})
    assert named.transport == ConversationRelayTransport()
    relay = Agent.model_validate(
        {
            **BASE,
            "transport": {
                "type": "conversation_relay",
                "tts_provider": "ElevenLabs",
                "interruptible": "speech",
                "welcome_greeting": True,
            },
        }
    )
    assert isinstance(relay.transport, ConversationRelayTransport)
    assert relay.transport.interruptible == "speech"
    assert relay.transport.welcome_greeting is True
    # It survives a round trip through its stored form.
    stored = relay.model_dump(mode="json", by_alias=True)
    assert Agent.model_validate(stored).transport == relay.transport


@pytest.mark.parametrize(
    ("transport", "problem"),
    [
        ("media_streams", "conversation_relay"),
        ({"type": "conversation_relay", "interruptible": "maybe"}, "interruptible"),
    ],
)
def test_an_unknown_transport_or_option_is_refused_naming_it(
    transport: object, problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        Agent.model_validate({**BASE, "transport": transport})
