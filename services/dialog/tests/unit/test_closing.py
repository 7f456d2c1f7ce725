"""The phrase check ends a call only on short utterances that only say goodbye."""

from __future__ import annotations

import pytest

from callbot.dialog.domain.closing import is_closing_utterance


@pytest.mark.parametrize(
    "utterance",
    [
        "bye",
        "Goodbye!",
        "ok, thanks, bye",
        "That's all, thank you. Bye bye.",
        "that\u2019s all",
        "no thank you, goodbye",
        "you can hang up now",
        "have a nice day",
    ],
)
def test_short_closings_end_the_call(utterance: str) -> None:
    assert is_closing_utterance(utterance)


@pytest.mark.parametrize(
    "utterance",
    [
        "thank you, my email is ada at example dot com",
        "thank you",
        "thanks",
        "",
        "bye the way my number is 415 555 2671",
        "by the way, I moved",
        "goodbye is what I would say if you called me at night but please go on",
        "don't hang up, I need to find my phone number",
        "don't hang up",
        "is that all?  bye? no wait, what is this about",
    ],
)
def test_utterances_with_more_than_a_goodbye_do_not(utterance: str) -> None:
    assert not is_closing_utterance(utterance)
