"""The storable check against BSON itself: what it passes, pymongo can encode."""

from __future__ import annotations

import bson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbot.common.storable import MAX_DEPTH, storable_problem, well_formed_text

# Any text, lone surrogates included (Python's JSON parser makes them from "\ud800").
TEXT = st.text(st.characters(exclude_categories=()), max_size=8)
JSON_LIKE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=20,
)


def bson_encodes(value: object) -> bool:
    try:
        bson.encode({"value": value})
    except (bson.errors.InvalidDocument, OverflowError, UnicodeEncodeError):
        return False
    return True


@settings(max_examples=500, database=None)
@given(JSON_LIKE)
def test_what_passes_the_check_bson_encodes_and_what_bson_refuses_the_check_names(
    value: object,
) -> None:
    problem = storable_problem(value)
    if problem is None:
        assert bson_encodes(value)
    if not bson_encodes(value):
        assert problem is not None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"a": [1, 2**63]}, "a[1]: 9223372036854775808 is outside the 8-byte integer range"),
        ({"a": -(2**63)}, None),
        ({"a": float("nan")}, "a: nan is not a finite number"),
        ({"a": {"b": "x\udfff"}}, "a.b: 'x\\udfff' holds a lone UTF-16 surrogate"),
        ({"$set": 1}, "key '$set' starts with '$'"),
        ({"a": {"b\x00": 1}}, "a: key 'b\\x00' contains a NUL character"),
        ({"a.b": "c", "": 0}, None),
        ({"a": b"bytes"}, "a: bytes is not a JSON value"),
    ],
)
def test_the_problem_names_the_place(value: object, problem: str | None) -> None:
    found = storable_problem(value)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(problem)


def test_nesting_is_bounded() -> None:
    deep: object = "leaf"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert storable_problem(deep) is None
    assert (
        storable_problem([deep]) == "[0]" * MAX_DEPTH + f": nested deeper than {MAX_DEPTH} levels"
    )


@given(TEXT)
def test_well_formed_text_replaces_only_lone_surrogates(text: str) -> None:
    mended = well_formed_text(text)
    mended.encode("utf-8")
    assert len(mended) == len(text)
    assert all(m == t or m == "\ufffd" for m, t in zip(mended, text, strict=True))
