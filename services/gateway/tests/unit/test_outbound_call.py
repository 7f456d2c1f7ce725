"""The `POST /v1/calls` request and the `calls.create` parameters it makes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from callbot.common.agents import Agent
from callbot.gateway.domain.callback_urls import CallbackUrls
from callbot.gateway.domain.outbound_call import (
    CallRequest,
    create_call_params,
    missing_placeholders,
)

URLS = CallbackUrls("https://gw.test")


def _agent(**overrides: Any) -> Agent:
    return Agent.model_validate(
        {
            "agent_id": "a1",
            "name": "A",
            "greeting": "Hi {recipient.name}, about {variables.order}",
            "prompt": "Ask about {variables.topic}.",
            "max_duration_s": 300,
            **overrides,
        }
    )


def _params(agent: Agent, **request: Any) -> dict[str, Any]:
    call = CallRequest.model_validate({"agent_id": agent.agent_id, "to": "+14155550100", **request})
    return create_call_params(
        call_id="c1", agent=agent, request=call, from_number="+15005550006", urls=URLS
    )


@pytest.mark.parametrize("number", ["+14155550100", "+33612345678", "+15005550006"])
def test_e164_numbers_are_accepted(number: str) -> None:
    assert CallRequest(agent_id="a", to=number).to == number


@pytest.mark.parametrize(
    "number", ["4155550100", "+1 415 555 0100", "+1415555010O", "", "+10005550100", "+9991234"]
)
def test_other_numbers_are_rejected(number: str) -> None:
    with pytest.raises(ValidationError, match="phone number"):
        CallRequest(agent_id="a", to=number)


def test_from_is_read_from_its_json_name() -> None:
    request = CallRequest.model_validate(
        {"agent_id": "a", "to": "+14155550100", "from": "+15005550006"}
    )
    assert request.from_ == "+15005550006"


def test_missing_placeholders_name_each_missing_field_where_it_goes() -> None:
    assert missing_placeholders(_agent(), {"name": None}, {"order": 1}) == [
        {
            "type": "missing",
            "loc": ["body", "recipient", "name"],
            "msg": "agent 'a1' uses {recipient.name} in its greeting; "
            "give recipient.name in the request",
        },
        {
            "type": "missing",
            "loc": ["body", "variables", "topic"],
            "msg": "agent 'a1' uses {variables.topic} in its prompt; "
            "give variables.topic in the request",
        },
    ]
    everything = {"order": 1, "topic": "x", "more": 2}
    assert missing_placeholders(_agent(), {"name": "Ada"}, everything) == []


@pytest.mark.parametrize("blank", ["", "   ", None])
def test_a_blank_value_is_as_missing_as_an_absent_one(blank: str | None) -> None:
    """A CSV cell left empty would be heard as a gap just the same."""
    everything = {"order": 1, "topic": "x"}
    missing = missing_placeholders(_agent(), {"name": blank}, everything)
    assert [error["loc"] for error in missing] == [["body", "recipient", "name"]]


def test_sync_detection_and_recording_from_the_agent() -> None:
    params = _params(_agent())
    assert params == {
        "to": "+14155550100",
        "from_": "+15005550006",
        "url": "https://gw.test/voice/outbound?call_id=c1&agent_id=a1",
        "method": "POST",
        "status_callback": "https://gw.test/call-status?call_id=c1",
        "status_callback_event": ["initiated", "ringing", "answered", "completed"],
        "status_callback_method": "POST",
        "timeout": 30,
        "time_limit": 300,
        "record": True,
        "recording_status_callback": "https://gw.test/recording-status?call_id=c1",
        "recording_status_callback_method": "POST",
        "recording_status_callback_event": ["completed", "absent"],
        "machine_detection": "DetectMessageEnd",
        "machine_detection_timeout": 30,
        "machine_detection_speech_threshold": 2400,
        "machine_detection_speech_end_threshold": 1200,
        "machine_detection_silence_timeout": 5000,
    }


def test_request_overrides_detection_and_recording() -> None:
    params = _params(_agent(), machine_detection="async", record=False, **{"from": "+33612345678"})
    assert params["from_"] == "+33612345678"
    assert params["record"] is False
    assert "recording_status_callback" not in params
    assert params["async_amd"] == "true"
    assert params["async_amd_status_callback"] == (
        "https://gw.test/voice/amd-status?call_id=c1&agent_id=a1"
    )
    assert params["async_amd_status_callback_method"] == "POST"


def test_detection_off_sends_no_detection_parameters() -> None:
    params = _params(_agent(machine_detection="async"), machine_detection="off")
    assert not [key for key in params if "machine" in key or "amd" in key]
