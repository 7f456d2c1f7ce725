"""Streamed model text is released at sentence and clause boundaries."""

from __future__ import annotations

import re

import pytest

from callbot.dialog.domain.speech_release import SpeechRelease


def _releases(pieces: list[str]) -> list[str]:
    release = SpeechRelease()
    out = [release.feed(piece) for piece in pieces]
    out.append(release.flush())
    return [text for text in out if text]


def test_the_first_clause_goes_out_before_the_model_finishes() -> None:
    release = SpeechRelease()
    assert release.feed("Thanks") == ""
    assert release.feed(" Ada,") == ""  # no whitespace after the comma yet
    assert release.feed(" could") == "Thanks Ada, "
    assert release.feed(" you spell") == ""
    assert release.feed(" it? I") == "could you spell it? "
    assert release.held == "I"
    assert release.flush() == "I"
    assert release.flush() == ""


def test_everything_up_to_the_last_boundary_is_released_at_once() -> None:
    assert _releases(["One. Two; three: four", " five"]) == ["One. Two; three: ", "four five"]


@pytest.mark.parametrize(
    "text",
    [
        "Hello there, how are you? I'm calling about your order. Is now a good time?",
        '"Quoted." Then (brackets.) And a dash - like this.\nNew line',
        "No boundary at all",
        "3.5 million, e.g. this",
        "",
    ],
)
def test_the_releases_join_to_the_text_whatever_the_pieces(text: str) -> None:
    words = re.findall(r"\s*\S+|\s+$", text)
    assert "".join(_releases(words)) == text
    letters = list(text)
    assert "".join(_releases(letters)) == text


def test_a_decimal_point_is_not_a_boundary() -> None:
    assert _releases(["It costs 3.5", " dollars. Fine"]) == ["It costs 3.5 dollars. ", "Fine"]
