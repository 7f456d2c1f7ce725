"""The audio transcription endpoint (`/v1/audio/transcriptions`) through the openai client.

Any OpenAI-compatible server works (`OPENAI_BASE_URL`). The client's own
retries are off: ours back off across minutes (`TRANSCRIPTION_ATTEMPTS`,
`TRANSCRIPTION_BACKOFF_S`), the client's would only add seconds.
"""

from __future__ import annotations

from typing import Any

import openai

from callbot.common.settings import Settings
from callbot.media.domain.transcript import (
    AudioPart,
    PartTranscript,
    transcription_is_retryable,
)


class TranscriptionFailed(Exception):
    def __init__(self, message: str, *, status_code: int | None) -> None:
        super().__init__(message)
        self.status_code = status_code

    @property
    def retryable(self) -> bool:
        return transcription_is_retryable(self.status_code)


class OpenAITranscriber:
    def __init__(self, settings: Settings) -> None:
        api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed",
            base_url=settings.openai_base_url or None,  # compose passes "" when unset
            max_retries=0,
            timeout=settings.transcription_timeout_s,
        )
        self.model = settings.transcription_model
        self._response_format = settings.transcription_response_format

    async def transcribe(self, part: AudioPart) -> PartTranscript:
        """The part's transcript; raises TranscriptionFailed saying what the endpoint answered."""
        options: dict[str, Any] = {"response_format": self._response_format}
        if self._response_format == "verbose_json":
            options["timestamp_granularities"] = ["segment"]
        try:
            answer = await self._client.audio.transcriptions.create(
                file=(part.filename, part.audio, "audio/wav"), model=self.model, **options
            )
        except openai.APIStatusError as exc:
            raise TranscriptionFailed(
                f"the transcription endpoint answered {exc.status_code}: {exc.message}",
                status_code=exc.status_code,
            ) from exc
        except openai.APIError as exc:  # no answer: connection refused, timeout
            raise TranscriptionFailed(
                f"the transcription endpoint gave no answer: {exc!r}", status_code=None
            ) from exc
        return _part_transcript(answer)

    async def close(self) -> None:
        await self._client.close()


def _part_transcript(answer: object) -> PartTranscript:
    if isinstance(answer, str):
        return PartTranscript(text=answer)
    segments = getattr(answer, "segments", None) or ()
    return PartTranscript(
        text=str(getattr(answer, "text", "")),
        segments=tuple((float(s.start), float(s.end), str(s.text)) for s in segments),
        language=getattr(answer, "language", None),
        duration_s=getattr(answer, "duration", None),
    )
