"""A streamed turn's speech: the model's text released to the caller at
sentence and clause boundaries as it is written, and what has gone out so far.

`StreamedSpeech` wraps the streaming RPC's `emit`. The model feeds it its text
pieces (`model_text`); at a tool call the text of that completion is done
(`end_of_text`); each completion of a tool loop starts with `begin_completion`.
Once the turn's line is decided, `finish` sends the part of it not sent yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from callbot.common.streaming import still_to_send
from callbot.dialog.domain.speech_release import SpeechRelease


class StreamedSpeech:
    def __init__(self, emit: Callable[[str], Awaitable[None]]) -> None:
        self._emit = emit
        self._release = SpeechRelease()
        self._text_done = False
        self.sent = ""
        # Sent by the completions before the current one (a tool loop's steps).
        self.earlier = ""

    def begin_completion(self) -> None:
        self._release = SpeechRelease()
        self._text_done = False
        self.earlier = self.sent

    async def model_text(self, piece: str) -> None:
        if self._text_done:
            return  # text after a tool call: the policy decides what follows
        await self._send(self._release.feed(piece))

    async def end_of_text(self) -> None:
        """The model called a tool: its text so far is a whole phrase."""
        if not self._text_done:
            self._text_done = True
            await self._send(self._release.flush())

    async def finish(self, line: str) -> None:
        """Send what is left of the turn's `line` (as `heard_line` made it)."""
        await self._send(still_to_send(self.sent, line))

    async def _send(self, text: str) -> None:
        if not self.sent:
            text = text.lstrip()
        if text:
            await self._emit(text)
            self.sent += text
