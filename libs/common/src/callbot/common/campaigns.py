"""Campaigns: what a campaign is (schedule, pacing, retry policy), the RPC
gateway uses to have the campaigns service write one, and the vocabulary of
attempt states, outcomes and skip reasons. The events (`campaign.progress`,
`campaign.completed`) are in `callbot.common.contracts`. Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from callbot.common.contracts import CampaignCounters, Message, RpcFailure
from callbot.common.storable import StorableObject

# Calls outside 08:00-21:00 in the called party's local time are unlawful in
# the US (TCPA, 47 CFR 64.1200(c)(1)); no campaign window may leave it.
LEGAL_EARLIEST = time(8, 0)
LEGAL_LATEST = time(21, 0)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# An outcome of one call, as the retry policy sees it.
Outcome = Literal["completed", "no_answer", "busy", "failed", "voicemail", "data_incomplete"]
RetryableOutcome = Literal["no_answer", "busy", "failed", "voicemail", "data_incomplete"]

# Why a recipient is never dialed.
SkipReason = Literal[
    "opted_out",  # the recipient asked not to be called (recipients collection, or mid-call)
    "suppressed",  # the number is on the suppression list
    "invalid_number",  # not a valid E.164 number
    "duplicate",  # the number is already in this campaign
    "unknown_timezone",  # neither a timezone column nor the number tells where it rings
    "schedule_ended",  # the campaign's end date passed before an allowed time came
]
SKIP_REASONS: tuple[SkipReason, ...] = (
    "opted_out",
    "suppressed",
    "invalid_number",
    "duplicate",
    "unknown_timezone",
    "schedule_ended",
)

# Where one recipient of a campaign stands. The last four are final.
AttemptState = Literal[
    "pending",  # waiting for its first call (due_at)
    "retry",  # waiting for a retry (due_at)
    "dialing",  # claimed by a replica; the call is being placed
    "in_call",  # placed; waiting for the call's outcome
    "completed",
    "failed",  # the retry policy gave up
    "skipped",  # never dialed (skip_reason)
    "canceled",  # the campaign was canceled before it was dialed
]
FINAL_ATTEMPT_STATES: frozenset[str] = frozenset({"completed", "failed", "skipped", "canceled"})
WAITING_ATTEMPT_STATES: tuple[str, ...] = ("pending", "retry")
ACTIVE_ATTEMPT_STATES: tuple[str, ...] = ("dialing", "in_call")

CampaignState = Literal["draft", "running", "paused", "canceled", "completed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CallingWindow(_Frozen):
    """Daily hours, local to each recipient; inside 08:00-21:00 always."""

    start: time = Field(default=time(9, 0), description="Earliest local time (HH:MM).")
    end: time = Field(default=time(20, 0), description="Latest local time (HH:MM), exclusive.")

    @model_validator(mode="after")
    def _inside_legal_hours(self) -> CallingWindow:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("give the window as local times without an offset, e.g. '09:00'")
        if self.start < LEGAL_EARLIEST or self.end > LEGAL_LATEST:
            raise ValueError(
                f"the calling window {self.start:%H:%M}-{self.end:%H:%M} leaves the legal "
                "hours 08:00-21:00 (recipient's local time); choose a window inside them"
            )
        if self.start >= self.end:
            raise ValueError(
                f"the calling window starts ({self.start:%H:%M}) at or after it ends "
                f"({self.end:%H:%M})"
            )
        return self


class Schedule(_Frozen):
    start_date: date | None = Field(default=None, description="First calling day (local).")
    end_date: date | None = Field(default=None, description="Last calling day (local).")
    window: CallingWindow = Field(default_factory=CallingWindow)
    days: tuple[Weekday, ...] = Field(
        default=("mon", "tue", "wed", "thu", "fri", "sat"), min_length=1
    )

    @model_validator(mode="after")
    def _dates_in_order(self) -> Schedule:
        if self.start_date and self.end_date and self.start_date > self.end_date:
            raise ValueError(f"start_date {self.start_date} is after end_date {self.end_date}")
        return self


class Pacing(_Frozen):
    calls_per_second: float = Field(
        default=1.0, gt=0, le=100, description="Call placements per second (Twilio: 1 CPS)."
    )
    max_concurrent: int = Field(default=10, ge=1, le=1000, description="Calls live at once.")


class RetryRule(_Frozen):
    max_attempts: int = Field(ge=1, le=10, description="Attempts in all, the first included.")
    delay_s: int = Field(ge=0, le=7 * 86400, description="Seconds before the next attempt.")


class RetryPolicy(_Frozen):
    no_answer: RetryRule = RetryRule(max_attempts=3, delay_s=3600)
    busy: RetryRule = RetryRule(max_attempts=3, delay_s=600)
    failed: RetryRule = RetryRule(max_attempts=2, delay_s=600)
    voicemail: RetryRule = RetryRule(max_attempts=2, delay_s=4 * 3600)
    data_incomplete: RetryRule = RetryRule(max_attempts=1, delay_s=3600)

    def rule(self, outcome: RetryableOutcome) -> RetryRule:
        rule: RetryRule = getattr(self, outcome)
        return rule


class CampaignSettings(_Frozen):
    """Everything about a campaign but its recipients (`POST /v1/campaigns`)."""

    name: str = Field(default="", max_length=200)
    agent_id: str = Field(min_length=1)
    schedule: Schedule = Field(default_factory=Schedule)
    pacing: Pacing = Field(default_factory=Pacing)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    variables: StorableObject = Field(
        default_factory=dict, description="Call variables, the same for every recipient."
    )


class RecipientRow(_Frozen):
    """One line of the list, as given (checked by the campaigns service)."""

    row: int = Field(ge=1, description="Position in the list (CSV: line number).")
    to: str
    timezone: str | None = None
    fields: StorableObject = Field(default_factory=dict)


# --- RPC: gateway -> campaigns (the only writer of campaigns, attempts, suppressions)


class CampaignCreate(Message):
    """A new campaign in `draft`: no one is called until `campaign.start`."""

    type: Literal["campaign.create"] = "campaign.create"
    campaign_id: str = Field(min_length=1)
    settings: CampaignSettings


class CampaignAddRecipients(Message):
    """A chunk of a draft campaign's list; rows are checked and skipped ones kept
    with their reason. Idempotent per row number."""

    type: Literal["campaign.add_recipients"] = "campaign.add_recipients"
    campaign_id: str = Field(min_length=1)
    recipients: tuple[RecipientRow, ...] = Field(min_length=1, max_length=5000)


class CampaignStart(Message):
    type: Literal["campaign.start"] = "campaign.start"
    campaign_id: str = Field(min_length=1)


class CampaignDiscard(Message):
    """Drop a draft and its rows (an upload that failed half-way)."""

    type: Literal["campaign.discard"] = "campaign.discard"
    campaign_id: str = Field(min_length=1)


class CampaignControl(Message):
    type: Literal["campaign.control"] = "campaign.control"
    campaign_id: str = Field(min_length=1)
    action: Literal["pause", "resume", "cancel"]


class SuppressionsAdd(Message):
    type: Literal["suppressions.add"] = "suppressions.add"
    numbers: tuple[str, ...] = Field(min_length=1, max_length=5000)
    reason: str = Field(default="", max_length=200)


class CampaignAck(Message):
    """The request was applied; `state` is the campaign's state after it."""

    type: Literal["campaign.ack"] = "campaign.ack"
    campaign_id: str = ""
    state: CampaignState | None = None
    counters: CampaignCounters | None = None
    rejected: tuple[tuple[int, str], ...] = ()  # suppressions: (position, why)


