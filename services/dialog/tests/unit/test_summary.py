"""The post-call summary: deterministic text, and the summarizer's fallbacks."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from dialog_doubles import T0, make_agent, make_call, make_session, said

from callbot.common.calls import DataReviewItem, RecordingTranscript, TranscriptSegment
from callbot.common.contracts import CallRecordingTranscribed, CallSummarized, Event
from callbot.dialog.domain.session import Session
from callbot.dialog.domain.summary import (
    DETERMINISTIC,
    RECORDING_INSTRUCTIONS,
    RecordingEvidence,
    deterministic_summary,
    recording_note,
    summary_messages,
)
from callbot.dialog.store import InMemoryDialogStore
from callbot.dialog.summaries import CallSummarizer


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event, *, timeout_s: float = 10.0) -> None:
        self.events.append(event)


class SlowModel:
    async def summarize(self, messages: list[dict[str, str]], timeout_s: float) -> tuple[str, str]:
        async with asyncio.timeout(timeout_s):
            await asyncio.sleep(10)
        return "never", "slow"


class FixedModel:
    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []

    async def summarize(self, messages: list[dict[str, str]], timeout_s: float) -> tuple[str, str]:
        self.messages = messages
        return "Ada gave her name.", "gpt-test"


def _finished_session() -> Session:
    session = make_session(turns=[said(0, "Hi Ada, what is your full name?")])
    session.turns.append(said(1, "Ada Lovelace"))
    session.data_collected = {"full_name": "Ada Lovelace"}
    session.ended_by = "user_goodbye"
    return session


def test_the_deterministic_summary_says_ending_data_and_what_is_missing() -> None:
    text = deterministic_summary(
        [said(0, "Hi"), said(1, "Ada")],
        {"full_name": "Ada", "email": None},
        "opt_out",
        ["email"],
    )
    assert text == (
        "Call of 1 callee answer(s); the callee asked not to be called again. "
        "Collected: full_name=Ada. Still missing: email."
    )


def test_the_summary_request_carries_the_transcript_clipped() -> None:
    turns = [said(seq, "word " * 500) for seq in range(1, 10)]
    messages = summary_messages(turns, {}, "max_turns")
    assert messages[0]["role"] == "system"
    assert len(messages[1]["content"]) < 6200
    assert messages[1]["content"].endswith("Ended by: max_turns.")


async def test_a_slow_model_gets_the_deterministic_summary_after_its_timeout() -> None:
    sink = Sink()
    summarizer = CallSummarizer(SlowModel(), sink, timeout_s=0.05)
    summarizer.summarize(_finished_session())
    await summarizer.close()
    [event] = sink.events
    assert isinstance(event, CallSummarized)
    assert event.model == DETERMINISTIC
    assert "full_name=Ada Lovelace" in event.summary


async def test_the_model_summary_is_published_with_the_model_name() -> None:
    sink, model = Sink(), FixedModel()
    summarizer = CallSummarizer(model, sink, timeout_s=5)
    summarizer.summarize(_finished_session())
    await summarizer.close()
    [event] = sink.events
    assert isinstance(event, CallSummarized)
    assert (event.summary, event.model) == ("Ada gave her name.", "gpt-test")
    assert "Callee: Ada Lovelace" in model.messages[1]["content"]


# --- the summary remade from the recording's transcript -------------------

TRANSCRIBED_AT = T0 + timedelta(minutes=5)
RECORDING = RecordingTranscript(
    recording_sid="RE1",
    model="whisper-1",
    text="Hi Ada. Ada Lovelace. My email is ada.king@example.com.",
    duration_s=9.4,
    channels=2,
    segments=(
        TranscriptSegment(start_s=0.0, end_s=1.0, text="Hi Ada.", channel=2, speaker="agent"),
        TranscriptSegment(
            start_s=2.0, end_s=6.0, text="My email is ada.king@example.com.", speaker="callee"
        ),
    ),
    transcribed_at=TRANSCRIBED_AT,
)
FLAGGED = DataReviewItem(
    field="email",
    value="ada@example.com",
    heard=("ada.king@example.com",),
    reason="the recording has email ada.king@example.com, not the value collected",
)


def _transcribed(
    review: tuple[DataReviewItem, ...] | None = (FLAGGED,),
) -> CallRecordingTranscribed:
    return CallRecordingTranscribed(call_id="call-1", transcript=RECORDING, data_review=review)


def _stored_calls(**fields: Any) -> InMemoryDialogStore:
    store = InMemoryDialogStore()
    store.agents["acme"] = make_agent()
    store.calls["call-1"] = make_call(
        turns=[said(0, "Hi Ada, what is your email?"), said(1, "ada@example.com")],
        status="completed",
        ended_by="system_complete",
        data_collected={"email": "ada@example.com"},
        **fields,
    )
    return store


def test_the_deterministic_summary_notes_the_recording_and_its_flags_not_its_words() -> None:
    evidence = RecordingEvidence(RECORDING, (FLAGGED,))
    text = deterministic_summary([said(1, "ada@example.com")], {}, "user_goodbye", [], evidence)
    assert text.endswith(
        "The recording was transcribed (9 s, 8 words); to check, it contradicts: "
        "email ada@example.com (the recording has ada.king@example.com)."
    )
    assert "My email is" not in text
    unchecked = RecordingEvidence(RECORDING, None)
    assert recording_note(unchecked) == "The recording was transcribed (9 s, 8 words)."
    agreed = RecordingEvidence(RECORDING, ())
    assert recording_note(agreed).endswith("it contradicts none of the values collected.")


def test_the_model_reads_both_transcripts_when_the_recording_is_there() -> None:
    messages = summary_messages(
        [said(1, "ada@example.com")], {}, None, RecordingEvidence(RECORDING, None)
    )
    assert messages[0]["content"].endswith(RECORDING_INSTRUCTIONS)
    content = messages[1]["content"]
    assert "Live transcript:\nCallee: ada@example.com" in content
    assert "Recording transcript:\nAgent: Hi Ada.\nCallee: My email is ada.king" in content


async def test_a_transcript_remakes_the_summary_with_both_sources_deterministically() -> None:
    sink = Sink()
    summarizer = CallSummarizer(None, sink, timeout_s=5, calls=_stored_calls())
    await summarizer.summarize_recording(_transcribed())
    [event] = sink.events
    assert isinstance(event, CallSummarized)
    assert event.sources == ("live_turns", "recording_transcript")
    assert event.model == DETERMINISTIC
    assert event.summary == (
        "Call of 1 callee answer(s); every requested detail was collected. "
        "Collected: email=ada@example.com. Still missing: full_name, callback_phone. "
        "The recording was transcribed (9 s, 8 words); to check, it contradicts: "
        "email ada@example.com (the recording has ada.king@example.com)."
    )


async def test_a_transcript_remakes_the_summary_with_the_model() -> None:
    sink, model = Sink(), FixedModel()
    summarizer = CallSummarizer(model, sink, timeout_s=5, calls=_stored_calls())
    await summarizer.summarize_recording(_transcribed())
    [event] = sink.events
    assert isinstance(event, CallSummarized)
    assert (event.model, event.sources) == ("gpt-test", ("live_turns", "recording_transcript"))
    assert "Recording transcript:" in model.messages[1]["content"]


async def test_a_duplicate_transcript_event_finds_its_summary_stored_and_publishes_nothing() -> (
    None
):
    sink = Sink()
    stored = _stored_calls(
        summary="Remade.",
        summarized_at=TRANSCRIBED_AT + timedelta(seconds=1),
        summary_sources=("live_turns", "recording_transcript"),
    )
    summarizer = CallSummarizer(None, sink, timeout_s=5, calls=stored)
    await summarizer.summarize_recording(_transcribed())
    assert sink.events == []
    # A later transcript (a replay after the endpoint changed) remakes it.
    later = RECORDING.model_copy(update={"transcribed_at": TRANSCRIBED_AT + timedelta(hours=1)})
    await summarizer.summarize_recording(
        CallRecordingTranscribed(call_id="call-1", transcript=later)
    )
    assert len(sink.events) == 1


async def test_a_transcript_of_a_call_not_stored_makes_no_summary() -> None:
    sink = Sink()
    summarizer = CallSummarizer(None, sink, timeout_s=5, calls=InMemoryDialogStore())
    await summarizer.summarize_recording(_transcribed())
    assert sink.events == []
