"""Every filter of the read API is served by an index persistence declares.

Everywhere: the filter's equality fields, then its sort, are a prefix of one
declared index (MongoDB's rule for an index that both selects and sorts).
With a real MongoDB server (`realmongo`; skipped on the wire stand-in, which
has no query planner): the planner's winning plan for each filter scans that
index, never the collection, and the plan is printed for docs/data-model.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.mongo import CALLS, RECIPIENTS, Document
from callbot.gateway.domain.result_queries import calls_condition, recipients_condition
from callbot.gateway.result_documents import CALL_ORDER, RECIPIENT_ORDER
from callbot.persistence.recipient_store import RECIPIENT_INDEXES, MongoRecipientStore
from callbot.persistence.store import CALL_INDEXES, MongoCallStore

NO_CALL_FILTER: dict[str, Any] = {
    "agent_id": None,
    "to": None,
    "status": None,
    "ended_by": None,
    "data_complete": None,
    "created_from": None,
    "created_to": None,
    "cursor": None,
}
NO_RECIPIENT_FILTER: dict[str, Any] = {
    "opted_out": None,
    "data_complete": None,
    "missing": None,
    "cursor": None,
}

# What GET /v1/calls and GET /v1/recipients accept, one filter (or the pair
# the API requires together) at a time.
CALL_FILTERS: dict[str, dict[str, Any]] = {
    "none": {},
    "agent_id": {"agent_id": "survey"},
    "agent_id+to": {"agent_id": "survey", "to": "+14155550101"},
    "status": {"status": "completed"},
    "ended_by": {"ended_by": "opt_out"},
    "agent_id+data_complete": {"agent_id": "survey", "data_complete": True},
}
RECIPIENT_FILTERS: dict[str, dict[str, Any]] = {
    "agent_id": {},
    "opted_out": {"opted_out": True},
    "data_complete": {"data_complete": False},
    "missing": {"missing": "email"},
}


def call_condition(name: str) -> Document:
    return calls_condition(**{**NO_CALL_FILTER, **CALL_FILTERS[name]})


def recipient_condition(name: str) -> Document:
    return recipients_condition(
        agent_id="survey", **{**NO_RECIPIENT_FILTER, **RECIPIENT_FILTERS[name]}
    )


def equality_fields(condition: Mapping[str, Any]) -> list[str]:
    """The fields a query matches by equality (its first `$and` part)."""
    return list(condition["$and"][0])


def serves(
    index_keys: Sequence[tuple[str, int]], equal: list[str], order: list[tuple[str, int]]
) -> bool:
    """An index selects and sorts when it starts with the equality fields (any
    order) and goes on with the sort keys, all in their direction or all reversed."""
    fields = [name for name, _ in index_keys]
    if set(fields[: len(equal)]) != set(equal):
        return False
    rest = list(index_keys[len(equal) : len(equal) + len(order)])
    reversed_order = [(name, -direction) for name, direction in order]
    return bool(rest) and rest in (order[: len(rest)], reversed_order[: len(rest)])


def index_keys(indexes: Sequence[Any]) -> Iterator[list[tuple[str, int]]]:
    for index in indexes:
        yield list(index.document["key"].items())


@pytest.mark.parametrize("name", CALL_FILTERS)
def test_each_call_filter_has_an_index_that_selects_and_sorts(name: str) -> None:
    equal = equality_fields(call_condition(name))
    assert any(serves(keys, equal, CALL_ORDER) for keys in index_keys(CALL_INDEXES)), (
        f"GET /v1/calls filter {name} ({equal}, sorted {CALL_ORDER}) has no index"
    )


@pytest.mark.parametrize("name", RECIPIENT_FILTERS)
def test_each_recipient_filter_has_an_index_that_selects_and_sorts(name: str) -> None:
    equal = equality_fields(recipient_condition(name))
    assert any(serves(keys, equal, RECIPIENT_ORDER) for keys in index_keys(RECIPIENT_INDEXES)), (
        f"GET /v1/recipients filter {name} ({equal}, sorted {RECIPIENT_ORDER}) has no index"
    )


def winning_stages(plan: Mapping[str, Any]) -> list[str]:
    """The stage names of a winning plan, outermost first."""
    stages = [str(plan.get("stage"))]
    for child in (plan.get("inputStage"), *plan.get("inputStages", ())):
        if child:
            stages += winning_stages(child)
    return stages


@pytest.mark.mongo
@pytest.mark.realmongo
async def test_the_query_planner_scans_an_index_for_every_filter(
    mongo_db: AsyncDatabase[Document],
) -> None:
    await MongoCallStore(mongo_db[CALLS]).ensure_indexes()
    await MongoRecipientStore(mongo_db[RECIPIENTS]).ensure_indexes()
    queries = [
        ("calls", name, mongo_db[CALLS], call_condition(name), CALL_ORDER) for name in CALL_FILTERS
    ] + [
        ("recipients", name, mongo_db[RECIPIENTS], recipient_condition(name), RECIPIENT_ORDER)
        for name in RECIPIENT_FILTERS
    ]
    for collection, name, documents, condition, order in queries:
        explained = await documents.find(condition).sort(order).limit(100).explain()
        plan = explained["queryPlanner"]["winningPlan"]
        plan = plan.get("queryPlan", plan)  # the slot-based engine nests it
        stages = winning_stages(plan)
        print(f"explain {collection} {name}: {json.dumps(stages)}")
        assert "COLLSCAN" not in stages, (collection, name, plan)
        assert "IXSCAN" in stages, (collection, name, plan)
        assert "SORT" not in stages, f"{collection} {name} sorts in memory: {plan}"
