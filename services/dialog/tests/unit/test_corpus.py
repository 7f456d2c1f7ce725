"""The utterance corpus (tests/corpus/utterances.yaml) against the extractors: 100 % required.

Each answer row is classified and, when it is an answer, extracted and
validated for a field of its type; each non-answer row must be classified as
the outcome it names; each correction must replace the field it names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from dialog_doubles import make_agent

from callbot.common.agents import DataField
from callbot.common.calls import Turn
from callbot.dialog.domain.actions import ModelAnswer, RecordData, RequestCallback
from callbot.dialog.domain.deterministic import deterministic_answer
from callbot.dialog.domain.session import Session
from callbot.dialog.domain.utterance import classify
from callbot.dialog.domain.validators import Accepted, validate_value
from callbot.testkit.utterance_corpus import answer_rows, load_corpus

CORPUS_PATH = Path(__file__).parent.parent / "corpus" / "utterances.yaml"
CORPUS = load_corpus(CORPUS_PATH)
ANSWER_ROWS = answer_rows(CORPUS)


def field_of(kind: str) -> DataField:
    """The corpus's field for a type: its string rows answer a name."""
    if kind == "string":
        return DataField(name="full_name", description="thing")
    choices = ("email", "phone", "text message") if kind == "choice" else None
    return DataField(name="x", description="thing", type=kind, choices=choices)  # type: ignore[arg-type]


def test_the_corpus_is_large_enough() -> None:
    assert len(ANSWER_ROWS) + len(CORPUS["corrections"]) >= 200


@pytest.mark.parametrize(("kind", "utterance", "expected"), ANSWER_ROWS)
def test_answer_rows(kind: str, utterance: str, expected: object) -> None:
    """What the deterministic policy makes of the utterance when it asked for a
    field of this type: the value it records, or the non-answer it recognised."""
    field = field_of(kind)
    session = Session(call_id="call-1", agent=make_agent(data_to_fill=[field.model_dump()]))
    heard = Turn(seq=1, role="user", content=utterance, at=datetime.now(UTC))
    answer = deterministic_answer(session, heard)
    intent = classify(utterance)
    if isinstance(expected, list):  # [!call_later, the time asked for]
        assert (intent.kind, intent.when) == (expected[0], expected[1])
        assert _only_callback_requested(answer, expected[1])
        return
    if expected in ("refusal", "call_later"):
        assert intent.kind == expected
        assert _only_callback_requested(answer, None)
        return
    if expected in ("question", "dont_know"):
        assert intent.kind == expected
        assert (answer.actions, answer.text.endswith("Could you tell me your thing?")) == ((), True)
        return
    recorded = [action for action in answer.actions if isinstance(action, RecordData)]
    assert [action.field for action in recorded] == [field.name]
    verdict = validate_value(field, recorded[0].value, "US")
    if expected == "invalid":
        assert not isinstance(verdict, Accepted)
    else:
        assert verdict == Accepted(expected)


def _only_callback_requested(answer: ModelAnswer, when: str | None) -> bool:
    return [type(action) for action in answer.actions] == [RequestCallback] and (
        isinstance(answer.actions[0], RequestCallback) and answer.actions[0].when == when
    )


@pytest.mark.parametrize(("utterance", "field", "value"), CORPUS["corrections"])
def test_corrections_replace_the_field_they_name(utterance: str, field: str, value: str) -> None:
    session = Session(
        call_id="call-1",
        agent=make_agent(),
        data_collected={"full_name": "Ada Lovelace", "email": "ada@example.com"},
    )
    heard = Turn(seq=3, role="user", content=utterance, at=datetime.now(UTC))
    answer = deterministic_answer(session, heard)
    recorded = [action for action in answer.actions if isinstance(action, RecordData)]
    assert [action.field for action in recorded] == [field]
    target = session.agent.field(field)
    assert target is not None
    assert validate_value(target, recorded[0].value, "US") == Accepted(value)
