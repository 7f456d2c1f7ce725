"""Campaigns through the whole stack as processes: two campaigns replicas,
gateway, dialog (deterministic policy), persistence and the Twilio emulator.

The small version of the 2,000-recipient run (bench/campaign.py runs the big
one): 60 recipients with mixed outcomes, every one ending in exactly one
final state with the attempts the retry policy allows, zero double dials
and the pacing held, both read from the emulator's own record of the calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from campaigns_harness import (
    EXPECTED,
    CampaignStack,
    afternoon_zone,
    assert_no_double_dials,
    campaign_body,
    max_calls_in_any_second,
    number,
    running_campaign_stack,
)
from e2e_harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]


@pytest.fixture(scope="module")
def campaigns(
    tmp_path_factory: pytest.TempPathFactory, rabbitmq_url: str, mongodb_url: str
) -> Iterator[CampaignStack]:
    with running_campaign_stack(
        tmp_path_factory.mktemp("campaigns"), rabbitmq_url, mongodb_url
    ) as stack:
        stack.put_agent("camp")
        yield stack


def test_mixed_outcomes_exact_states_no_double_dials_paced(campaigns: CampaignStack) -> None:
    zone = afternoon_zone()
    kinds = list(EXPECTED)
    recipients: list[dict[str, Any]] = []
    expected_by_number: dict[str, tuple[str, int]] = {}
    for index in range(49):  # 7 of each outcome
        kind = kinds[index % len(kinds)]
        to = number(1, index)
        campaigns.script(to, kind)
        recipients.append({"to": to, "timezone": zone, "name": f"R{index}", "kind": kind})
        expected_by_number[to] = EXPECTED[kind]
    suppressed = [number(1, 100 + index) for index in range(4)]
    response = campaigns.api.post("/v1/suppressions", json={"numbers": suppressed})
    assert response.status_code == 200, response.text
    assert response.json() == {"added": 4, "rejected": []}
    recipients += [{"to": to, "timezone": zone, "name": "S"} for to in suppressed]
    recipients += [
        {"to": "+1212555", "timezone": zone, "name": "Short"},
        {"to": "call me", "timezone": zone, "name": "Words"},
    ]
    recipients += [{"to": number(1, index), "timezone": zone, "name": "D"} for index in range(5)]
    assert len(recipients) == 60

    created = campaigns.create(
        campaign_body("camp", recipients, pacing={"calls_per_second": 8, "max_concurrent": 12})
    )
    campaign_id = created["campaign_id"]
    assert created["state"] == "running"
    assert created["counters"]["total"] == 60

    final = campaigns.wait_state(campaign_id, "completed")
    counters = final["counters"]
    assert counters["skipped_by_reason"] == {
        "suppressed": 4,
        "invalid_number": 2,
        "duplicate": 5,
        "opted_out": 7,
    }
    assert counters["completed"] == 14
    assert counters["failed"] == 28
    assert counters["pending"] == counters["in_progress"] == counters["retry_scheduled"] == 0
    assert counters["total"] == 60
    total_tries = sum(tries for _, tries in expected_by_number.values())
    assert counters["calls_placed"] == total_tries

    attempts = campaigns.attempts(campaign_id)
    assert len(attempts) == 60
    for attempt in attempts:
        if attempt["state"] == "skipped" and attempt["skip_reason"] != "opted_out":
            assert not attempt["tries"]
            continue
        state, tries = expected_by_number[attempt["to"]]
        assert (attempt["state"], len(attempt["tries"])) == (state, tries), attempt
    calls = campaigns.calls_to(set(expected_by_number) | set(suppressed))
    assert len(calls) == total_tries
    assert not [call for call in calls if call.to in suppressed]
    assert_no_double_dials(calls, attempts)
    assert max_calls_in_any_second(calls) <= 8

    event = campaigns.completed_event(campaign_id)
    assert event.state == "completed"
    assert event.counters.model_dump() == counters


def test_pause_resume_cancel_with_exact_counters(campaigns: CampaignStack) -> None:
    zone = afternoon_zone()
    numbers = [number(2, index) for index in range(30)]
    for to in numbers:
        campaigns.script(to, "answers")
    created = campaigns.create(
        campaign_body(
            "camp",
            [{"to": to, "timezone": zone, "name": "Ada"} for to in numbers],
            pacing={"calls_per_second": 4, "max_concurrent": 4},
        )
    )
    campaign_id = created["campaign_id"]
    wait_until(
        lambda: campaigns.campaign(campaign_id)["counters"]["calls_placed"] >= 5, "5 calls placed"
    )

    paused = campaigns.api.post(f"/v1/campaigns/{campaign_id}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused"
    quiet = campaigns.wait_quiet(campaign_id)["counters"]
    placed = quiet["calls_placed"]
    assert quiet["completed"] == placed
    assert quiet["pending"] == 30 - placed
    assert quiet["in_progress"] == quiet["failed"] == quiet["canceled"] == 0
    # Paused: a refresh of the dialer later, still nothing more placed.
    wait_until(lambda: len(campaigns.calls_to(set(numbers))) == placed, "the emulator to agree")
    assert campaigns.campaign(campaign_id)["counters"] == quiet

    resumed = campaigns.api.post(f"/v1/campaigns/{campaign_id}/resume")
    assert resumed.json()["state"] == "running"
    wait_until(
        lambda: campaigns.campaign(campaign_id)["counters"]["calls_placed"] >= placed + 5,
        "5 more calls placed",
    )
    canceled = campaigns.api.post(f"/v1/campaigns/{campaign_id}/cancel")
    assert canceled.json()["state"] == "canceled"
    after = campaigns.wait_quiet(campaign_id)["counters"]
    placed = after["calls_placed"]
    assert after["completed"] == placed
    assert after["canceled"] == 30 - placed
    assert after["pending"] == after["retry_scheduled"] == after["in_progress"] == 0
    assert len(campaigns.calls_to(set(numbers))) == placed
    event = campaigns.completed_event(campaign_id)
    assert event.state == "canceled"
    assert event.counters.model_dump() == after
    again = campaigns.api.post(f"/v1/campaigns/{campaign_id}/resume")
    assert again.status_code == 409, again.text


def _draft_count(campaigns: CampaignStack) -> int:
    return int(campaigns.db.campaigns.count_documents({})) + int(
        campaigns.db.attempts.count_documents({"campaign_id": {"$exists": False}})
    )


def test_bad_input_is_refused_and_nothing_is_half_created(campaigns: CampaignStack) -> None:
    before_campaigns = campaigns.db.campaigns.count_documents({})
    before_attempts = campaigns.db.attempts.count_documents({})
    zone = afternoon_zone()

    outside = campaigns.api.post(
        "/v1/campaigns",
        json=campaign_body(
            "camp",
            [{"to": number(3, 1), "timezone": zone}],
            schedule={"window": {"start": "07:30", "end": "20:00"}},
        ),
    )
    assert outside.status_code == 422
    assert "08:00-21:00" in outside.text

    unknown = campaigns.api.post(
        "/v1/campaigns", json=campaign_body("nobody", [{"to": number(3, 1)}])
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "agent_id"]

    good_rows = "".join(
        f"{number(3, index)},{zone},R{index}\n" for index in range(1100)
    )  # > 1 chunk
    csv_text = "to,timezone,name\n" + good_rows + "+12123030001,Etc/GMT,too,many\n"
    bad_row = campaigns.api.post(
        "/v1/campaigns",
        data={"campaign": '{"agent_id": "camp"}'},
        files={"recipients": ("list.csv", csv_text.encode(), "text/csv")},
    )
    assert bad_row.status_code == 422, bad_row.text
    detail = bad_row.json()["detail"][0]
    assert detail["loc"] == ["body", "recipients", 1102]
    assert "4 cells" in detail["msg"]

    # The agent's greeting says {recipient.name}: a row without one is refused
    # at upload, line named, rather than dialed into a call gateway refuses.
    named = "".join(f"{number(3, index)},{zone},R{index}\n" for index in range(10))
    nameless = "to,timezone,name\n" + named + f"{number(3, 9999)},{zone},\n"
    no_name = campaigns.api.post(
        "/v1/campaigns",
        data={"campaign": '{"agent_id": "camp"}'},
        files={"recipients": ("list.csv", nameless.encode(), "text/csv")},
    )
    assert no_name.status_code == 422, no_name.text
    detail = no_name.json()["detail"][0]
    assert detail["loc"] == ["body", "recipients", 12]
    assert "`name`" in detail["msg"]

    no_to = campaigns.api.post(
        "/v1/campaigns",
        data={"campaign": '{"agent_id": "camp"}'},
        files={"recipients": ("list.csv", b"phone,name\n+12123030001,Ada\n", "text/csv")},
    )
    assert no_to.status_code == 422
    assert "no 'to' column" in no_to.text

    # The 1,100 rows (a chunk and more) before the bad one went with their draft.
    assert campaigns.db.campaigns.count_documents({}) == before_campaigns
    assert campaigns.db.attempts.count_documents({}) == before_attempts

    unknown_campaign = campaigns.api.get("/v1/campaigns/nope")
    assert unknown_campaign.status_code == 404


def test_csv_upload_and_attempts_listing(campaigns: CampaignStack) -> None:
    zone = afternoon_zone()
    numbers = [number(4, index) for index in range(5)]
    for to in numbers:
        campaigns.script(to, "answers")
    csv_text = "to,timezone,name,plan\n" + "".join(
        f"{to},{zone},Person {index},gold\n" for index, to in enumerate(numbers)
    )
    csv_text += f"{numbers[0]},{zone},Again,gold\n"
    response = campaigns.api.post(
        "/v1/campaigns",
        data={
            "campaign": '{"agent_id": "camp", "schedule": {"days": '
            '["mon","tue","wed","thu","fri","sat","sun"]}, "pacing": {"calls_per_second": 5}}'
        },
        files={"recipients": ("list.csv", csv_text.encode(), "text/csv")},
    )
    assert response.status_code == 201, response.text
    campaign_id = response.json()["campaign_id"]
    campaigns.wait_state(campaign_id, "completed")

    page = campaigns.api.get(f"/v1/campaigns/{campaign_id}/attempts", params={"limit": 4})
    body = page.json()
    assert [item["row"] for item in body["items"]] == [2, 3, 4, 5]
    assert body["items"][0]["fields"] == {"name": "Person 0", "plan": "gold"}
    rest = campaigns.api.get(
        f"/v1/campaigns/{campaign_id}/attempts", params={"after": body["next_after"]}
    ).json()
    assert [(item["row"], item["state"]) for item in rest["items"]] == [
        (6, "completed"),
        (7, "skipped"),
    ]
    assert rest["next_after"] is None

    as_csv = campaigns.api.get(f"/v1/campaigns/{campaign_id}/attempts", params={"format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    lines = as_csv.text.strip().splitlines()
    assert lines[0].startswith("row,to,timezone,state,skip_reason")
    assert len(lines) == 7
    assert ",duplicate," in lines[-1]


def test_erasing_a_recipient_reaches_the_campaign_attempts_and_nothing_else(
    campaigns: CampaignStack,
) -> None:
    zone = afternoon_zone()
    erased, kept = number(5, 1), number(5, 2)
    for to in (erased, kept):
        campaigns.script(to, "answers")
    campaigns.put_agent("camp-other")
    rows = [{"to": to, "timezone": zone, "name": f"R{to[-1]}"} for to in (erased, kept)]
    mine = campaigns.create(campaign_body("camp", rows))["campaign_id"]
    campaigns.wait_state(mine, "completed")
    theirs = campaigns.create(campaign_body("camp-other", rows[:1]))["campaign_id"]
    campaigns.wait_state(theirs, "completed")
    before = {row["_id"]: row for c in (mine, theirs) for row in campaigns.attempts(c)}
    counters = campaigns.campaign(mine)["counters"]

    response = campaigns.api.delete(f"/v1/recipients/camp/{erased}", params={"reason": "art. 17"})
    assert response.status_code == 200, response.text
    audit_id = response.json()["audit_id"]

    audit = wait_until(
        lambda: (
            (a := campaigns.db.audit.find_one({"_id": audit_id}))
            and a.get("attempts_erased") is not None
            and a
        ),
        "the campaigns service's count on the audit record",
        30,
    )
    assert audit["attempts_erased"] == 1
    after = {row["_id"]: row for c in (mine, theirs) for row in campaigns.attempts(c)}
    [erased_id] = [key for key, row in before.items() if row.get("to") == erased and mine in key]
    row = after.pop(erased_id)
    assert not {"to", "timezone", "fields", "zones", "dedupe"} & row.keys()
    assert row["erased"]["audit_id"] == audit_id
    assert (row["state"], row["tries"]) == (before[erased_id]["state"], before[erased_id]["tries"])
    # Every other row, the other agent's row of that very number included, is as it was.
    assert after == {key: value for key, value in before.items() if key != erased_id}
    assert campaigns.campaign(mine)["counters"] == counters
    listed = campaigns.api.get(f"/v1/campaigns/{mine}/attempts").json()["items"]
    assert [item.get("to") for item in listed] == [None, kept]
