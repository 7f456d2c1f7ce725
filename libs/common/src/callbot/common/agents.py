"""The agent definition and its message templates.

An agent is what a company configures: prompt, few-shot examples, greeting,
voice, the data to collect and the limits of a call. Templates use
`{recipient.<key>}`, `{variables.<key>}` and `{agent.name}`; anything else is
rejected when the agent is saved, so a typo never crashes a call in progress.
Pure: no I/O.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from callbot.common.mcp_servers import McpServers
from callbot.common.object_locations import ObjectLocation
from callbot.common.transport import GatherTransport, Transport

FieldType = Literal["string", "email", "phone", "number", "date", "boolean", "choice"]
AmdMode = Literal["off", "sync", "async"]

_AGENT_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_FIELD_NAME = r"^[a-z][a-z0-9_]{0,63}$"
_PLACEHOLDER = re.compile(r"^(recipient|variables)\.([A-Za-z_][A-Za-z0-9_]*)$|^agent\.name$")


# Every text of an agent that is rendered with call data.
TEMPLATE_FIELDS = (
    "greeting",
    "prompt",
    "voicemail_message",
    "completion_message",
    "goodbye_message",
    "reprompt_message",
    "fallback_message",
    "timeout_message",
    "opt_out_message",
)


# The fixed lines an agent may have played from a recording instead of spoken.
AudioLine = Literal[
    "greeting",
    "voicemail_message",
    "completion_message",
    "goodbye_message",
    "timeout_message",
    "opt_out_message",
]
MAX_KNOWLEDGE_DOCUMENTS = 20


def _object_uri(uri: str) -> str:
    ObjectLocation.parse(uri)  # raises ValueError saying what a location looks like
    return uri


ObjectUri = Annotated[str, AfterValidator(_object_uri)]


class TemplateError(ValueError):
    """A template uses a placeholder callbot cannot fill."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class DataField(_Model):
    """One piece of data the agent must collect during the call."""

    name: str = Field(pattern=_FIELD_NAME)
    description: str = Field(min_length=1, max_length=500)
    type: FieldType = "string"
    required: bool = True
    choices: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _choices_match_type(self) -> DataField:
        if self.type == "choice" and not self.choices:
            raise ValueError(f"field {self.name!r} has type 'choice' but no choices")
        if self.type != "choice" and self.choices:
            raise ValueError(f"field {self.name!r} lists choices but its type is {self.type!r}")
        return self


class FewShotMessage(_Model):
    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


class LlmOptions(_Model):
    model: str | None = None  # None: the service default (`LLM_MODEL`)
    temperature: float = Field(default=0.3, ge=0, le=2)
    max_tokens: int = Field(default=300, ge=16, le=4096)
    timeout_s: float = Field(default=3.0, gt=0, le=12)


class SpeechOptions(_Model):
    hints: tuple[str, ...] = ()
    model: str | None = None  # Twilio speechModel, e.g. "phone_call"
    timeout: str = "auto"  # Twilio speechTimeout: seconds or "auto"
    gather_timeout_s: int = Field(default=5, ge=1, le=60)

    @model_validator(mode="after")
    def _twilio_accepts_the_timeout(self) -> SpeechOptions:
        problem = speech_timeout_problem(self.timeout, self.model)
        if problem:
            raise ValueError(problem)
        return self


class AgentAudio(_Model):
    """Fixed lines played from an audio file in object storage (`<Play>`)
    instead of spoken from their text, e.g. a human-recorded voicemail drop.
    The line's text stays its transcript: it is what the call document records
    the callee heard, so it should say what the recording says."""

    greeting: ObjectUri | None = None
    voicemail_message: ObjectUri | None = None
    completion_message: ObjectUri | None = None
    goodbye_message: ObjectUri | None = None
    timeout_message: ObjectUri | None = None
    opt_out_message: ObjectUri | None = None

    def for_line(self, line: AudioLine) -> str | None:
        uri: str | None = getattr(self, line)
        return uri

    def files(self) -> dict[str, str]:
        """The lines that have a recording, with its `s3://` location."""
        return {line: uri for line, uri in self.model_dump().items() if uri is not None}


def speech_timeout_problem(timeout: str, model: str | None) -> str | None:
    """Why Twilio would refuse this `speechTimeout` (with this `speechModel`)."""
    if timeout != "auto" and not (timeout.isdigit() and 1 <= int(timeout) <= 60):
        return f'speech.timeout {timeout!r} must be "auto" or whole seconds from 1 to 60'
    if timeout == "auto" and model is not None:
        return (
            f'speech.timeout "auto" cannot be used with speech.model {model!r}: Twilio '
            "refuses it (warning 13335). Set speech.timeout to whole seconds, "
            'e.g. "2", or leave speech.model unset'
        )
    return None


