"""The stand-in's unique indexes, checked by lookup, refuse exactly what
MongoDB refuses: on insert, on update, after deletes and key changes, sparse
and compound keys, embedded documents, and indexes made after the data."""

from __future__ import annotations

from typing import Any, TypeAlias

import mongomock
import pytest

from callbot.testkit.mongo_standin import unique_index

Collection: TypeAlias = "mongomock.Collection[dict[str, Any]]"


@pytest.fixture
def attempts() -> Collection:
    unique_index.install()
    collection: Collection = mongomock.MongoClient().db.attempts
    collection.create_index("line", unique=True, sparse=True)
    return collection


def test_a_second_document_with_the_same_key_is_refused() -> None:
    unique_index.install()
    attempts: Collection = mongomock.MongoClient().db.rows
    attempts.create_index([("campaign_id", 1), ("row", 1)], unique=True)
    attempts.insert_one({"_id": 1, "campaign_id": "c", "row": 1})
    attempts.insert_one({"_id": 2, "campaign_id": "c", "row": 2})
    attempts.insert_one({"_id": 3, "campaign_id": "d", "row": 1})
    with pytest.raises(mongomock.DuplicateKeyError):
        attempts.insert_one({"_id": 4, "campaign_id": "c", "row": 1})
    assert attempts.count_documents({}) == 3


def test_an_update_onto_a_taken_key_is_refused_and_rolled_back(attempts: Collection) -> None:
    attempts.insert_many([{"_id": 1, "line": "+1"}, {"_id": 2, "line": "+2"}])
    with pytest.raises(mongomock.DuplicateKeyError):
        attempts.update_one({"_id": 2}, {"$set": {"line": "+1"}})
    assert attempts.find_one({"_id": 2}) == {"_id": 2, "line": "+2"}
    # An update that keeps its own key is no conflict with itself.
    attempts.update_one({"_id": 1}, {"$set": {"line": "+1", "state": "x"}})


def test_a_key_freed_by_a_delete_or_a_change_can_be_taken(attempts: Collection) -> None:
    attempts.insert_many([{"_id": 1, "line": "+1"}, {"_id": 2, "line": "+2"}])
    attempts.delete_one({"_id": 1})
    attempts.insert_one({"_id": 3, "line": "+1"})
    attempts.update_one({"_id": 2}, {"$unset": {"line": ""}})
    attempts.insert_one({"_id": 4, "line": "+2"})
    with pytest.raises(mongomock.DuplicateKeyError):
        attempts.insert_one({"_id": 5, "line": "+2"})


def test_sparse_indexes_skip_documents_without_the_field(attempts: Collection) -> None:
    attempts.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 3, "line": None}])
    assert attempts.count_documents({}) == 3


def test_a_compound_key_missing_a_field_counts_it_as_null() -> None:
    unique_index.install()
    attempts: Collection = mongomock.MongoClient().db.rows
    attempts.create_index([("campaign_id", 1), ("row", 1)], unique=True)
    attempts.insert_one({"_id": 1, "campaign_id": "c"})
    with pytest.raises(mongomock.DuplicateKeyError):
        attempts.insert_one({"_id": 2, "campaign_id": "c", "row": None})


def test_embedded_documents_compare_whole() -> None:
    unique_index.install()
    collection: Collection = mongomock.MongoClient().db.things
    collection.create_index("where", unique=True)
    collection.insert_one({"_id": 1, "where": {"zone": "NY", "n": 1}})
    collection.insert_one({"_id": 2, "where": {"zone": "NY", "n": 2}})
    with pytest.raises(mongomock.DuplicateKeyError):
        collection.insert_one({"_id": 3, "where": {"zone": "NY", "n": 1}})


def test_an_index_made_after_the_data_sees_the_data() -> None:
    unique_index.install()
    collection: Collection = mongomock.MongoClient().db.late
    collection.insert_many([{"_id": 1, "k": "a"}, {"_id": 2, "k": "b"}])
    collection.create_index("k", unique=True)
    with pytest.raises(mongomock.DuplicateKeyError):
        collection.insert_one({"_id": 3, "k": "a"})
    collection.drop_indexes()
    collection.insert_one({"_id": 4, "k": "a"})  # no index: allowed
    with pytest.raises(mongomock.DuplicateKeyError):
        collection.create_index("k", unique=True)


def test_partial_and_multikey_indexes_keep_the_scanning_check() -> None:
    unique_index.install()
    collection: Collection = mongomock.MongoClient().db.partial
    collection.create_index("key", unique=True, partialFilterExpression={"key": {"$exists": True}})
    collection.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 3, "key": "k"}])
    with pytest.raises(mongomock.DuplicateKeyError):
        collection.insert_one({"_id": 4, "key": "k"})
    tags: Collection = mongomock.MongoClient().db.tags
    tags.create_index("tags", unique=True)
    tags.insert_one({"_id": 1, "tags": ["a", "b"]})
    tags.insert_one({"_id": 2, "tags": ["c"]})
    assert tags.count_documents({}) == 2
