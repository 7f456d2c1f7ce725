"""How an agent's calls carry the conversation: Twilio `<Gather>` (one webhook
per turn, the default) or Twilio ConversationRelay (one WebSocket per call,
speech recognised and synthesised by Twilio, replies streamed as text tokens,
the callee can interrupt). Saved as `"transport": "gather"`, or as an object
with `type` and the relay's options. Pure: no I/O.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Interruptible = Literal["none", "any", "speech", "dtmf"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class GatherTransport(_Model):
    type: Literal["gather"] = "gather"


class ConversationRelayTransport(_Model):
    """The `<ConversationRelay>` attributes an agent may set. `None` leaves
    Twilio's default (for `language`: the agent's own). The agent's `voice`
    is a `<Say>` voice and is not used here: name the relay's voice for its
    `tts_provider`."""

    type: Literal["conversation_relay"] = "conversation_relay"
    tts_provider: str | None = Field(default=None, max_length=40)  # ttsProvider
    voice: str | None = Field(default=None, max_length=100)
    transcription_provider: str | None = Field(default=None, max_length=40)
    speech_model: str | None = Field(default=None, max_length=100)
    language: str | None = Field(default=None, max_length=20)  # None: the agent's language
    interruptible: Interruptible = "any"
    # True: Twilio speaks the agent's greeting (`welcomeGreeting`) as soon as
    # the WebSocket opens; False: dialog streams it like any other reply.
    welcome_greeting: bool = False
    dtmf_detection: bool = True


def _shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


Transport = Annotated[
    GatherTransport | ConversationRelayTransport,
    Field(discriminator="type"),
    BeforeValidator(_shorthand),
]
