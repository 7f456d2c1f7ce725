"""The transcription handler against its fakes: what is published, dead-lettered,
and when the endpoint is asked at all."""

from __future__ import annotations

import io
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from callbot.common.agents import Agent
from callbot.common.calls import (
    CallDocument,
    Recording,
    RecordingArchive,
    RecordingTranscript,
    Turn,
)
from callbot.common.contracts import (
    CallRecordingArchived,
    CallRecordingTranscribed,
    CallRecordingTranscriptionFailed,
    Event,
)
from callbot.common.object_storage import InMemoryObjectStore, ObjectLocation
from callbot.media.domain.transcript import AudioPart, PartTranscript
from callbot.media.transcriber import TranscriptionFailed
from callbot.media.transcribing import TranscriptionPorts, transcribe_recording

T = TypeVar("T")
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ARCHIVE = RecordingArchive(
    bucket="recordings", key="calls/c1/RE1.wav", size_bytes=4, sha256="00", archived_at=NOW
)
EVENT = CallRecordingArchived(call_id="c1", recording_sid="RE1", archive=ARCHIVE)


@dataclass
class FakeEndpoint:
    failures: list[int | None] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    model: str = "whisper-1"

    async def transcribe(self, part: AudioPart) -> PartTranscript:
        self.requests.append(part.filename)
        if self.failures:
            status = self.failures.pop(0)
            raise TranscriptionFailed(f"scripted {status}", status_code=status)
        return PartTranscript(
            "my email is bob@example.com", ((0.0, 2.0, "my email is bob@example.com"),)
        )


@dataclass
class FakeCalls:
    stored_call: CallDocument | None = None
    stored_agent: Agent | None = None

    async def call(self, call_id: str) -> CallDocument | None:
        return self.stored_call

    async def agent(self, agent_id: str) -> Agent | None:
        return self.stored_agent


@dataclass
class Sink:
    events: list[Event] = field(default_factory=list)
    dead: list[tuple[Event, str]] = field(default_factory=list)

    async def publish(self, event: Event) -> None:
        self.events.append(event)

    async def dead_letter(self, event: Event, reason: str) -> None:
        self.dead.append((event, reason))


async def at_once(operation: Callable[[], Awaitable[T]]) -> T:
    return await operation()


def ports(
    endpoint: FakeEndpoint, calls: FakeCalls, sink: Sink, audio: bytes = b"RIFF"
) -> TranscriptionPorts:
    store = InMemoryObjectStore()
    store.objects[ObjectLocation(ARCHIVE.bucket, ARCHIVE.key)] = (audio, "audio/wav")
    return TranscriptionPorts(
        transcriber=endpoint,
        calls=calls,
        store=store,
        events=sink,
        dead_letters=sink,
        while_storage_away=at_once,
        attempts=3,
        first_backoff_s=0.001,
        clock=lambda: NOW,
    )


def checking_agent() -> Agent:
    return Agent.model_validate(
        {
            "agent_id": "a1",
            "name": "Acme",
            "greeting": "Hi",
            "prompt": "Ask",
            "data_check": True,
            "data_to_fill": [{"name": "email", "description": "email", "type": "email"}],
        }
    )


async def test_answers_worth_retrying_are_retried_and_one_transcript_is_published() -> None:
    endpoint, sink = FakeEndpoint(failures=[503, 429]), Sink()
    call = CallDocument(call_id="c1", agent_id="a1", data_collected={"email": "ada@example.com"})
    await transcribe_recording(EVENT, ports(endpoint, FakeCalls(call, checking_agent()), sink))
    assert endpoint.requests == ["RE1.wav"] * 3
    [published] = sink.events
    assert isinstance(published, CallRecordingTranscribed)
    assert published.transcript.text == "my email is bob@example.com"
    assert [(i.field, i.heard) for i in published.data_review or ()] == [
        ("email", ("bob@example.com",))
    ]
    assert sink.dead == []


async def test_without_the_agents_data_check_no_review_is_made() -> None:
    endpoint, sink = FakeEndpoint(), Sink()
    call = CallDocument(call_id="c1", agent_id="a1", data_collected={"email": "ada@example.com"})
    agent = checking_agent().model_copy(update={"data_check": False})
    await transcribe_recording(EVENT, ports(endpoint, FakeCalls(call, agent), sink))
    [published] = sink.events
    assert isinstance(published, CallRecordingTranscribed)
    assert published.data_review is None


async def test_a_failure_for_good_is_announced_and_the_event_dead_lettered() -> None:
    endpoint, sink = FakeEndpoint(failures=[503, 503, 503]), Sink()
    await transcribe_recording(EVENT, ports(endpoint, FakeCalls(), sink))
    [failed] = sink.events
    assert isinstance(failed, CallRecordingTranscriptionFailed)
    assert (failed.recording_sid, failed.attempts) == ("RE1", 3)
    assert [(event, "503" in reason) for event, reason in sink.dead] == [(EVENT, True)]


async def test_an_answer_that_will_not_change_is_not_retried() -> None:
    endpoint, sink = FakeEndpoint(failures=[400]), Sink()
    await transcribe_recording(EVENT, ports(endpoint, FakeCalls(), sink))
    assert endpoint.requests == ["RE1.wav"]
    assert [type(event) for event in sink.events] == [CallRecordingTranscriptionFailed]


async def test_a_recording_already_transcribed_is_not_sent_again() -> None:
    endpoint, sink = FakeEndpoint(), Sink()
    done = RecordingTranscript(recording_sid="RE1", model="m", text="hi", transcribed_at=NOW)
    call = CallDocument(call_id="c1", recording_transcript=done)
    await transcribe_recording(EVENT, ports(endpoint, FakeCalls(call), sink))
    assert (endpoint.requests, sink.events, sink.dead) == ([], [], [])


@dataclass
class DualChannelEndpoint(FakeEndpoint):
    """Each party's channel answers with its own timed words."""

    async def transcribe(self, part: AudioPart) -> PartTranscript:
        self.requests.append(part.filename)
        if part.speaker == "agent":
            return PartTranscript(
                "Hi Ada. Your email?", ((0.6, 2.0, "Hi Ada."), (4.5, 5.5, "Your email?"))
            )
        return PartTranscript(
            "Ada here. ada@example.com", ((2.5, 3.5, "Ada here."), (6.0, 8.0, "ada@example.com"))
        )


def stereo_wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(4 * 800))
    return buffer.getvalue()


async def test_a_dual_channel_transcript_is_published_aligned_with_the_live_turns() -> None:
    endpoint, sink = DualChannelEndpoint(), Sink()

    def said(seq: int, at_s: float) -> Turn:
        role = "assistant" if seq % 2 == 0 else "user"
        return Turn(seq=seq, role=role, content="…", at=NOW + timedelta(seconds=at_s))

    call = CallDocument(
        call_id="c1",
        answered_at=NOW - timedelta(seconds=1),  # Twilio's own start time comes first
        recording=Recording(sid="RE1", started_at=NOW),
        turns=(said(0, 0.5), said(1, 4.0), said(2, 4.2), said(3, 8.5)),
    )
    await transcribe_recording(EVENT, ports(endpoint, FakeCalls(call), sink, stereo_wav()))
    [published] = sink.events
    assert isinstance(published, CallRecordingTranscribed)
    assert [(s.speaker, s.text, s.seq) for s in published.transcript.segments] == [
        ("agent", "Hi Ada.", 0),
        ("callee", "Ada here.", 1),
        ("agent", "Your email?", 2),
        ("callee", "ada@example.com", 3),
    ]
