"""What the campaign tests drive callbot with: the stack with campaigns
replicas (dialog on its deterministic policy, no LLM), recipients whose
scripted outcome is chosen per number, and checks read from the emulator's
own record of the calls it was asked to place.

Calling hours are real here (the service's clock is the wall clock): every
recipient gets an explicit `timezone` in which it is now mid-afternoon, so a
campaign runs whatever the hour the suite runs at. The calling-hours rules
themselves are unit-tested with a fake clock.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from e2e_harness import EventSubscriber, wait_until
from pymongo import MongoClient

from callbot.common.contracts import CampaignCompleted
from callbot.common.messaging import Topology
from callbot.emulator.records import CallRecord
from callbot.testkit.stack import API_KEY, CallbotStack, StackConfig

AGENT: dict[str, Any] = {
    "name": "Acme",
    "greeting": "Hi {recipient.name}, this is Ava from {agent.name}. What is your full name?",
    "prompt": "You are Ava from {agent.name}; ask for the callee's full name.",
    "data_to_fill": [{"name": "full_name", "description": "full name", "type": "string"}],
    "completion_message": "Thank you, I have everything. Goodbye!",
    "goodbye_message": "Thanks for your time. Goodbye!",
    "voicemail_message": "Hello, this is Ava from {agent.name}. We will call back.",
    "max_no_input": 1,
    "machine_detection": "sync",
    "record": False,
}

# Emulated calls play this many times faster than real time.
SPEED = 100
# The callee's side per kind of recipient (emulator scenarios).
SCENARIOS: dict[str, dict[str, Any]] = {
    "answers": {"outcome": "answered", "steps": [{"say": "Yes, this is Ada Lovelace."}]},
    "busy": {"outcome": "busy"},
    "no_answer": {"outcome": "no-answer", "ring_s": 30},
    "voicemail": {"outcome": "answered", "answered_by": "machine_end_beep"},
    "hangs_up": {"outcome": "answered", "steps": [{"hangup": {}}]},
    "fails": {"outcome": "failed"},
    "opts_out": {"outcome": "answered", "steps": [{"say": "Please don't call me again."}]},
}

# kind of recipient -> (final state, attempts made) under campaign_body's retry policy
EXPECTED: dict[str, tuple[str, int]] = {
    "answers": ("completed", 1),
    "busy": ("failed", 2),
    "no_answer": ("failed", 3),
    "voicemail": ("failed", 2),
    "hangs_up": ("completed", 1),  # data incomplete, no retry allowed: the call was held
    "fails": ("failed", 1),
    "opts_out": ("skipped", 1),  # asked mid-call not to be called again: never retried
}


def afternoon_zone() -> str:
    """A fixed-offset zone in which it is now between 12:00 and 15:00."""
    hour = datetime.now(UTC).hour
    offset = (13 - hour + 12) % 24 - 12  # local = UTC + offset, near 13:00
    # Etc/GMT signs are inverted: Etc/GMT-3 is UTC+3.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def number(block: int, index: int) -> str:
    """A distinct valid New York number per test block (0-99) and index."""
    return f"+1212{200 + block:03d}{index:04d}"


@dataclass
class CampaignStack:
    stack: CallbotStack
    api: httpx.Client
    db: Any
    subscriber: EventSubscriber

    def put_agent(self, agent_id: str, **overrides: Any) -> None:
        response = self.api.put(f"/v1/agents/{agent_id}", json={**AGENT, **overrides})
        response.raise_for_status()

    def script(self, to: str, kind: str) -> None:
        self.stack.emulator.control.add_scenario(
            {"name": f"{kind}-{to}", "to": to, "speed": SPEED, "ring_s": 2, **SCENARIOS[kind]}
        )

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self.api.post("/v1/campaigns", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def campaign(self, campaign_id: str) -> dict[str, Any]:
        response = self.api.get(f"/v1/campaigns/{campaign_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def wait_state(self, campaign_id: str, state: str, timeout_s: float = 180) -> dict[str, Any]:
        return wait_until(
            lambda: (c := self.campaign(campaign_id))["state"] == state and c,
            f"campaign {campaign_id} {state}",
            timeout_s,
            explain=lambda: f"; now {self.campaign(campaign_id)}",
        )

    def wait_quiet(self, campaign_id: str, timeout_s: float = 60) -> dict[str, Any]:
        """Counters once no call of the campaign is in progress."""
        return wait_until(
            lambda: (c := self.campaign(campaign_id))["counters"]["in_progress"] == 0 and c,
            f"campaign {campaign_id} without calls in progress",
            timeout_s,
        )

    def attempts(self, campaign_id: str) -> list[dict[str, Any]]:
        return list(self.db.attempts.find({"campaign_id": campaign_id}).sort("row", 1))

    def calls_to(self, numbers: set[str]) -> list[CallRecord]:
        """The emulator's record of every call placed to these numbers."""
        return [call for call in self.stack.emulator.control.calls() if call.to in numbers]

    def completed_event(self, campaign_id: str) -> CampaignCompleted:
        def probe() -> list[CampaignCompleted]:
            return [
                event
                for event in self.subscriber.events()
                if isinstance(event, CampaignCompleted) and event.campaign_id == campaign_id
            ]

        return wait_until(probe, f"campaign.completed of {campaign_id}", 30)[0]


