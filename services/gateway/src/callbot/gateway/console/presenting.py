"""What the console's pages show, computed from stored documents: the call's
status timeline and data, the list's filters and links, a campaign's
progress. Pure: no I/O, no HTTP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import urlencode

from callbot.common.agents import DataField
from callbot.common.calls import CallDocument
from callbot.common.contracts import CampaignCounters

CALL_FILTERS = (
    "agent_id",
    "to",
    "status",
    "ended_by",
    "data_complete",
    "created_from",
    "created_to",
)


def status_timeline(call: CallDocument) -> list[tuple[str, datetime]]:
    """The moments of the call that the document knows, in order."""
    archive = call.recording.archive if call.recording else None
    moments = [
        ("placed", call.created_at),
        ("answered" + (f" ({call.answered_by})" if call.answered_by else ""), call.answered_at),
        (f"ended: {call.status}" if call.status else "ended", call.ended_at),
        ("summarized", call.summarized_at),
        ("call.completed announced", call.completed_published_at),
        ("recording archived", archive.archived_at if archive else None),
    ]
    return sorted(
        ((label, at) for label, at in moments if at is not None), key=lambda item: item[1]
    )


@dataclass(frozen=True)
class DataRow:
    name: str
    description: str
    value: Any  # None: not collected
    collected: bool


def data_rows(fields: Sequence[DataField], collected: Mapping[str, Any]) -> list[DataRow]:
    """Every field the agent asks for (validated values only are stored),
    then any stored value the agent no longer asks for."""
    rows = [
        DataRow(field.name, field.description, collected.get(field.name), field.name in collected)
        for field in fields
    ]
    asked = {field.name for field in fields}
    rows += [
        DataRow(name, "", value, True) for name, value in collected.items() if name not in asked
    ]
    return rows


def day_start(value: str | None, *, end: bool = False) -> datetime | None:
    """A date input (`YYYY-MM-DD`) as the UTC moment its day starts (`end`: the next day's)."""
    if not value:
        return None
    day = date.fromisoformat(value)
    if end:
        day = date.fromordinal(day.toordinal() + 1)
    return datetime.combine(day, time.min, tzinfo=UTC)


def filter_link(path: str, filters: Mapping[str, str | None], **extra: str | int | None) -> str:
    """`path` with the non-empty filters (and `extra`) as its query string."""
    query = {key: value for key, value in {**filters, **extra}.items() if value not in (None, "")}
    return f"{path}?{urlencode(query)}" if query else path


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    percent: float  # of the largest bar


@dataclass(frozen=True)
class CampaignProgress:
    total: int
    finished: int
    percent: int
    bars: list[Bar]

    @property
    def done(self) -> bool:
        return self.total > 0 and self.finished == self.total


def campaign_progress(counters: CampaignCounters) -> CampaignProgress:
    """How far the campaign is (recipients in a final state) and its outcomes as bars."""
    outcomes = {
        "completed": counters.completed,
        "failed": counters.failed,
        "skipped": counters.skipped,
        "canceled": counters.canceled,
        "in progress": counters.in_progress,
        "retry scheduled": counters.retry_scheduled,
        "pending": counters.pending,
    }
    finished = counters.completed + counters.failed + counters.skipped + counters.canceled
    largest = max(outcomes.values(), default=0) or 1
    return CampaignProgress(
        total=counters.total,
        finished=finished,
        percent=round(100 * finished / counters.total) if counters.total else 0,
        bars=[Bar(label, count, 100 * count / largest) for label, count in outcomes.items()],
    )


@dataclass(frozen=True)
class DayBar:
    day: date
    counts: dict[str, int]  # outcome -> calls

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Overview:
    days: list[DayBar]
    outcomes: list[str]  # every outcome seen, most frequent first
    calls: int
    data_complete_rate: float | None  # among answered calls
    average_duration_s: float | None
    average_turns: float | None

    @property
    def busiest(self) -> int:
        return max((day.total for day in self.days), default=0)


def overview(calls: Sequence[Mapping[str, Any]], first_day: date, last_day: date) -> Overview:
    """Calls per day by outcome (`ended_by`, else the status), the data
    completion rate of answered calls, the average length and turns."""
    per_day: dict[date, dict[str, int]] = {
        date.fromordinal(n): {} for n in range(first_day.toordinal(), last_day.toordinal() + 1)
    }
    totals: dict[str, int] = {}
    answered = complete = 0
    durations: list[int] = []
    turns: list[int] = []
    for call in calls:
        created: datetime | None = call.get("created_at")
        if created is None or created.date() not in per_day:
            continue
        outcome = str(call.get("ended_by") or call.get("status") or "unknown")
        day = per_day[created.date()]
        day[outcome] = day.get(outcome, 0) + 1
        totals[outcome] = totals.get(outcome, 0) + 1
        if call.get("answered_at") is not None:
            answered += 1
            complete += bool(call.get("data_complete"))
            turns.append(len(call.get("turns") or ()))
        if call.get("duration_s") is not None:
            durations.append(int(call["duration_s"]))
    return Overview(
        days=[DayBar(day, counts) for day, counts in per_day.items()],
        outcomes=sorted(totals, key=lambda outcome: -totals[outcome]),
        calls=sum(totals.values()),
        data_complete_rate=complete / answered if answered else None,
        average_duration_s=sum(durations) / len(durations) if durations else None,
        average_turns=sum(turns) / len(turns) if turns else None,
    )
