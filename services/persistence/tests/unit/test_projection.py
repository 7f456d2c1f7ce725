"""The call-document projection and the status rules: pure, no I/O."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from callbot.common.calls import CallDocument
from callbot.persistence.domain.completion import call_completed_event
from callbot.persistence.domain.projection import apply_event, blank_call, project
from callbot.persistence.domain.status import (
    ended_by_for_terminal_status,
    recording_update_applies,
    status_supersedes,
)

if TYPE_CHECKING:
    from conftest import CallScript


def test_a_whole_call_in_order_gives_the_expected_document(script: CallScript) -> None:
    call = project(script.whole_call(), script.call_id)

    assert call.call_sid == script.call_sid
    assert (call.agent_id, call.agent_version, call.to, call.from_) == (
        "demo",
        3,
        "+15550001111",
        "+15550002222",
    )
    assert call.status == "completed"
    assert call.status_seq == 3
    assert call.answered_by == "human"
    assert call.answered_at == script.at(5)
    assert call.ended_by == "system_complete"
    assert call.ending_reason == "all data"
    assert call.ended_at == script.at(31)
    assert call.duration_s == 42
    assert [turn.seq for turn in call.turns] == [0, 1, 2, 3, 4]
    assert call.data_collected == {"name": "Ada Lovelace", "email": "ada@example.com"}
    assert call.data_complete is True
    assert call.recording is not None
    assert call.recording.status == "completed"
    assert call.created_at == script.at(0)


@pytest.mark.parametrize("seed", range(40))
def test_any_delivery_order_with_duplicates_gives_the_same_document(
    script: CallScript, seed: int
) -> None:
    events = script.whole_call()
    delivered = script.shuffled_with_duplicates(events, seed)
    assert project(delivered, script.call_id) == project(events, script.call_id)


def test_status_callbacks_out_of_order_end_terminal_with_the_duration(
    script: CallScript,
) -> None:
    events = [
        script.status("completed", 3, 31, duration=42),
        script.status("in-progress", 2, 5),
        script.status("ringing", 1, 2),
        script.created(),
    ]
    call = project(events, script.call_id)
    assert (call.status, call.status_seq, call.duration_s) == ("completed", 3, 42)
    assert call.ended_by == "callee_hangup"


def test_a_terminal_status_is_never_replaced_by_a_non_terminal_one(script: CallScript) -> None:
    call = project(
        [script.status("busy", 2, 3, duration=0), script.status("ringing", 9, 4)],
        script.call_id,
    )
    assert (call.status, call.status_seq, call.ended_by) == ("busy", 2, "busy")


@pytest.mark.parametrize(
    ("stored", "stored_seq", "new", "new_seq", "applies"),
    [
        (None, None, "ringing", 1, True),
        ("ringing", 1, "in-progress", 2, True),
        ("in-progress", 2, "ringing", 1, False),
        ("in-progress", 2, "in-progress", 2, False),
        ("completed", 3, "in-progress", 4, False),
        ("in-progress", 2, "completed", 3, True),
        ("queued", None, "initiated", 0, True),
        ("ringing", 1, "completed", None, False),
        ("queued", None, "completed", None, True),
    ],
)
def test_status_supersedes(
    stored: str | None, stored_seq: int | None, new: str, new_seq: int | None, applies: bool
) -> None:
    assert status_supersedes(stored, stored_seq, new, new_seq) is applies


def test_an_unknown_status_is_rejected(script: CallScript) -> None:
    with pytest.raises(ValueError, match="unknown call status 'ringing-ish'"):
        apply_event(blank_call(script.call_id), script.status("ringing-ish", 1, 1))


@pytest.mark.parametrize(
    ("status", "ended_by"),
    [
        ("completed", "callee_hangup"),
        ("busy", "busy"),
        ("no-answer", "no-answer"),
        ("failed", "failed"),
        ("canceled", "canceled"),
    ],
)
def test_ended_by_when_only_the_terminal_status_is_known(status: str, ended_by: str) -> None:
    assert ended_by_for_terminal_status(status) == ended_by  # type: ignore[arg-type]


def test_a_machine_answer_ends_as_voicemail_whatever_the_order(script: CallScript) -> None:
    answered = script.answered("machine_end_beep")
    completed = script.status("completed", 3, 20, duration=15)
    assert project([answered, completed], script.call_id).ended_by == "voicemail"
    assert project([completed, answered], script.call_id).ended_by == "voicemail"


def test_a_late_ending_corrects_the_hangup_guess_until_completion_is_claimed(
    script: CallScript,
) -> None:
    finalized = project([script.status("completed", 3, 31, duration=42)], script.call_id)
    assert finalized.ended_by == "callee_hangup"
    assert apply_event(finalized, script.ending("user_goodbye")).ended_by == "user_goodbye"

    claimed = finalized.model_copy(update={"completed_claimed_at": script.at(33)})
    assert apply_event(claimed, script.ending("user_goodbye")).ended_by == "callee_hangup"
    assert apply_event(claimed, script.answered("machine_start")).ended_by == "callee_hangup"


def test_dialogs_ending_is_kept_over_the_terminal_status(script: CallScript) -> None:
    call = project(
        [script.ending("max_duration"), script.status("completed", 3, 31)], script.call_id
    )
    assert call.ended_by == "max_duration"


def test_a_turn_after_completion_is_claimed_still_lands(script: CallScript) -> None:
    finalized = project(
        [*script.turns()[:4], script.status("completed", 3, 31, duration=42)], script.call_id
    )
    claimed = finalized.model_copy(update={"completed_claimed_at": script.at(33)})
    late = apply_event(claimed, script.turn(4))
    assert [turn.seq for turn in late.turns] == [0, 1, 2, 3, 4]
    assert late.data_complete is True


def test_data_collected_comes_from_the_newest_turn(script: CallScript) -> None:
    call = project([script.turn(3), script.turn(1), script.turn(3)], script.call_id)
    assert [turn.seq for turn in call.turns] == [1, 3]
    assert call.data_collected == {"name": "Ada Lovelace", "email": "ada@example.com"}


def test_events_before_call_created_are_kept(script: CallScript) -> None:
    call = project([script.turn(0), script.answered(), script.created()], script.call_id)
    assert call.agent_id == "demo"
    assert call.status == "queued"
    assert call.answered_by == "human"
    assert len(call.turns) == 1


@pytest.mark.parametrize(
    ("stored", "new", "applies"),
    [
        (None, "in-progress", True),
        ("in-progress", "completed", True),
        ("completed", "in-progress", False),
        ("completed", "completed", True),
        ("absent", None, False),
    ],
)
def test_a_finished_recording_is_never_moved_back(
    stored: str | None, new: str | None, applies: bool
) -> None:
    assert recording_update_applies(stored, new) is applies


def test_call_completed_carries_the_call_without_outbox_bookkeeping(script: CallScript) -> None:
    call = project(script.whole_call(), script.call_id).model_copy(
        update={"completed_claimed_at": script.at(40)}
    )
    event = call_completed_event(call)
    assert event.call_id == script.call_id
    assert event.message_id == f"call.completed:{script.call_id}"
    assert event.call.completed_claimed_at is None
    assert event.call == call.model_copy(update={"completed_claimed_at": None})


def test_call_completed_needs_a_finalized_call(script: CallScript) -> None:
    with pytest.raises(ValueError, match="has not ended"):
        call_completed_event(CallDocument(call_id=script.call_id, status="in-progress"))


@pytest.mark.parametrize(("retention_days", "kept_for"), [(None, None), (1, 1), (30, 30)])
def test_a_call_expires_its_retention_after_its_creation(
    script: CallScript, retention_days: int | None, kept_for: int | None
) -> None:
    created = script.created().model_copy(update={"retention_days": retention_days})
    call = project([created], script.call_id)
    expected = None if kept_for is None else script.at(0) + timedelta(days=kept_for)
    assert (call.created_at, call.expires_at) == (script.at(0), expected)