def campaign_body(
    agent_id: str, recipients: list[dict[str, Any]], **overrides: Any
) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "schedule": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
        "pacing": {"calls_per_second": 8, "max_concurrent": 10},
        "retry": {
            "no_answer": {"max_attempts": 3, "delay_s": 1},
            "busy": {"max_attempts": 2, "delay_s": 1},
            "failed": {"max_attempts": 1, "delay_s": 1},
            "voicemail": {"max_attempts": 2, "delay_s": 1},
            "data_incomplete": {"max_attempts": 1, "delay_s": 1},
        },
        "recipients": recipients,
        **overrides,
    }


def double_dials(calls: list[CallRecord], attempts: list[dict[str, Any]]) -> list[str]:
    """Numbers called more or less often than their attempt counts tries, or
    twice at once: each with what was seen."""
    found: list[str] = []
    placed = Counter(call.to for call in calls)
    for attempt in attempts:
        tries = len(attempt["tries"])
        if placed.get(attempt["to"], 0) != tries and attempt["state"] != "skipped":
            found.append(f"{attempt['to']}: {placed.get(attempt['to'], 0)} calls, {tries} tries")
    by_number: dict[str, list[CallRecord]] = defaultdict(list)
    for call in calls:
        by_number[call.to].append(call)
    for to, records in by_number.items():
        records.sort(key=lambda call: call.created_at)
        for earlier, later in itertools.pairwise(records):
            if earlier.ended_at is None or real_end(earlier) > later.created_at:
                found.append(f"{to}: called again while a call was live")
    return found


def assert_no_double_dials(calls: list[CallRecord], attempts: list[dict[str, Any]]) -> None:
    """Each number was called exactly as often as its attempt counts tries,
    and never twice at once."""
    assert not (found := double_dials(calls, attempts)), found


def real_end(call: CallRecord) -> datetime:
    """When a call ended in real time: `created_at` is the real moment the
    emulator took the call; `ended_at` counts emulated seconds from it."""
    assert call.ended_at is not None
    return call.created_at + (call.ended_at - call.created_at) / SPEED


def max_calls_in_any_second(calls: list[CallRecord]) -> int:
    """The most calls the emulator saw created within any 1 s window."""
    times = sorted(call.created_at for call in calls)
    window = timedelta(seconds=1)
    most = 0
    start = 0
    for end, moment in enumerate(times):
        while times[start] <= moment - window:
            start += 1
        most = max(most, end - start + 1)
    return most


@contextmanager
def running_campaign_stack(
    log_dir: Path,
    rabbitmq_url: str,
    mongodb_url: str,
    *,
    replicas: int = 2,
    lease_s: int = 60,
    outcome_timeout_s: int = 3600,
) -> Iterator[CampaignStack]:
    namespace = f"c{uuid.uuid4().hex[:10]}"
    stack = CallbotStack(
        StackConfig(
            rabbitmq_url=rabbitmq_url,
            mongodb_url=mongodb_url,
            namespace=namespace,
            log_dir=log_dir,
            campaigns_replicas=replicas,
            extra_env={
                "CAMPAIGNS_LEASE_S": str(lease_s),
                "CAMPAIGNS_OUTCOME_TIMEOUT_S": str(outcome_timeout_s),
            },
        )
    )
    subscriber = EventSubscriber(
        rabbitmq_url, Topology(namespace).events_exchange, ("campaign.completed",)
    )
    mongo: MongoClient[dict[str, Any]] = MongoClient(mongodb_url, tz_aware=True)
    try:
        stack.start()
        subscriber.start()
        with httpx.Client(
            base_url=stack.gateway_url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=60,
        ) as api:
            yield CampaignStack(stack, api, mongo[f"callbot_{namespace}"], subscriber)
    finally:
        subscriber.stop()
        stack.stop()
        mongo.close()
        stack.delete_topology()
