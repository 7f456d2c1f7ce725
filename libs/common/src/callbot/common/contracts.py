"""Every message callbot sends: events on `callbot.events` and RPC bodies.

Frozen pydantic models, dispatched on their `type` field. Unknown fields are
ignored on read (a newer producer may add some); required fields are enforced.
A breaking change to an event bumps its `schema_version` (`SCHEMA_VERSION`
unless the event says otherwise) and keeps the old reader alongside.
Pure: no I/O.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from callbot.common.agents import Agent
from callbot.common.calls import (
    LIVE_TURNS,
    RECORDING_TRANSCRIPT,
    CallbackRequest,
    CallDocument,
    DataReviewItem,
    EndedBy,
    Recording,
    RecordingArchive,
    RecordingTranscript,
    SummarySource,
    Turn,
)
from callbot.common.transport import GatherTransport, Transport

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


# --- Events ---------------------------------------------------------------


class Event(Message):
    message_id: str = Field(default_factory=new_id)
    occurred_at: datetime = Field(default_factory=utcnow)
    schema_version: int = SCHEMA_VERSION


class CallEvent(Event):
    call_id: str = Field(min_length=1)


class CallCreated(CallEvent):
    """gateway: Twilio accepted the call."""

    type: Literal["call.created"] = "call.created"
    call_sid: str
    agent_id: str
    agent_version: int
    # The data fields this version of the agent asks for (the recipient record's
    # `missing_fields` counts them).
    data_fields: tuple[str, ...] = ()
    to: str
    from_: str = Field(validation_alias=AliasChoices("from", "from_"), serialization_alias="from")
    recipient: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, Any] = Field(default_factory=dict)
    status: str = "queued"
    override_opt_out: str | None = None  # why a recipient who opted out is called anyway
    # How long the call is kept (the agent's, else the deployment's); None: kept.
    retention_days: int | None = Field(default=None, ge=1)


class CallAnswered(CallEvent):
    """gateway: Twilio fetched the answer TwiML (`/voice/outbound`)."""

    type: Literal["call.answered"] = "call.answered"
    call_sid: str
    answered_by: str | None = None


class CallAnsweredBy(CallEvent):
    """gateway: asynchronous answering-machine detection's result (Twilio's
    `AsyncAmdStatusCallback`), for a call whose `call.answered` went out
    without `answered_by` when the answer webhook came."""

    type: Literal["call.answered_by"] = "call.answered_by"
    call_sid: str
    answered_by: str = Field(min_length=1)


class CallFallbackSpoken(CallEvent):
    """gateway: dialog missed the deadline of a request, so the callee heard
    gateway's fallback line (`callbot.common.fallback_lines`; for a machine,
    the agent's voicemail message) instead of dialog's reply. `turns` is what
    the callee said and heard: the utterance gateway had asked dialog about
    (none for the greeting or the voicemail message), then the fallback line
    (`fallback=True`) at the seq dialog's reply would have taken.

    persistence stores the fallback line at its seq whatever dialog's late
    reply put there, and voids the late reply's ending."""

    type: Literal["call.fallback"] = "call.fallback"
    turns: tuple[Turn, ...] = Field(min_length=1, max_length=2)

    @model_validator(mode="after")
    def _utterance_then_fallback_line(self) -> CallFallbackSpoken:
        *heard, line = self.turns
        if line.role != "assistant" or not line.fallback:
            raise ValueError("the last turn must be the fallback line (assistant, fallback=true)")
        if heard and (heard[0].role != "user" or heard[0].seq + 1 != line.seq):
            raise ValueError("the turn before the fallback line must be the user turn before it")
        return self

    @property
    def line(self) -> Turn:
        return self.turns[-1]


class CallTurnRecorded(CallEvent):
    """dialog: the turns of one exchange (the callee's words and the reply, or
    a line alone: the greeting, the voicemail message), with the data
    collected after them. One event per exchange, so persistence stores an
    exchange in one write and never holds the callee's words without the reply.

    Schema version 2; version 1 carried a single `turn` (one event per turn)
    and is still read, as an exchange of that one turn: a version-1 event may
    wait in a queue or the dead-letter queue across an upgrade."""

    type: Literal["call.turn"] = "call.turn"
    schema_version: int = 2
    turns: tuple[Turn, ...] = Field(min_length=1)
    data_collected: dict[str, Any] = Field(default_factory=dict)
    data_complete: bool = False

    @model_validator(mode="before")
    @classmethod
    def _read_version_1(cls, data: Any) -> Any:
        if isinstance(data, dict) and "turns" not in data and "turn" in data:
            return {**data, "turns": [data["turn"]]}
        return data

    @model_validator(mode="after")
    def _turns_in_seq_order(self) -> CallTurnRecorded:
        seqs = [turn.seq for turn in self.turns]
        if any(later <= earlier for earlier, later in itertools.pairwise(seqs)):
            raise ValueError(f"the turns of an exchange need increasing seqs, got {seqs}")
        return self

    @property
    def last_seq(self) -> int:
        """The exchange's last seq: its data is what was collected by then."""
        return self.turns[-1].seq


