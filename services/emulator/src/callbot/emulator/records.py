"""What the emulator observed while playing a call: the test's and the demo's view of it.

``at_s`` fields are emulated seconds since the call was created, the same clock that
produces ``CallDuration`` and the RFC 2822 timestamps sent to the application.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

WebhookKind = Literal["voice", "action", "redirect", "status", "amd", "recording"]
Speaker = Literal["agent", "callee", "system"]
EntryKind = Literal["say", "play", "pause", "speech", "silence", "hangup", "note", "dtmf"]
EndedBy = Literal[
    "agent_hangup",  # the TwiML said <Hangup/>
    "twiml_end",  # the TwiML ran out of verbs
    "callee_hangup",
    "api_update",  # calls(sid).update(status="completed" | "canceled")
    "application_error",  # a webhook failed or returned unusable TwiML
    "time_limit",
    "not_answered",  # busy, no-answer or failed
    "emulator_stopped",
]


class WebhookRecord(BaseModel):
    kind: WebhookKind
    url: str  # exactly what was requested, query string included
    method: str
    params: dict[str, str]
    signature: str
    status_code: int | None = None  # None: no HTTP answer (connection error, timeout)
    response_body: str | None = None  # the TwiML received, for voice/action/redirect
    latency_ms: float = 0.0
    error: str | None = None
    at_s: float


class PlayedAudio(BaseModel):
    """The audio a `<Play>` fetched: what the callee heard, checkable byte for byte."""

    size_bytes: int
    sha256: str
    content_type: str | None = None


class ConversationEntry(BaseModel):
    at_s: float
    speaker: Speaker
    kind: EntryKind
    text: str = ""
    voice: str | None = None
    language: str | None = None
    confidence: float | None = None
    duration_s: float | None = None
    audio: PlayedAudio | None = None  # a <Play> whose audio was fetched


class RelayReply(BaseModel):
    """One agent reply over ConversationRelay, as the emulator received it.
    Times are real milliseconds from the callee's `prompt` (or `dtmf`, or the
    socket's `setup`) to the reply's first and last text token."""

    after: str  # the callee's words (or "setup", or "dtmf <digit>")
    text: str = ""  # every token received for this reply, joined
    tokens: int = 0
    first_token_ms: float | None = None
    last_token_ms: float | None = None
    # The callee spoke over it: what they heard, and tokens that came after the interrupt.
    interrupted: bool = False
    heard: str | None = None
    tokens_after_interrupt: int = 0


class CallError(BaseModel):
    code: int  # Twilio's error code (11200 HTTP retrieval failure, 12100 parse failure, ...)
    message: str
    url: str | None = None
    at_s: float


class CallRecord(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sid: str
    account_sid: str
    to: str
    from_: str = Field(alias="from")
    scenario: str
    status: str = "queued"
    answered_by: str | None = None
    ended_by: EndedBy | None = None
    duration_s: int | None = None
    created_at: datetime
    updated_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    recording_sid: str | None = None
    # The create request's form fields, as received.
    request: dict[str, list[str]]
    webhooks: list[WebhookRecord] = Field(default_factory=list)
    conversation: list[ConversationEntry] = Field(default_factory=list)
    errors: list[CallError] = Field(default_factory=list)
    # ConversationRelay calls: each agent reply with its timings.
    relay_replies: list[RelayReply] = Field(default_factory=list)
    # True once every callback, the recording one included, has been sent.
    finished: bool = False

    @property
    def recording_channels(self) -> int:
        """2 when the call was created with ``RecordingChannels=dual``, else 1."""
        return 2 if self.request.get("RecordingChannels") == ["dual"] else 1

    def webhooks_of(self, kind: WebhookKind) -> list[WebhookRecord]:
        return [hook for hook in self.webhooks if hook.kind == kind]

    def lines(self, speaker: Speaker) -> list[str]:
        """What ``speaker`` said, in order (speech and <Say> text only)."""
        return [
            entry.text
            for entry in self.conversation
            if entry.speaker == speaker and entry.kind in {"say", "speech"}
        ]
