"""The read API against MongoDB: pagination, every filter, projections, CSV,
and the 422 that names a bad filter. Calls are written through persistence's
own store (the one writer), as the services would."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from gateway_harness import api_headers, demo_agent, gateway_settings, running_gateway
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.agents import DataField
from callbot.common.calls import CallDocument, EndedBy, Turn
from callbot.common.contracts import CallCreated, CallEnding, CallStatusChanged, CallTurnRecorded
from callbot.common.messaging import Topology
from callbot.common.mongo import AGENTS, CALLS, RECIPIENTS, Document
from callbot.common.settings import Settings
from callbot.persistence.recipient_store import MongoRecipientStore
from callbot.persistence.store import MongoCallStore

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
FIELDS = (
    DataField(name="full_name", description="full name", type="string"),
    DataField(name="email", description="email address", type="email"),
)


@pytest.fixture
async def client(
    settings: Settings, topology: Topology, mongo_db: AsyncDatabase[Document]
) -> AsyncIterator[httpx.AsyncClient]:
    await mongo_db[AGENTS].insert_one(demo_agent(data_to_fill=FIELDS).to_document())
    async with running_gateway(gateway_settings(settings)) as (_app, client):
        yield client


def _created(n: int, at: datetime, agent_id: str = "survey", to: str | None = None) -> CallCreated:
    return CallCreated(
        call_id=f"call-{n:05d}",
        occurred_at=at,
        call_sid=f"CA{n:032d}",
        agent_id=agent_id,
        agent_version=3,
        data_fields=tuple(field.name for field in FIELDS),
        to=to or f"+1415555{n % 10000:04d}",
        from_="+15005550006",
    )


async def _finish(
    calls: MongoCallStore,
    n: int,
    at: datetime,
    *,
    status: str = "completed",
    ended_by: EndedBy = "system_complete",
    data: dict[str, Any] | None = None,
    complete: bool = False,
    agent_id: str = "survey",
    to: str | None = None,
) -> CallDocument:
    call_id = f"call-{n:05d}"
    await calls.apply(_created(n, at, agent_id, to))
    if data is not None:
        turn = Turn(seq=0, role="assistant", content="Hello", at=at)
        await calls.apply(
            CallTurnRecorded(
                call_id=call_id, turns=(turn,), data_collected=data, data_complete=complete
            )
        )
    await calls.apply(CallEnding(call_id=call_id, ended_by=ended_by))
    await calls.apply(
        CallStatusChanged(call_id=call_id, call_sid=f"CA{n:032d}", status=status, occurred_at=at)
    )
    stored = await calls.get(call_id)
    assert stored is not None
    return stored


async def _walk(client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> list[Document]:
    items: list[Document] = []
    cursor: str | None = None
    while True:
        page = await client.get(
            path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=api_headers()
        )
        assert page.status_code == 200, page.text
        body = page.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_pagination_walks_1000_calls_without_duplicates_or_gaps_while_calls_are_written(
    client: httpx.AsyncClient, mongo_db: AsyncDatabase[Document]
) -> None:
    calls = MongoCallStore(mongo_db[CALLS])
    await calls.ensure_indexes()
    # Three calls per second: ties on created_at are broken by call_id.
    for n in range(1000):
        await calls.apply(_created(n, T0 + timedelta(seconds=n // 3)))
    stored = [f"call-{n:05d}" for n in range(1000)]
    expected = sorted(stored, key=lambda cid: (int(cid[5:]) // 3, cid), reverse=True)

    seen: list[str] = []
    cursor: str | None = None
    written = 1000
    while True:
        params: dict[str, Any] = {"limit": 70, "fields": "status"}
        if cursor:
            params["cursor"] = cursor
        page = await client.get("/v1/calls", params=params, headers=api_headers())
        assert page.status_code == 200, page.text
        body = page.json()
        seen.extend(item["call_id"] for item in body["items"])
        assert all(set(item) == {"call_id", "status"} for item in body["items"])
        # New calls are written while the client pages (they start later).
        for _ in range(3):
            await calls.apply(_created(written, T0 + timedelta(hours=1, seconds=written)))
            written += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert len(set(seen)) == 1000


async def test_each_call_filter(
    client: httpx.AsyncClient, mongo_db: AsyncDatabase[Document]
) -> None:
    calls = MongoCallStore(mongo_db[CALLS])
    ada = "+14155550100"
    await _finish(calls, 1, T0, data={"full_name": "Ada"}, to=ada)
    await _finish(
        calls,
        2,
        T0 + timedelta(minutes=1),
        data={"full_name": "Ada L", "email": "a@example.com"},
        complete=True,
        to=ada,
    )
    await _finish(calls, 3, T0 + timedelta(minutes=2), status="no-answer", ended_by="no-answer")
    await _finish(calls, 4, T0 + timedelta(minutes=3), ended_by="opt_out", to=ada)
    await _finish(calls, 5, T0 + timedelta(minutes=4), agent_id="other", to=ada)

    async def ids(**params: Any) -> list[str]:
        return [item["call_id"] for item in await _walk(client, "/v1/calls", params)]

    assert await ids() == ["call-00005", "call-00004", "call-00003", "call-00002", "call-00001"]
    assert await ids(agent_id="other") == ["call-00005"]
    assert await ids(agent_id="survey", to=ada) == ["call-00004", "call-00002", "call-00001"]
    assert await ids(status="no-answer") == ["call-00003"]
    assert await ids(ended_by="opt_out") == ["call-00004"]
    assert await ids(data_complete="true") == ["call-00002"]
    assert await ids(
        created_from=(T0 + timedelta(minutes=1)).isoformat(),
        created_to=(T0 + timedelta(minutes=3)).isoformat(),
    ) == ["call-00003", "call-00002"]
    whole = (await _walk(client, "/v1/calls", {"agent_id": "survey", "limit": 2}))[0]
    assert (whole["call_id"], whole["ended_by"], whole["from"]) == (
        "call-00004",
        "opt_out",
        "+15005550006",
    )

    one = await client.get("/v1/calls/call-00002", headers=api_headers())
    assert one.json()["data_collected"] == {"full_name": "Ada L", "email": "a@example.com"}

    for path, headers in (("/v1/calls.csv", {}), ("/v1/calls", {"Accept": "text/csv"})):
        exported = await client.get(
            path, params={"agent_id": "survey"}, headers={**api_headers(), **headers}
        )
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [row["call_id"] for row in rows] == [
            "call-00004",
            "call-00003",
            "call-00002",
            "call-00001",
        ]
        assert [c for c in rows[0] if c.startswith("data.")] == ["data.full_name", "data.email"]
        assert (rows[2]["data.full_name"], rows[2]["data.email"]) == ("Ada L", "a@example.com")
        assert rows[3]["data.email"] == ""


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"status": "exploded"}, "status"),
        ({"ended_by": "tired"}, "ended_by"),
        ({"data_complete": "maybe"}, "data_complete"),
        ({"created_from": "yesterday"}, "created_from"),
        (
            {"created_from": "2026-04-02T00:00:00Z", "created_to": "2026-04-01T00:00:00Z"},
            "created_from",
        ),
        ({"to": "+14155550100"}, "to"),
        ({"fields": "status,password"}, "fields"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": "0"}, "limit"),
    ],
)
async def test_a_bad_call_filter_is_a_422_naming_it(
    client: httpx.AsyncClient, params: dict[str, str], param: str
) -> None:
    response = await client.get("/v1/calls", params=params, headers=api_headers())
    assert response.status_code == 422, response.text
    assert ["query", param] in [error["loc"] for error in response.json()["detail"]]


async def test_recipients_filters_one_recipient_and_csv(
    client: httpx.AsyncClient, mongo_db: AsyncDatabase[Document]
) -> None:
    calls = MongoCallStore(mongo_db[CALLS])
    recipients = MongoRecipientStore(mongo_db[RECIPIENTS])
    await recipients.ensure_indexes()
    finished = [
        await _finish(calls, 1, T0, data={"full_name": "Ada"}, to="+14155550101"),
        await _finish(
            calls,
            2,
            T0 + timedelta(minutes=1),
            data={"full_name": "Bo", "email": "b@example.com"},
            complete=True,
            to="+14155550102",
        ),
        await _finish(calls, 3, T0 + timedelta(minutes=2), ended_by="opt_out", to="+14155550103"),
        await _finish(calls, 4, T0 + timedelta(minutes=3), agent_id="other", to="+14155550101"),
    ]
    for call in finished:
        await recipients.record_call(call)

    async def numbers(**params: Any) -> list[str]:
        items = await _walk(client, "/v1/recipients", {"agent_id": "survey", **params})
        return [item["to"] for item in items]

    assert await numbers() == ["+14155550103", "+14155550102", "+14155550101"]
    assert await numbers(limit=1) == ["+14155550103", "+14155550102", "+14155550101"]
    assert await numbers(opted_out="true") == ["+14155550103"]
    assert await numbers(opted_out="false") == ["+14155550102", "+14155550101"]
    assert await numbers(data_complete="true") == ["+14155550102"]
    assert await numbers(missing="email") == ["+14155550103", "+14155550101"]
    assert await numbers(missing="full_name") == ["+14155550103"]
    assert await numbers(missing="phone") == []  # the agent never asked for it

    one = await client.get("/v1/recipients/survey/+14155550101", headers=api_headers())
    assert one.status_code == 200, one.text
    body = one.json()
    assert (body["total_calls"], body["data_collected"]["full_name"]["value"]) == (1, "Ada")
    assert body["data_collected"]["full_name"]["call_id"] == "call-00001"
    never = await client.get("/v1/recipients/survey/+19995550000", headers=api_headers())
    assert never.status_code == 404

    exported = await client.get(
        "/v1/recipients.csv", params={"agent_id": "survey"}, headers=api_headers()
    )
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [row["to"] for row in rows] == ["+14155550103", "+14155550102", "+14155550101"]
    assert [c for c in rows[0] if c.startswith("data.")] == ["data.full_name", "data.email"]
    assert (rows[1]["data.full_name"], rows[1]["data.email"]) == ("Bo", "b@example.com")
    assert rows[0]["opted_out_at"] != ""

    for params, param in (
        ({}, "agent_id"),
        ({"agent_id": "survey", "missing": "Not A Field"}, "missing"),
        ({"agent_id": "survey", "opted_out": "perhaps"}, "opted_out"),
    ):
        bad = await client.get("/v1/recipients", params=params, headers=api_headers())
        assert bad.status_code == 422, bad.text
        assert ["query", param] in [error["loc"] for error in bad.json()["detail"]]
    no_agent = await client.get("/v1/calls.csv", headers=api_headers())
    assert no_agent.status_code == 422
    assert no_agent.json()["detail"][0]["loc"] == ["query", "agent_id"]
