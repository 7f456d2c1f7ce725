"""The recording's transcript (channels, speakers, merged segments) and the
data check against it: pure logic, no I/O."""

from __future__ import annotations

import io
import struct
import wave
from datetime import UTC, datetime
from typing import Any

import pytest

from callbot.common.agents import DataField
from callbot.common.calls import RecordingTranscript, TranscriptSegment
from callbot.media.domain.data_check import review_collected_data
from callbot.media.domain.transcript import (
    PartTranscript,
    audio_parts,
    merge_transcripts,
    transcription_is_retryable,
)

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def wav(channels: int, samples: list[int]) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(channels)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return buffer.getvalue()


def samples_of(audio: bytes) -> tuple[int, list[int]]:
    with wave.open(io.BytesIO(audio)) as read:
        frames = read.readframes(read.getnframes())
        return read.getnchannels(), list(struct.unpack(f"<{len(frames) // 2}h", frames))


def test_a_dual_channel_recording_is_split_into_the_callee_and_the_agent() -> None:
    callee, agent = audio_parts("RE1", wav(2, [1, -1, 2, -2, 3, -3]))
    assert (callee.filename, callee.channel, callee.speaker) == ("RE1.callee.wav", 1, "callee")
    assert (agent.filename, agent.channel, agent.speaker) == ("RE1.agent.wav", 2, "agent")
    assert samples_of(callee.audio) == (1, [1, 2, 3])
    assert samples_of(agent.audio) == (1, [-1, -2, -3])


@pytest.mark.parametrize("audio", [wav(1, [1, 2, 3]), b"not a wav file"])
def test_a_mono_recording_or_other_audio_is_sent_as_it_is(audio: bytes) -> None:
    [part] = audio_parts("RE1", audio)
    assert (part.filename, part.audio, part.channel, part.speaker) == ("RE1.wav", audio, None, None)


def test_the_channels_segments_merge_in_time_order_with_their_speakers() -> None:
    callee, agent = audio_parts("RE1", wav(2, [0, 0]))
    transcript = merge_transcripts(
        "RE1",
        [
            (
                callee,
                PartTranscript("Yes. Ada.", ((1.0, 1.5, " Yes."), (3.0, 3.5, "Ada.")), "en", 4),
            ),
            (
                agent,
                PartTranscript(
                    "Hello? Your name?", ((0.0, 0.8, "Hello?"), (2.0, 2.6, "Your name?"))
                ),
            ),
        ],
        model="whisper-1",
        at=AT,
    )
    assert [(s.start_s, s.speaker, s.text) for s in transcript.segments] == [
        (0.0, "agent", "Hello?"),
        (1.0, "callee", "Yes."),
        (2.0, "agent", "Your name?"),
        (3.0, "callee", "Ada."),
    ]
    assert (transcript.text, transcript.channels, transcript.language) == (
        "Hello? Yes. Your name? Ada.",
        2,
        "en",
    )


def test_an_answer_without_segments_is_one_segment_over_the_recording() -> None:
    [part] = audio_parts("RE1", wav(1, [0]))
    transcript = merge_transcripts(
        "RE1", [(part, PartTranscript("Hello there.", duration_s=2.5))], model="m", at=AT
    )
    assert transcript.segments == (TranscriptSegment(start_s=0, end_s=2.5, text="Hello there."),)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(None, True), (429, True), (500, True), (503, True), (400, False), (401, False), (413, False)],
)
def test_which_transcription_failures_are_retried(status: int | None, retryable: bool) -> None:
    assert transcription_is_retryable(status) is retryable


FIELDS = (
    DataField(name="email", description="email", type="email"),
    DataField(name="phone", description="phone", type="phone"),
    DataField(name="guests", description="guests", type="number"),
    DataField(name="plan", description="plan", type="choice", choices=("basic", "premium")),
    DataField(name="name", description="name", type="string"),
)


def heard(callee: str, agent: str = "") -> RecordingTranscript:
    segments = [TranscriptSegment(start_s=0, end_s=1, text=callee, channel=1, speaker="callee")]
    if agent:
        segments.append(
            TranscriptSegment(start_s=1, end_s=2, text=agent, channel=2, speaker="agent")
        )
    return RecordingTranscript(
        recording_sid="RE1",
        model="m",
        text=f"{callee} {agent}",
        segments=tuple(segments),
        channels=2,
        transcribed_at=AT,
    )


def flagged(
    collected: dict[str, Any], transcript: RecordingTranscript
) -> dict[str, tuple[str, ...]]:
    return {item.field: item.heard for item in review_collected_data(FIELDS, collected, transcript)}


def test_values_the_recording_contradicts_are_flagged_with_what_it_heard() -> None:
    transcript = heard(
        "it's ada dot king at example dot com, call me on 415 555 0199, "
        "we are 3, the premium plan, and I'm Ada Byron"
    )
    collected = {
        "email": "ada@example.com",
        "phone": "+14155550134",
        "guests": 4,
        "plan": "basic",
        "name": "Ada Lovelace",
    }
    assert flagged(collected, transcript) == {
        "email": ("ada.king@example.com",),
        "phone": ("4155550199",),
        "guests": ("415", "555", "0199", "3"),
        "plan": ("premium",),
    }


def test_values_the_recording_confirms_or_does_not_mention_are_not_flagged() -> None:
    transcript = heard(
        "ADA@example.com, +1 (415) 555-0134 is fine, three... I mean 4.0 guests, basic"
    )
    collected = {"email": "ada@example.com", "phone": "+14155550134", "guests": 4, "plan": "basic"}
    assert flagged(collected, transcript) == {}
    assert flagged(collected, heard("hello?")) == {}


def test_only_the_callee_channel_counts_when_the_recording_has_one() -> None:
    transcript = heard("yes that's right", agent="is your email bob@example.com?")
    assert flagged({"email": "ada@example.com"}, transcript) == {}
