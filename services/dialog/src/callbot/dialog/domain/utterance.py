"""What a callee's utterance is, before any value is taken out of it.

`classify` tells an answer from a non-answer: a question back ("who is
this?"), a refusal ("not interested"), a request to be called later (with the
time asked for, if one was said), "I don't know", or a correction of an
earlier answer ("sorry, that's ..."). Pure and bounded: the utterance is
clipped to `MAX_UTTERANCE_CHARS` and matched word by word (no regular
expression that can backtrack), so any input costs time linear in its length.

Intents are checked in `INTENT_RULES` order; a new intent (an opt-out, say)
is one more rule: a kind and the phrases that signal it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The longest real utterance is a few hundred words; anything past this is not speech.
MAX_UTTERANCE_CHARS = 2000

IntentKind = Literal[
    "answer", "opt_out", "call_later", "refusal", "dont_know", "question", "correction"
]

_PUNCTUATION = ".,!?;:\"'()"


@dataclass(frozen=True)
class Intent:
    kind: IntentKind
    # call_later: the time asked for, as said ("tomorrow at 3 pm"), if any.
    when: str | None = None
    # correction: the words after the correction marker ("sorry, that's ...").
    rest: str = ""


@dataclass(frozen=True)
class IntentRule:
    kind: IntentKind
    phrases: tuple[str, ...]
    # Only at the start of the utterance (after fillers), not anywhere in it.
    at_start: bool = False


INTENT_RULES: list[IntentRule] = [
    # First: "stop calling me" and "I don't want to be called" are opt-outs, not
    # refusals of this call. Specific phrases only: "call me later" is not one.
    IntentRule(
        "opt_out",
        (
            "take me off your list",
            "take me off the list",
            "take me off this list",
            "take me off your calling list",
            "take me off of your list",
            "remove me from your list",
            "remove me from the list",
            "remove me from your calling list",
            "remove me from your call list",
            "remove my number",
            "don't call me again",
            "do not call me again",
            "don't ever call me",
            "never call me",
            "don't call me anymore",
            "don't call this number",
            "do not call this number",
            "stop calling",
            "do not call list",
            "i don't want to be called",
            "i do not want to be called",
            "i don't want any more calls",
            "i don't want these calls",
            "unsubscribe",
        ),
    ),
    IntentRule(
        "call_later",
        (
            "call me later",
            "call me back",
            "call back later",
            "call me another time",
            "call me tomorrow",
            "call me next",
            "call me in",
            "call me on",
            "call me this",
            "call again later",
            "try again later",
            "try me later",
            "not a good time",
            "bad time",
            "i'm busy",
            "i am busy",
            "i'm driving",
            "i am driving",
            "i'm in a meeting",
            "can't talk right now",
            "cannot talk right now",
            "can't talk now",
        ),
    ),
    IntentRule(
        "refusal",
        (
            "not interested",
            "no thanks",
            "no thank you",
            "i don't want to",
            "i do not want to",
            "i'd rather not",
            "i would rather not",
            "i won't tell you",
            "i'm not telling you",
            "i'm not giving",
            "i am not giving",
            "i don't want to give",
            "none of your business",
            "leave me alone",
        ),
    ),
    IntentRule(
        "dont_know",
        (
            "i don't know",
            "i do not know",
            "i dont know",
            "no idea",
            "not sure",
            "i can't remember",
            "i don't remember",
            "i forget",
            "i forgot",
        ),
    ),
    IntentRule(
        "correction",
        (
            "sorry, that's",
            "sorry that's",
            "sorry, it's",
            "sorry it's",
            "sorry, i meant",
            "sorry i meant",
            "i meant",
            "actually, it's",
            "actually it's",
            "actually, my",
            "actually my",
            "sorry, my",
            "sorry my",
            "correction, my",
            "correction,",
            "correction:",
            "no wait,",
            "no, wait,",
            "wait, no,",
            "let me correct",
            "that was wrong,",
            "that's wrong,",
        ),
        at_start=True,
    ),
]

_QUESTION_STARTS = (
    "who ",
    "who's ",
    "what ",
    "what's ",
    "why ",
    "how ",
    "where ",
    "which ",
    "is this ",
    "are you ",
    "can you ",
    "could you ",
    "do you ",
    "what is this",
    "sorry, who",
    "sorry, what",
    "wait, who",
    "wait, what",
)
_FILLERS = ("um", "uh", "er", "hmm", "oh", "well", "so", "okay", "ok")
_WHEN_MARKERS = (
    " tomorrow",
    " tonight",
    " today",
    " next ",
    " this afternoon",
    " this evening",
    " this morning",
    " on monday",
    " on tuesday",
    " on wednesday",
    " on thursday",
    " on friday",
    " on saturday",
    " on sunday",
    " at ",
    " in an hour",
    " in a few",
    " in half",
    " in two",
    " in three",
    " in ten",
    " in twenty",
    " in thirty",
    *(f" in {digit}" for digit in "123456789"),
    " after ",
    " around ",
)


def clip(utterance: str) -> str:
    """The utterance cut to a length speech can have, trimmed."""
    return utterance[:MAX_UTTERANCE_CHARS].strip()


def normalise(utterance: str) -> str:
    """Lower case, curly quotes straightened, whitespace collapsed (one pass each)."""
    text = clip(utterance).lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split())


def classify(utterance: str) -> Intent:
    """What the utterance is; `answer` when it is none of the non-answers."""
    text = normalise(utterance)
    start = _without_fillers(text)
    for rule in INTENT_RULES:
        phrase = _find(rule, text, start)
        if phrase is None:
            continue
        if rule.kind == "call_later":
            return Intent("call_later", when=_when(text))
        if rule.kind == "correction":
            return Intent("correction", rest=_words_after(utterance, text, start, phrase))
        return Intent(rule.kind)
    if _is_question(start):
        return Intent("question")
    return Intent("answer")


def _find(rule: IntentRule, text: str, start: str) -> str | None:
    for phrase in rule.phrases:
        if (start.startswith(phrase)) if rule.at_start else (phrase in text):
            return phrase
    return None


def _words_after(utterance: str, text: str, start: str, phrase: str) -> str:
    """The original words (case kept) after `phrase`, which opens `start`."""
    # "sorry, my email is ...": "my" stays, it says which field is meant.
    said = phrase.removesuffix(" my")
    skipped = len(text.split()) - len(start.split()) + len(said.split())
    return " ".join(clip(utterance).split()[skipped:])


def _without_fillers(text: str) -> str:
    """The text after leading fillers ("um, well, ...")."""
    words = text.split(" ")
    index = 0
    while index < len(words) and words[index].strip(_PUNCTUATION) in _FILLERS:
        index += 1
    return " ".join(words[index:])


def _is_question(start: str) -> bool:
    """A question back: a sentence opening with a question word, or ending in '?'
    with no more than a few words (a long '?' sentence is usually an answer)."""
    if any(start.startswith(opening) for opening in _QUESTION_STARTS):
        return True
    return (
        start.endswith("?")
        and len(start.split(" ")) <= 6
        and start.split(" ")[0]
        in {
            "sorry?",
            "what?",
            "pardon?",
            "huh?",
        }
    )


def _when(text: str) -> str | None:
    """The time the callee asked to be called at, as said ("tomorrow at 3 pm")."""
    best: int | None = None
    for marker in _WHEN_MARKERS:
        at = text.find(marker)
        if at >= 0 and (best is None or at < best):
            best = at
    if best is None:
        return None
    said = text[best:].strip(" " + _PUNCTUATION)
    sentence_end = min((said.find(mark) for mark in (".", "!", "?") if mark in said), default=-1)
    if sentence_end >= 0:
        said = said[:sentence_end]
    said = said.removeprefix("please").strip(" " + _PUNCTUATION)
    return said[:200] or None
