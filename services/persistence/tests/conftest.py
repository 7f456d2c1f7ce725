"""Scripted calls: the events one call produces, with times MongoDB can store
exactly (milliseconds), for the unit, contract and integration tests. Puts this
directory on sys.path (pytest runs with --import-mode=importlib) so tests
import `recipient_calls`."""

from __future__ import annotations

import random
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callbot.common.calls import (
    EndedBy,
    Recording,
    RecordingArchive,
    RecordingTranscript,
    Role,
    TranscriptSegment,
    Turn,
)
from callbot.common.contracts import (
    CallAnswered,
    CallAnsweredBy,
    CallCreated,
    CallEnding,
    CallEvent,
    CallFallbackSpoken,
    CallRecordingArchived,
    CallRecordingTranscribed,
    CallRecordingTranscriptionFailed,
    CallRecordingUpdated,
    CallStatusChanged,
    CallTurnInterrupted,
    CallTurnRecorded,
)
from callbot.common.fallback_lines import TURN_FALLBACK

sys.path.insert(0, str(Path(__file__).parent))

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

CONVERSATION: tuple[tuple[Role, str, dict[str, Any]], ...] = (
    ("assistant", "Hi Ada, this is Acme. Do you have a minute?", {}),
    ("user", "Sure, my name is Ada Lovelace.", {"name": "Ada Lovelace"}),
    ("assistant", "Thanks Ada. What email should we use?", {"name": "Ada Lovelace"}),
    ("user", "ada@example.com", {"name": "Ada Lovelace", "email": "ada@example.com"}),
    (
        "assistant",
        "Perfect, I have everything. Goodbye!",
        {"name": "Ada Lovelace", "email": "ada@example.com"},
    ),
)
CALL_DURATION_S = 42


