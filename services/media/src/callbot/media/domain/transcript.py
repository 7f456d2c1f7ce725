"""A recording's transcript: channels apart, speakers named, segments merged. Pure.

A dual-channel recording (the agent's `recording_channels: dual`) holds each
party on a channel of its own: the first is the callee (what Twilio heard),
the second the agent (what Twilio played). Each channel is transcribed alone,
so every segment knows its speaker; a mono recording mixes both and its
segments carry neither channel nor speaker.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from callbot.common.calls import RecordingTranscript, Speaker, TranscriptSegment

DUAL_CHANNEL_SPEAKERS: dict[int, Speaker] = {1: "callee", 2: "agent"}
# Rate limits, timeouts and the server's own failures pass; a request refused
# as such (400, 401, 403, 404, 413, 415, 422) fails the same way every time.
_RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class AudioPart:
    """What one transcription request sends: a whole mono recording, or one channel."""

    filename: str
    audio: bytes
    channel: int | None = None
    speaker: Speaker | None = None


@dataclass(frozen=True)
class PartTranscript:
    """What the endpoint answered for one part; segments are (start_s, end_s, text)."""

    text: str
    segments: tuple[tuple[float, float, str], ...] = ()
    language: str | None = None
    duration_s: float | None = None


def audio_parts(recording_sid: str, audio: bytes) -> list[AudioPart]:
    """The recording as it is (mono, or not a WAV we can split), or one mono WAV per channel."""
    try:
        with wave.open(io.BytesIO(audio)) as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        return [AudioPart(f"{recording_sid}.wav", audio)]
    if channels != 2:
        return [AudioPart(f"{recording_sid}.wav", audio)]
    frame_size = width * channels
    parts = []
    for channel, speaker in DUAL_CHANNEL_SPEAKERS.items():
        offset = (channel - 1) * width
        samples = b"".join(
            frames[start + offset : start + offset + width]
            for start in range(0, len(frames), frame_size)
        )
        parts.append(
            AudioPart(
                f"{recording_sid}.{speaker}.wav",
                _mono_wav(samples, width, rate),
                channel=channel,
                speaker=speaker,
            )
        )
    return parts


def _mono_wav(samples: bytes, width: int, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(samples)
    return buffer.getvalue()


def merge_transcripts(
    recording_sid: str,
    parts: Sequence[tuple[AudioPart, PartTranscript]],
    *,
    model: str,
    at: datetime,
) -> RecordingTranscript:
    """One transcript: the segments of every part in time order (channel breaks
    ties), the text of the parts in that order; a part without segments is one
    segment over its whole length."""
    segments = sorted(
        (
            TranscriptSegment(
                start_s=start,
                end_s=end,
                text=text.strip(),
                channel=part.channel,
                speaker=part.speaker,
            )
            for part, answer in parts
            for start, end, text in _timed(answer)
            if text.strip()
        ),
        key=lambda segment: (segment.start_s, segment.channel or 0),
    )
    text = (
        " ".join(segment.text for segment in segments)
        if len(parts) > 1
        else parts[0][1].text.strip()
    )
    durations = [answer.duration_s for _, answer in parts if answer.duration_s is not None]
    return RecordingTranscript(
        recording_sid=recording_sid,
        model=model,
        text=text,
        language=next((answer.language for _, answer in parts if answer.language), None),
        duration_s=max(durations) if durations else None,
        channels=2 if len(parts) > 1 else 1,
        segments=tuple(segments),
        transcribed_at=at,
    )


def _timed(answer: PartTranscript) -> tuple[tuple[float, float, str], ...]:
    if answer.segments:
        return answer.segments
    return ((0.0, answer.duration_s or 0.0, answer.text),)


def transcription_is_retryable(status_code: int | None) -> bool:
    """None: no answer at all (connection refused, timeout)."""
    return status_code is None or status_code >= 500 or status_code in _RETRYABLE_STATUSES
