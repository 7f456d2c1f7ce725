"""The fake OpenAI server's audio transcriptions, through the real ``openai`` client."""

from __future__ import annotations

import io
import wave

import openai
import pytest

from callbot.testkit.fake_openai import FakeOpenAI


def silence_wav(seconds: float, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(channels)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(bytes(int(8000 * seconds) * 2 * channels))
    return buffer.getvalue()


async def test_a_scripted_transcript_comes_with_its_segments(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.add_transcription_rules(
        [
            {
                "match": {"filename_regex": r"\.callee\.wav$"},
                "response": {
                    "text": "Yes, this is Ada.",
                    "segments": [{"start": 0.5, "end": 1.5, "text": "Yes, this is Ada."}],
                },
            }
        ]
    )
    answer = await client.audio.transcriptions.create(
        file=("RE1.callee.wav", silence_wav(2.0), "audio/wav"),
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["segment"],
    )
    assert answer.text == "Yes, this is Ada."
    assert [(s.start, s.end, s.text) for s in answer.segments or []] == [
        (0.5, 1.5, "Yes, this is Ada.")
    ]
    [request] = fake.transcription_requests()
    assert (request.filename, request.model, request.channels, request.duration_s) == (
        "RE1.callee.wav",
        "whisper-1",
        1,
        2.0,
    )


async def test_unmatched_audio_gets_a_transcript_naming_its_length(
    client: openai.AsyncOpenAI,
) -> None:
    answer = await client.audio.transcriptions.create(
        file=("RE1.wav", silence_wav(1.5, channels=2), "audio/wav"), model="whisper-1"
    )
    assert answer.text == "[1.5 seconds of audio]"


async def test_scripted_failures_answer_in_order_then_the_transcript(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.add_transcription_rules(
        [
            {"response": {"error": {"status": 503}}, "times": 2},
            {"response": {"text": "Hello."}},
        ]
    )
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await client.audio.transcriptions.create(
                file=("RE1.wav", silence_wav(1), "audio/wav"), model="whisper-1"
            )
    answer = await client.audio.transcriptions.create(
        file=("RE1.wav", silence_wav(1), "audio/wav"), model="whisper-1"
    )
    assert answer.text == "Hello."
    assert [request.status for request in fake.transcription_requests()] == [503, 503, 200]
