"""Issue 15, "Must show" 2: a callee who asks not to be called again. The call
ends `opt_out` with the agent's closing line, the recipient is opted out, the
next `POST /v1/calls` to them is 409, and with `override_opt_out` it is placed.
Both ways in: the phrase (checked before the model) and the model's tool."""

from __future__ import annotations

import pytest
from e2e_harness import E2EStack, PlacedCall, agent_definition, llm_rule, record_data

pytestmark = pytest.mark.e2e

OPT_OUT_LINE = "Understood, {recipient.name}. We will not call you again. Goodbye."


@pytest.mark.parametrize("variant", ["phrase", "model"])
def test_a_callee_who_opts_out_is_not_called_again_unless_overridden(
    e2e: E2EStack, variant: str
) -> None:
    tag = f"optout-{variant}"
    agent_id = f"e2e-{tag}"
    to = "+15005550301" if variant == "phrase" else "+15005550302"
    e2e.put_agent(agent_id, agent_definition(tag, opt_out_message=OPT_OUT_LINE))
    last_words = (
        "Please take me off your list." if variant == "phrase" else "I'd rather you never rang."
    )
    e2e.add_scenario(
        {
            "name": tag,
            "to": to,
            "steps": [{"say": "Yes, this is Ada Lovelace."}, {"say": last_words}],
        }
    )
    rules = [
        llm_rule(
            tag,
            "Ada Lovelace",
            text="Thank you, Ada. What email address should we use?",
            tool_calls=[record_data("full_name", "Ada Lovelace")],
            times=None,
        )
    ]
    if variant == "model":
        opt_out = {"name": "opt_out", "arguments": {"reason": "never ring again"}}
        rules.append(llm_rule(tag, "never rang", tool_calls=[opt_out], times=None))
    e2e.fake_llm.control.add_rules(rules)

    first = e2e.call(agent_id, to, {"name": "Ada"})

    assert first.document.ended_by == "opt_out"
    assert first.completed.call.ended_by == "opt_out"
    assert (
        first.played.lines("agent")[-1] == "Understood, Ada. We will not call you again. Goodbye."
    )
    recipient = e2e.recipient(agent_id, to)
    assert recipient is not None
    assert recipient.opted_out is not None
    assert recipient.opted_out.call_id == first.placed.call_id
    assert recipient.known_data() == {"full_name": "Ada Lovelace"}

    refused = e2e.api.post("/v1/calls", json={"agent_id": agent_id, "to": to})
    assert refused.status_code == 409, refused.text
    assert "override_opt_out" in refused.json()["detail"]["message"]

    reason = "Ada called back and asked us to ring her"
    placed = e2e.api.post(
        "/v1/calls",
        json={
            "agent_id": agent_id,
            "to": to,
            "recipient": {"name": "Ada"},
            "override_opt_out": reason,
        },
    )
    assert placed.status_code == 201, placed.text
    body = placed.json()
    second = e2e.finish(PlacedCall(body["call_id"], body["call_sid"], to))
    assert second.document.override_opt_out == reason
    recipient = e2e.recipient(agent_id, to)
    assert recipient is not None
    assert recipient.total_calls == 2
    assert recipient.opted_out is not None
    assert recipient.opted_out.call_id == first.placed.call_id  # the earliest opt-out stays
