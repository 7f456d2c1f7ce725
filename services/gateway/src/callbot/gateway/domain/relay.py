"""Twilio ConversationRelay: the `<Connect><ConversationRelay>` TwiML and the
JSON messages of its WebSocket, as Twilio documents them ("TwiML Voice:
<ConversationRelay>", "Getting and sending WebSocket messages"; see
docs/call-flow.md). Pure: no I/O.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from callbot.common.transport import ConversationRelayTransport
from callbot.gateway.domain.twiml import _document, _element

# The custom parameters that carry our call id, and the greeting gateway sends
# itself (when Twilio does not speak it as `welcomeGreeting`), into `setup`.
CALL_ID_PARAMETER = "call_id"
GREETING_PARAMETER = "greeting"
RELAY_SOCKET_PATH = "/relay"


def relay_socket_url(public_base: str, call_id: str) -> str:
    """The WebSocket URL for a call's relay under `PUBLIC_URL` (`https` becomes
    `wss`, `http` becomes `ws`), with the `call_id` in its query so the signed
    handshake names the call."""
    return signed_socket_url(public_base, RELAY_SOCKET_PATH, urlencode({"call_id": call_id}))


def signed_socket_url(public_base: str, path: str, raw_query: str) -> str:
    """The URL Twilio signs on the WebSocket handshake (its `X-Twilio-Signature`
    covers this URL alone: a handshake has no form body): the public one with
    its WebSocket scheme, never the internal URL a proxy forwarded to."""
    if public_base.startswith("https://"):
        base = "wss://" + public_base.removeprefix("https://")
    elif public_base.startswith("http://"):
        base = "ws://" + public_base.removeprefix("http://")
    else:
        base = public_base
    return f"{base}{path}?{raw_query}" if raw_query else base + path


class _Incoming(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class RelaySetup(_Incoming):
    """First message on the socket: which call this is."""

    type: Literal["setup"]
    session_id: str = Field(alias="sessionId")
    call_sid: str = Field(alias="callSid")
    custom_parameters: dict[str, str] = Field(default_factory=dict, alias="customParameters")


class RelayPrompt(_Incoming):
    """The callee's words; only `last: true` closes an utterance."""

    type: Literal["prompt"]
    voice_prompt: str = Field(alias="voicePrompt")
    lang: str | None = None
    last: bool = True


class RelayInterrupt(_Incoming):
    """The callee spoke over our reply; they heard `utterance_until_interrupt`."""

    type: Literal["interrupt"]
    utterance_until_interrupt: str = Field(default="", alias="utteranceUntilInterrupt")
    duration_until_interrupt_ms: int | None = Field(default=None, alias="durationUntilInterruptMs")


class RelayDtmf(_Incoming):
    type: Literal["dtmf"]
    digit: str


class RelayError(_Incoming):
    type: Literal["error"]
    description: str = ""


RelayMessage = Annotated[
    RelaySetup | RelayPrompt | RelayInterrupt | RelayDtmf | RelayError,
    Field(discriminator="type"),
]
RELAY_MESSAGE_ADAPTER: TypeAdapter[RelayMessage] = TypeAdapter(RelayMessage)


class _Outgoing(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_text(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class RelayHandoff(BaseModel):
    """What gateway hands itself through Twilio in `end`'s `handoffData`: the
    line to speak before hanging up (the `<Connect action>` webhook answers
    `<Say>` it then `<Hangup/>`, so the callee hears it whole)."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    say: str = ""
    voice: str | None = None
    language: str | None = None
    ended_by: str | None = None


RELAY_HANDOFF_ADAPTER: TypeAdapter[RelayHandoff] = TypeAdapter(RelayHandoff)


class RelayText(_Outgoing):
    """Text for Twilio to speak; `last: true` closes the reply."""

    type: Literal["text"] = "text"
    token: str
    last: bool = False


class RelayEnd(_Outgoing):
    """Ends the session (after the closing line was sent); `handoffData` goes
    to the `<Connect action>` webhook."""

    type: Literal["end"] = "end"
    handoff_data: str | None = Field(default=None, serialization_alias="handoffData")


def render_relay_twiml(
    *,
    socket_url: str,
    call_id: str,
    transport: ConversationRelayTransport,
    language: str,
    greeting: str,
    action_url: str | None = None,
) -> str:
    """`<Connect><ConversationRelay>` for one call: the socket at `socket_url`,
    the agent's relay options (the agent's language where the transport leaves
    it unset; no voice: the provider's default, since the agent's `<Say>`
    voice names a different engine), our `call_id` as a custom parameter, and
    the greeting: Twilio's `welcomeGreeting` when the transport asks for it,
    else a custom parameter gateway sends as the first text on `setup`."""
    welcome_greeting = greeting if transport.welcome_greeting else None
    parameters = [(CALL_ID_PARAMETER, call_id)]
    if not transport.welcome_greeting and greeting:
        parameters.append((GREETING_PARAMETER, greeting))
    relay = _element(
        "ConversationRelay",
        (  # in name order, as the twilio library writes them
            ("dtmfDetection", transport.dtmf_detection),
            ("interruptible", transport.interruptible),
            ("language", transport.language or language),
            ("speechModel", transport.speech_model),
            ("transcriptionProvider", transport.transcription_provider),
            ("ttsProvider", transport.tts_provider),
            ("url", socket_url),
            ("voice", transport.voice),
            ("welcomeGreeting", welcome_greeting),
        ),
        "".join(
            _element("Parameter", (("name", name), ("value", value)), "")
            for name, value in parameters
        ),
    )
    return _document(_element("Connect", (("action", action_url),), relay))


__all__ = [
    "CALL_ID_PARAMETER",
    "GREETING_PARAMETER",
    "RELAY_HANDOFF_ADAPTER",
    "RELAY_MESSAGE_ADAPTER",
    "RELAY_SOCKET_PATH",
    "RelayDtmf",
    "RelayEnd",
    "RelayError",
    "RelayHandoff",
    "RelayInterrupt",
    "RelayMessage",
    "RelayPrompt",
    "RelaySetup",
    "RelayText",
    "relay_socket_url",
    "render_relay_twiml",
    "signed_socket_url",
]
