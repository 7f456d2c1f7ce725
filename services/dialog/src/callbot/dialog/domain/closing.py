"""The conservative goodbye check that backs up the model's `end_call`.

It only fires for a short utterance made of closing words alone, with an
explicit farewell among them. "Thank you" on its own is not a goodbye (people
thank mid-call), and "thank you, my email is ..." carries data, so neither
ends a call; the model decides those.
"""

from __future__ import annotations

import re

MAX_CLOSING_WORDS = 8

_FAREWELLS = (
    "goodbye",
    "good bye",
    "bye bye",
    "bye",
    "hang up",
    "that's all",
    "that is all",
    "talk to you later",
    "see you",
    "have a good day",
    "have a nice day",
    "have a great day",
)
_COURTESIES = (
    "thank you very much",
    "thank you",
    "thanks",
    "thank",
    "very much",
    "so much",
    "no",
    "ok",
    "okay",
    "alright",
    "all right",
    "great",
    "well",
    "then",
    "now",
    "for now",
    "please",
    "you can",
    "just",
    "and",
)
_WORDS = re.compile(r"[a-z']+")


def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so "bye bye" is consumed before "bye".
    ordered = sorted(phrases, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(re.escape(phrase) for phrase in ordered) + r")\b")


_FAREWELL = _phrase_pattern(_FAREWELLS)
_COURTESY = _phrase_pattern(_COURTESIES)


def is_closing_utterance(utterance: str) -> bool:
    """The callee only said goodbye (with courtesies around it), nothing else."""
    # Speech recognisers may write the typographic apostrophe: "that\u2019s all".
    words = _WORDS.findall(utterance.lower().replace("\u2019", "'"))
    if not words or len(words) > MAX_CLOSING_WORDS:
        return False
    text = " ".join(words)
    if not _FAREWELL.search(text):
        return False
    leftover = _COURTESY.sub(" ", _FAREWELL.sub(" ", text))
    return not leftover.strip()
