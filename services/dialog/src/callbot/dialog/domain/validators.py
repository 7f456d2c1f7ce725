"""Checking and normalising the values an agent collects, by the field's type.

`validate_value` judges a value the model recorded; `extract_value` finds a
candidate in a free-speech utterance (the deterministic policy) and hands it
to the same validation. Values are stored JSON-friendly: str, int, float or
bool; dates as ISO strings, phone numbers as E.164.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import phonenumbers

from callbot.common.agents import DataField
from callbot.common.storable import storable_problem

MAX_STRING_LENGTH = 500

_EMAIL = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}")
_SPOKEN_AT = re.compile(r"\s+at\s+")
_SPOKEN_DOT = re.compile(r"\s+dot\s+")
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
_WORD = re.compile(r"[a-z']+")
_YES = frozenset({"yes", "yeah", "yep", "yup", "true", "correct", "right", "sure", "affirmative"})
_NO = frozenset({"no", "nope", "nah", "false", "incorrect", "negative"})
_SPOKEN_DATE_FORMATS = ("%B %d %Y", "%d %B %Y", "%b %d %Y", "%d %b %Y", "%m/%d/%Y", "%Y/%m/%d")
_ORDINAL_SUFFIX = re.compile(r"(\d+)(st|nd|rd|th)\b")
# What people say before the answer itself ("sure, it's Grace Hopper").
_LEAD_IN = re.compile(
    r"^(?:(?:sure|yes|yeah|ok|okay|well|um|uh|so)[,.!]?\s+)*"
    r"(?:(?:it's|it is|that's|that is|this is|i'm|i am|call me|my [a-z ]{1,40} is)\s+)?",
    re.IGNORECASE,
)
_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}


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
    text = str(value).strip()
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

    Returns the utterance itself when nothing better is found, so the
    rejection reason still describes what was heard.
    """
    text = utterance.strip()
    match field.type:
        case "email":
            found = _EMAIL.search(_spoken_email(text))
            return found.group(0) if found else text
        case "phone":
            digits_spoken = _digit_words_to_digits(text)
            for candidate in phonenumbers.PhoneNumberMatcher(digits_spoken, region or "ZZ"):
                return candidate.raw_string
            # Spoken digit groups come back as "415, 555, 2671": keep only the number.
            digits = "".join(char for char in digits_spoken if char.isdigit() or char == "+")
            return digits or text
        case "number":
            found_number = _NUMBER.search(text)
            return found_number.group(0) if found_number else text
        case "string":
            return _LEAD_IN.sub("", text).strip(" .,!?") or text
        case _:
            return text


def _spoken_email(text: str) -> str:
    lowered = text.lower()
    lowered = _SPOKEN_AT.sub("@", lowered)
    lowered = _SPOKEN_DOT.sub(".", lowered)
    # "ada @ example.com" or "ada.lovelace @example .com" after speech recognition.
    return re.sub(r"\s*([@.])\s*", r"\1", lowered)


def _email(text: str) -> Validation:
    candidate = _spoken_email(text).strip(" .,!?")
    if _EMAIL.fullmatch(candidate):
        return Accepted(candidate)
    return Rejected(f"{text!r} is not a valid email address")


def _digit_words_to_digits(text: str) -> str:
    return re.sub(
        r"\b(" + "|".join(_DIGIT_WORDS) + r")\b",
        lambda match: _DIGIT_WORDS[match.group(1).lower()],
        text,
        flags=re.IGNORECASE,
    )


def _phone(text: str, region: str | None) -> Validation:
    try:
        number = phonenumbers.parse(_digit_words_to_digits(text), region)
    except phonenumbers.NumberParseException:
        return Rejected(f"{text!r} is not a phone number")
    if not phonenumbers.is_valid_number(number):
        return Rejected(f"{text!r} is not a valid phone number")
    return Accepted(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _number(value: object) -> Validation:
    if isinstance(value, bool):
        return Rejected(f"{value!r} is not a number")
    if isinstance(value, int | float):
        return Accepted(value)
    text = str(value).strip()
    if not _NUMBER.fullmatch(text):
        return Rejected(f"{text!r} is not a number")
    parsed = float(text.replace(",", ""))
    return Accepted(int(parsed) if parsed.is_integer() and "." not in text else parsed)


def _date(text: str) -> Validation:
    try:
        return Accepted(date.fromisoformat(text).isoformat())
    except ValueError:
        pass
    spoken = _ORDINAL_SUFFIX.sub(r"\1", text.replace(",", " "))
    spoken = " ".join(spoken.split())
    for layout in _SPOKEN_DATE_FORMATS:
        try:
            return Accepted(datetime.strptime(spoken, layout).date().isoformat())
        except ValueError:
            continue
    return Rejected(f"{text!r} is not a date (expected YYYY-MM-DD)")


def _boolean(value: object) -> Validation:
    if isinstance(value, bool):
        return Accepted(value)
    words = set(_WORD.findall(str(value).lower()))
    said_yes, said_no = bool(words & _YES), bool(words & _NO)
    if said_yes != said_no:
        return Accepted(said_yes)
    return Rejected(f"{value!r} is neither yes nor no")


def _choice(text: str, choices: tuple[str, ...]) -> Validation:
    lowered = text.lower()
    exact = [choice for choice in choices if choice.lower() == lowered]
    mentioned = exact or [
        choice for choice in choices if re.search(rf"\b{re.escape(choice.lower())}\b", lowered)
    ]
    if len(mentioned) == 1:
        return Accepted(mentioned[0])
    return Rejected(f"{text!r} is not one of {', '.join(choices)}")
