"""Checking and normalising the values an agent collects, by the field's type.

`validate_value` judges a value the model recorded; `extract_value` finds a
candidate in a free-speech utterance (the deterministic policy) and hands it
to the same validation. Values are stored JSON-friendly: str, int, float or
bool; dates as ISO strings, phone numbers as E.164.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from callbot.common.agents import DataField
from callbot.common.storable import storable_problem
from callbot.dialog.domain.extractors import (
    extract_boolean,
    extract_choice,
    extract_date,
    extract_email,
    extract_number,
    extract_phone,
    extract_string,
    is_email_shaped,
)
from callbot.dialog.domain.utterance import clip

MAX_STRING_LENGTH = 500

_NUMBER = re.compile(
    r"[-+]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]{1,30})(?:\.[0-9]{1,15})?|[-+]?\.[0-9]{1,15}"
)


@dataclass(frozen=True)
class Accepted:
    value: Any


@dataclass(frozen=True)
class Rejected:
    reason: str


Validation = Accepted | Rejected


def region_of(language: str) -> str | None:
    """The phone-number region implied by a language tag: `en-US` → `US`."""
    _, _, region = language.partition("-")
    return region.upper() if len(region) == 2 else None


def validate_value(field: DataField, value: object, region: str | None) -> Validation:
    """Accept `value` for `field` (normalised) or say why it is not acceptable."""
    validation = _validate(field, value, region)
    if isinstance(validation, Accepted):
        problem = storable_problem(validation.value)
        if problem:
            return Rejected(f"cannot be stored: {problem}")
    return validation


def _validate(field: DataField, value: object, region: str | None) -> Validation:
    if value is None or (isinstance(value, str) and not value.strip()):
        return Rejected(f"no value was given for {field.description}")
    if field.type == "boolean":
        return _boolean(value)
    if field.type == "number":
        return _number(value)
    text = clip(str(value))
    match field.type:
        case "email":
            return _email(text)
        case "phone":
            return _phone(text, region)
        case "date":
            return _date(text)
        case "choice":
            return _choice(text, field.choices or ())
        case _:
            if len(text) > MAX_STRING_LENGTH:
                return Rejected(f"longer than {MAX_STRING_LENGTH} characters")
            return Accepted(text)


def extract_value(field: DataField, utterance: str, region: str | None) -> object:
    """The part of `utterance` that answers `field`, for `validate_value` to judge.

    Returns the (clipped) utterance itself when nothing better is found, so the
    rejection reason still describes what was heard.
    """
    text = clip(utterance)
    found: object
    match field.type:
        case "email":
            found = extract_email(text)
        case "phone":
            found = extract_phone(text, region)
        case "number":
            found = extract_number(text)
        case "date":
            found = extract_date(text)
        case "boolean":
            found = extract_boolean(text)
        case "choice":
            found = extract_choice(text, field.choices or ())
        case _:
            found = extract_string(text, is_name=_is_name(field))
    return text if found is None else found


def _is_name(field: DataField) -> bool:
    return "name" in field.name.lower() or "name" in field.description.lower()


def _email(text: str) -> Validation:
    candidate = text if is_email_shaped(text.lower()) else extract_email(text)
    if candidate is None or not is_email_shaped(candidate.lower()):
        return Rejected(f"{_quoted(text)} is not a valid email address")
    try:
        checked = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        return Rejected(f"{_quoted(text)} is not a valid email address ({exc})")
    return Accepted(checked.normalized.lower())


def _quoted(text: str) -> str:
    """The value as quoted in a rejection: a long one cut (the model reads it)."""
    return repr(text if len(text) <= 80 else text[:80] + "...")


def _phone(text: str, region: str | None) -> Validation:
    try:
        number = phonenumbers.parse(extract_phone(text, region) or text, region)
    except phonenumbers.NumberParseException:
        return Rejected(f"{_quoted(text)} is not a phone number")
    if not phonenumbers.is_valid_number(number):
        return Rejected(f"{_quoted(text)} is not a valid phone number")
    return Accepted(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _number(value: object) -> Validation:
    if isinstance(value, bool):
        return Rejected(f"{value!r} is not a number")
    if isinstance(value, int | float):
        return Accepted(value)
    text = str(value).strip()
    found = text if len(text) <= 50 and _NUMBER.fullmatch(text) else extract_number(text)
    if found is None or not _NUMBER.fullmatch(found):
        return Rejected(f"{_quoted(text)} is not a number")
    parsed = float(found.replace(",", ""))
    return Accepted(int(parsed) if parsed.is_integer() and "." not in found else parsed)


def _date(text: str) -> Validation:
    if len(text) <= 10:
        try:
            return Accepted(date.fromisoformat(text).isoformat())
        except ValueError:
            pass
    found = extract_date(text)
    if found is not None:
        try:
            return Accepted(date.fromisoformat(found).isoformat())
        except ValueError:
            return Rejected(f"{_quoted(text)} is not a date on the calendar")
    return Rejected(f"{_quoted(text)} is not a date (expected YYYY-MM-DD)")


def _boolean(value: object) -> Validation:
    if isinstance(value, bool):
        return Accepted(value)
    found = extract_boolean(str(value))
    if found is not None:
        return Accepted(found)
    return Rejected(f"{_quoted(str(value))} is neither yes nor no")


def _choice(text: str, choices: tuple[str, ...]) -> Validation:
    exact = [choice for choice in choices if choice.lower() == text.lower()]
    found = exact[0] if exact else extract_choice(text, choices)
    if found is not None:
        return Accepted(found)
    return Rejected(f"{_quoted(text)} is not one of {', '.join(choices)}")
