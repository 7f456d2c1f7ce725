"""The data check: collected values the recording's transcript contradicts. Pure.

The live values come from Twilio's recogniser, turn by turn; the recording's
transcript hears the whole call again, over the agent too. A value is flagged
(never changed) when the callee's words in the recording hold values of the
field's kind and none of them is the one collected:

- email: addresses heard, spoken forms included ("ada at example dot com");
- phone: digit runs of 7 or more (spaces, dashes, dots and brackets between
  digits allowed), compared on their last 10 digits;
- number: the numbers heard;
- choice: the agent's choices heard.

Strings, dates and booleans are not checked: a transcript gives no sure
candidate to set against them. A field the recording says nothing about is
not flagged either: silence is not a contradiction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from callbot.common.agents import DataField
from callbot.common.calls import DataReviewItem, RecordingTranscript

_EMAIL = re.compile(r"[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_SPOKEN_AT = re.compile(r"\s+at\s+")
_SPOKEN_DOT = re.compile(r"\s+dot\s+")
_PHONE_RUN = re.compile(r"\+?\(?\d(?:[\s.()-]{0,2}\d){6,}")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_PHONE_DIGITS_COMPARED = 10


def callee_words(transcript: RecordingTranscript) -> str:
    """What the callee said: their channel's segments when the recording is
    dual-channel, else the whole transcript (both parties mixed)."""
    callee = [segment.text for segment in transcript.segments if segment.speaker == "callee"]
    return " ".join(callee) if callee else transcript.text


def review_collected_data(
    fields: Sequence[DataField],
    data_collected: Mapping[str, Any],
    transcript: RecordingTranscript,
) -> tuple[DataReviewItem, ...]:
    """Every collected value the recording contradicts, in the agent's field order."""
    words = callee_words(transcript)
    flagged = []
    for field in fields:
        value = data_collected.get(field.name)
        if value is None:
            continue
        check = _CHECKS.get(field.type)
        if check is None:
            continue
        heard = check(words, field)
        if heard and _key(field, value) not in {_key(field, item) for item in heard}:
            flagged.append(
                DataReviewItem(
                    field=field.name,
                    value=value,
                    heard=tuple(heard),
                    reason=f"the recording has {field.type} {', '.join(heard)}, "
                    f"not the value collected",
                )
            )
    return tuple(flagged)


def emails_heard(words: str, _field: DataField) -> list[str]:
    spoken = _SPOKEN_DOT.sub(".", _SPOKEN_AT.sub("@", words.lower()))
    return _unique(match.rstrip(".") for match in _EMAIL.findall(spoken))


def phones_heard(words: str, _field: DataField) -> list[str]:
    return _unique(re.sub(r"[^\d+]", "", match) for match in _PHONE_RUN.findall(words))


def numbers_heard(words: str, _field: DataField) -> list[str]:
    return _unique(_NUMBER.findall(words.replace(",", "")))


def choices_heard(words: str, field: DataField) -> list[str]:
    return [
        choice
        for choice in field.choices or ()
        if re.search(rf"\b{re.escape(choice)}\b", words, re.IGNORECASE)
    ]


_CHECKS: dict[str, Callable[[str, DataField], list[str]]] = {
    "email": emails_heard,
    "phone": phones_heard,
    "number": numbers_heard,
    "choice": choices_heard,
}


def _key(field: DataField, value: Any) -> str:
    """How two values of the field's kind compare."""
    text = str(value).strip().lower()
    if field.type == "phone":
        return re.sub(r"\D", "", text)[-_PHONE_DIGITS_COMPARED:]
    if field.type == "number":
        try:
            return repr(float(text))
        except ValueError:
            return text
    return text


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))
