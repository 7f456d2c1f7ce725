"""Issue 7, item 4: MongoDB unreachable while calls go on.

The stack runs on a MongoDB stand-in of its own that can be stopped and
started again with its data (a state file), on the same port.

1. MongoDB stops mid-call: persistence keeps retrying its writes (and says so
   in its log), dialog serves the turns from its sessions, the calls finish.
   MongoDB returns: persistence catches up by itself.
2. MongoDB stops mid-call again, and persistence is SIGKILLed while it waits:
   had it acknowledged anything before the write was durable, that event would
   be gone. Every event is back in the queue; once MongoDB and persistence
   return, every turn lands once, in order.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faults_harness import (
    EMAIL_AGENT_ID,
    PlacedCall,
    RunningStack,
    StackOptions,
    assert_completed_by_email,
    check_and_report,
    log_records,
    queue_depth,
    running_stack,
    start_hesitant_calls,
    wait_until,
)

from callbot.testkit.mongo_standin import MongoStandinProcess, start_standin_process

pytestmark = pytest.mark.faults

CALLS_PER_OUTAGE = 2
UNREACHABLE = "MongoDB unreachable; write retried, message stays unacknowledged"


@pytest.fixture(scope="module")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoStandinProcess]:
    directory = tmp_path_factory.mktemp("mongo-outage-standin")
    standin = start_standin_process(state_file=directory / "state.bson", log_dir=directory)
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, rabbitmq_url: str, mongo: MongoStandinProcess
) -> Iterator[RunningStack]:
    with running_stack(
        tmp_path_factory.mktemp("mongo-outage"),
        rabbitmq_url,
        mongo.url,
        StackOptions(extra_env={"MONGODB_TIMEOUT_MS": "500"}),
    ) as running:
        try:
            yield running
        finally:
            if mongo.pid is None:  # a failed test left it stopped: the clean-up needs it
                mongo.start()


def start_calls(stack: RunningStack, first_number: int) -> list[PlacedCall]:
    """Calls answered and greeted (dialog has their sessions), still going on."""
    numbers = [f"+1500555040{first_number + index}" for index in range(CALLS_PER_OUTAGE)]
    # ~0.5 s of real time per utterance: the calls outlast the stop.
    return start_hesitant_calls(stack, numbers, utterance_s=0.5)


def retries_logged(stack: RunningStack) -> int:
    return sum(1 for record in log_records(stack.persistence) if record.get("msg") == UNREACHABLE)


def finish_and_check(stack: RunningStack, calls: list[PlacedCall], fault: str) -> None:
    finished = stack.finished(calls)
    check_and_report("4", fault, finished).assert_clean()
    for document, _ in finished:
        assert_completed_by_email(document)


def test_persistence_retries_through_a_mongodb_outage_and_catches_up(
    stack: RunningStack, mongo: MongoStandinProcess
) -> None:
    tap = stack.tap("call.completed")
    calls = start_calls(stack, first_number=1)
    retries_before = retries_logged(stack)

    mongo.stop()
    try:
        # A new call cannot be placed (gateway reads the agent): a 503 to retry.
        refused = stack.api.post(
            "/v1/calls", json={"agent_id": EMAIL_AGENT_ID, "to": "+15005550409"}
        )
        for call in calls:  # the calls going on do not need MongoDB
            stack.played(call)
        wait_until(lambda: retries_logged(stack) > retries_before, "persistence retrying")
    finally:
        mongo.start()

    finish_and_check(stack, calls, "MongoDB stopped mid-call, persistence running")
    assert (refused.status_code, refused.headers.get("Retry-After")) == (503, "5"), refused.text
    assert tap.count_by_call("call.completed") == {call.call_id: 1 for call in calls}


def test_nothing_is_acknowledged_before_mongodb_has_it(
    stack: RunningStack, mongo: MongoStandinProcess
) -> None:
    tap = stack.tap("call.completed", "call.turn")
    calls = start_calls(stack, first_number=5)
    retries_before = retries_logged(stack)
    seqs_before = stack.stored_seqs(calls)

    mongo.stop()
    try:
        for call in calls:
            stack.played(call)
        wait_until(lambda: retries_logged(stack) > retries_before, "persistence retrying")
        stack.persistence.kill()
        # Everything persistence held unacknowledged is back in the queue.
        waiting = queue_depth(stack.rabbitmq_url, stack.topology.persistence_queue.name)
    finally:
        mongo.start()
    stack.persistence.start()

    finish_and_check(stack, calls, "MongoDB stopped mid-call, persistence SIGKILLed meanwhile")
    # Every exchange published during the outage (and more events) was still queued.
    turns_in_outage = len(stack.stored_seqs(calls) - seqs_before)
    assert turns_in_outage >= 10
    exchanges_in_outage = tap.exchanges_beyond(seqs_before, {call.call_id for call in calls})
    assert sum(len(event["turns"]) for event in exchanges_in_outage) == turns_in_outage
    assert waiting >= len(exchanges_in_outage)
    assert tap.count_by_call("call.completed") == {call.call_id: 1 for call in calls}
