"""Unique indexes checked by lookup instead of by scanning.

mongomock checks a unique index after every insert and every modifying update
by running a query over the whole collection, so writing n documents costs
O(n²): 2,000 campaign rows took two minutes on a loaded machine, and the
suite's campaign tests timed out on it. This keeps, per unique index, a map
from key to the `_id` of the document last written with that key, and checks
a write by one lookup.

The map may hold stale entries (a document deleted, or updated to another
key); a hit is therefore confirmed against the stored document. It holds an
entry for every live document's key because every write that creates or
changes a document passes here, and a map is built by one scan the first
time an index is used. Indexes this cannot answer exactly (a partial filter,
an array value: multikey) keep mongomock's own check.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any

import bson
import mongomock.collection
from mongomock import DuplicateKeyError, helpers

Document = dict[str, Any]
# A mongomock collection: what this reads of it (`_store`, `_iter_documents`)
# is mongomock's untyped inside.
Collection = Any

get_value_by_dot: Callable[[Document, str], Any] = helpers.get_value_by_dot

# id(index spec) -> (the spec, kept alive so its id is not reused; key -> _id)
_maps: dict[int, tuple[Document, dict[Hashable, Any]]] = {}


class _NotExact(Exception):
    """A value this map cannot compare as MongoDB would (an array)."""


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list):
        raise _NotExact
    if isinstance(value, dict):
        # Embedded documents compare field by field, in order, as their BSON does.
        return ("document", bson.encode(value))
    return ("value", value)


def _key(index: Document, document: Document) -> tuple[Hashable, ...] | None:
    """The document's key in the index; None where a sparse index skips it."""
    values = []
    for field, _direction in index["key"]:
        try:
            values.append(get_value_by_dot(document, field))
        except KeyError:
            values.append(None)
    if index.get("sparse") and all(value is None for value in values):
        return None
    return tuple(_hashable(value) for value in values)


def _map_of(collection: Collection, index: Document, writing: Any) -> dict[Hashable, Any]:
    """The index's map, built (without the document being written) on first use."""
    held = _maps.get(id(index))
    if held is not None and held[0] is index:
        return held[1]
    mapping: dict[Hashable, Any] = {}
    for document in collection._store.documents:
        if document["_id"] == writing:
            continue
        key = _key(index, document)
        if key is not None:
            mapping[key] = document["_id"]
    _maps[id(index)] = (index, mapping)
    return mapping


def _holds(collection: Collection, index: Document, doc_id: Any, key: tuple[Hashable, ...]) -> bool:
    """Whether the document `doc_id` is stored and still has `key`."""
    if doc_id not in collection._store:
        return False
    stored: Document = collection._store[doc_id]
    return _key(index, stored) == key


def ensure_uniques(self: Collection, new_data: Document) -> None:
    """mongomock's `_ensure_uniques`, by lookup: `new_data` is already stored."""
    for index in self._store.indexes.values():
        if not index.get("unique"):
            continue
        if index.get("partialFilterExpression") is not None:
            _scanning_check_one(self, index, new_data)
            continue
        try:
            key = _key(index, new_data)
        except _NotExact:
            _scanning_check_one(self, index, new_data)
            continue
        if key is None:
            continue
        mapping = _map_of(self, index, new_data["_id"])
        holder = mapping.get(key)
        if holder is not None and holder != new_data["_id"] and _holds(self, index, holder, key):
            raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)
        mapping[key] = new_data["_id"]


def _scanning_check_one(collection: Collection, index: Document, new_data: Document) -> None:
    """mongomock's own check (a query over the collection), for one index."""
    match: Document = {}
    for field, _direction in index["key"]:
        try:
            match[field] = get_value_by_dot(new_data, field)
        except KeyError:
            match[field] = None
    if index.get("sparse") and all(value is None for value in match.values()):
        return
    partial = index.get("partialFilterExpression")
    query = match if partial is None else {"$and": [partial, match]}
    matching: Iterator[Document] = collection._iter_documents(query)
    if sum(1 for _ in matching) > 1:
        raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)


def install() -> None:
    """Make every mongomock collection in this process check by lookup."""
    patched: Any = mongomock.collection.Collection
    patched._ensure_uniques = ensure_uniques
