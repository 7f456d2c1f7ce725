"""What the campaigns service does, given its ports: writing campaigns for
gateway (RPC), dialing (one step at a time, any number of replicas),
following each call to its outcome (`call.completed`), and erasing a
recipient's rows (`recipient.erased`).

The decisions are in `domain/`; this module reads, decides, writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from callbot.campaigns.domain.calling_hours import CallingHours
from callbot.campaigns.domain.pacing import backoff_after, may_start_call, next_slot
from callbot.campaigns.domain.recipients import check_row, skip_reason
from callbot.campaigns.domain.retries import Final, after_call, opted_out_during, outcome_of
from callbot.campaigns.placement import (
    CallOrder,
    CallPlacer,
    Placed,
    Refused,
    Throttled,
    Unsure,
)
from callbot.campaigns.store import CampaignStore, attempt_id, idempotency_key
from callbot.common.calls import CallDocument
from callbot.common.campaigns import (
    CampaignAck,
    CampaignAddRecipients,
    CampaignControl,
    CampaignCreate,
    CampaignDiscard,
    CampaignRequest,
    CampaignSettings,
    CampaignStart,
    SuppressionsAdd,
    counters_of_rows,
)
from callbot.common.contracts import (
    CampaignCompleted,
    CampaignCounters,
    CampaignProgress,
    Event,
    RecipientAttemptsErased,
    RecipientDataErased,
    RpcFailure,
)
from callbot.common.logs import log_context

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The variables a campaign's call carries, so its outcome finds its attempt.
ATTEMPT_VARIABLE = "campaign_attempt_id"
TRY_VARIABLE = "campaign_try"
# A number already in a call (another campaign): look again after this.
LINE_BUSY_DELAY = timedelta(seconds=30)


@dataclass
class CampaignPorts:
    store: CampaignStore
    placer: CallPlacer
    publish: Callable[[Event], Any]  # async (event) -> None
    clock: Callable[[], datetime]
    owner: str
    lease: timedelta = timedelta(seconds=60)
    progress_interval: timedelta = timedelta(seconds=5)
    outcome_timeout: timedelta = timedelta(hours=1)


def _settings_of(campaign: dict[str, Any]) -> CampaignSettings:
    return CampaignSettings.model_validate(campaign["settings"])


# --- RPC from gateway -------------------------------------------------------


async def handle_request(
    request: CampaignRequest, ports: CampaignPorts
) -> CampaignAck | RpcFailure:
    now = ports.clock()
    store = ports.store
    if isinstance(request, SuppressionsAdd):
        await store.add_suppressions(request.numbers, request.reason, now)
        return CampaignAck()
    if isinstance(request, CampaignCreate):
        created = await store.insert_campaign(
            {
                "_id": request.campaign_id,
                "settings": request.settings.model_dump(mode="json"),
                "state": "draft",
                "created_at": now,
                "updated_at": now,
                "next_dial_at": EPOCH,
                "backoff_until": EPOCH,
                "backoff_s": 0.0,
                "progress_published_at": EPOCH,
                "completed_published_at": None,
            }
        )
        existing = await store.campaign(request.campaign_id)
        if not created and (existing is None or existing["state"] != "draft"):
            return RpcFailure(code="bad_request", message="campaign exists already")
        return CampaignAck(campaign_id=request.campaign_id, state="draft")
    campaign = await store.campaign(request.campaign_id)
    if campaign is None:
        return RpcFailure(code="not_found", message=f"campaign {request.campaign_id!r} not found")
    if isinstance(request, CampaignAddRecipients):
        if campaign["state"] != "draft":
            return RpcFailure(code="bad_request", message="recipients go only into a draft")
        counters = await add_recipients(campaign, request, ports)
        return CampaignAck(campaign_id=request.campaign_id, state="draft", counters=counters)
    if isinstance(request, CampaignDiscard):
        if campaign["state"] != "draft":
            return RpcFailure(code="bad_request", message="only a draft can be discarded")
        await store.delete_campaign(request.campaign_id)
        return CampaignAck(campaign_id=request.campaign_id)
    if isinstance(request, CampaignStart):
        # One update, no count: gateway adds up the chunks' counters. Counting
        # a list of a million rows here could outlast the deadline and leave
        # a running campaign whose creation was answered with an error.
        updated = await store.set_campaign_state(
            request.campaign_id, ["draft", "running"], "running", now
        )
        if updated is None:
            return RpcFailure(code="bad_request", message=f"campaign is {campaign['state']}")
        return CampaignAck(campaign_id=updated["_id"], state=updated["state"])
    return await control(campaign, request, ports)


async def control(
    campaign: dict[str, Any], request: CampaignControl, ports: CampaignPorts
) -> CampaignAck | RpcFailure:
    now = ports.clock()
    store = ports.store
    campaign_id = campaign["_id"]
    if request.action == "pause":
        updated = await store.set_campaign_state(campaign_id, ["running", "paused"], "paused", now)
    elif request.action == "resume":
        updated = await store.set_campaign_state(campaign_id, ["paused", "running"], "running", now)
    else:
        updated = await store.set_campaign_state(
            campaign_id, ["running", "paused", "canceled"], "canceled", now
        )
        if updated is not None:
            await store.cancel_waiting(campaign_id, now)
    if updated is None:
        return RpcFailure(
            code="bad_request",
            message=f"cannot {request.action} a campaign that is {campaign['state']}",
        )
    log.info("campaign %s", request.action, extra={"campaign_id": campaign_id})
    return await _ack(updated, ports)


async def _ack(updated: dict[str, Any], ports: CampaignPorts) -> CampaignAck:
    """The campaign after a pause, resume or cancel, with its counters."""
    return CampaignAck(
        campaign_id=updated["_id"],
        state=updated["state"],
        counters=await ports.store.counters(updated["_id"]),
    )


async def add_recipients(
    campaign: dict[str, Any], request: CampaignAddRecipients, ports: CampaignPorts
) -> CampaignCounters:
    """Check a chunk of rows and store one attempt per row: dialable ones
    `pending` at their first allowed time, the others `skipped` with why.
    Returns the chunk's counters: of the rows as stored, which for a chunk
    delivered again are those of its first delivery."""
    store = ports.store
    now = ports.clock()
    campaign_id = campaign["_id"]
    settings = _settings_of(campaign)
    hours = CallingHours(settings.schedule)
    checked = [check_row(row) for row in request.recipients]
    numbers = {row.to for row in checked if row.skip is None}
    known = await store.known_numbers(campaign_id, numbers)
    suppressed = await store.suppressed(numbers)
    opted_out = await store.opted_out(settings.agent_id, numbers)
    seen: set[str] = set(known)
    documents = []
    for row in checked:
        reason = skip_reason(row, suppressed=row.to in suppressed, opted_out=row.to in opted_out)
        if reason is None and row.to in seen:
            reason = "duplicate"
        document: dict[str, Any] = {
            "_id": attempt_id(campaign_id, row.row.row),
            "campaign_id": campaign_id,
            "row": row.row.row,
            "to": row.to,
            "timezone": row.row.timezone,
            "zones": [zone.key for zone in row.zones],
            "fields": row.row.fields,
            "tries": [],
            "tries_started": 0,
            "created_at": now,
            "updated_at": now,
        }
        due = hours.next_allowed(row.zones, now) if reason is None else None
        if reason is None and due is None:
            reason = "schedule_ended"
        if reason is None:
            seen.add(row.to)
            document.update(state="pending", due_at=due, dedupe=f"{campaign_id}|{row.to}")
        else:
            document.update(state="skipped", skip_reason=reason, problem=row.problem)
        documents.append(document)
    if await store.insert_attempts(documents) < len(documents):
        documents = await store.attempts_by_id([document["_id"] for document in documents])
    return counters_of_rows(documents)


# --- dialing ----------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """An attempt this replica claimed, with the slot to place it in."""

    campaign: dict[str, Any]
    settings: CampaignSettings
    attempt: dict[str, Any]
    taken_over: bool = False  # from a replica that stopped: the call may exist


async def claim_next(campaign: dict[str, Any], ports: CampaignPorts) -> Claimed | None:
    """Take a pacing slot of `campaign` and claim its next due attempt, if the
    concurrency limit allows; the placement itself is `place`."""
    store = ports.store
    settings = _settings_of(campaign)
    now = ports.clock()
    # The slot first: one update by _id, and most ticks end there. A slot
    # taken while the concurrency limit is reached is let go (a call later).
    if not await store.take_slot(campaign["_id"], now, next_slot(settings.pacing, now)):
        return None
    if not may_start_call(settings.pacing, await store.count_active(campaign["_id"])):
        return None
    lease_until = now + ports.lease
    attempt = await store.claim_due(campaign["_id"], now, ports.owner, lease_until)
    if attempt is None:
        return None
    return Claimed(campaign, settings, attempt)


async def claim_stale(ports: CampaignPorts) -> Claimed | None:
    """A try whose replica died between claiming and recording the placement.
    It is placed again under the same idempotency key, so gateway returns
    the call it placed, if it did, instead of ringing twice."""
    now = ports.clock()
    attempt = await ports.store.claim_stale(now, ports.owner, now + ports.lease)
    if attempt is None:
        return None
    campaign = await ports.store.campaign(attempt["campaign_id"])
    if campaign is None:
        return None
    log.warning(
        "re-placing a claimed attempt whose replica stopped",
        extra={"campaign_id": campaign["_id"], "attempt_id": attempt["_id"]},
    )
    return Claimed(campaign, _settings_of(campaign), attempt, taken_over=True)


async def place(claimed: Claimed, ports: CampaignPorts) -> None:
    if claimed.taken_over:
        attempt = claimed.attempt
        try_number = int(attempt["tries_started"])
        call_id = await ports.store.placed_call(attempt["_id"], try_number)
        if call_id is not None:
            # The stopped replica's placement reached gateway: record it, dial nothing.
            await ports.store.mark_placed(attempt, try_number, call_id, ports.clock())
            log.info(
                "taken-over claim was placed already; recorded",
                extra={"call_id": call_id, "attempt_id": attempt["_id"]},
            )
            return
    await _place(claimed.campaign, claimed.settings, claimed.attempt, ports)


async def _place(
    campaign: dict[str, Any],
    settings: CampaignSettings,
    attempt: dict[str, Any],
    ports: CampaignPorts,
) -> bool:
    store = ports.store
    now = ports.clock()
    zones = tuple(ZoneInfo(name) for name in attempt["zones"])
    hours = CallingHours(settings.schedule)
    try_number = int(attempt["tries_started"])
    waiting = "pending" if try_number <= 1 else "retry"
    with log_context(campaign_id=campaign["_id"], attempt_id=attempt["_id"]):
        if campaign["state"] == "canceled":
            await store.release(attempt, "canceled", None)
            return False
        if not hours.allowed(zones, now):
            # The window closed since the attempt was scheduled: wait for the next one.
            due = hours.next_allowed(zones, now)
            if due is None:
                await store.release(attempt, "skipped", None, skip_reason="schedule_ended")
            else:
                await store.release(attempt, waiting, due)
            return True
        if attempt["to"] in await store.suppressed([attempt["to"]]):
            await store.release(attempt, "skipped", None, skip_reason="suppressed")
            return True
        if not await store.hold_line(attempt):
            await store.release(attempt, waiting, now + LINE_BUSY_DELAY)
            return True
        order = CallOrder(
            agent_id=settings.agent_id,
            to=attempt["to"],
            recipient=attempt["fields"],
            variables={
                **settings.variables,
                ATTEMPT_VARIABLE: attempt["_id"],
                TRY_VARIABLE: try_number,
            },
            idempotency_key=idempotency_key(attempt, try_number),
        )
        result = await ports.placer.place(order)
        now = ports.clock()
        if isinstance(result, Placed):
            await store.mark_placed(attempt, try_number, result.call_id, now)
            await store.clear_backoff(campaign["_id"])
            log.info("call placed", extra={"call_id": result.call_id, "try": try_number})
            return True
        if isinstance(result, Throttled):
            wait_s = backoff_after(float(campaign.get("backoff_s") or 0.0), result.retry_after_s)
            await store.back_off(campaign["_id"], now + timedelta(seconds=wait_s), wait_s)
            await store.release(attempt, waiting, now)
            log.warning(
                "placement throttled; campaign backs off",
                extra={"backoff_s": wait_s, "detail": result.detail},
            )
            return False
        if isinstance(result, Refused):
            state = "skipped" if result.reason in ("opted_out", "invalid_number") else "failed"
            await store.release(
                attempt, state, None, skip_reason=result.reason, problem=result.detail
            )
            log.info("placement refused", extra={"reason": result.reason})
            return True
        assert isinstance(result, Unsure)
        # Keep the claim: its lease runs out and the same key is sent again.
        log.warning(
            "placement unsure; will place again under the same key", extra={"detail": result.detail}
        )
        return False


# --- outcomes ---------------------------------------------------------------


async def handle_call_completed(call: CallDocument, ports: CampaignPorts) -> None:
    attempt_key = call.variables.get(ATTEMPT_VARIABLE)
    try_number = call.variables.get(TRY_VARIABLE)
    if not isinstance(attempt_key, str) or not isinstance(try_number, int):
        return  # not a campaign's call
    store = ports.store
    now = ports.clock()
    attempt = await store.attempts.find_one({"_id": attempt_key})
    if attempt is None:
        log.warning("call.completed for an unknown attempt", extra={"attempt_id": attempt_key})
        return
    campaign = await store.campaign(attempt["campaign_id"])
    if campaign is None:
        return
    settings = _settings_of(campaign)
    outcome = outcome_of(call)
    fields: dict[str, Any] = {"outcome": outcome, "updated_at": now, "due_at": None}
    if opted_out_during(call):
        fields.update(state="skipped", skip_reason="opted_out")
    else:
        decision = after_call(outcome, try_number, settings.retry, now)
        if isinstance(decision, Final):
            fields["state"] = decision.state
        elif campaign["state"] == "canceled" or attempt.get("erased"):
            fields["state"] = "canceled"  # no retry: canceled, or the number was erased
        else:
            hours = CallingHours(settings.schedule)
            zones = tuple(ZoneInfo(name) for name in attempt["zones"])
            due = hours.next_allowed(zones, decision.at)
            if due is None:
                fields.update(state="failed")
            else:
                fields.update(state="retry", due_at=due)
    applied = await store.record_outcome(attempt_key, try_number, call.call_id, fields)
    if applied is None:
        return  # already applied (a redelivery), or not the try the attempt waits for
    if not any(entry.get("n") == try_number for entry in applied.get("tries", [])):
        # The outcome came before the placement was recorded (a fast busy), or
        # the placing replica stopped: the try is recorded from the call.
        await store.add_try(
            attempt_key,
            {"n": try_number, "call_id": call.call_id, "placed_at": call.created_at or now},
        )
    await store.set_try_outcome(
        attempt_key, try_number, {"outcome": outcome, "ended_by": call.ended_by}
    )
    if attempt.get("erased"):
        await store.finish_erasure(attempt_key)
    with log_context(call_id=call.call_id, campaign_id=campaign["_id"]):
        log.info("call outcome applied", extra={"outcome": outcome, "state": fields["state"]})
    await maybe_finish(campaign["_id"], ports)


async def settle_overdue_call(ports: CampaignPorts) -> bool:
    """An attempt whose call's outcome never arrived (Twilio's last status
    callback lost while gateway was away): the stored call decides if it is
    final; otherwise the attempt ends `failed` without a retry, since the
    callee may have been reached. True when one was settled."""
    store = ports.store
    now = ports.clock()
    attempt = await store.overdue_call(now - ports.outcome_timeout)
    if attempt is None:
        return False
    document = await store.call_document(attempt["call_id"])
    if document is not None:
        call = CallDocument.model_validate(document)
        if call.is_final:
            await handle_call_completed(call, ports)
            return True
    try_number = int(attempt["tries_started"])
    problem = (
        f"no outcome for call {attempt['call_id']} within "
        f"{ports.outcome_timeout.total_seconds():.0f}s of placing it; not retried"
    )
    applied = await store.record_outcome(
        attempt["_id"],
        try_number,
        attempt["call_id"],
        {"state": "failed", "outcome": "failed", "problem": problem, "updated_at": now},
    )
    if applied is not None:
        log.warning(
            "call outcome never arrived; attempt failed",
            extra={"call_id": attempt["call_id"], "attempt_id": attempt["_id"]},
        )
        await maybe_finish(attempt["campaign_id"], ports)
    return True


# --- erasure ----------------------------------------------------------------


async def handle_recipient_erased(event: RecipientDataErased, ports: CampaignPorts) -> None:
    """Erase the number from the rows of the agent's campaigns, tell
    persistence how many rows bear the erasure (its audit record), and finish
    the campaigns it left with nothing to call. Repeated, it erases nothing
    more and reports the same count."""
    store = ports.store
    campaign_ids = await store.campaign_ids_of_agent(event.agent_id)
    erased = 0
    if campaign_ids:
        erased = await store.erase_number(campaign_ids, event.to, event.audit_id, ports.clock())
    await ports.publish(
        RecipientAttemptsErased(
            audit_id=event.audit_id,
            agent_id=event.agent_id,
            to=event.to,
            attempts_erased=erased,
        )
    )
    log.warning(
        "recipient erased from the agent's campaigns",
        extra={"audit_id": event.audit_id, "agent_id": event.agent_id, "attempts": erased},
    )
    for campaign_id in campaign_ids:
        await maybe_finish(campaign_id, ports)


# --- progress and completion ------------------------------------------------


async def maybe_finish(campaign_id: str, ports: CampaignPorts) -> None:
    now = ports.clock()
    finished = await ports.store.finish_if_done(campaign_id, now)
    if finished is not None:
        await announce(finished, ports)


async def finish_canceled(campaign: dict[str, Any], ports: CampaignPorts) -> None:
    """A canceled campaign is announced once its last call in flight ended."""
    if await ports.store.count_active(campaign["_id"]) == 0:
        await announce(campaign, ports)


async def announce(campaign: dict[str, Any], ports: CampaignPorts) -> None:
    counters = await ports.store.counters(campaign["_id"])
    await ports.publish(
        CampaignCompleted(campaign_id=campaign["_id"], state=campaign["state"], counters=counters)
    )
    await ports.store.mark_announced(campaign["_id"], ports.clock())
    log.info("campaign completed", extra={"campaign_id": campaign["_id"], **counters.model_dump()})


async def maybe_publish_progress(campaign: dict[str, Any], ports: CampaignPorts) -> None:
    now = ports.clock()
    if not await ports.store.claim_progress_turn(
        campaign["_id"], now, now - ports.progress_interval
    ):
        return
    counters = await ports.store.counters(campaign["_id"])
    await ports.publish(
        CampaignProgress(campaign_id=campaign["_id"], state=campaign["state"], counters=counters)
    )
