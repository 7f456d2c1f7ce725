"""Contracts: every message round-trips through JSON; missing fields are named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from callbot.common.agents import Agent, DataField
from callbot.common.calls import CallDocument, Recording, Turn
from callbot.common.contracts import (
    DIALOG_REQUEST_ADAPTER,
    DIALOG_RESPONSE_ADAPTER,
    PERSISTENCE_REQUEST_ADAPTER,
    PERSISTENCE_RESPONSE_ADAPTER,
    AgentSave,
    AgentSaved,
    AgentUpdated,
    CallAnswered,
    CallCompleted,
    CallCreated,
    CallEnding,
    CallRecordingReady,
    CallRecordingUpdated,
    CallStatusChanged,
    CallTurnRecorded,
    DialogReply,
    DialogStart,
    DialogTurn,
    Message,
    RpcFailure,
    decode,
    decode_event,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AGENT = Agent(
    agent_id="demo",
    name="Demo",
    greeting="Hi {recipient.name}, this is {agent.name}.",
    prompt="You collect {variables.purpose} details.",
    data_to_fill=(DataField(name="email", description="Email address", type="email"),),
)
TURN = Turn(seq=1, role="user", content="hi", at=NOW, confidence=0.9)
REPLY = Turn(seq=2, role="assistant", content="Hello! Your email?", at=NOW, latency_ms=640)
RECORDING = Recording(sid="RE1", url="https://api.twilio.com/x", duration_s=12, status="completed")
DOCUMENT = CallDocument(call_id="c1", to="+15005550006", from_="+15005550001", turns=(TURN,))

EVENTS: list[Message] = [
    CallCreated(
        call_id="c1",
        call_sid="CA1",
        agent_id="demo",
        agent_version=1,
        to="+15005550006",
        from_="+15005550001",
        recipient={"name": "Ada"},
        variables={"purpose": "billing"},
    ),
    CallAnswered(call_id="c1", call_sid="CA1", answered_by="human"),
    CallTurnRecorded(call_id="c1", turns=(TURN, REPLY), data_collected={"email": "a@b.co"}),
    CallEnding(call_id="c1", ended_by="user_goodbye", reason="callee said goodbye"),
    CallStatusChanged(
        call_id="c1", call_sid="CA1", status="completed", sequence_number=3, call_duration=42
    ),
    CallRecordingUpdated(call_id="c1", call_sid="CA1", recording=RECORDING),
    CallCompleted(call_id="c1", call=DOCUMENT),
    CallRecordingReady(call_id="c1", recording=RECORDING),
    AgentUpdated(agent_id="demo", version=2),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)  # type: ignore[attr-defined]
def test_every_event_round_trips_through_json(event: Message) -> None:
    assert decode_event(event.to_json()) == event


@pytest.mark.parametrize(
    ("message", "adapter"),
    [
        (DialogStart(call_id="c1", agent_id="demo", call_sid="CA1"), DIALOG_REQUEST_ADAPTER),
        (DialogTurn(call_id="c1", seq=1, speech="yes", confidence=0.8), DIALOG_REQUEST_ADAPTER),
        (DialogReply(call_id="c1", say="Hi", action="gather", next_seq=1), DIALOG_RESPONSE_ADAPTER),
        (RpcFailure(code="not_found", message="no agent"), DIALOG_RESPONSE_ADAPTER),
        (AgentSave(agent=AGENT), PERSISTENCE_REQUEST_ADAPTER),
        (AgentSaved(agent_id="demo", version=3), PERSISTENCE_RESPONSE_ADAPTER),
    ],
    ids=lambda value: getattr(value, "type", ""),
)
def test_every_rpc_message_round_trips_through_json(message: BaseModel, adapter: object) -> None:
    assert decode(adapter, message.model_dump_json(by_alias=True).encode()) == message  # type: ignore[arg-type]


def test_event_json_uses_the_public_field_names() -> None:
    created = EVENTS[0]
    body = created.model_dump(mode="json", by_alias=True)
    assert body["from"] == "+15005550001"
    assert body["schema_version"] == 1
    completed = CallCompleted(call_id="c1", call=DOCUMENT).model_dump(mode="json", by_alias=True)
    assert completed["call"]["call_id"] == "c1"
    assert completed["call"]["from"] == "+15005550001"


def test_a_call_turn_carries_its_exchange_at_schema_version_2() -> None:
    exchange = CallTurnRecorded(call_id="c1", turns=(TURN, REPLY))
    body = exchange.model_dump(mode="json")
    assert body["schema_version"] == 2
    assert [turn["seq"] for turn in body["turns"]] == [1, 2]
    assert exchange.last_seq == 2


def test_a_version_1_call_turn_is_read_as_an_exchange_of_its_one_turn() -> None:
    # What dialog published before schema version 2: it may still wait in a
    # queue, or in the dead-letter queue to be replayed, across an upgrade.
    event = decode_event(
        b'{"type": "call.turn", "message_id": "m1", "occurred_at": "2026-11-20T10:00:00Z",'
        b' "schema_version": 1, "call_id": "c1", "turn": {"seq": 3, "role": "user",'
        b' "content": "hi", "at": "2026-11-20T10:00:00Z"}, "data_collected": {"a": 1}}'
    )
    assert isinstance(event, CallTurnRecorded)
    assert event.schema_version == 1
    assert [(turn.seq, turn.content) for turn in event.turns] == [(3, "hi")]
    assert (event.last_seq, event.data_collected) == (3, {"a": 1})


def test_a_call_turn_without_turns_is_rejected() -> None:
    with pytest.raises(ValidationError, match="turns"):
        decode_event(b'{"type": "call.turn", "call_id": "c1", "turns": []}')
    with pytest.raises(ValidationError, match="turns"):
        decode_event(b'{"type": "call.turn", "call_id": "c1"}')


@pytest.mark.parametrize("seqs", [(2, 1), (1, 1)])
def test_a_call_turn_with_turns_out_of_seq_order_is_rejected(seqs: tuple[int, int]) -> None:
    turns = tuple(TURN.model_copy(update={"seq": seq}) for seq in seqs)
    body = CallTurnRecorded.model_construct(call_id="c1", turns=turns).to_json()
    with pytest.raises(ValidationError, match="increasing seqs"):
        decode_event(body)


def test_a_missing_required_field_is_rejected_by_name() -> None:
    with pytest.raises(ValidationError, match="call_sid"):
        decode_event(b'{"type": "call.answered", "call_id": "c1"}')


def test_an_unknown_type_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"call\.exploded"):
        decode_event(b'{"type": "call.exploded", "call_id": "c1"}')


def test_unknown_fields_from_a_newer_producer_are_ignored() -> None:
    event = decode_event(b'{"type": "call.answered", "call_id": "c1", "call_sid": "CA1", "x": 1}')
    assert event == CallAnswered(
        call_id="c1", call_sid="CA1", message_id=event.message_id, occurred_at=event.occurred_at
    )


def test_call_document_reads_mongodb_ids() -> None:
    document = CallDocument.model_validate({"_id": "c9", "from": "+1", "turns": []})
    assert (document.call_id, document.from_) == ("c9", "+1")
