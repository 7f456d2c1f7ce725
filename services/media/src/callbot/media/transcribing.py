"""Transcribing an archived recording, run against the ports it is given.

On `call.recording_archived`, when transcription is configured:
1. A transcript of this recording already stored (a redelivered event) is
   not made again.
2. The archive is read from the bucket (waiting out an object-storage
   outage), split into its channels when it has two, and each part is sent
   to the transcription endpoint, retried with exponential backoff on
   answers worth retrying.
3. A dual-channel transcript's segments get the seq of the live turn each
   belongs to (`domain.alignment`); with the agent's `data_check`, the values
   collected are checked against the transcript (`domain.data_check`).
4. `call.recording_transcribed` is published; persistence stores it.

A transcription that fails for good (the attempts allowed, or at once for an
answer that will not change) publishes `call.recording_transcription_failed`
(persistence marks the call) and dead-letters the archive event with the
reason, so it can be replayed; the recording is kept. `call.completed` never
waits for any of this: it went out when the call ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument
from callbot.common.contracts import (
    CallRecordingArchived,
    CallRecordingTranscribed,
    CallRecordingTranscriptionFailed,
    utcnow,
)
from callbot.common.object_storage import ObjectLocation, ObjectStore
from callbot.media.domain.alignment import aligned_with_turns, recording_start
from callbot.media.domain.data_check import review_collected_data
from callbot.media.domain.transcript import (
    AudioPart,
    PartTranscript,
    audio_parts,
    merge_transcripts,
)
from callbot.media.ports import DeadLetters, EventSink, WhileStorageAway
from callbot.media.retries import with_backoff
from callbot.media.transcriber import TranscriptionFailed

log = logging.getLogger(__name__)

MAX_TRANSCRIPTION_BACKOFF_S = 300.0


class Transcriber(Protocol):
    model: str

    async def transcribe(self, part: AudioPart) -> PartTranscript: ...


class CallReader(Protocol):
    async def call(self, call_id: str) -> CallDocument | None: ...

    async def agent(self, agent_id: str) -> Agent | None: ...


@dataclass(frozen=True)
class TranscriptionPorts:
    transcriber: Transcriber
    calls: CallReader
    store: ObjectStore
    events: EventSink
    dead_letters: DeadLetters
    while_storage_away: WhileStorageAway
    attempts: int = 5
    first_backoff_s: float = 2.0
    clock: Callable[[], datetime] = utcnow


async def transcribe_recording(event: CallRecordingArchived, ports: TranscriptionPorts) -> None:
    call = await ports.calls.call(event.call_id)
    stored = call.recording_transcript if call else None
    if stored is not None and stored.recording_sid == event.recording_sid:
        log.info("recording already transcribed; nothing to do", extra={"sid": event.recording_sid})
        return
    location = ObjectLocation(event.archive.bucket, event.archive.key)
    audio = await ports.while_storage_away(lambda: ports.store.get(location))
    parts = audio_parts(event.recording_sid, audio)
    answers: list[tuple[AudioPart, PartTranscript]] = []
    for part in parts:
        try:
            answers.append((part, await _transcribe(ports, part)))
        except _GaveUp as exc:
            await _failed_for_good(event, ports, exc)
            return
    transcript = merge_transcripts(
        event.recording_sid, answers, model=ports.transcriber.model, at=ports.clock()
    )
    if call is not None:
        transcript = aligned_with_turns(transcript, call.turns, recording_start(call))
    agent = await ports.calls.agent(call.agent_id) if call and call.agent_id else None
    review = (
        review_collected_data(agent.data_to_fill, call.data_collected, transcript)
        if agent is not None and agent.data_check and call is not None
        else None
    )
    await ports.events.publish(
        CallRecordingTranscribed(call_id=event.call_id, transcript=transcript, data_review=review)
    )
    log.info(
        "recording transcribed",
        extra={
            "recording_sid": event.recording_sid,
            "channels": transcript.channels,
            "segments": len(transcript.segments),
            "flagged": len(review or ()),
        },
    )


class _GaveUp(Exception):
    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.attempts = attempts


async def _transcribe(ports: TranscriptionPorts, part: AudioPart) -> PartTranscript:
    retrying = with_backoff(
        retryable=lambda exc: isinstance(exc, TranscriptionFailed) and exc.retryable,
        attempts=ports.attempts,
        first_backoff_s=ports.first_backoff_s,
        max_backoff_s=MAX_TRANSCRIPTION_BACKOFF_S,
        what="transcription",
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await ports.transcriber.transcribe(part)
    except TranscriptionFailed as exc:
        raise _GaveUp(f"{part.filename}: {exc}", retrying.statistics["attempt_number"]) from exc
    raise AssertionError("unreachable: tenacity reraises the last error")


async def _failed_for_good(
    event: CallRecordingArchived, ports: TranscriptionPorts, failure: _GaveUp
) -> None:
    reason = f"recording {event.recording_sid} could not be transcribed: {failure}"
    await ports.events.publish(
        CallRecordingTranscriptionFailed(
            call_id=event.call_id,
            recording_sid=event.recording_sid,
            reason=reason,
            attempts=failure.attempts,
        )
    )
    await ports.dead_letters.dead_letter(event, reason)
    log.error(
        "recording not transcribed; the call is marked and the event dead-lettered for replay",
        extra={"recording_sid": event.recording_sid, "reason": reason},
    )
