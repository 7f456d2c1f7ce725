"""Campaigns under failure, on real processes: a campaigns replica SIGKILLed
mid-run, Twilio rate limiting (429 / 20429), gateway away for a while.

Zero double dials and no recipient lost are read from the emulator's own
record of the calls it was asked to place.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The campaign harness lives with the end-to-end suite; it drives the same stack.
sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))

from campaigns_harness import (
    CampaignStack,
    afternoon_zone,
    assert_no_double_dials,
    campaign_body,
    number,
    running_campaign_stack,
)
from e2e_harness import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

LEASE_S = 3
OUTCOME_TIMEOUT_S = 8


@pytest.fixture(scope="module")
def campaigns(
    tmp_path_factory: pytest.TempPathFactory, rabbitmq_url: str, mongodb_url: str
) -> Iterator[CampaignStack]:
    with running_campaign_stack(
        tmp_path_factory.mktemp("campaign-faults"),
        rabbitmq_url,
        mongodb_url,
        replicas=2,
        lease_s=LEASE_S,
        outcome_timeout_s=OUTCOME_TIMEOUT_S,
    ) as stack:
        stack.put_agent("camp")
        yield stack


def _answering(campaigns: CampaignStack, block: int, count: int) -> list[str]:
    numbers = [number(block, index) for index in range(count)]
    for to in numbers:
        campaigns.script(to, "answers")
    return numbers


def _run(campaigns: CampaignStack, numbers: list[str], cps: float) -> str:
    zone = afternoon_zone()
    created = campaigns.create(
        campaign_body(
            "camp",
            [{"to": to, "timezone": zone, "name": "Ada"} for to in numbers],
            pacing={"calls_per_second": cps, "max_concurrent": 6},
        )
    )
    return str(created["campaign_id"])


def _check_each_called_once(campaigns: CampaignStack, campaign_id: str, numbers: list[str]) -> None:
    final = campaigns.wait_state(campaign_id, "completed")
    assert final["counters"]["completed"] == len(numbers)
    assert final["counters"]["calls_placed"] == len(numbers)
    attempts = campaigns.attempts(campaign_id)
    assert [(a["state"], len(a["tries"])) for a in attempts] == [("completed", 1)] * len(numbers)
    calls = campaigns.calls_to(set(numbers))
    assert sorted(call.to for call in calls) == sorted(numbers)
    assert_no_double_dials(calls, attempts)


def test_a_replica_killed_mid_run_loses_nothing_and_dials_nothing_twice(
    campaigns: CampaignStack,
) -> None:
    numbers = _answering(campaigns, 10, 40)
    campaign_id = _run(campaigns, numbers, cps=6)
    wait_until(
        lambda: campaigns.campaign(campaign_id)["counters"]["calls_placed"] >= 10,
        "10 calls placed",
    )
    victim = campaigns.stack.campaigns_replicas[0]
    victim.kill()
    _check_each_called_once(campaigns, campaign_id, numbers)
    survivor = campaigns.stack.campaigns_replicas[1]
    assert any("call placed" in line for line in survivor.log_lines())
    victim.start()


def test_twilio_rate_limiting_slows_the_campaign_instead_of_failing_it(
    campaigns: CampaignStack,
) -> None:
    numbers = _answering(campaigns, 11, 8)
    # Gateway retries a 429 itself (4 attempts), then answers 503: the
    # campaign backs off, the attempt is not counted, and it is placed later.
    # At 1 call per second the first placement's 4 attempts all meet a fault
    # (a create succeeds only once all 6 are used), so the 503 is certain.
    faults = [{"status": 429, "code": 20429, "message": "Too Many Requests"}] * 6
    campaigns.stack.emulator.control.fail_next_creates(*faults)
    campaign_id = _run(campaigns, numbers, cps=1)
    _check_each_called_once(campaigns, campaign_id, numbers)
    rate_limited = [
        request for request in campaigns.stack.emulator.control.requests() if request.status == 429
    ]
    assert len(rate_limited) == 6
    logs = "".join(
        line for replica in campaigns.stack.campaigns_replicas for line in replica.log_lines()
    )
    assert "placement throttled; campaign backs off" in logs


def test_gateway_away_for_a_while_the_campaign_resumes_without_double_dials(
    campaigns: CampaignStack,
) -> None:
    """Placements while gateway is away are unsure (it may have placed the
    call): the claim is kept and the same key sent again. A call in progress
    when gateway stopped loses its last status callback (the emulator, like
    Twilio, does not retry it): its attempt ends `failed`, not retried, once
    CAMPAIGNS_OUTCOME_TIMEOUT_S passes."""
    numbers = _answering(campaigns, 12, 12)
    campaign_id = _run(campaigns, numbers, cps=3)
    wait_until(
        lambda: campaigns.campaign(campaign_id)["counters"]["calls_placed"] >= 3,
        "3 calls placed",
    )
    gateway = campaigns.stack.gateway
    assert gateway is not None
    gateway.stop()
    gateway.start()
    final = campaigns.wait_state(campaign_id, "completed")["counters"]
    attempts = campaigns.attempts(campaign_id)
    assert [len(attempt["tries"]) for attempt in attempts] == [1] * len(numbers)
    calls = campaigns.calls_to(set(numbers))
    assert sorted(call.to for call in calls) == sorted(numbers)
    assert_no_double_dials(calls, attempts)
    unsettled = [attempt for attempt in attempts if attempt["state"] == "failed"]
    assert final["completed"] + final["failed"] == len(numbers)
    assert final["failed"] == len(unsettled)
    for attempt in unsettled:
        assert "no outcome for call" in attempt["problem"]
