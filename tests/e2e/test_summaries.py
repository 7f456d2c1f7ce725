"""Issue 15, "Must show" 3: the post-call summary. A slow summary model (10 s)
does not hold `call.completed` back: it goes out without the summary, and
`call.summarized` fills the call document in later. A failing one gets the
deterministic summary instead. Nothing is lost either way."""

from __future__ import annotations

import pytest
from e2e_harness import E2EStack, agent_definition, llm_rule, record_data, wait_until

from callbot.dialog.domain.summary import DETERMINISTIC, SUMMARY_INSTRUCTIONS

pytestmark = pytest.mark.e2e


def _summary_rule(callee_name: str, response: dict[str, object]) -> dict[str, object]:
    return {
        "match": {"system_regex": SUMMARY_INSTRUCTIONS[:40], "any_regex": callee_name},
        "response": response,
        "times": None,
    }


def _place(e2e: E2EStack, tag: str, to: str, callee_name: str) -> str:
    agent_id = f"e2e-{tag}"
    e2e.put_agent(agent_id, agent_definition(tag))
    e2e.add_scenario(
        {
            "name": tag,
            "to": to,
            "steps": [{"say": f"Yes, this is {callee_name}."}, {"say": "No thanks, bye!"}],
        }
    )
    e2e.fake_llm.control.add_rules(
        [
            llm_rule(
                tag,
                callee_name,
                text="Thank you. What email address should we use?",
                tool_calls=[record_data("full_name", callee_name)],
                times=None,
            )
        ]
    )
    return agent_id


def test_a_slow_summary_model_does_not_hold_call_completed_back(e2e: E2EStack) -> None:
    name = "Ada Slowpoke"
    text = "Ada Slowpoke gave her name, then said goodbye before giving an email."
    e2e.fake_llm.control.add_rules([_summary_rule(name, {"text": text, "delay_s": 10})])
    agent_id = _place(e2e, "summary-slow", "+15005550401", name)

    call = e2e.call(agent_id, "+15005550401", {"name": "Ada"})

    # Published after the bounded wait, not after the model's 10 s.
    assert call.completed.call.summary is None
    assert call.completed.call.ended_by == "user_goodbye"
    [summarized] = wait_until(
        lambda: e2e.subscriber.summarized(call.placed.call_id),
        "call.summarized from the slow model",
        timeout_s=60,
    )
    assert summarized.summary == text
    assert summarized.model != DETERMINISTIC
    stored = wait_until(
        lambda: (d := e2e.document(call.placed.call_id)) and d.summary and d,
        "the summary in the call document",
    )
    assert (stored.summary, stored.summary_model) == (text, summarized.model)
    assert stored.data_collected == {"full_name": name}  # nothing lost
    assert len(stored.turns) == len(call.document.turns)


def test_a_failing_summary_model_gives_the_deterministic_summary(e2e: E2EStack) -> None:
    name = "Bo Failwell"
    error = {"error": {"status": 500, "message": "summary model down"}}
    e2e.fake_llm.control.add_rules([_summary_rule(name, error)])
    agent_id = _place(e2e, "summary-fail", "+15005550402", name)

    call = e2e.call(agent_id, "+15005550402", {"name": "Bo"})

    [summarized] = wait_until(
        lambda: e2e.subscriber.summarized(call.placed.call_id), "call.summarized"
    )
    assert summarized.model == DETERMINISTIC
    assert f"full_name={name}" in summarized.summary
    assert "the callee ended the conversation" in summarized.summary
    stored = wait_until(
        lambda: (d := e2e.document(call.placed.call_id)) and d.summary and d,
        "the summary in the call document",
    )
    assert stored.summary == summarized.summary
    assert stored.data_collected == {"full_name": name}
