"""Issue 14: `POST /v1/calls` with an `Idempotency-Key` places one call, however
many times (and however concurrently) it is sent; a key whose call Twilio
refused may be used again; a key sent with another request is refused. On
the real processes: gateway, persistence (which claims the key in MongoDB)
and the Twilio emulator, whose record of created calls is what "one call" is
counted on."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from e2e_harness import E2EStack, agent_definition

pytestmark = pytest.mark.e2e

CONCURRENT = 8


def _call(to: str) -> dict[str, Any]:
    return {"agent_id": "idem", "to": to, "recipient": {"name": "Ada"}}


async def _post_at_once(e2e: E2EStack, body: dict[str, Any], key: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(
        base_url=e2e.stack.gateway_url, headers=dict(e2e.api.headers), timeout=60.0
    ) as client:
        return await asyncio.gather(
            *(
                client.post("/v1/calls", json=body, headers={"Idempotency-Key": key})
                for _ in range(CONCURRENT)
            )
        )


def _created_at_twilio(e2e: E2EStack, to: str) -> list[str]:
    return [record.sid for record in e2e.emulator.calls() if record.to == to]


def test_concurrent_retries_with_one_key_place_one_call(e2e: E2EStack) -> None:
    e2e.put_agent("idem", agent_definition("idem"))
    to = "+14155550181"
    responses = asyncio.run(_post_at_once(e2e, _call(to), "order-17-reminder"))

    assert [r.status_code for r in responses] == [201] * CONCURRENT, [r.text for r in responses]
    answers = {(r.json()["call_id"], r.json()["call_sid"]) for r in responses}
    assert len(answers) == 1, answers
    [(call_id, call_sid)] = answers
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count("true") == CONCURRENT - 1
    assert _created_at_twilio(e2e, to) == [call_sid]

    # A retry later answers with the same call, and still places none.
    again = e2e.api.post(
        "/v1/calls", json=_call(to), headers={"Idempotency-Key": "order-17-reminder"}
    )
    assert (again.status_code, again.json()["call_id"]) == (201, call_id)
    assert again.headers["Idempotent-Replayed"] == "true"
    # Another key is another call; no key at all is a call each time.
    other = e2e.api.post("/v1/calls", json=_call(to), headers={"Idempotency-Key": "order-18"})
    plain = e2e.api.post("/v1/calls", json=_call(to))
    assert other.status_code == plain.status_code == 201
    assert len({call_id, other.json()["call_id"], plain.json()["call_id"]}) == 3
    assert len(_created_at_twilio(e2e, to)) == 3
    for sid in _created_at_twilio(e2e, to):
        e2e.emulator.wait_for_call(sid, 90)


def test_a_key_whose_call_twilio_refused_may_be_used_again(e2e: E2EStack) -> None:
    e2e.put_agent("idem", agent_definition("idem"))
    to = "+14155550182"
    e2e.emulator.fail_next_creates({"status": 400, "code": 21215, "message": "Geo permission"})
    refused = e2e.api.post("/v1/calls", json=_call(to), headers={"Idempotency-Key": "k-refused"})
    assert refused.status_code == 400, refused.text
    assert _created_at_twilio(e2e, to) == []

    placed = e2e.api.post("/v1/calls", json=_call(to), headers={"Idempotency-Key": "k-refused"})
    assert placed.status_code == 201, placed.text
    assert "Idempotent-Replayed" not in placed.headers
    assert _created_at_twilio(e2e, to) == [placed.json()["call_sid"]]
    e2e.emulator.wait_for_call(placed.json()["call_sid"], 90)


def test_a_key_reused_for_another_request_is_422_and_places_nothing(e2e: E2EStack) -> None:
    e2e.put_agent("idem", agent_definition("idem"))
    to, other_to = "+14155550184", "+14155550185"
    first = e2e.api.post("/v1/calls", json=_call(to), headers={"Idempotency-Key": "k-reused"})
    assert first.status_code == 201, first.text

    # Another number, or the same number for another person: not a retry.
    for body in (_call(other_to), {**_call(to), "recipient": {"name": "Grace"}}):
        reused = e2e.api.post("/v1/calls", json=body, headers={"Idempotency-Key": "k-reused"})
        assert reused.status_code == 422, reused.text
        assert first.json()["call_id"] in reused.json()["detail"]
        assert "send a new key for a new call" in reused.json()["detail"]
    assert _created_at_twilio(e2e, other_to) == []
    assert _created_at_twilio(e2e, to) == [first.json()["call_sid"]]

    # The same request spelled differently (key order, a default given) is a retry.
    retry = e2e.api.post(
        "/v1/calls",
        json={"recipient": {"name": "Ada"}, "variables": {}, "to": to, "agent_id": "idem"},
        headers={"Idempotency-Key": "k-reused"},
    )
    assert (retry.status_code, retry.json()["call_id"]) == (201, first.json()["call_id"])
    assert retry.headers["Idempotent-Replayed"] == "true"
    e2e.emulator.wait_for_call(first.json()["call_sid"], 90)


def test_a_malformed_key_is_422_naming_the_header(e2e: E2EStack) -> None:
    response = e2e.api.post(
        "/v1/calls", json=_call("+14155550183"), headers={"Idempotency-Key": "two words"}
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["header", "idempotency-key"]
