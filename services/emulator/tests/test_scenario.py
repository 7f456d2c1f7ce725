"""The scenario schema and the book that picks a scenario per called number."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot.emulator.scenario import (
    HangupStep,
    SayStep,
    Scenario,
    ScenarioBook,
    ScenarioError,
    SilenceStep,
    load_scenario_file,
    parse_scenario,
    speaking_seconds,
)


def test_yaml_scenario_with_every_step_kind(tmp_path: Path) -> None:
    path = tmp_path / "ada.yaml"
    path.write_text(
        """
to: "+15005550006"
answered_by: machine_end_beep
steps:
  - say: "Hi, yes this is Ada."
  - silence: {}
  - silence: {duration_s: 3}
  - say: "My email is ada@example.com"
    confidence: 0.87
    duration_s: 4
  - hangup: {}
""",
        encoding="utf-8",
    )

    scenario = load_scenario_file(path)

    assert (scenario.name, scenario.to, scenario.outcome) == ("ada", "+15005550006", "answered")
    assert scenario.answered_by == "machine_end_beep"
    assert scenario.steps == [
        SayStep(say="Hi, yes this is Ada."),
        SilenceStep(),
        SilenceStep.model_validate({"silence": {"duration_s": 3}}),
        SayStep(say="My email is ada@example.com", confidence=0.87, duration_s=4),
        HangupStep(),
    ]
    first = scenario.steps[0]
    assert isinstance(first, SayStep)
    assert (first.confidence, first.seconds) == (0.92, 2.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": [{"shout": "hi"}]}, "exactly one of the keys 'say', 'silence', 'hangup'"),
        ({"steps": [{"say": "hi", "hangup": {}}]}, "exactly one of the keys"),
        ({"steps": [{"say": "hi", "volume": 11}]}, "volume"),
        ({"outcome": "maybe"}, "outcome"),
        ({"answered_by": "robot"}, "answered_by"),
        ({"speed": 0}, "speed"),
        (["not", "a", "mapping"], "must be a mapping"),
    ],
)
def test_invalid_scenarios_say_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(data, source="test.yaml")

    assert "test.yaml" in str(raised.value)
    assert message in str(raised.value)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("steps: [", encoding="utf-8")

    with pytest.raises(ScenarioError, match=r"broken\.yaml: not valid YAML"):
        load_scenario_file(path)


def test_book_matches_on_to_falls_back_to_the_default_and_resets() -> None:
    ada = Scenario(name="ada", to="+15005550006")
    fallback = Scenario(name="anyone-else")
    book = ScenarioBook([ada, fallback])

    assert book.for_number("+15005550006") is ada
    assert book.for_number("+15005550999") is fallback

    runtime = Scenario(name="runtime", to="+15005550006")
    book.register(runtime)
    assert book.for_number("+15005550006") is runtime

    book.reset()
    assert book.for_number("+15005550006") is ada


def test_book_without_a_default_uses_a_silent_hang_up_callee() -> None:
    default = ScenarioBook().for_number("+15005550006")

    assert (default.name, default.outcome, default.steps) == ("default", "answered", [])


def test_book_refuses_ambiguous_scenarios() -> None:
    with pytest.raises(ScenarioError, match="both answer \\+15005550006"):
        ScenarioBook([Scenario(name="a", to="+15005550006"), Scenario(name="b", to="+15005550006")])
    with pytest.raises(ScenarioError, match="only one default"):
        ScenarioBook([Scenario(name="a"), Scenario(name="b")])


@pytest.mark.parametrize(("text", "seconds"), [("Hi", 1.0), ("one two three", 2.0), ("", 1.0)])
def test_speaking_takes_whole_seconds_at_150_words_a_minute(text: str, seconds: float) -> None:
    assert speaking_seconds(text) == seconds
