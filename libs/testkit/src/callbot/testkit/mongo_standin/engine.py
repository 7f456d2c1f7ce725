"""MongoDB commands executed against mongomock's in-memory engine.

Every command runs to completion on the event loop before the next starts,
so each is atomic, as single-document operations are on a real server.
What the engine cannot do is refused with a clear error (code 238,
NotImplemented), never answered approximately.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import mongomock
from bson.int64 import Int64
from mongomock.filtering import filter_applies as _untyped_filter_applies
from pymongo import ReturnDocument

from callbot.testkit.mongo_standin import in_operator, unique_index

Document = dict[str, Any]

MAX_WIRE_VERSION = 21  # MongoDB 7.0
DEFAULT_FIRST_BATCH = 101

filter_applies: Callable[[Document, Document], bool] = _untyped_filter_applies


class CommandError(Exception):
    def __init__(self, code: int, code_name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.code_name = code_name

    def reply(self) -> Document:
        return {"ok": 0.0, "errmsg": str(self), "code": self.code, "codeName": self.code_name}


def not_implemented(what: str) -> CommandError:
    return CommandError(238, "NotImplemented", f"the MongoDB stand-in does not support {what}")


@dataclass
class _OpenCursor:
    namespace: str
    remaining: Iterator[Document]


@dataclass
class Engine:
    client: mongomock.MongoClient[Document] = field(default_factory=mongomock.MongoClient)
    _cursors: dict[int, _OpenCursor] = field(default_factory=dict)
    _cursor_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _connection_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        unique_index.install()
        in_operator.install()

    def execute(self, command: Document) -> Document:
        in_operator.forget()
        name = next(iter(command), "")
        handler = self._handlers().get(name)
        try:
            if handler is None:
                raise CommandError(59, "CommandNotFound", f"no such command: '{name}'")
            return {**handler(command), "ok": 1.0}
        except CommandError as error:
            return error.reply()
        except mongomock.OperationFailure as error:
            return CommandError(error.code or 2, "BadValue", str(error)).reply()
        except NotImplementedError as error:
            return not_implemented(str(error) or name).reply()

    def _handlers(self) -> dict[str, Callable[[Document], Document]]:
        return {
            "hello": self._hello,
            "isMaster": self._hello,
            "ismaster": self._hello,
            "ping": lambda _: {},
            "buildInfo": self._build_info,
            "buildinfo": self._build_info,
            "endSessions": lambda _: {},
            "listDatabases": self._list_databases,
            "listCollections": self._list_collections,
            "create": self._create,
            "drop": self._drop,
            "dropDatabase": self._drop_database,
            "createIndexes": self._create_indexes,
            "listIndexes": self._list_indexes,
            "dropIndexes": self._drop_indexes,
            "insert": self._insert,
            "update": self._update,
            "delete": self._delete,
            "find": self._find,
            "getMore": self._get_more,
            "killCursors": self._kill_cursors,
            "findAndModify": self._find_and_modify,
            "count": self._count,
            "distinct": self._distinct,
            "aggregate": self._aggregate,
        }

    # --- Handshake and server ---------------------------------------------

    def _hello(self, _command: Document) -> Document:
        return {
            "helloOk": True,
            "isWritablePrimary": True,
            "ismaster": True,
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "maxMessageSizeBytes": 48_000_000,
            "maxWriteBatchSize": 100_000,
            "localTime": datetime.now(UTC),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": next(self._connection_ids),
            "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
        }

    def _build_info(self, _command: Document) -> Document:
        return {"version": "7.0.0-standin", "versionArray": [7, 0, 0, 0], "bits": 64}

    # --- Databases, collections, indexes ----------------------------------

    def _database(self, command: Document) -> mongomock.Database[Document]:
        return self.client[command["$db"]]

    def _collection(self, command: Document) -> mongomock.Collection[Document]:
        name = next(iter(command.values()))
        if not isinstance(name, str):
            raise CommandError(
                73, "InvalidNamespace", f"collection name must be a string: {name!r}"
            )
        return self._database(command)[name]

    def _exists(self, command: Document) -> bool:
        return next(iter(command.values())) in self._database(command).list_collection_names()

    def _list_databases(self, _command: Document) -> Document:
        names = self.client.list_database_names()
        databases = [{"name": name, "sizeOnDisk": 0, "empty": False} for name in names]
        return {"databases": databases, "totalSize": 0}

    def _list_collections(self, command: Document) -> Document:
        database = self._database(command)
        infos = [
            {"name": name, "type": "collection", "options": {}, "info": {"readOnly": False}}
            for name in database.list_collection_names()
        ]
        wanted = command.get("filter") or {}
        matching = [info for info in infos if filter_applies(wanted, info)]
        return self._first_batch(f"{database.name}.$cmd.listCollections", matching, command)

    def _create(self, command: Document) -> Document:
        if self._exists(command):
            raise CommandError(48, "NamespaceExists", f"collection {command['create']} exists")
        self._database(command).create_collection(command["create"])
        return {}

    def _drop(self, command: Document) -> Document:
        database = self._database(command)
        if self._exists(command):
            database.drop_collection(command["drop"])
        return {"ns": f"{database.name}.{command['drop']}"}

    def _drop_database(self, command: Document) -> Document:
        self.client.drop_database(command["$db"])
        return {"dropped": command["$db"]}

    def _create_indexes(self, command: Document) -> Document:
        created_collection = not self._exists(command)
        collection = self._collection(command)
        before = len(collection.index_information())
        for spec in command["indexes"]:
            options = {key: value for key, value in spec.items() if key not in ("key", "v", "ns")}
            collection.create_index(list(spec["key"].items()), **options)
        return {
            "createdCollectionAutomatically": created_collection,
            "numIndexesBefore": before,
            "numIndexesAfter": len(collection.index_information()),
        }

    def _list_indexes(self, command: Document) -> Document:
        if not self._exists(command):
            raise CommandError(
                26, "NamespaceNotFound", f"ns does not exist: {command['listIndexes']}"
            )
        collection = self._collection(command)
        indexes = [
            {"v": 2, "key": dict(info["key"]), "name": name}
            | {key: value for key, value in info.items() if key not in ("key", "v")}
            for name, info in collection.index_information().items()
        ]
        return self._first_batch(collection.full_name, indexes, command)

    def _drop_indexes(self, command: Document) -> Document:
        collection = self._collection(command)
        before = len(collection.index_information())
        if command["index"] == "*":
            collection.drop_indexes()
        elif isinstance(command["index"], str):
            collection.drop_index(command["index"])
        else:
            collection.drop_index(list(command["index"].items()))
        return {"nIndexesWas": before}

    # --- Writes -------------------------------------------------------------

    def _insert(self, command: Document) -> Document:
        collection = self._collection(command)

        def insert(_index: int, document: Document) -> int:
            collection.insert_one(document)
            return 1

        return _write_batch(command, command.get("documents", []), insert)

    def _update(self, command: Document) -> Document:
        collection = self._collection(command)
        upserted: list[Document] = []
        modified = 0

        def update(index: int, spec: Document) -> int:
            nonlocal modified
            result = _apply_update(collection, spec)
            modified += result.modified_count
            if result.upserted_id is not None:
                upserted.append({"index": index, "_id": result.upserted_id})
                return 1
            return int(result.matched_count)

        reply = _write_batch(command, command.get("updates", []), update)
        reply["nModified"] = modified
        if upserted:
            reply["upserted"] = upserted
        return reply

    def _delete(self, command: Document) -> Document:
        collection = self._collection(command)

        def delete(_index: int, spec: Document) -> int:
            _refuse_unsupported_options(spec, "collation")
            if spec.get("limit", 0) == 1:
                return int(collection.delete_one(spec.get("q", {})).deleted_count)
            return int(collection.delete_many(spec.get("q", {})).deleted_count)

        return _write_batch(command, command.get("deletes", []), delete)

    def _find_and_modify(self, command: Document) -> Document:
        _refuse_unsupported_options(command, "collation", "hint")
        collection = self._collection(command)
        query = command.get("query") or {}
        sort = _sort_spec(command.get("sort"))
        projection = command.get("fields") or None
        existed = collection.find_one(query, {"_id": 1}) is not None
        if command.get("remove"):
            value = collection.find_one_and_delete(query, projection=projection, sort=sort)
            return {"lastErrorObject": {"n": int(existed)}, "value": value}
        update = command.get("update")
        if update is None:
            raise CommandError(9, "FailedToParse", "findAndModify needs update or remove")
        upsert = bool(command.get("upsert", False))
        after = bool(command.get("new"))
        returned = ReturnDocument.AFTER if after else ReturnDocument.BEFORE
        if _is_replacement(update):
            value = collection.find_one_and_replace(
                query, update, projection, sort, upsert, returned
            )
        else:
            value = collection.find_one_and_update(
                query,
                update,
                projection,
                sort,
                upsert,
                returned,
                array_filters=command.get("arrayFilters"),
            )
        last_error: Document = {"n": int(existed or upsert), "updatedExisting": existed}
        if upsert and not existed and value is not None and "_id" in value:
            last_error["upserted"] = value["_id"]
        return {"lastErrorObject": last_error, "value": value}

    # --- Reads and cursors ---------------------------------------------------

    def _find(self, command: Document) -> Document:
        _refuse_unsupported_options(command, "collation", "hint", "min", "max", "tailable")
        collection = self._collection(command)
        cursor = collection.find(command.get("filter") or {}, command.get("projection") or None)
        sort = _sort_spec(command.get("sort"))
        if sort:
            cursor = cursor.sort(sort)
        if command.get("skip"):
            cursor = cursor.skip(command["skip"])
        limit = int(command.get("limit", 0))
        if limit:
            cursor = cursor.limit(abs(limit))
        single_batch = bool(command.get("singleBatch")) or limit < 0
        return self._first_batch(collection.full_name, cursor, command, single_batch=single_batch)

    def _aggregate(self, command: Document) -> Document:
        _refuse_unsupported_options(command, "collation", "hint", "explain")
        if not isinstance(command["aggregate"], str):
            raise not_implemented("database-level aggregation")
        collection = self._collection(command)
        documents = collection.aggregate(command.get("pipeline", []))
        return self._first_batch(collection.full_name, documents, command.get("cursor") or {})

    def _count(self, command: Document) -> Document:
        cursor = self._collection(command).find(command.get("query") or {})
        if command.get("skip"):
            cursor = cursor.skip(command["skip"])
        if command.get("limit"):
            cursor = cursor.limit(abs(command["limit"]))
        return {"n": sum(1 for _ in cursor)}

    def _distinct(self, command: Document) -> Document:
        collection = self._collection(command)
        return {"values": collection.distinct(command["key"], command.get("query") or {})}

    def _first_batch(
        self,
        namespace: str,
        documents: Iterable[Document],
        options: Document,
        *,
        single_batch: bool = False,
    ) -> Document:
        remaining = iter(documents)
        batch = list(itertools.islice(remaining, _batch_size(options, DEFAULT_FIRST_BATCH)))
        cursor_id = 0
        rest = iter(list(remaining))  # materialised: later writes must not change an open cursor
        if not single_batch and (peek := next(rest, None)) is not None:
            cursor_id = next(self._cursor_ids)
            self._cursors[cursor_id] = _OpenCursor(namespace, itertools.chain([peek], rest))
        return {"cursor": {"firstBatch": batch, "id": Int64(cursor_id), "ns": namespace}}

    def _get_more(self, command: Document) -> Document:
        cursor_id = int(command["getMore"])
        cursor = self._cursors.get(cursor_id)
        if cursor is None:
            raise CommandError(43, "CursorNotFound", f"cursor id {cursor_id} not found")
        size = _batch_size(command, 0)
        batch = list(itertools.islice(cursor.remaining, size) if size else cursor.remaining)
        if (peek := next(cursor.remaining, None)) is None:
            del self._cursors[cursor_id]
            cursor_id = 0
        else:
            cursor.remaining = itertools.chain([peek], cursor.remaining)
        return {"cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": cursor.namespace}}

    def _kill_cursors(self, command: Document) -> Document:
        killed: list[int] = []
        not_found: list[int] = []
        for cursor_id in command.get("cursors", []):
            found = self._cursors.pop(int(cursor_id), None) is not None
            (killed if found else not_found).append(cursor_id)
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": not_found,
            "cursorsAlive": [],
            "cursorsUnknown": [],
        }

    # --- Snapshots (the --state-file of a restartable stand-in) -------------

    def snapshot(self) -> Iterator[Document]:
        """One document per collection: its indexes and every document."""
        for database_name in self.client.list_database_names():
            database = self.client[database_name]
            for name in database.list_collection_names():
                collection = database[name]
                indexes = [
                    {"key": dict(info["key"])}
                    | {key: value for key, value in info.items() if key not in ("key", "v")}
                    | {"name": index_name}
                    for index_name, info in collection.index_information().items()
                    if index_name != "_id_"
                ]
                yield {
                    "database": database_name,
                    "collection": name,
                    "indexes": indexes,
                    "documents": list(collection.find()),
                }

    def restore(self, entries: Iterable[Document]) -> None:
        for entry in entries:
            collection = self.client[entry["database"]][entry["collection"]]
            self.execute(
                {
                    "createIndexes": entry["collection"],
                    "indexes": entry["indexes"],
                    "$db": entry["database"],
                }
            )
            if entry["documents"]:
                collection.insert_many(entry["documents"])


def _batch_size(options: Document, default: int) -> int:
    size = options.get("batchSize")
    return default if size is None else int(size)


def _sort_spec(sort: Document | None) -> list[tuple[str, Any]] | None:
    if not sort:
        return None
    if "$natural" in sort:
        raise not_implemented("$natural sort")
    return list(sort.items())


def _is_replacement(update: Document | list[Document]) -> bool:
    if isinstance(update, list):
        raise not_implemented("update pipelines")
    return not any(key.startswith("$") for key in update)


def _refuse_unsupported_options(command: Document, *names: str) -> None:
    for name in names:
        if command.get(name):
            raise not_implemented(f"the {name!r} option")


def _apply_update(collection: mongomock.Collection[Document], spec: Document) -> Any:
    _refuse_unsupported_options(spec, "collation", "hint")
    query, update = spec.get("q", {}), spec["u"]
    upsert = bool(spec.get("upsert", False))
    if _is_replacement(update):
        if spec.get("multi"):
            raise CommandError(9, "FailedToParse", "multi update is not allowed with a replacement")
        return collection.replace_one(query, update, upsert=upsert)
    method = collection.update_many if spec.get("multi") else collection.update_one
    return method(query, update, upsert=upsert, array_filters=spec.get("arrayFilters"))


def _write_batch(
    command: Document, operations: list[Document], apply: Callable[[int, Document], int]
) -> Document:
    """Apply each write; failures become writeErrors, and an ordered batch stops at the first."""
    count = 0
    errors: list[Document] = []
    for index, operation in enumerate(operations):
        try:
            count += apply(index, operation)
        except (mongomock.OperationFailure, CommandError) as error:
            code = error.code if isinstance(error, CommandError) else (error.code or 2)
            errors.append({"index": index, "code": code, "errmsg": str(error)})
            if command.get("ordered", True):
                break
    reply: Document = {"n": count}
    if errors:
        reply["writeErrors"] = errors
    return reply