class CallTurnInterrupted(CallEvent):
    """gateway: the callee spoke over an assistant line (ConversationRelay
    `interrupt`); `turn` is that line as far as they heard it, marked
    `interrupted`. It replaces the line `call.turn` stored at the same seq, in
    whichever order the two arrive; a turn already marked interrupted stays."""

    type: Literal["call.turn_interrupted"] = "call.turn_interrupted"
    turn: Turn

    @model_validator(mode="after")
    def _an_interrupted_assistant_line(self) -> CallTurnInterrupted:
        if self.turn.role != "assistant" or not self.turn.interrupted:
            raise ValueError("call.turn_interrupted carries an assistant turn marked interrupted")
        return self


class CallEnding(CallEvent):
    """dialog: it decided to hang up."""

    type: Literal["call.ending"] = "call.ending"
    ended_by: EndedBy
    reason: str = ""
    # The callee refused or asked to be called later: the time asked for, if any.
    callback_request: CallbackRequest | None = None
    # The seq of the closing line (the exchange's last turn). Unset by older
    # producers; persistence voids an ending whose line the callee never heard.
    seq: int | None = Field(default=None, ge=0)


class CallStatusChanged(CallEvent):
    """gateway: a Twilio status callback. `params` holds every field Twilio sent."""

    type: Literal["call.status"] = "call.status"
    call_sid: str
    status: str
    sequence_number: int | None = None
    call_duration: int | None = None
    timestamp: str | None = None
    answered_by: str | None = None
    error_code: str | None = None
    params: dict[str, str] = Field(default_factory=dict)


class CallRecordingUpdated(CallEvent):
    """gateway: a Twilio recording status callback."""

    type: Literal["call.recording"] = "call.recording"
    call_sid: str | None = None
    recording: Recording
    params: dict[str, str] = Field(default_factory=dict)


class CallSummarized(CallEvent):
    """dialog: a summary of a finished call (by the model, or `deterministic`).

    Usually stored before `call.completed` is published, so that event carries
    it; when the model is slow it comes later and fills in the call document.
    Remade once the recording's transcript is announced: `sources` then names
    `recording_transcript` beside `live_turns` (producers that predate it
    sent neither: the live turns)."""

    type: Literal["call.summarized"] = "call.summarized"
    summary: str = Field(min_length=1)
    model: str = Field(min_length=1)
    summarized_at: datetime = Field(default_factory=utcnow)
    sources: tuple[SummarySource, ...] = (LIVE_TURNS,)

    @property
    def uses_recording(self) -> bool:
        return RECORDING_TRANSCRIPT in self.sources


class CallRecordingArchived(CallEvent):
    """media: a call's recording is in the recordings bucket, its size and
    SHA-256 checked by reading it back (and, when so configured, deleted at
    Twilio afterwards). persistence stores it as `recording.archive`."""

    type: Literal["call.recording_archived"] = "call.recording_archived"
    recording_sid: str
    archive: RecordingArchive


class CallRecordingTranscribed(CallEvent):
    """media: the archived recording was transcribed; persistence stores it as
    `recording_transcript` (and `data_review` when the agent asks for the data
    check). At least once: the same transcript again changes nothing."""

    type: Literal["call.recording_transcribed"] = "call.recording_transcribed"
    transcript: RecordingTranscript
    data_review: tuple[DataReviewItem, ...] | None = None  # None: the agent has no data check


class CallRecordingTranscriptionFailed(CallEvent):
    """media: the recording could not be transcribed after every attempt (or the
    endpoint refused it); the archive is kept and the event that asked for the
    transcript is dead-lettered, so it can be replayed."""

    type: Literal["call.recording_transcription_failed"] = "call.recording_transcription_failed"
    recording_sid: str
    reason: str
    attempts: int = Field(ge=1)


class CallCompleted(CallEvent):
    """persistence: the final call document was written. The contract for subscribers.

    Delivered at least once; `call_id` is the idempotency key.
    """

    type: Literal["call.completed"] = "call.completed"
    call: CallDocument


