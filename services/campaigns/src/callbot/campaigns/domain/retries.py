"""What a call's outcome means for its recipient: done, retry later, or given up.

The outcome of a call comes from its final call document (`call.completed`):
Twilio's status, who answered, how the conversation ended and whether the
agent collected everything. The retry policy gives, per outcome, the attempts
in all and the delay before the next; the retry time is then moved into the
calling hours by the caller (`CallingHours.next_allowed`).

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from callbot.common.calls import CallDocument, is_machine
from callbot.common.campaigns import Outcome, RetryPolicy


def outcome_of(call: CallDocument) -> Outcome:
    """The outcome the retry policy sees for a finished call."""
    if call.status == "busy":
        return "busy"
    if call.status == "no-answer":
        return "no_answer"
    if call.status in ("failed", "canceled"):
        return "failed"
    if call.ended_by == "voicemail" or is_machine(call.answered_by):
        return "voicemail"
    if call.data_complete:
        return "completed"
    return "data_incomplete"


def opted_out_during(call: CallDocument) -> bool:
    """The callee asked, during the call, not to be called again (dialog ends
    such a call with `ended_by: opt_out`; persistence marks the recipient)."""
    return call.ended_by == "opt_out"


@dataclass(frozen=True)
class Final:
    """No more calls: `completed`, or `failed` after the last allowed attempt."""

    state: str
    outcome: Outcome


@dataclass(frozen=True)
class RetryAt:
    at: datetime
    outcome: Outcome


def after_call(
    outcome: Outcome, attempts_made: int, policy: RetryPolicy, now: datetime
) -> Final | RetryAt:
    """What follows a call with `outcome`, the `attempts_made`-th for this recipient."""
    if outcome == "completed":
        return Final("completed", outcome)
    rule = policy.rule(outcome)
    if attempts_made >= rule.max_attempts:
        # data_incomplete with no retries left: the call happened, the data did not.
        return Final("completed" if outcome == "data_incomplete" else "failed", outcome)
    return RetryAt(now + timedelta(seconds=rule.delay_s), outcome)
