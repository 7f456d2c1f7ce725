"""The read API's queries over calls and recipients: filters to MongoDB
conditions, newest-first keyset pagination with an opaque cursor, projections
and CSV rows. Pure: no I/O.

Pagination is by the key `(time, _id)` in descending order (`created_at` for
calls, `last_call_at` for recipients). A cursor is the key of the last item
served, so the next page is everything strictly older: calls written while a
client pages are newer than its cursor and never shift, duplicate or hide an
item of a page still to come.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from callbot.common.calls import CallDocument

Document = dict[str, Any]

CALL_FIELDS: frozenset[str] = frozenset(
    field.alias if field.alias else name for name, field in CallDocument.model_fields.items()
) - {"call_id"} | {"from"}


class BadQuery(ValueError):
    """A query parameter that cannot be used; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def encode_cursor(at: datetime, key: str) -> str:
    raw = json.dumps([at.isoformat(), key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, key = json.loads(raw)
        return datetime.fromisoformat(at), str(key)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadQuery("cursor", "not a cursor this API gave; pass next_cursor as it came") from exc


def older_than(time_field: str, cursor: str | None) -> Document:
    """The condition for the items after `cursor` in (time, _id) descending order."""
    if cursor is None:
        return {time_field: {"$ne": None}}
    at, key = decode_cursor(cursor)
    return {"$or": [{time_field: {"$lt": at}}, {time_field: at, "_id": {"$lt": key}}]}


def calls_condition(
    *,
    agent_id: str | None,
    to: str | None,
    status: str | None,
    ended_by: str | None,
    data_complete: bool | None,
    created_from: datetime | None,
    created_to: datetime | None,
    cursor: str | None,
) -> Document:
    if created_from and created_to and created_from > created_to:
        raise BadQuery("created_from", "created_from is after created_to")
    if to is not None and agent_id is None:
        raise BadQuery("to", "filtering by number needs agent_id (a number is per agent)")
    equal = {
        "agent_id": agent_id,
        "to": to,
        "status": status,
        "ended_by": ended_by,
        "data_complete": data_complete,
    }
    condition: Document = {key: value for key, value in equal.items() if value is not None}
    window: Document = {}
    if created_from is not None:
        window["$gte"] = created_from
    if created_to is not None:
        window["$lt"] = created_to
    parts = [condition, older_than("created_at", cursor)]
    if window:
        parts.append({"created_at": window})
    return {"$and": parts}


def requested_fields(fields: str | None) -> list[str] | None:
    """`fields=status,data_collected`: those fields (and `call_id`, always)."""
    if fields is None:
        return None
    names = [name.strip() for name in fields.split(",") if name.strip()]
    unknown = sorted(set(names) - CALL_FIELDS)
    if unknown or not names:
        raise BadQuery("fields", f"unknown fields {unknown}; choose among {sorted(CALL_FIELDS)}")
    return names


def mongo_projection(names: list[str] | None) -> Document | None:
    """What to read: the fields asked for, and the pagination key."""
    return None if names is None else dict.fromkeys([*names, "created_at"], 1)


def call_item(document: Document, names: list[str] | None) -> Document:
    """A stored call as the API shows it (`call_id`, not `_id`)."""
    if names is None:
        shown: Document = CallDocument.model_validate(document).model_dump(
            mode="json", by_alias=True
        )
        return shown
    item = {"call_id": document["_id"], **{n: document[n] for n in names if n in document}}
    return dict(json.loads(json.dumps(item, default=_json_default)))


def recipients_condition(
    *,
    agent_id: str,
    opted_out: bool | None,
    data_complete: bool | None,
    missing: str | None,
    cursor: str | None,
) -> Document:
    condition: Document = {"agent_id": agent_id}
    if opted_out is not None:
        condition["opted_out.at"] = {"$ne": None} if opted_out else None
    if data_complete is not None:
        condition["data_complete"] = data_complete
    if missing is not None:
        condition["missing_fields"] = missing  # the multikey index's equality
    return {"$and": [condition, older_than("last_call_at", cursor)]}


def call_csv_header(data_fields: Iterable[str]) -> list[str]:
    return [
        "call_id",
        "created_at",
        "to",
        "status",
        "ended_by",
        "duration_s",
        "data_complete",
        "summary",
        *(f"data.{name}" for name in data_fields),
    ]


def call_csv_row(document: Document, data_fields: Iterable[str]) -> list[str]:
    data = document.get("data_collected") or {}
    plain = [
        document.get("_id"),
        document.get("created_at"),
        document.get("to"),
        document.get("status"),
        document.get("ended_by"),
        document.get("duration_s"),
        document.get("data_complete"),
        document.get("summary"),
    ]
    return [csv_cell(value) for value in (*plain, *(data.get(name) for name in data_fields))]


def recipient_csv_header(data_fields: Iterable[str]) -> list[str]:
    return [
        "agent_id",
        "to",
        "total_calls",
        "answered_calls",
        "last_call_at",
        "last_ended_by",
        "opted_out_at",
        "data_complete",
        *(f"data.{name}" for name in data_fields),
    ]


def recipient_csv_row(document: Document, data_fields: Iterable[str]) -> list[str]:
    data = document.get("data_collected") or {}
    last = document.get("last_outcome") or {}
    opted_out = document.get("opted_out") or {}
    plain = [
        document.get("agent_id"),
        document.get("to"),
        document.get("total_calls"),
        document.get("answered_calls"),
        document.get("last_call_at"),
        last.get("ended_by"),
        opted_out.get("at"),
        document.get("data_complete"),
    ]
    values = (
        (data.get(name) or {}).get("value") if isinstance(data.get(name), dict) else None
        for name in data_fields
    )
    return [csv_cell(value) for value in (*plain, *values)]


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, default=_json_default)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot show {type(value).__name__}")