class CallRecordingReady(CallEvent):
    """persistence: a recording arrived after `call.completed` was published."""

    type: Literal["call.recording_ready"] = "call.recording_ready"
    recording: Recording


class AgentUpdated(Event):
    """persistence: an agent was saved; dialog drops its cached copy."""

    type: Literal["agent.updated"] = "agent.updated"
    agent_id: str
    version: int


class RecipientDataErased(Event):
    """persistence: a recipient of an agent was erased on request (audit record
    `audit_id`). The campaigns service, owner of `attempts`, erases that number
    from the rows of that agent's campaigns. At least once: idempotent."""

    type: Literal["recipient.erased"] = "recipient.erased"
    audit_id: str = Field(min_length=1)
    agent_id: str = Field(min_length=1)
    to: str = Field(min_length=1)


class RecipientAttemptsErased(Event):
    """campaigns: the number is erased from the rows of the agent's campaigns;
    `attempts_erased` counts the rows bearing this erasure (a repeat reports
    the same). persistence adds it to the erasure's audit record."""

    type: Literal["recipient.attempts_erased"] = "recipient.attempts_erased"
    audit_id: str = Field(min_length=1)
    agent_id: str = Field(min_length=1)
    to: str = Field(min_length=1)
    attempts_erased: int = Field(ge=0)


class CampaignCounters(BaseModel):
    """Where a campaign's recipients stand (one per recipient, final or not)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    total: int = 0
    pending: int = 0
    in_progress: int = 0
    retry_scheduled: int = 0
    completed: int = 0
    failed: int = 0
    canceled: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = Field(default_factory=dict)
    calls_placed: int = 0


class CampaignProgress(Event):
    """campaigns: a campaign's counters, at most every CAMPAIGNS_PROGRESS_INTERVAL_S."""

    type: Literal["campaign.progress"] = "campaign.progress"
    campaign_id: str
    state: str
    counters: CampaignCounters


class CampaignCompleted(Event):
    """campaigns: every recipient reached a final state (or the campaign was
    canceled and its calls in flight ended). At least once: deduplicate on
    `campaign_id`."""

    type: Literal["campaign.completed"] = "campaign.completed"
    campaign_id: str
    state: str
    counters: CampaignCounters


