"""Issue 7, item 2: persistence stopped while calls go on.

Three calls are answered and greeted; then persistence is stopped and the calls
play to their end (dialog keeps their sessions; gateway and dialog keep
publishing). Their events wait in persistence's queue. When persistence is
started again, every turn lands once and in order, every call is finalized, and
each gets exactly one `call.completed`.
"""

from __future__ import annotations

import pytest
from faults_harness import (
    RunningStack,
    assert_completed_by_email,
    check_and_report,
    queue_depth,
    start_hesitant_calls,
)

pytestmark = pytest.mark.faults

CALLS = 3


def test_calls_finish_while_persistence_is_down_and_every_turn_lands_once_in_order(
    stack: RunningStack,
) -> None:
    tap = stack.tap("call.completed", "call.turn")
    numbers = [f"+1500555030{index}" for index in range(1, CALLS + 1)]
    # ~0.6 s of real time per utterance: the calls outlast the stop.
    calls = start_hesitant_calls(stack, numbers, utterance_s=0.6)

    stack.persistence.stop()
    seqs_before = stack.stored_seqs(calls)
    played = [stack.played(call) for call in calls]
    waiting = queue_depth(stack.rabbitmq_url, stack.topology.persistence_queue.name)
    stack.persistence.start()

    documents = [stack.completed_document(call.call_id) for call in calls]
    turns_while_down = sum(len(document["turns"]) for document in documents) - len(seqs_before)
    checked = check_and_report(
        "2",
        f"persistence stopped while {turns_while_down} turns were published",
        list(zip(documents, played, strict=True)),
    )
    assert turns_while_down >= 20, f"only {turns_while_down} turns fell in the outage"
    exchanges_while_down = tap.exchanges_beyond(seqs_before, {call.call_id for call in calls})
    assert sum(len(event["turns"]) for event in exchanges_while_down) == turns_while_down
    assert waiting >= len(exchanges_while_down), "the events did not wait in persistence's queue"
    checked.assert_clean()
    for document in documents:
        assert_completed_by_email(document)
    assert tap.count_by_call("call.completed") == {call.call_id: 1 for call in calls}
