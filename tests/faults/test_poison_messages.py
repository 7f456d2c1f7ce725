"""Issue 7, item 8: poison messages on every consumer queue, while a call goes on.

| queue                       | poison                                           |
|-----------------------------|--------------------------------------------------|
| persistence.events          | bytes that are not JSON                          |
| persistence.events          | a `call.turn` missing its fields                 |
| persistence.events          | a valid `call.status` with a status Twilio never sends |
| persistence.events          | a `call.created` whose call_sid another document holds |
| dialog.events.<replica>     | an `agent.updated` that is not JSON              |
| dialog.rpc                  | a request that is not a request                  |
| persistence.rpc             | a request that is not a request                  |

Each one ends in the dead-letter queue (at once, or after the delivery limit),
is logged with its reason by the service that refused it, and the call going on
meanwhile finishes as if nothing happened. `python -m
callbot.common.messaging.replay` lists them; once the cause of one is fixed
(the document holding the call_sid removed), replaying stores it, and the
others come back to the dead-letter queue.
"""

from __future__ import annotations

import re
import sys
import uuid

import pytest
from faults_harness import (
    EMAIL_AGENT_ID,
    RunningStack,
    check_and_report,
    log_records,
    place_hesitant_call,
    publish_raw,
    queue_depth,
    run,
    wait_until,
)

from callbot.common.contracts import CallCreated, CallStatusChanged

pytestmark = pytest.mark.faults


def replay_command(stack: RunningStack, *arguments: str) -> tuple[int, list[str]]:
    """`python -m callbot.common.messaging.replay`, as an operator runs it."""
    done = run(
        [sys.executable, "-m", "callbot.common.messaging.replay", *arguments],
        env={"RABBITMQ_URL": stack.rabbitmq_url, "RABBITMQ_NAMESPACE": stack.namespace},
    )
    assert not done.stderr, done.stderr
    return done.returncode, done.stdout.splitlines()


def dead_letters_listed(lines: list[str]) -> dict[str, str]:
    """message_id -> queue, from the replay command's --dry-run listing."""
    found = {}
    for line in lines:
        if match := re.match(r"dead +queue=(\S+) .* message_id=(\S+)$", line):
            found[match.group(2)] = match.group(1)
    return found


def test_poison_messages_end_in_the_dlq_with_a_reason_and_the_call_goes_on(
    stack: RunningStack,
) -> None:
    topology = stack.topology
    events = topology.events_exchange
    call = place_hesitant_call(stack, "+15005550801", utterance_s=0.3)

    conflict_sid = f"CA{uuid.uuid4().hex}"
    stack.insert_document({"_id": f"imported-{uuid.uuid4().hex[:8]}", "call_sid": conflict_sid})
    conflicting = CallCreated(
        call_id=f"call-{uuid.uuid4().hex[:8]}",
        call_sid=conflict_sid,
        agent_id=EMAIL_AGENT_ID,
        agent_version=1,
        to="+15005550802",
        from_="+15005550001",
    )
    unknown_status = CallStatusChanged(
        call_id=f"call-{uuid.uuid4().hex[:8]}", call_sid="CA0", status="exploded"
    )
    poisons = {  # message_id -> (exchange, routing key, body, the queue it dies in)
        "p-not-json": (events, "call.turn", b"\x00 not json", topology.persistence_queue.name),
        "p-no-fields": (events, "call.turn", b'{"type": "call.turn", "call_id": "x"}',
                        topology.persistence_queue.name),
        "p-bad-status": (events, "call.status", unknown_status.to_json(),
                         topology.persistence_queue.name),
        "p-sid-conflict": (events, "call.created", conflicting.to_json(),
                           topology.persistence_queue.name),
        "p-dialog-event": (events, "agent.updated", b"{not json", "dialog.events"),
        "p-dialog-rpc": ("", topology.dialog_rpc_queue, b'{"type": "dialog.turn"}',
                         topology.dialog_rpc_queue),
        "p-persistence-rpc": ("", topology.persistence_rpc_queue, b"[]",
                              topology.persistence_rpc_queue),
    }  # fmt: skip
    for message_id, (exchange, routing_key, body, _) in poisons.items():
        publish_raw(stack.rabbitmq_url, exchange, routing_key, body, message_id=message_id)

    dlq = topology.dead_letter_queue
    wait_until(
        lambda: queue_depth(stack.rabbitmq_url, dlq) >= len(poisons),
        "every poison message in the dead-letter queue",
    )
    played = stack.played(call)
    document = stack.completed_document(call.call_id)
    check_and_report(
        "8",
        "poison messages on all four kinds of consumer queue",
        [(document, played)],
        faults_injected=len(poisons),
    ).assert_clean()
    assert document["ended_by"] == "system_complete"

    # Listed by the replay command, each with the queue it died in.
    status, listing = replay_command(stack, "--dry-run")
    assert status == 0, listing
    listed = dead_letters_listed(listing)
    assert set(listed) == set(poisons), listing
    for message_id, (*_, queue) in poisons.items():
        if queue == "dialog.events":  # the replica's own queue
            assert listed[message_id].startswith(f"{stack.namespace}.dialog.events."), listing
        else:
            assert listed[message_id] == queue, listing

    # Logged, with the reason, by the service that refused each one.
    logged = {
        record["message_id"]: record
        for service in (stack.persistence, stack.dialog)
        for record in log_records(service)
        if record.get("message_id") in poisons and "reason" in record
    }
    assert set(logged) == set(poisons)
    assert "unknown call status 'exploded'" in logged["p-bad-status"]["reason"]
    assert "DuplicateKeyError" in logged["p-sid-conflict"]["reason"]
    assert logged["p-dialog-event"]["service"] == "dialog"
    assert logged["p-dialog-rpc"]["service"] == "dialog"

    # The cause of one is fixed: replayed, it is stored; the others die again.
    stack.delete_documents({"call_sid": conflict_sid, "_id": {"$ne": conflicting.call_id}})
    status, output = replay_command(stack)
    assert status == 0, output
    assert output[-1].startswith(f"{len(poisons)} replayed, 0 kept")
    stored = wait_until(
        lambda: stack.document(conflicting.call_id), "the replayed call.created stored"
    )
    assert (stored["call_sid"], stored["agent_id"]) == (conflict_sid, EMAIL_AGENT_ID)
    wait_until(
        lambda: queue_depth(stack.rabbitmq_url, dlq) == len(poisons) - 1,
        "the poison messages that are still poison back in the dead-letter queue",
    )
    status, listing = replay_command(stack, "--dry-run")
    assert set(dead_letters_listed(listing)) == set(poisons) - {"p-sid-conflict"}