AnyEvent = Annotated[
    CallCreated
    | CallAnswered
    | CallAnsweredBy
    | CallFallbackSpoken
    | CallTurnRecorded
    | CallTurnInterrupted
    | CallEnding
    | CallStatusChanged
    | CallRecordingUpdated
    | CallSummarized
    | CallRecordingArchived
    | CallRecordingTranscribed
    | CallRecordingTranscriptionFailed
    | CallCompleted
    | CallRecordingReady
    | AgentUpdated
    | RecipientDataErased
    | RecipientAttemptsErased
    | CampaignProgress
    | CampaignCompleted,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


def decode_event(body: bytes) -> AnyEvent:
    """Parse an event; raises `pydantic.ValidationError` naming what is wrong."""
    return EVENT_ADAPTER.validate_json(body)


# --- RPC ------------------------------------------------------------------


class DialogStart(Message):
    """gateway → dialog: the call was answered; what do we say first?"""

    type: Literal["dialog.start"] = "dialog.start"
    call_id: str = Field(min_length=1)
    agent_id: str = Field(min_length=1)
    call_sid: str
    to: str | None = None
    from_: str | None = Field(
        default=None, validation_alias=AliasChoices("from", "from_"), serialization_alias="from"
    )
    answered_by: str | None = None


class DialogTurn(Message):
    """gateway → dialog: the callee said something (or nothing) at turn `seq`."""

    type: Literal["dialog.turn"] = "dialog.turn"
    call_id: str = Field(min_length=1)
    seq: int = Field(ge=1)
    speech: str = ""
    confidence: float | None = None
    # The callee heard gateway's fallback line (not dialog's reply) at `seq - 1`.
    after_fallback: bool = False
    # ConversationRelay: the line the callee spoke over before this turn, as far
    # as they heard it (also published as `call.turn_interrupted`).
    interrupted_line: Turn | None = None


class GatherSpec(Message):
    """How gateway listens for the next utterance (Twilio `<Gather>`)."""

    speech_timeout: str = "auto"
    timeout_s: int = 5
    hints: tuple[str, ...] = ()
    speech_model: str | None = None


class DialogReply(Message):
    """dialog → gateway: what to say, and whether to listen again or hang up."""

    type: Literal["dialog.reply"] = "dialog.reply"
    call_id: str
    say: str
    # An `s3://` recording gateway plays (`<Play>` of a presigned URL) instead
    # of speaking `say`, which stays the line's transcript.
    play: str | None = None
    voice: str = "Polly.Joanna"
    language: str = "en-US"
    action: Literal["gather", "hangup"]
    next_seq: int = Field(ge=1)
    gather: GatherSpec = GatherSpec()
    ended_by: EndedBy | None = None
    # The agent's transport: a `gather` reply is rendered as `<Gather>` TwiML; a
    # `conversation_relay` greeting opens the call's relay WebSocket instead.
    transport: Transport = GatherTransport()


class AgentSave(Message):
    """gateway → persistence: create or replace an agent (persistence bumps `version`)."""

    type: Literal["agent.save"] = "agent.save"
    agent: Agent


class AgentSaved(Message):
    type: Literal["agent.saved"] = "agent.saved"
    agent_id: str
    version: int


class CallClaim(Message):
    """gateway → persistence: reserve an `Idempotency-Key` for one call. The first
    claim of a key wins and places `call_id`; until the claim expires, every later
    claim of the key gets the winner's `call_id` instead, so a retry never places
    a second call. `request_digest` fingerprints the request the key came with,
    so a key reused for another request is told apart from a retry."""

    type: Literal["call.claim"] = "call.claim"
    key: str = Field(min_length=1, max_length=128)  # digest of the API key and the header
    call_id: str = Field(min_length=1)
    ttl_s: int = Field(default=86_400, ge=1)
    request_digest: str = Field(default="", max_length=128)


class CallClaimed(Message):
    type: Literal["call.claimed"] = "call.claimed"
    key: str
    call_id: str  # the call the key belongs to: the claimant's when `won`
    won: bool
    # The winner's `request_digest` ("" for a claim stored without one).
    request_digest: str = ""


class CallClaimRelease(Message):
    """gateway → persistence: the claimed call was not placed (Twilio refused it or
    was not reached), so a retry with the same key may place it."""

    type: Literal["call.claim.release"] = "call.claim.release"
    key: str = Field(min_length=1, max_length=128)
    call_id: str = Field(min_length=1)


class CallClaimReleased(Message):
    type: Literal["call.claim.released"] = "call.claim.released"
    key: str
    released: bool  # false: the key was not held for that call (expired or another's)


class RecipientErase(Message):
    """gateway → persistence: erase everything of one recipient of one agent
    (calls, recordings, transcripts, summaries, the recipient's data), keeping
    only the opt-out so they are not called again; an audit record says who asked."""

    type: Literal["recipient.erase"] = "recipient.erase"
    agent_id: str = Field(min_length=1)
    to: str = Field(min_length=1)
    requested_by: str = Field(min_length=1)  # a digest of the API key, never the key
    reason: str = ""


class RecipientErased(Message):
    type: Literal["recipient.erased"] = "recipient.erased"
    audit_id: str
    calls_erased: int
    objects_erased: int
    opted_out: bool  # the opt-out was kept


class RpcFailure(Message):
    """Any RPC server's answer when it could not do what was asked."""

    type: Literal["rpc.error"] = "rpc.error"
    code: Literal["bad_request", "not_found", "internal"]
    message: str


DialogRequest = Annotated[DialogStart | DialogTurn, Field(discriminator="type")]
DIALOG_REQUEST_ADAPTER: TypeAdapter[DialogRequest] = TypeAdapter(DialogRequest)
DialogResponse = Annotated[DialogReply | RpcFailure, Field(discriminator="type")]
DIALOG_RESPONSE_ADAPTER: TypeAdapter[DialogResponse] = TypeAdapter(DialogResponse)

PersistenceRequest = Annotated[
    AgentSave | CallClaim | CallClaimRelease | RecipientErase, Field(discriminator="type")
]
PERSISTENCE_REQUEST_ADAPTER: TypeAdapter[PersistenceRequest] = TypeAdapter(PersistenceRequest)
PersistenceResponse = Annotated[
    AgentSaved | CallClaimed | CallClaimReleased | RecipientErased | RpcFailure,
    Field(discriminator="type"),
]
PERSISTENCE_RESPONSE_ADAPTER: TypeAdapter[PersistenceResponse] = TypeAdapter(PersistenceResponse)

M = TypeVar("M")


def decode(adapter: TypeAdapter[M], body: bytes) -> M:
    """Parse a message with the given adapter; raises `pydantic.ValidationError`."""
    return adapter.validate_json(body)
