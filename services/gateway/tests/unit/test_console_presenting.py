"""What the console's pages compute from stored documents (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from callbot.common.agents import DataField
from callbot.common.calls import CallDocument
from callbot.common.contracts import CampaignCounters
from callbot.gateway.console.presenting import (
    campaign_progress,
    data_rows,
    day_start,
    filter_link,
    overview,
    status_timeline,
)

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def test_the_timeline_lists_the_known_moments_in_order() -> None:
    call = CallDocument.model_validate(
        {
            "_id": "c1",
            "status": "completed",
            "answered_by": "human",
            "created_at": T0,
            "answered_at": T0 + timedelta(seconds=5),
            "ended_at": T0 + timedelta(seconds=40),
            "completed_published_at": T0 + timedelta(seconds=43),
            "summarized_at": T0 + timedelta(seconds=41),
        }
    )
    assert [label for label, _at in status_timeline(call)] == [
        "placed",
        "answered (human)",
        "ended: completed",
        "summarized",
        "call.completed announced",
    ]


def test_data_rows_show_every_asked_field_and_values_no_longer_asked_for() -> None:
    fields = [
        DataField(name="full_name", description="full name"),
        DataField(name="email", description="email address", type="email"),
    ]
    rows = data_rows(fields, {"full_name": "Ada", "old_field": "x"})
    assert [(r.name, r.value, r.collected) for r in rows] == [
        ("full_name", "Ada", True),
        ("email", None, False),
        ("old_field", "x", True),
    ]


def test_date_filters_cover_whole_utc_days_and_refuse_other_shapes() -> None:
    assert day_start("2026-12-07") == datetime(2026, 12, 7, tzinfo=UTC)
    assert day_start("2026-12-31", end=True) == datetime(2027, 1, 1, tzinfo=UTC)
    assert day_start("") is None
    with pytest.raises(ValueError, match="Invalid isoformat"):
        day_start("07/12/2026")


def test_filter_links_keep_non_empty_filters_only() -> None:
    link = filter_link("/console/calls", {"to": "+1 212", "status": ""}, cursor="abc", limit=None)
    assert link == "/console/calls?to=%2B1+212&cursor=abc"
    assert filter_link("/console/calls", {"to": ""}) == "/console/calls"


def test_campaign_progress_counts_final_recipients() -> None:
    progress = campaign_progress(
        CampaignCounters(total=20, completed=5, failed=1, skipped=2, pending=10, in_progress=2)
    )
    assert (progress.finished, progress.percent, progress.done) == (8, 40, False)
    assert {bar.label: bar.count for bar in progress.bars}["pending"] == 10
    assert max(bar.percent for bar in progress.bars) == 100
    assert campaign_progress(CampaignCounters()).percent == 0


def test_the_overview_counts_calls_per_day_by_outcome() -> None:
    calls = [
        {"created_at": T0, "ended_by": "busy", "status": "busy"},
        {
            "created_at": T0,
            "answered_at": T0,
            "ended_by": "system_complete",
            "data_complete": True,
            "duration_s": 40,
            "turns": [{"seq": 0}, {"seq": 1}, {"seq": 2}],
        },
        {
            "created_at": T0 - timedelta(days=1),
            "answered_at": T0,
            "ended_by": "callee_hangup",
            "duration_s": 20,
            "turns": [{"seq": 0}],
        },
        {"created_at": T0 - timedelta(days=9), "ended_by": "busy"},  # outside the period
    ]
    summary = overview(calls, date(2026, 12, 6), date(2026, 12, 7))
    assert [day.counts for day in summary.days] == [
        {"callee_hangup": 1},
        {"busy": 1, "system_complete": 1},
    ]
    assert summary.calls == 3
    assert summary.data_complete_rate == 0.5
    assert summary.average_duration_s == 30
    assert summary.average_turns == 2
    assert summary.busiest == 2