class Agent(_Model):
    """An agent as stored in the `agents` collection (`_id` is `agent_id`)."""

    agent_id: str = Field(pattern=_AGENT_ID, validation_alias=AliasChoices("_id", "agent_id"))
    name: str = Field(min_length=1, max_length=200)
    version: int = Field(default=1, ge=1)
    greeting: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    few_shot: tuple[FewShotMessage, ...] = ()
    voice: str = "Polly.Joanna"
    language: str = "en-US"
    data_to_fill: tuple[DataField, ...] = ()
    voicemail_message: str = "Sorry we missed you. We will call again later. Goodbye."
    completion_message: str = "Thank you, I have everything I need. Goodbye!"
    goodbye_message: str = "Thank you for your time. Goodbye!"
    reprompt_message: str = "Sorry, I didn't catch that. Could you say that again?"
    fallback_message: str = "Sorry, give me a moment. Could you repeat that?"
    timeout_message: str = "I haven't heard from you, so I will end the call now. Goodbye!"
    opt_out_message: str = "Understood. We will not call you again. Sorry to bother you, goodbye."
    max_no_input: int = Field(default=3, ge=1, le=10)
    max_turns: int = Field(default=40, ge=2, le=400)
    max_duration_s: int = Field(default=600, ge=30, le=14400)
    machine_detection: AmdMode = "sync"
    record: bool = True
    # Twilio's RecordingChannels: "dual" puts each party on a channel of its own,
    # so the recording's transcript knows who said what.
    recording_channels: Literal["mono", "dual"] = "mono"
    # Check the values collected against the recording's transcript (`data_review`).
    data_check: bool = False
    # Days its calls (documents, recordings, transcripts) are kept; None: the
    # deployment's RETENTION_DAYS.
    retention_days: int | None = Field(default=None, ge=1, le=36500)
    llm: LlmOptions = LlmOptions()
    speech: SpeechOptions = SpeechOptions()
    past_calls: int = Field(default=5, ge=0, le=20)
    # Earlier calls reach the model within this many tokens (about 4 characters
    # each): summaries, or clipped turns for calls without one.
    past_calls_token_budget: int = Field(default=1000, ge=50, le=20000)
    # False: what the recipient gave in earlier calls counts as collected and is
    # not asked again. True: the agent confirms each known value with the callee.
    reconfirm_known_data: bool = False
    mcp: McpServers = ()
    # Documents (`s3://` locations of text, Markdown or PDF files) whose most
    # relevant passages reach the model each turn, within this many tokens.
    knowledge: tuple[ObjectUri, ...] = Field(default=(), max_length=MAX_KNOWLEDGE_DOCUMENTS)
    knowledge_token_budget: int = Field(default=500, ge=50, le=4000)
    audio: AgentAudio = AgentAudio()
    transport: Transport = GatherTransport()
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_validator(*TEMPLATE_FIELDS)
    @classmethod
    def _template_is_sound(cls, text: str) -> str:
        # A field validator, so the error's `loc` names the template (["greeting"]).
        problems = template_problems(text)
        if problems:
            raise ValueError("; ".join(problems))
        return text

    @field_validator("data_to_fill")
    @classmethod
    def _field_names_are_unique(cls, fields: tuple[DataField, ...]) -> tuple[DataField, ...]:
        names = [field.name for field in fields]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate field names {duplicates}")
        return fields

    @field_validator("knowledge")
    @classmethod
    def _documents_are_unique(cls, documents: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({uri for uri in documents if documents.count(uri) > 1})
        if duplicates:
            raise ValueError(f"documents listed twice: {duplicates}")
        return documents

    @model_validator(mode="after")
    def _recordings_play_where_twiml_is_answered(self) -> Agent:
        # Over ConversationRelay, Twilio speaks the agent's lines from text on the
        # WebSocket; only the voicemail message (a machine gets TwiML, never the
        # relay) can be played, so a stored `audio` always means it was heard.
        if self.transport.type == "conversation_relay":
            spoken = sorted(line for line in self.audio.files() if line != "voicemail_message")
            if spoken:
                raise ValueError(
                    f"audio {spoken}: over transport conversation_relay these lines are "
                    "spoken from text; only voicemail_message can be a recording"
                )
        return self

    def templates(self) -> dict[str, str]:
        """Every text of the agent that is rendered with call data."""
        return {name: getattr(self, name) for name in TEMPLATE_FIELDS}

    def required_variables(self) -> frozenset[str]:
        """Call variables the templates use: `POST /v1/calls` must supply each."""
        return frozenset(
            key
            for text in self.templates().values()
            for root, key in _placeholders(text)
            if root == "variables"
        )

    def required_placeholders(self) -> frozenset[tuple[str, str]]:
        """(root, key) of every `{recipient.<key>}` and `{variables.<key>}` the
        templates use: a call must give each, or the callee hears a gap."""
        return frozenset(
            (root, key)
            for text in self.templates().values()
            for root, key in _placeholders(text)
            if root in ("recipient", "variables")
        )

    def field(self, name: str) -> DataField | None:
        return next((field for field in self.data_to_fill if field.name == name), None)

    def to_document(self) -> dict[str, Any]:
        """The MongoDB document for this agent (`_id` = agent id)."""
        document = self.model_dump(mode="python", exclude={"agent_id"})
        return {"_id": self.agent_id, **document}


def _placeholders(text: str) -> list[tuple[str, str]]:
    """(root, key) pairs of a template; raises TemplateError on malformed braces."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"malformed template: {exc}") from exc
    found = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        match = _PLACEHOLDER.match(name)
        if match is None or spec or conversion:
            raise TemplateError(
                f"unknown placeholder {{{name}}}: use {{recipient.<key>}}, "
                "{variables.<key>} or {agent.name}"
            )
        found.append((match.group(1) or "agent", match.group(2) or "name"))
    return found


def template_problems(text: str) -> list[str]:
    """Why a template cannot be rendered; empty when it is sound."""
    try:
        _placeholders(text)
    except TemplateError as exc:
        return [str(exc)]
    return []


def render_template(
    text: str,
    *,
    agent_name: str,
    recipient: Mapping[str, Any],
    variables: Mapping[str, Any],
) -> str:
    """Fill a template validated at save time; a missing recipient field renders empty."""
    parts: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(text):
        parts.append(literal)
        if name is None:
            continue
        root, _, key = name.partition(".")
        source: Mapping[str, Any] = {
            "recipient": recipient,
            "variables": variables,
            "agent": {"name": agent_name},
        }.get(root, {})
        value = source.get(key)
        parts.append("" if value is None else str(value))
    return "".join(parts)
