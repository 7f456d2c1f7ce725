"""The recipient projection does not depend on the order finished calls arrive
in, nor on repeats (persistence republishes after a crash, replicas race)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from recipient_calls import AGENT, TO, finished_call

from callbot.common.calls import CallDocument
from callbot.persistence.domain.recipients import apply_call, blank_recipient, project_recipient

_values = st.sampled_from(["Ada", "Ada Lovelace", "ada@example.com", None, 7])
_data = st.dictionaries(st.sampled_from(["name", "email", "plan"]), _values, max_size=3)


@st.composite
def _calls(draw: st.DrawFn) -> list[CallDocument]:
    count = draw(st.integers(min_value=1, max_value=6))
    calls = []
    for n in range(count):
        recipient: dict[str, Any] = draw(st.sampled_from([{}, {"tier": "gold"}, {"tier": "x"}]))
        calls.append(
            finished_call(
                n,
                data=draw(_data),
                ended_by=draw(st.sampled_from(["system_complete", "opt_out", "user_goodbye"])),
                answered=draw(st.booleans()),
                minutes=draw(st.integers(min_value=0, max_value=2)),  # ties on time
                recipient=recipient,
                complete=draw(st.booleans()),
            )
        )
    return calls


@st.composite
def _calls_and_delivery(draw: st.DrawFn) -> tuple[list[CallDocument], list[CallDocument]]:
    calls = draw(_calls())
    repeats = draw(st.lists(st.sampled_from(calls), max_size=len(calls)))
    delivered = draw(st.permutations(calls + repeats))
    return calls, delivered


@settings(max_examples=300, deadline=None)
@given(_calls_and_delivery())
def test_any_order_with_repeats_gives_the_same_recipient(
    calls_and_delivery: tuple[list[CallDocument], list[CallDocument]],
) -> None:
    calls, delivered = calls_and_delivery
    assert project_recipient(delivered, AGENT, TO) == project_recipient(calls, AGENT, TO)


@given(_calls())
def test_applying_a_call_again_changes_nothing(calls: list[CallDocument]) -> None:
    recipient = project_recipient(calls, AGENT, TO)
    for call in calls:
        assert apply_call(recipient, call) == recipient


def test_a_recipient_counts_each_call_and_keeps_the_latest_value() -> None:
    first = finished_call(1, data={"name": "Ada", "email": "ada@example.com"})
    second = finished_call(2, data={"name": "Ada Lovelace", "email": None})
    recipient = apply_call(apply_call(blank_recipient(AGENT, TO), second), first)
    assert recipient.total_calls == 2
    assert recipient.known_data() == {"name": "Ada Lovelace", "email": "ada@example.com"}
    assert recipient.data_collected["email"].call_id == first.call_id
    assert recipient.opted_out is None
