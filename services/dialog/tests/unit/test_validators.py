"""Values are validated, and normalised, by the field's type."""

from __future__ import annotations

import pytest

from callbot.common.agents import DataField
from callbot.dialog.domain.validators import (
    Accepted,
    Rejected,
    extract_value,
    region_of,
    validate_value,
)


def field(kind: str, **extra: object) -> DataField:
    return DataField.model_validate({"name": "x", "description": "thing", "type": kind, **extra})


@pytest.mark.parametrize(
    ("kind", "given", "stored"),
    [
        ("email", "Ada@Example.com", "ada@example.com"),
        ("email", "ada at example dot com", "ada@example.com"),
        ("email", "ada.lovelace @ example .co.uk", "ada.lovelace@example.co.uk"),
        ("phone", "(415) 555-2671", "+14155552671"),
        ("phone", "+44 20 7946 0958", "+442079460958"),
        ("phone", "four one five five five five two six seven one", "+14155552671"),
        ("number", "42", 42),
        ("number", "1,250.5", 1250.5),
        ("number", 7, 7),
        ("date", "1990-03-04", "1990-03-04"),
        ("date", "March 4th, 1990", "1990-03-04"),
        ("boolean", "yes please", True),
        ("boolean", "nope", False),
        ("boolean", True, True),
        ("string", "  Grace Hopper ", "Grace Hopper"),
    ],
)
def test_valid_values_are_normalised(kind: str, given: object, stored: object) -> None:
    assert validate_value(field(kind), given, "US") == Accepted(stored)


@pytest.mark.parametrize(
    ("kind", "given"),
    [
        ("email", "ada at example"),
        ("email", "not an email"),
        ("phone", "12345"),
        ("phone", "call me maybe"),
        ("number", "a few"),
        ("number", True),
        ("number", 2**63),  # beyond MongoDB's 8-byte integers
        ("number", "99999999999999999999"),
        ("number", float("inf")),
        ("number", float("nan")),
        ("string", "Ada \ud800"),  # a lone surrogate: not Unicode MongoDB can store
        ("date", "next tuesday"),
        ("date", "2024-02-30"),
        ("boolean", "maybe"),
        ("boolean", "yes and no"),
        ("string", ""),
        ("string", "x" * 501),
    ],
)
def test_invalid_values_are_rejected_with_a_reason(kind: str, given: object) -> None:
    verdict = validate_value(field(kind), given, "US")
    assert isinstance(verdict, Rejected)
    assert verdict.reason


def test_choice_matches_one_choice_word() -> None:
    plan = field("choice", choices=("basic", "premium"))
    assert validate_value(plan, "I'd like premium please", None) == Accepted("premium")
    assert validate_value(plan, "PREMIUM", None) == Accepted("premium")
    assert isinstance(validate_value(plan, "basic or premium", None), Rejected)
    assert isinstance(validate_value(plan, "gold", None), Rejected)


def test_phone_without_region_needs_an_international_number() -> None:
    assert isinstance(validate_value(field("phone"), "415 555 2671", None), Rejected)
    assert validate_value(field("phone"), "+1 415 555 2671", None) == Accepted("+14155552671")


@pytest.mark.parametrize(
    ("kind", "utterance", "candidate"),
    [
        ("email", "sure, it's ada at example dot com thanks", "ada@example.com"),
        ("phone", "my number is 415 555 2671 thanks", "415 555 2671"),
        ("number", "about 12 I think", "12"),
        ("string", "Sure, it's Grace Hopper.", "Grace Hopper"),
        ("string", "my full name is Ada Lovelace", "Ada Lovelace"),
        ("string", "Ada", "Ada"),
    ],
)
def test_extraction_from_free_speech(kind: str, utterance: str, candidate: object) -> None:
    assert extract_value(field(kind), utterance, "US") == candidate


def test_region_comes_from_the_language_tag() -> None:
    assert region_of("en-US") == "US"
    assert region_of("fr-fr") == "FR"
    assert region_of("en") is None
