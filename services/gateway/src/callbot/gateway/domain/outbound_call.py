"""`POST /v1/calls`: the request, its checks against the agent, and the
parameters of Twilio's `calls.create`."""

from __future__ import annotations

from typing import Annotated, Any

import phonenumbers
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from callbot.common.agents import Agent, AmdMode
from callbot.common.storable import StorableObject
from callbot.gateway.domain.callback_urls import CallbackUrls

# Twilio's status callback events: all four, so persistence sees every step.
STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
RECORDING_CALLBACK_EVENTS = ("completed", "absent")
# How long the phone rings before Twilio gives up with `no-answer`.
RING_TIMEOUT_S = 30
# Answering-machine detection. `DetectMessageEnd` waits for the greeting's beep,
# so the voicemail message lands on the recording instead of over the greeting.
# The thresholds are Twilio's defaults, spelled out so a change is a diff here.
AMD_TIMEOUT_S = 30
AMD_SPEECH_THRESHOLD_MS = 2400
AMD_SPEECH_END_THRESHOLD_MS = 1200
AMD_SILENCE_TIMEOUT_MS = 5000


def e164_number(value: str) -> str:
    """A phone number written in E.164 (`+` and the full international number)
    that phonenumbers knows as a valid number."""
    problem = (
        f"{value!r} is not a phone number in E.164 form "
        "(a '+', the country code and the number, digits only, e.g. +14155550100)"
    )
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError(problem) from None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if e164 != value:
        raise ValueError(problem)
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{value!r} is not a valid phone number for its country code")
    return value


E164Number = Annotated[str, AfterValidator(e164_number)]


class CallRequest(BaseModel):
    """What an internal system asks for when it wants a call placed."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    agent_id: str = Field(min_length=1, description="The agent that holds the conversation.")
    to: E164Number = Field(description="The number to call, E.164.")
    from_: E164Number | None = Field(
        default=None, alias="from", description="Caller ID, E.164; default TWILIO_FROM_NUMBER."
    )
    recipient: StorableObject = Field(
        default_factory=dict, description="Who is called (e.g. name); `{recipient.<key>}`."
    )
    variables: StorableObject = Field(
        default_factory=dict, description="Call data the agent's templates use."
    )
    machine_detection: AmdMode | None = Field(
        default=None, description="Answering-machine detection; default: the agent's."
    )
    record: bool | None = Field(default=None, description="Record the call; default: the agent's.")
    override_opt_out: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Call a recipient who opted out anyway; the reason is stored on the call.",
    )


def missing_variables(agent: Agent, variables: dict[str, Any]) -> list[str]:
    """Variables the agent's templates use that `variables` does not give."""
    return sorted(agent.required_variables() - variables.keys())


def missing_placeholders(
    agent: Agent, recipient: dict[str, Any], variables: dict[str, Any]
) -> list[dict[str, Any]]:
    """The `{recipient.<key>}` and `{variables.<key>}` the agent's templates use
    that the request does not give (absent, null or blank), as 422 errors whose
    `loc` is the missing field: the callee would hear a gap where each goes."""
    given = {"recipient": recipient, "variables": variables}
    return [
        {
            "type": "missing",
            "loc": ["body", root, key],
            "msg": f"agent {agent.agent_id!r} uses {{{root}.{key}}} in its "
            f"{_where_used(agent, root, key)}; give {root}.{key} in the request",
        }
        for root, key in sorted(agent.required_placeholders())
        if _blank(given[root].get(key))
    ]


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _where_used(agent: Agent, root: str, key: str) -> str:
    placeholder = f"{{{root}.{key}}}"
    return ", ".join(name for name, text in agent.templates().items() if placeholder in text)


def create_call_params(
    *,
    call_id: str,
    agent: Agent,
    request: CallRequest,
    from_number: str,
    urls: CallbackUrls,
) -> dict[str, Any]:
    """Keyword arguments of the Twilio client's `calls.create`."""
    params: dict[str, Any] = {
        "to": request.to,
        "from_": request.from_ or from_number,
        "url": urls.answer(call_id, agent.agent_id),
        "method": "POST",
        "status_callback": urls.call_status(call_id),
        "status_callback_event": list(STATUS_CALLBACK_EVENTS),
        "status_callback_method": "POST",
        "timeout": RING_TIMEOUT_S,
        "time_limit": agent.max_duration_s,
    }
    record = agent.record if request.record is None else request.record
    params["record"] = record
    if record:
        params["recording_status_callback"] = urls.recording_status(call_id)
        params["recording_status_callback_method"] = "POST"
        params["recording_status_callback_event"] = list(RECORDING_CALLBACK_EVENTS)
        if agent.recording_channels == "dual":
            # Each party on a channel of its own: the transcript knows who spoke.
            params["recording_channels"] = "dual"
    detection = request.machine_detection or agent.machine_detection
    if detection != "off":
        params.update(
            machine_detection="DetectMessageEnd",
            machine_detection_timeout=AMD_TIMEOUT_S,
            machine_detection_speech_threshold=AMD_SPEECH_THRESHOLD_MS,
            machine_detection_speech_end_threshold=AMD_SPEECH_END_THRESHOLD_MS,
            machine_detection_silence_timeout=AMD_SILENCE_TIMEOUT_MS,
        )
    if detection == "async":
        # Twilio answers /voice/outbound at once and posts the result later, so a
        # human never waits in silence while the detector listens.
        params.update(
            async_amd="true",
            async_amd_status_callback=urls.amd_status(call_id, agent.agent_id),
            async_amd_status_callback_method="POST",
        )
    return params
