"""`$in` and `$nin` by hashing instead of by scanning the listed values.

mongomock tests each document against `{field: {"$in": values}}` by checking
every listed value for a regular expression and then searching the list:
len(values) steps per document. The campaigns service looks up 1,000 rows'
keys at a time against every row already stored, so a 100,000-row upload
cost the stand-in 10^10 steps and timed out. This hashes the listed values
once per query (the same list object is passed for every document) and
answers each document with set lookups; the engine calls `forget()` before
each command, so a list is never served from an earlier command's set.
Lists this cannot hash exactly (a regular expression, an embedded document
or array among the values) keep mongomock's own operator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mongomock import filtering

InOperator = Callable[[Any, Any], bool]

_original_in: InOperator = filtering._in_op
# mongomock's marker for a field the document lacks (imported there, not exported).
_MISSING: Any = filtering.NOTHING  # type: ignore[attr-defined]
# The last list hashed, kept alive so its id is not reused: (list, its set or None).
_last: list[tuple[Any, frozenset[Any] | None]] = []


def _hashed(values: list[Any] | tuple[Any, ...]) -> frozenset[Any] | None:
    if _last and _last[0][0] is values:
        return _last[0][1]
    hashed: frozenset[Any] | None
    if any(isinstance(value, (dict, list, tuple, *filtering._RE_TYPES)) for value in values):
        hashed = None
    else:
        try:
            hashed = frozenset(values)
        except TypeError:
            hashed = None
    _last[:] = [(values, hashed)]
    return hashed


def forget() -> None:
    """Drop the hashed list: the next query's lists are hashed afresh."""
    _last.clear()


def in_operator(document_value: Any, values: Any) -> bool:
    """mongomock's `_in_op`, answered from a set where the values allow it."""
    if not isinstance(values, (list, tuple)):
        return _original_in(document_value, values)
    hashed = _hashed(values)
    if hashed is None:
        return _original_in(document_value, values)
    if document_value is _MISSING:
        return None in hashed
    candidates = document_value if isinstance(document_value, (list, tuple)) else [document_value]
    for candidate in candidates:
        try:
            if candidate in hashed:
                return True
        except TypeError:  # an unhashable value (an embedded document) equals no listed one
            continue
    return False


def install() -> None:
    """Make mongomock's filter use it (its operator table is built once, at import)."""
    operators: dict[str, InOperator] = filtering._filterer_inst._operator_map
    operators["$in"] = in_operator
    operators["$nin"] = lambda document_value, values: not in_operator(document_value, values)