CampaignRequest = Annotated[
    CampaignCreate
    | CampaignAddRecipients
    | CampaignStart
    | CampaignDiscard
    | CampaignControl
    | SuppressionsAdd,
    Field(discriminator="type"),
]
CAMPAIGN_REQUEST_ADAPTER: TypeAdapter[CampaignRequest] = TypeAdapter(CampaignRequest)
CampaignResponse = Annotated[CampaignAck | RpcFailure, Field(discriminator="type")]
CAMPAIGN_RESPONSE_ADAPTER: TypeAdapter[CampaignResponse] = TypeAdapter(CampaignResponse)


def counters_pipeline(campaign_id: str) -> list[dict[str, Any]]:
    """The aggregation over `attempts` whose result `counters_from_groups` reads."""
    return [
        {"$match": {"campaign_id": campaign_id}},
        {
            "$group": {
                "_id": {"state": "$state", "skip_reason": "$skip_reason"},
                "n": {"$sum": 1},
                "placed": {"$sum": {"$size": {"$ifNull": ["$tries", []]}}},
            }
        },
    ]


def counters_from_groups(groups: list[dict[str, Any]]) -> CampaignCounters:
    """Counters from the groups `counters_pipeline` yields."""
    by_state: dict[str, int] = {}
    skipped: dict[str, int] = {}
    placed = 0
    for group in groups:
        key = group["_id"]
        state, count = str(key["state"]), int(group["n"])
        placed += int(group.get("placed", 0))
        if state == "skipped":
            reason = str(key.get("skip_reason") or "unknown")
            skipped[reason] = skipped.get(reason, 0) + count
        by_state[state] = by_state.get(state, 0) + count
    return CampaignCounters(
        total=sum(by_state.values()),
        pending=by_state.get("pending", 0),
        in_progress=by_state.get("dialing", 0) + by_state.get("in_call", 0),
        retry_scheduled=by_state.get("retry", 0),
        completed=by_state.get("completed", 0),
        failed=by_state.get("failed", 0),
        canceled=by_state.get("canceled", 0),
        skipped=sum(skipped.values()),
        skipped_by_reason=skipped,
        calls_placed=placed,
    )


def counters_of_rows(rows: Iterable[Mapping[str, Any]]) -> CampaignCounters:
    """The counters of these attempt documents (a chunk just stored), as
    `counters_pipeline` would count them."""
    groups: Counter[tuple[str, str | None]] = Counter()
    placed: Counter[tuple[str, str | None]] = Counter()
    for row in rows:
        key = (str(row["state"]), row.get("skip_reason"))
        groups[key] += 1
        placed[key] += len(row.get("tries") or ())
    return counters_from_groups(
        [
            {"_id": {"state": key[0], "skip_reason": key[1]}, "n": n, "placed": placed[key]}
            for key, n in groups.items()
        ]
    )


def added(one: CampaignCounters, other: CampaignCounters) -> CampaignCounters:
    """The counters of two disjoint sets of rows, together."""
    sums = {
        name: getattr(one, name) + getattr(other, name)
        for name in CampaignCounters.model_fields
        if name != "skipped_by_reason"
    }
    reasons = Counter(one.skipped_by_reason) + Counter(other.skipped_by_reason)
    return CampaignCounters(**sums, skipped_by_reason=dict(reasons))
