"""Pacing arithmetic, the retry policy per outcome, the checks on one row, and
what gateway's answer to a placement means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callbot.campaigns.domain.pacing import backoff_after, dial_spacing, may_start_call, next_slot
from callbot.campaigns.domain.recipients import check_row, skip_reason
from callbot.campaigns.domain.retries import Final, RetryAt, after_call, outcome_of
from callbot.campaigns.placement import Placed, Refused, Throttled, Unsure, classify_answer
from callbot.common.calls import CallDocument
from callbot.common.campaigns import Pacing, RecipientRow, RetryPolicy, RetryRule

NOW = datetime(2026, 1, 14, 15, 0, tzinfo=UTC)


def test_placements_are_spaced_so_no_second_holds_more_than_the_rate() -> None:
    pacing = Pacing(calls_per_second=5)
    slots = [NOW]
    for _ in range(100):
        slots.append(next_slot(pacing, slots[-1]))
    # Any half-open 1 s window holds at most 5 placements.
    for first in slots:
        assert sum(first <= s < first + timedelta(seconds=1) for s in slots) <= 5
    assert dial_spacing(pacing) > timedelta(seconds=0.2)


def test_concurrency_limit() -> None:
    pacing = Pacing(max_concurrent=2)
    assert may_start_call(pacing, 0)
    assert may_start_call(pacing, 1)
    assert not may_start_call(pacing, 2)


def test_backoff_follows_retry_after_then_doubles_within_bounds() -> None:
    assert backoff_after(0, 5) == 5
    assert backoff_after(0, None) == 1
    assert backoff_after(4, None) == 8
    assert backoff_after(50, None) == 60
    assert backoff_after(1, 3600) == 60


def call(**fields: object) -> CallDocument:
    return CallDocument.model_validate({"_id": "c1", **fields})


@pytest.mark.parametrize(
    ("document", "outcome"),
    [
        ({"status": "busy", "ended_by": "busy"}, "busy"),
        ({"status": "no-answer"}, "no_answer"),
        ({"status": "failed", "error_code": "31005"}, "failed"),
        ({"status": "canceled"}, "failed"),
        ({"status": "completed", "ended_by": "voicemail"}, "voicemail"),
        ({"status": "completed", "answered_by": "machine_end_beep"}, "voicemail"),
        ({"status": "completed", "data_complete": True}, "completed"),
        ({"status": "completed", "ended_by": "callee_hangup"}, "data_incomplete"),
    ],
)
def test_outcome_of_a_finished_call(document: dict[str, object], outcome: str) -> None:
    assert outcome_of(call(**document)) == outcome


POLICY = RetryPolicy(
    no_answer=RetryRule(max_attempts=3, delay_s=60),
    busy=RetryRule(max_attempts=2, delay_s=10),
    failed=RetryRule(max_attempts=1, delay_s=0),
    voicemail=RetryRule(max_attempts=2, delay_s=3600),
    data_incomplete=RetryRule(max_attempts=2, delay_s=5),
)


def test_retry_policy_per_outcome() -> None:
    minute = NOW + timedelta(seconds=60)
    assert after_call("completed", 1, POLICY, NOW) == Final("completed", "completed")
    assert after_call("no_answer", 1, POLICY, NOW) == RetryAt(minute, "no_answer")
    assert after_call("no_answer", 2, POLICY, NOW) == RetryAt(minute, "no_answer")
    assert after_call("no_answer", 3, POLICY, NOW) == Final("failed", "no_answer")
    assert after_call("busy", 1, POLICY, NOW) == RetryAt(NOW + timedelta(seconds=10), "busy")
    assert after_call("busy", 2, POLICY, NOW) == Final("failed", "busy")
    assert after_call("failed", 1, POLICY, NOW) == Final("failed", "failed")
    assert after_call("voicemail", 1, POLICY, NOW) == RetryAt(NOW + timedelta(hours=1), "voicemail")
    assert after_call("data_incomplete", 1, POLICY, NOW) == RetryAt(
        NOW + timedelta(seconds=5), "data_incomplete"
    )
    # The call was held; only the data is missing: completed, not failed.
    assert after_call("data_incomplete", 2, POLICY, NOW) == Final("completed", "data_incomplete")


def test_a_valid_row_gets_its_zones() -> None:
    checked = check_row(RecipientRow(row=1, to="+13105550100"))
    assert checked.skip is None
    assert checked.zones == (ZoneInfo("America/Los_Angeles"),)
    assert skip_reason(checked, suppressed=False, opted_out=False) is None


@pytest.mark.parametrize(
    ("to", "timezone", "reason"),
    [
        ("not a number", None, "invalid_number"),
        ("+1212555010", None, "invalid_number"),  # too short
        ("12125550100", None, "invalid_number"),  # no +
        ("+1 212 555 0100", None, "invalid_number"),  # not E.164 as written
        ("+12125550100", "Nowhere/Land", "unknown_timezone"),
        ("+80012345678", None, "unknown_timezone"),  # international freephone: no zone
    ],
)
def test_rows_that_are_skipped(to: str, timezone: str | None, reason: str) -> None:
    checked = check_row(RecipientRow(row=3, to=to, timezone=timezone))
    assert checked.skip == reason
    assert checked.problem


def test_skip_reason_order() -> None:
    checked = check_row(RecipientRow(row=1, to="+12125550100"))
    assert skip_reason(checked, suppressed=True, opted_out=True) == "opted_out"
    assert skip_reason(checked, suppressed=True, opted_out=False) == "suppressed"
    bad = check_row(RecipientRow(row=2, to="nope"))
    assert skip_reason(bad, suppressed=True, opted_out=True) == "invalid_number"


def _error(*loc: str) -> dict[str, object]:
    return {"type": "missing", "loc": ["body", *loc], "msg": "..."}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (201, {"call_id": "c1"}, Placed("c1")),
        (409, {"detail": "opted out"}, Refused("opted_out", "opted out")),
        (422, {"detail": [_error("to")]}, Refused("invalid_number", str([_error("to")]))),
        # A template value the row lacks is not the number's fault.
        (
            422,
            {"detail": [_error("recipient", "name")]},
            Refused("rejected", str([_error("recipient", "name")])),
        ),
        (422, {"detail": "bad"}, Refused("rejected", "bad")),
        (400, {"detail": "Twilio refused"}, Refused("rejected", "Twilio refused")),
        (503, {"detail": "away"}, Throttled(None, "away")),
        (500, {"detail": "boom"}, Unsure("gateway answered 500: boom")),
    ],
)
def test_what_gateway_answers_means_for_the_dialer(
    status: int, body: dict[str, object], expected: object
) -> None:
    assert classify_answer(status, {}, body) == expected
