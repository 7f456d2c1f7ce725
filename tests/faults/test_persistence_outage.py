"""Issue 7, item 2: persistence stopped while calls go on.

Three calls are answered and greeted; then persistence is stopped and the calls
play to their end (dialog keeps their sessions; gateway and dialog keep
publishing). Their events wait in persistence's queue. When persistence is
started again, every turn lands once and in order, every call is finalized, and
each gets exactly one `call.completed`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faults_harness import (
    REPORT,
    Figures,
    RunningStack,
    assert_completed_by_email,
    check_transcript,
    email_agent,
    hesitant_scenario,
    queue_depth,
    running_stack,
    webhook_5xx,
)

pytestmark = pytest.mark.faults

AGENT_ID = "patient"
CALLS = 3


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, rabbitmq_url: str, mongodb_url: str
) -> Iterator[RunningStack]:
    with running_stack(
        tmp_path_factory.mktemp("persistence-outage"), rabbitmq_url, mongodb_url
    ) as running:
        running.put_agent(AGENT_ID, email_agent())
        yield running


def test_calls_finish_while_persistence_is_down_and_every_turn_lands_once_in_order(
    stack: RunningStack,
) -> None:
    tap = stack.tap("call.completed")
    numbers = [f"+1500555030{index}" for index in range(1, CALLS + 1)]
    for to in numbers:
        # ~0.6 s of real time per utterance: the calls outlast the stop.
        stack.emulator.add_scenario(hesitant_scenario(to, utterance_s=0.6))
    calls = [stack.place_call(AGENT_ID, to) for to in numbers]
    for call in calls:
        stack.wait_for_greeting(call)

    stack.persistence.stop()
    stored_before = {
        call.call_id: len((stack.document(call.call_id) or {}).get("turns", [])) for call in calls
    }
    played = {call.call_id: stack.played(call) for call in calls}
    waiting = queue_depth(stack.rabbitmq_url, stack.topology.persistence_queue.name)
    stack.persistence.start()

    documents = {call.call_id: stack.completed_document(call.call_id) for call in calls}
    checks = [check_transcript(documents[call_id], played[call_id]) for call_id in documents]
    turns_while_down = sum(
        len(documents[call_id]["turns"]) - stored_before[call_id] for call_id in documents
    )
    http_5xx = sum(webhook_5xx(record) for record in played.values())
    REPORT.add(
        Figures(
            item="2",
            fault=f"persistence stopped while {turns_while_down} turns were published",
            faults_injected=1,
            calls_in_flight=CALLS,
            turns_checked=sum(check.turns for check in checks),
            turns_lost=sum(check.lost_count for check in checks),
            duplicate_turns=sum(check.duplicate_count for check in checks),
            http_5xx=http_5xx,
        )
    )
    assert turns_while_down >= 20, f"only {turns_while_down} turns fell in the outage"
    assert waiting >= turns_while_down, "the events did not wait in persistence's queue"
    for check in checks:
        check.assert_clean()
    assert http_5xx == 0
    for document in documents.values():
        assert_completed_by_email(document)
    assert tap.count_by_call("call.completed") == {call.call_id: 1 for call in calls}
