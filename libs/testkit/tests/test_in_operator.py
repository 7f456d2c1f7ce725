"""The stand-in's `$in` and `$nin`, answered from a set, match exactly the
documents mongomock's own operators match, for every kind of value a field
and a list can hold."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeAlias

import mongomock
import pytest
from bson import ObjectId

from callbot.testkit.mongo_standin import in_operator

Collection: TypeAlias = "mongomock.Collection[dict[str, Any]]"

AT = datetime(2026, 12, 7, tzinfo=UTC)
OID = ObjectId("656f0a000000000000000001")
FIELD_VALUES: list[Any] = [
    1, 1.0, True, 0, False, "1", "a", None, AT, OID,
    [1, "a"], [], [[1]], {"k": 1}, [{"k": 1}], 2**40,
]  # fmt: skip
LISTS: list[list[Any]] = [
    [1],
    ["a", "b"],
    [None],
    [True],
    [0.0, "x"],
    [AT, OID],
    [2**40, "1"],
    [],
    [re.compile("^a")],
    [{"k": 1}],
    [[1, "a"]],
]


@pytest.fixture
def documents() -> Collection:
    collection: Collection = mongomock.MongoClient().db.values
    collection.insert_many([{"_id": n, "v": value} for n, value in enumerate(FIELD_VALUES)])
    collection.insert_one({"_id": "missing"})
    return collection


@contextmanager
def set_operator() -> Iterator[None]:
    """The stand-in's operators installed, mongomock's own put back after."""
    operators = mongomock.filtering._filterer_inst._operator_map
    original = dict(operators)
    in_operator.install()
    try:
        assert operators["$in"] is in_operator.in_operator
        yield
    finally:
        operators.update(original)


def matching(collection: Collection, condition: dict[str, Any]) -> list[Any]:
    return sorted((str(d["_id"]) for d in collection.find(condition)), key=str)


@pytest.mark.parametrize("listed", LISTS, ids=repr)
@pytest.mark.parametrize("operator", ["$in", "$nin"])
def test_the_same_documents_match_as_with_mongomocks_operator(
    documents: Collection, listed: list[Any], operator: str
) -> None:
    condition = {"v": {operator: listed}}
    expected = matching(documents, condition)
    with set_operator():
        assert matching(documents, condition) == expected


def test_a_list_changed_between_commands_is_hashed_again(documents: Collection) -> None:
    with set_operator():
        listed: list[Any] = ["a"]
        assert matching(documents, {"v": {"$in": listed}}) == ["10", "6"]
        listed[:] = [AT]
        in_operator.forget()  # what the engine does before each command
        assert matching(documents, {"v": {"$in": listed}}) == ["8"]
