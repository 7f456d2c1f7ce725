"""Reading the utterance corpus (services/dialog/tests/corpus/utterances.yaml):
recogniser-punctuated utterances with what the deterministic policy must make
of each. The extractor tests run every row; the end-to-end suite drives a
sample of them through whole calls.

Each answer row is `[field type, utterance, expected]`: the stored value, or an
`Outcome` (`!refusal`, `!call_later`, `!question`, `!dont_know`, `!invalid`),
or `[!call_later, the time asked for]`. Corrections are `[utterance, field, value]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

OUTCOMES = ("refusal", "call_later", "question", "dont_know", "invalid")


class Outcome(str):
    """A non-answer the corpus expects (`!refusal` and the like)."""


class _CorpusLoader(yaml.SafeLoader):
    pass


def _outcome(tag: str) -> Any:
    return lambda _loader, _node: Outcome(tag)


for _tag in OUTCOMES:
    _CorpusLoader.add_constructor(f"!{_tag}", _outcome(_tag))


def load_corpus(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as corpus:
        loaded: dict[str, Any] = yaml.load(corpus, Loader=_CorpusLoader)
    return loaded


def answer_rows(corpus: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """`(field type, utterance, expected)` for every answer row."""
    return [
        (kind, utterance, expected)
        for kind, rows in corpus["answers"].items()
        for utterance, expected in rows
    ]
