"""The call document (`calls` collection) and the vocabulary around it.

persistence writes it; gateway and dialog read it. Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from callbot.common.mcp_servers import ToolCallRecord

Role = Literal["user", "assistant"]

# What a post-call summary was made from: the live turns (always), and the
# recording's transcript once the media worker announced one. A summary that
# used the recording outranks one that did not (persistence's rule).
SummarySource = Literal["live_turns", "recording_transcript"]
LIVE_TURNS: SummarySource = "live_turns"
RECORDING_TRANSCRIPT: SummarySource = "recording_transcript"

EndedBy = Literal[
    "callee_hangup",
    "user_goodbye",
    "system_timeout",
    "system_complete",
    "max_turns",
    "max_duration",
    "voicemail",
    "error",
    "busy",
    "no-answer",
    "failed",
    "canceled",
    "opt_out",  # the callee asked not to be called again
]

# Twilio's call statuses; the last five are terminal.
CallStatus = Literal[
    "created",  # ours: placed, Twilio has not called back yet
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
]
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"completed", "busy", "no-answer", "failed", "canceled"}
)

MACHINE_ANSWERS: frozenset[str] = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)


def is_machine(answered_by: str | None) -> bool:
    """Twilio's AnsweredBy says a machine (or fax) took the call."""
    return answered_by in MACHINE_ANSWERS


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Turn(_Model):
    """One line of the conversation. `seq` orders turns; the greeting is seq 0."""

    seq: int = Field(ge=0)
    role: Role
    content: str
    at: datetime
    no_input: bool = False  # the callee said nothing (Twilio sent an empty SpeechResult)
    confidence: float | None = None
    latency_ms: int | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()  # the model's tool calls behind this line
    # gateway spoke this line (`callbot.common.fallback_lines`, or for a machine
    # the agent's voicemail message) because dialog missed the turn deadline; a
    # late reply from dialog never replaces it.
    fallback: bool = False
    # The callee spoke over this line (ConversationRelay barge-in): `content` is
    # only what they heard before the interruption.
    interrupted: bool = False
    # The recording played instead of speaking `content` (the agent's `audio`);
    # `content` is then the line's transcript.
    audio: str | None = None
    # The knowledge passages in the model's context for this line (`<uri>#<n>`).
    passages: tuple[str, ...] = ()


def user_turn(seq: int, speech: str, confidence: float | None, at: datetime) -> Turn:
    """What the callee said at `seq` (Twilio's `SpeechResult`); nothing said is a no-input turn."""
    text = speech.strip()
    return Turn(seq=seq, role="user", content=text, at=at, no_input=not text, confidence=confidence)


class RecordingArchive(_Model):
    """Where the media worker stored a recording, checked by reading it back."""

    bucket: str
    key: str
    size_bytes: int = Field(ge=0)
    sha256: str
    content_type: str = "audio/wav"
    archived_at: datetime
    deleted_at_twilio: bool = False

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Recording(_Model):
    sid: str
    url: str | None = None
    duration_s: int | None = None
    status: str | None = None
    # Twilio's `RecordingStartTime` (whole seconds): where the recording's
    # timeline starts, which aligns its transcript with the live turns.
    started_at: datetime | None = None
    archive: RecordingArchive | None = None  # set by `call.recording_archived`


Speaker = Literal["agent", "callee"]


class TranscriptSegment(_Model):
    """A stretch of the recording's transcript, timed from the recording's start.

    `channel` (1 or 2) and `speaker` are set when the recording is dual-channel
    (each party on a channel of its own); a mono recording mixes both, so
    neither is known."""

    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    text: str
    channel: int | None = None
    speaker: Speaker | None = None
    # The live turn this stretch belongs to (dual-channel recordings only;
    # None when no turn of that speaker's role overlaps it): the media
    # worker's alignment, `callbot.media.domain.alignment`.
    seq: int | None = None


class RecordingTranscript(_Model):
    """The transcript of the archived recording (the media worker's), beside
    the live `turns`, never replacing them."""

    recording_sid: str
    model: str
    text: str
    language: str | None = None
    duration_s: float | None = None
    channels: int = Field(default=1, ge=1, le=2)
    segments: tuple[TranscriptSegment, ...] = ()
    transcribed_at: datetime


class TranscriptionFailure(_Model):
    """The recording could not be transcribed; the recording itself is kept."""

    recording_sid: str
    reason: str
    attempts: int = Field(ge=1)
    failed_at: datetime


class DataReviewItem(_Model):
    """A collected value the recording's transcript contradicts: flagged, never changed."""

    field: str
    value: Any
    heard: tuple[str, ...]  # what the recording says instead
    reason: str


class CallbackRequest(_Model):
    """The callee asked to be called another time (or declined for now)."""

    # The time asked for, as the callee said it ("tomorrow at 3 pm"); None when none was said.
    when: str | None = None
    # What the callee said that asked for it.
    said: str = ""


class CallDocument(_Model):
    """A call as stored in MongoDB (`_id` is `call_id`)."""

    call_id: str = Field(validation_alias=AliasChoices("_id", "call_id"))
    call_sid: str | None = None
    agent_id: str | None = None
    agent_version: int | None = None
    data_fields: tuple[str, ...] = ()  # the fields the agent asked for (`call.created`)
    to: str | None = None
    from_: str | None = Field(
        default=None, validation_alias=AliasChoices("from", "from_"), serialization_alias="from"
    )
    recipient: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, Any] = Field(default_factory=dict)
    override_opt_out: str | None = None
    status: CallStatus | None = None
    status_seq: int | None = None
    answered_by: str | None = None
    ended_by: EndedBy | None = None
    ending_reason: str | None = None
    # The seq of the closing line behind `ended_by` (dialog's `call.ending`): if
    # the callee heard gateway's fallback line there instead, the ending is void.
    ending_seq: int | None = None
    callback_request: CallbackRequest | None = None
    error_code: str | None = None
    created_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: int | None = None
    turns: tuple[Turn, ...] = ()
    data_collected: dict[str, Any] = Field(default_factory=dict)
    data_complete: bool = False
    summary: str | None = None
    summary_model: str | None = None  # the model that wrote it, or "deterministic"
    summarized_at: datetime | None = None
    summary_sources: tuple[SummarySource, ...] = ()  # what the stored summary was made from
    recording: Recording | None = None
    recording_transcript: RecordingTranscript | None = None
    recording_transcript_failure: TranscriptionFailure | None = None
    data_review: tuple[DataReviewItem, ...] | None = None  # None: not checked
    expires_at: datetime | None = None  # retention: erased from then on (None: kept)
    # persistence's outbox bookkeeping: when a publisher took the job of sending
    # `call.completed` (a stale claim is retried), and when the broker confirmed it.
    completed_claimed_at: datetime | None = None
    completed_published_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status in TERMINAL_STATUSES
