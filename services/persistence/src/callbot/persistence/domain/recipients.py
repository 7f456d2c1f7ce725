"""The recipient projection: `(RecipientDocument, finished call) -> RecipientDocument`. Pure.

persistence applies every finished call to its `(agent_id, to)` recipient once
the call's `call.completed` is claimed, before it is published. A call may be
applied again (a republication after a crash) and calls may finish in any
order, so every rule is idempotent and commutes with the others:
- a call is counted once (`call_ids` holds the calls counted, sorted);
- "latest" means the greatest `(at, call_id)`, where `at` is the call's start
  (`created_at`, or its end when the creation event was lost): the last
  outcome, each data field's value and the profile follow that order;
- the opt-out is the earliest call that ended with `opt_out`;
- `missing_fields` are the fields any call asked for (`data_fields`) that no
  call collected: a name joins unless a value is held, and leaves when one is;
- `last_summary` is the summary of the latest call that has one; for the
  same call, the summary that ranks higher (`summary_rank`: the one made with
  the recording's transcript, else the latest). A summary stored after the
  call was counted reaches the recipient by the same rule (`apply_summary`);
- `data_complete` is set once any call collected everything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from callbot.common.calls import CallDocument, is_machine
from callbot.common.recipients import (
    CallOutcome,
    CollectedValue,
    LastSummary,
    OptOut,
    RecipientDocument,
    recipient_key,
)
from callbot.persistence.domain.projection import summary_rank


def call_moment(call: CallDocument) -> datetime | None:
    """When the call counts as having happened: its start, else its end."""
    return call.created_at or call.ended_at


def applies_to_recipient(call: CallDocument) -> bool:
    """A call names its recipient and has a time once its creation or end is stored."""
    return bool(call.agent_id and call.to) and call_moment(call) is not None


def was_answered(call: CallDocument) -> bool:
    """A person answered (a machine or voicemail does not count)."""
    return call.answered_at is not None and not is_machine(call.answered_by)


def blank_recipient(agent_id: str, to: str) -> RecipientDocument:
    return RecipientDocument(key=recipient_key(agent_id, to), agent_id=agent_id, to=to)


def is_later(
    at: datetime, call_id: str, than_at: datetime | None, than_call_id: str | None
) -> bool:
    """`(at, call_id)` comes after the stored pair (or nothing is stored)."""
    if than_at is None:
        return True
    return (at, call_id) > (than_at, than_call_id or "")


def apply_call(recipient: RecipientDocument, call: CallDocument) -> RecipientDocument:
    """The recipient after counting this finished call."""
    at = call_moment(call)
    if not applies_to_recipient(call) or at is None:
        raise ValueError(f"call {call.call_id} names no agent, number or time: no recipient")
    changes: dict[str, Any] = {}
    if call.call_id not in recipient.call_ids:
        changes["call_ids"] = tuple(sorted((*recipient.call_ids, call.call_id)))
        changes["total_calls"] = recipient.total_calls + 1
        changes["answered_calls"] = recipient.answered_calls + was_answered(call)
    last = recipient.last_outcome
    if is_later(at, call.call_id, recipient.last_call_at, last.call_id if last else None):
        changes["last_call_at"] = at
        changes["last_outcome"] = outcome_of(call, at)
    merged = dict(recipient.data_collected)
    for name, value in collected_values(call):
        held = merged.get(name)
        if is_later(at, call.call_id, held.at if held else None, held.call_id if held else None):
            merged[name] = CollectedValue(value=value, call_id=call.call_id, at=at)
    if merged != recipient.data_collected:
        changes["data_collected"] = merged
    missing = tuple(sorted((set(recipient.missing_fields) | set(call.data_fields)) - set(merged)))
    if missing != recipient.missing_fields:
        changes["missing_fields"] = missing
    if call.data_complete:
        changes["data_complete"] = True
    if call.ended_by == "opt_out" and opts_out_earlier(at, call.call_id, recipient.opted_out):
        changes["opted_out"] = OptOut(call_id=call.call_id, at=at)
    if call.recipient and is_later(
        at, call.call_id, recipient.profile_at, recipient.profile_call_id
    ):
        changes.update(profile=call.recipient, profile_at=at, profile_call_id=call.call_id)
    return apply_summary(recipient.model_copy(update=changes), call)


def apply_summary(recipient: RecipientDocument, call: CallDocument) -> RecipientDocument:
    """The recipient with this call's summary, when it is the latest call's
    (or outranks the one stored of the same call)."""
    summary = summary_of(call)
    if summary is None or not summary_supersedes(summary, recipient.last_summary):
        return recipient
    return recipient.model_copy(update={"last_summary": summary})


def summary_of(call: CallDocument) -> LastSummary | None:
    at = call_moment(call)
    if call.summary is None or call.summarized_at is None or at is None:
        return None
    return LastSummary(
        call_id=call.call_id,
        at=at,
        summary=call.summary,
        model=call.summary_model,
        sources=call.summary_sources,
        summarized_at=call.summarized_at,
    )


def summary_supersedes(summary: LastSummary, stored: LastSummary | None) -> bool:
    if stored is None:
        return True
    if summary.call_id != stored.call_id:
        return is_later(summary.at, summary.call_id, stored.at, stored.call_id)
    return summary_rank(summary.sources, summary.summarized_at, summary.summary) > summary_rank(
        stored.sources, stored.summarized_at, stored.summary
    )


def project_recipient(calls: list[CallDocument], agent_id: str, to: str) -> RecipientDocument:
    """The recipient these finished calls give, applied in the order listed."""
    recipient = blank_recipient(agent_id, to)
    for call in calls:
        recipient = apply_call(recipient, call)
    return recipient


def outcome_of(call: CallDocument, at: datetime) -> CallOutcome:
    return CallOutcome(
        call_id=call.call_id,
        at=at,
        status=call.status,
        ended_by=call.ended_by,
        callback_request=call.callback_request,
    )


def collected_values(call: CallDocument) -> list[tuple[str, Any]]:
    """The call's valid values: a field left empty (None) holds nothing to keep."""
    return [(name, value) for name, value in call.data_collected.items() if value is not None]


def opts_out_earlier(at: datetime, call_id: str, stored: OptOut | None) -> bool:
    return stored is None or (at, call_id) < (stored.at, stored.call_id)
