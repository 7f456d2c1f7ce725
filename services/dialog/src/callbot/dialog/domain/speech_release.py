"""When streamed model text may be spoken: at sentence and clause boundaries.

Text-to-speech sounds right only on whole phrases, yet speech should start
before the model has finished. `SpeechRelease` takes the model's text pieces
as they come and releases everything up to the last sentence or clause
boundary seen (`.`, `!`, `?`, `;`, `:`, `,` or a dash, followed by
whitespace, or a line break), so the first words go out at the first clause;
`flush()` releases the rest when the model is done. Joining every release
gives back the text exactly. Pure: no I/O.
"""

from __future__ import annotations

import re

# A boundary: closing punctuation (and any closing quotes or brackets) then
# whitespace, or a line break. The release ends after that whitespace.
_BOUNDARY = re.compile(r"""(?:[.!?;:,\u2026]["')\]\u201d\u2019]*|\s[-\u2013\u2014])\s+|\n+""")


class SpeechRelease:
    def __init__(self) -> None:
        self._held = ""

    @property
    def held(self) -> str:
        """Text received and not released yet."""
        return self._held

    def feed(self, piece: str) -> str:
        """Add a piece of model text; return what may be spoken now ("" if nothing)."""
        self._held += piece
        last_end = 0
        for match in _BOUNDARY.finditer(self._held):
            last_end = match.end()
        if not self._held[:last_end].strip():
            return ""
        released, self._held = self._held[:last_end], self._held[last_end:]
        return released

    def flush(self) -> str:
        """The model is done: release whatever is held."""
        released, self._held = self._held, ""
        return released
