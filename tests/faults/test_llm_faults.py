"""Issue 7, item 5: the LLM misbehaving, one fault per turn of one call.

| callee says     | the scripted LLM                       | the callee hears          |
|-----------------|----------------------------------------|---------------------------|
| name            | 429 on every attempt (a storm)         | the agent's fallback line |
| name again      | 500 three times, then an answer        | the answer (retried)      |
| email           | no answer before the turn's budget     | the agent's fallback line |
| email again     | `record_data` with arguments not JSON  | the email asked again     |
| email once more | `record_data` for an unknown field too | its text; the email kept  |
| phone           | `record_data` of the phone             | the completion message    |

Every turn gets a sensible spoken reply within Twilio's wait, the call goes on
to its end, and the document holds exactly what was said and only valid data.
"""

from __future__ import annotations

import re

import pytest
from faults_harness import (
    RunningStack,
    StackOptions,
    agent_definition,
    check_and_report,
    last_user_line,
    llm_rule,
    log_records,
    place_call_saying,
    record_data,
)

from callbot.testkit.fake_openai import FakeOpenAIProcess, RecordedRequest

pytestmark = pytest.mark.faults

AGENT_ID = "flaky-llm"
FALLBACK_LINE = "Sorry, give me a moment. Could you repeat that?"  # the agent's default


@pytest.fixture(scope="module")
def stack_options(fake_llm: FakeOpenAIProcess) -> StackOptions:
    return StackOptions(
        agents={AGENT_ID: agent_definition(few_shot=[], past_calls=0)},
        openai_base_url=fake_llm.base_url,
    )


def test_llm_errors_timeouts_and_bad_tool_calls_give_sensible_replies(
    stack: RunningStack, fake_llm: FakeOpenAIProcess
) -> None:
    fake_llm.control.reset()
    fake_llm.control.add_rules(
        [
            llm_rule("^My name is", {"error": {"status": 429}}),
            llm_rule("^Sure, it is Ada", {"error": {"status": 500}}, times=3),
            llm_rule("^Sure, it is Ada", {
                "text": "Thanks, Ada. What is your email?",
                "tool_calls": [record_data("full_name", "Ada Lovelace")]}),
            llm_rule("^My email is", {"text": "(too late)", "delay_s": 10}),
            llm_rule("^Again, ada", {
                "tool_calls": [{"name": "record_data",
                                "arguments": '{"field": "email", "value": '}]}),
            llm_rule("^It is ada", {
                "text": "Got it. And your callback number?",
                "tool_calls": [record_data("shoe_size", "42"),
                               record_data("email", "ada@example.com")]}),
            llm_rule("415 555 0134", {
                "text": "Thank you!",
                "tool_calls": [record_data("callback_phone", "+14155550134")]}),
        ]
    )  # fmt: skip
    tap = stack.tap("call.completed")
    call = place_call_saying(
        stack,
        AGENT_ID,
        "+15005550501",
        [
            "My name is Ada Lovelace.",
            "Sure, it is Ada Lovelace.",
            "My email is ada at example dot com.",
            "Again, ada at example dot com.",
            "It is ada at example dot com.",
            "Call me back at +1 415 555 0134.",
        ],
    )
    played = stack.played(call)
    document = stack.completed_document(call.call_id)
    requests = fake_llm.control.requests()
    faults = {
        "429": sum(1 for r in requests if last_user_line(r).startswith("My name is")),
        "500": 3,
        "timeout": 1,
        "malformed": 1,
        "unknown field": 1,
    }
    check_and_report(
        "5",
        "LLM 429 storm, 500 storm, timeout, malformed and unknown tool calls",
        [(document, played)],
        faults_injected=sum(faults.values()),
    ).assert_clean()
    assert played.lines("agent")[1:] == [
        FALLBACK_LINE,  # 429 storm: retried while the budget lasted, then the fallback
        "Thanks, Ada. What is your email?",  # 500 x3, then answered within the budget
        FALLBACK_LINE,  # the LLM did not answer in time
        "Thank you. Could you tell me your email address?",  # malformed arguments
        "Got it. And your callback number?",  # unknown field ignored, email kept
        played.lines("agent")[-1],  # the completion message
    ]
    assert faults["429"] >= 2, "the 429 storm was not retried"
    assert document["ended_by"] == "system_complete"
    assert document["data_collected"] == {
        "full_name": "Ada Lovelace",
        "email": "ada@example.com",
        "callback_phone": "+14155550134",
    }
    # The model is told what went wrong with its tool calls.
    after_malformed = _status_after(requests, "^It is ada")
    assert "A tool call failed: the arguments of record_data were not valid JSON" in after_malformed
    after_unknown = _status_after(requests, "415 555 0134")
    assert "'42' for shoe_size was not recorded: no such field" in after_unknown
    warnings = {record["msg"] for record in log_records(stack.dialog)}
    assert "no answer from the model in time; speaking the fallback line" in warnings
    assert tap.count_by_call("call.completed") == {call.call_id: 1}


def _status_after(requests: list[RecordedRequest], pattern: str) -> str:
    """The collection-status system message of the request for `pattern`'s turn."""
    request = next(r for r in requests if re.search(pattern, last_user_line(r)))
    return str(request.body["messages"][-1]["content"])
