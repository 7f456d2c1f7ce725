"""What MongoDB can store, checked where free-form data enters callbot.

A call's `recipient` and `variables`, an agent's `mcp` settings and the values
a model extracts during a call are stored as they come. JSON allows more than
BSON does: integers beyond 8 bytes, `NaN`, lone UTF-16 surrogates (`"\\ud800"`),
NUL bytes in keys, `$`-prefixed keys (which MongoDB refuses in updates of an
existing document), any depth. Such a value would reach persistence and fail
there, a poison message and a lost record; checked at the door, it is a 422
that names the offending path. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Levels of objects and arrays inside one free-form value. MongoDB allows 100 for
# a whole document; the value sits a few levels down in its call or agent.
MAX_DEPTH = 32
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_problem(value: object, path: str = "") -> str | None:
    """Why MongoDB could not store `value` as it is, naming the place inside it
    (`a.b[2]`) when it is not `value` itself; None when it can."""
    found = _problem(value, path, depth=0)
    if found is None:
        return None
    where, problem = found
    return f"{where}: {problem}" if where else problem


def _problem(value: object, path: str, depth: int) -> tuple[str, str] | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return None
        return path, f"{value} is outside the 8-byte integer range MongoDB stores"
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"{value} is not a finite number")
    if isinstance(value, str):
        return _text_problem(value, path)
    if depth >= MAX_DEPTH:
        return path, f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, list | tuple):
        items = (_problem(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value))
        return next((found for found in items if found), None)
    if isinstance(value, dict):
        for key, item in value.items():
            found = _key_problem(key, path) or _problem(
                item, f"{path}.{key}" if path else str(key), depth + 1
            )
            if found:
                return found
        return None
    return path, f"{type(value).__name__} is not a JSON value"


def _key_problem(key: object, path: str) -> tuple[str, str] | None:
    if not isinstance(key, str):
        return path, f"key {key!r} is not a string"
    if "\x00" in key:
        return path, f"key {key!r} contains a NUL character"
    if key.startswith("$"):
        return path, f"key {key!r} starts with '$', which MongoDB reserves for operators"
    return _text_problem(key, path)


def _text_problem(text: str, path: str) -> tuple[str, str] | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return path, f"{text!r} holds a lone UTF-16 surrogate, which is not valid Unicode"
    return None


def well_formed_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD, for text callbot did
    not write (a model's reply) and must store, publish and log."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


def _storable_object(value: dict[str, Any]) -> dict[str, Any]:
    problem = storable_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# A free-form JSON object a client gives, which is stored as it is.
StorableObject = Annotated[dict[str, Any], AfterValidator(_storable_object)]
