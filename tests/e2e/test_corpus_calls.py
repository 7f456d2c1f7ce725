"""A sample of the utterance corpus (issue 13), each row a whole call through
the emulator with dialog in its deterministic policy (no LLM): every field
type answered in natural speech, and each kind of non-answer (a question back,
"I don't know", an invalid value, a refusal, a request to be called later, a
correction), checked on what `call.completed` carries.

The rows and their expected values are read from the corpus the extractor
tests run in full (services/dialog/tests/corpus/utterances.yaml).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import E2EStack, FinishedCall, PlacedCall, agent_definition, running_e2e_stack

from callbot.testkit.utterance_corpus import Outcome, answer_rows, load_corpus

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CORPUS = load_corpus(ROOT / "services" / "dialog" / "tests" / "corpus" / "utterances.yaml")
EXPECTED = {(kind, utterance): expected for kind, utterance, expected in answer_rows(CORPUS)}
CORRECTIONS = {utterance: (field, value) for utterance, field, value in CORPUS["corrections"]}

FIELDS: dict[str, dict[str, Any]] = {
    "email": {"name": "email", "description": "email address", "type": "email"},
    "phone": {"name": "phone", "description": "phone number", "type": "phone"},
    "string": {"name": "full_name", "description": "full name", "type": "string"},
    "date": {"name": "birthday", "description": "date of birth", "type": "date"},
    "boolean": {"name": "subscribed", "description": "newsletter answer", "type": "boolean"},
    "number": {"name": "employees", "description": "number of employees", "type": "number"},
    "choice": {
        "name": "contact_by",
        "description": "preferred contact",
        "type": "choice",
        "choices": ["email", "phone", "text message"],
    },
}
# What a callee says after a non-answer, when the call goes on.
THEN_ANSWERS = {"string": "Jane Doe.", "phone": "Sure, 415 555 2671."}


@dataclass(frozen=True)
class Row:
    kind: str  # the field type asked for
    utterance: str
    then: str | None = None  # the callee's next line (after a non-answer)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.utterance}"


SAMPLE = (
    Row("email", "my email is ada at example dot com. Thank you!"),
    Row("phone", "four one five, double five five, two six seven one"),
    Row("string", "My name is Jane Doe."),
    Row("date", "It's March 3rd, 1990. Thank you."),
    Row("boolean", "Yeah, sure."),
    Row("number", "Twenty five."),
    Row("choice", "The second one, please."),
    Row("string", "Who is this?", then=THEN_ANSWERS["string"]),
    Row("string", "I don't know.", then=THEN_ANSWERS["string"]),
    Row("phone", "seven", then=THEN_ANSWERS["phone"]),
    Row("string", "Not interested."),
    Row("string", "I'm busy right now, call me tomorrow at 3 pm."),
)
CORRECTION = "Sorry, that's ada at example dot org."
CORRECTION_LINES = ("ada at example dot com.", CORRECTION, "Jane Doe.")


def _agent_id(kind: str) -> str:
    return f"corpus-{kind}"


@pytest.fixture(scope="module")
def e2e(
    tmp_path_factory: pytest.TempPathFactory, rabbitmq_url: str, mongodb_url: str
) -> Iterator[E2EStack]:
    """callbot with dialog on its deterministic policy (no LLM)."""
    log_dir = tmp_path_factory.mktemp("e2e-corpus")
    with running_e2e_stack(log_dir, rabbitmq_url, mongodb_url, fake_llm=None) as stack:
        yield stack


@pytest.fixture(scope="module")
def finished(e2e: E2EStack) -> dict[str, FinishedCall]:
    """Every sampled row's call, placed side by side, then each seen to its end."""
    for kind, field in FIELDS.items():
        e2e.put_agent(_agent_id(kind), _agent(kind, [field]))
    e2e.put_agent(
        _agent_id("correction"), _agent("correction", [FIELDS["email"], FIELDS["string"]])
    )
    placed: dict[str, PlacedCall] = {}
    for number, row in enumerate(SAMPLE):
        lines = [row.utterance, *([row.then] if row.then else [])]
        placed[row.id] = _place(e2e, _agent_id(row.kind), f"+1500555{number + 2200:04d}", lines)
    placed["correction"] = _place(e2e, _agent_id("correction"), "+15005552299", CORRECTION_LINES)
    return {key: e2e.finish(call) for key, call in placed.items()}


def _agent(kind: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    first = fields[0]["description"]
    return agent_definition(
        f"corpus-{kind}",
        data_to_fill=fields,
        greeting=f"Hi {{recipient.name}}, this is Ava from {{agent.name}}. "
        f"Could you tell me your {first}?",
        past_calls=0,
    )


def _place(e2e: E2EStack, agent_id: str, to: str, lines: Any) -> PlacedCall:
    e2e.add_scenario({"to": to, "speed": 50, "steps": [{"say": line} for line in lines]})
    return e2e.place_call(agent_id, to, {"name": "Ada"})


@pytest.mark.parametrize("row", SAMPLE, ids=[row.id for row in SAMPLE])
def test_a_corpus_row_through_a_whole_call(finished: dict[str, FinishedCall], row: Row) -> None:
    call = finished[row.id]
    announced = call.completed.call
    field = FIELDS[row.kind]
    expected = EXPECTED[(row.kind, row.utterance)]
    heard = call.played.lines("agent")
    # What was stored and announced is what was said and heard.
    assert [t.content for t in announced.turns if t.role == "assistant"] == heard
    assert [t.content for t in announced.turns if t.role == "user"] == call.played.lines("callee")
    assert announced.turns == call.document.turns
    if isinstance(expected, list) or expected in ("refusal", "call_later"):
        # Ends politely, nothing collected, the callback request recorded.
        when = expected[1] if isinstance(expected, list) else None
        assert (announced.ended_by, announced.data_collected) == ("user_goodbye", {})
        assert announced.callback_request is not None
        assert (announced.callback_request.when, announced.callback_request.said) == (
            when,
            row.utterance,
        )
        return
    assert announced.callback_request is None
    if isinstance(expected, Outcome):  # asked again, then answered
        assert row.then is not None
        assert heard[1].endswith(f"Could you tell me your {field['description']}?")
        if expected == "question":
            assert heard[1].startswith("This is Acme Support calling to collect your")
        expected = EXPECTED[(row.kind, row.then)]
    assert announced.data_collected == {field["name"]: expected}
    assert (announced.ended_by, announced.data_complete) == ("system_complete", True)


def test_a_correction_replaces_the_value_collected_before(
    finished: dict[str, FinishedCall],
) -> None:
    announced = finished["correction"].completed.call
    field, value = CORRECTIONS[CORRECTION]
    assert field == "email"
    assert announced.data_collected == {"email": value, "full_name": "Jane Doe"}
    assert announced.turns[4].content == (
        "Thank you, I've corrected your email address. Could you tell me your full name?"
    )
    assert (announced.ended_by, announced.data_complete) == ("system_complete", True)