@dataclass
class CallScript:
    """Builds the events of one call; `at(s)` is `s` seconds after the call began."""

    call_id: str = field(default_factory=lambda: f"call-{uuid.uuid4().hex[:12]}")
    call_sid: str = field(default_factory=lambda: f"CA{uuid.uuid4().hex}")
    start: datetime = START

    def at(self, seconds: float) -> datetime:
        return self.start + timedelta(milliseconds=round(seconds * 1000))

    def created(self) -> CallCreated:
        return CallCreated(
            call_id=self.call_id,
            occurred_at=self.at(0),
            call_sid=self.call_sid,
            agent_id="demo",
            agent_version=3,
            to="+15550001111",
            from_="+15550002222",
            recipient={"name": "Ada"},
            variables={"campaign": "spring"},
        )

    def status(
        self,
        status: str,
        seq: int | None,
        at: float,
        *,
        duration: int | None = None,
        answered_by: str | None = None,
    ) -> CallStatusChanged:
        return CallStatusChanged(
            call_id=self.call_id,
            occurred_at=self.at(at),
            call_sid=self.call_sid,
            status=status,
            sequence_number=seq,
            call_duration=duration,
            answered_by=answered_by,
        )

    def answered(self, answered_by: str | None = "human", at: float = 5) -> CallAnswered:
        return CallAnswered(
            call_id=self.call_id,
            occurred_at=self.at(at),
            call_sid=self.call_sid,
            answered_by=answered_by,
        )

    def exchange(self, *seqs: int) -> CallTurnRecorded:
        """One `call.turn` holding these turns, with the data collected after the last."""
        last = max(seqs)
        _role, _content, data = CONVERSATION[last]
        return CallTurnRecorded(
            call_id=self.call_id,
            occurred_at=self._turn_time(last),
            turns=tuple(self._turn(seq) for seq in seqs),
            data_collected=data,
            data_complete=last == len(CONVERSATION) - 1,
        )

    def exchanges(self) -> list[CallTurnRecorded]:
        """The conversation as dialog publishes it: the greeting, then each
        utterance with its reply."""
        return [self.exchange(0), *(self.exchange(seq, seq + 1) for seq in (1, 3))]

    def turn(self, seq: int) -> CallTurnRecorded:
        """A `call.turn` of one turn (a line alone, or schema version 1's shape)."""
        return self.exchange(seq)

    def turns(self) -> list[CallTurnRecorded]:
        """One event per turn, as dialog published them before schema version 2."""
        return [self.turn(seq) for seq in range(len(CONVERSATION))]

    def interrupted(self, seq: int, heard: str) -> CallTurnInterrupted:
        """The assistant line at `seq`, cut where the callee spoke over it."""
        line = self._turn(seq).model_copy(update={"content": heard, "interrupted": True})
        return CallTurnInterrupted(
            call_id=self.call_id, occurred_at=self._turn_time(seq), turn=line
        )

    def _turn_time(self, seq: int) -> datetime:
        return self.at(6 + 5 * seq)

    def _turn(self, seq: int) -> Turn:
        role, content, _data = CONVERSATION[seq]
        return Turn(seq=seq, role=role, content=content, at=self._turn_time(seq))

    def ending(self, ended_by: EndedBy = "system_complete", at: float = 30) -> CallEnding:
        """dialog's ending, with the closing line (the conversation's last turn)."""
        return CallEnding(
            call_id=self.call_id,
            occurred_at=self.at(at),
            ended_by=ended_by,
            reason="all data",
            seq=len(CONVERSATION) - 1,
        )

    def fallback(self, seq: int) -> CallFallbackSpoken:
        """gateway's fallback line at `seq`, after the callee's turn before it
        (dialog answered that turn too late)."""
        heard = self._turn(seq - 1)
        line = Turn(
            seq=seq,
            role="assistant",
            content=TURN_FALLBACK,
            at=self._turn_time(seq),
            fallback=True,
        )
        return CallFallbackSpoken(call_id=self.call_id, turns=(heard, line))

    def answered_by(self, answered_by: str, at: float = 7) -> CallAnsweredBy:
        """Asynchronous answering-machine detection's result."""
        return CallAnsweredBy(
            call_id=self.call_id,
            occurred_at=self.at(at),
            call_sid=self.call_sid,
            answered_by=answered_by,
        )

    def recording(self, status: str, at: float = 50) -> CallRecordingUpdated:
        return CallRecordingUpdated(
            call_id=self.call_id,
            occurred_at=self.at(at),
            call_sid=self.call_sid,
            recording=Recording(
                sid="RE1", url="https://api.twilio.test/RE1", duration_s=40, status=status
            ),
        )

    def archived(self, at: float = 40, recording_sid: str = "RE1") -> CallRecordingArchived:
        return CallRecordingArchived(
            call_id=self.call_id,
            occurred_at=self.at(at),
            recording_sid=recording_sid,
            archive=RecordingArchive(
                bucket="callbot-recordings",
                key=f"calls/{self.call_id}/{recording_sid}.wav",
                size_bytes=16044,
                sha256="ab" * 32,
                archived_at=self.at(at),
            ),
        )

    def transcribed(self, at: float = 60, text: str = "Yes.") -> CallRecordingTranscribed:
        return CallRecordingTranscribed(
            call_id=self.call_id,
            occurred_at=self.at(at),
            transcript=RecordingTranscript(
                recording_sid="RE1",
                model="whisper-1",
                text=text,
                segments=(TranscriptSegment(start_s=0.5, end_s=1.0, text=text),),
                transcribed_at=self.at(at),
            ),
            data_review=(),
        )

    def transcription_failed(self, at: float = 55) -> CallRecordingTranscriptionFailed:
        return CallRecordingTranscriptionFailed(
            call_id=self.call_id,
            occurred_at=self.at(at),
            recording_sid="RE1",
            reason="the endpoint answered 503",
            attempts=5,
        )

    def whole_call(self) -> list[CallEvent]:
        """A conversation that dialog ends once it has the data, in natural order."""
        return [
            self.created(),
            self.status("initiated", 0, 1),
            self.status("ringing", 1, 2),
            self.answered(),
            self.status("in-progress", 2, 5),
            *self.exchanges(),
            self.ending(),
            self.status("completed", 3, 31, duration=CALL_DURATION_S),
            self.recording("in-progress", at=31),
            self.recording("completed", at=32),
            self.archived(at=40),
        ]

    @staticmethod
    def shuffled_with_duplicates(events: list[CallEvent], seed: int) -> list[CallEvent]:
        """The same events in another order, a third of them delivered twice."""
        rng = random.Random(seed)
        delivered = events + rng.sample(events, len(events) // 3)
        rng.shuffle(delivered)
        return delivered


@pytest.fixture
def script() -> CallScript:
    return CallScript()
