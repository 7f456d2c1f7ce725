"""A dual-channel recording's transcript aligned with the live turns. Pure.

Each segment of a dual-channel transcript knows its speaker; it gets the
`seq` of the live turn of that speaker's role (agent: `assistant`, callee:
`user`) whose stretch of the call it overlaps most. Times are seconds from
the recording's start: a turn's `at` minus the recording's start time
(Twilio's `RecordingStartTime`, else the answer, when Twilio starts a
call's recording). A turn's stretch follows from what `at` marks:

- an assistant turn is written, then spoken: from its `at` to the next
  turn's (the last one: to the end);
- a user turn is stored once the callee has finished speaking: from the
  previous turn's `at` to its own (the first one: from the start).

Ties go to the earlier turn. A segment no turn of its role overlaps (the
callee's "Hello?" before the greeting, their words after their last turn,
the agent's before the greeting was written) keeps `seq` None; so do all
segments of a mono recording (no speaker) or of a call whose recording
start is unknown. The clocks behind the two
timelines differ (Twilio's, whole seconds; callbot's), so a segment that
straddles two turns goes to the one it overlaps most, never to both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from callbot.common.calls import (
    CallDocument,
    RecordingTranscript,
    Role,
    Speaker,
    TranscriptSegment,
    Turn,
)

SPEAKER_ROLES: dict[Speaker, Role] = {"agent": "assistant", "callee": "user"}


@dataclass(frozen=True)
class TurnStretch:
    """Where a live turn sits on the recording's timeline (seconds)."""

    seq: int
    role: Role
    start_s: float
    end_s: float


def recording_start(call: CallDocument) -> datetime | None:
    """Twilio's `RecordingStartTime`, else the answer (a call's recording starts then)."""
    started = call.recording.started_at if call.recording is not None else None
    return started or call.answered_at


def turn_stretches(turns: Sequence[Turn], recording_start: datetime) -> list[TurnStretch]:
    """Each turn's stretch of the recording, by the rule above."""
    ordered = sorted(turns, key=lambda turn: turn.seq)
    offsets = [(turn.at - recording_start).total_seconds() for turn in ordered]
    stretches = []
    for index, turn in enumerate(ordered):
        if turn.role == "assistant":
            end = offsets[index + 1] if index + 1 < len(ordered) else math.inf
            stretches.append(TurnStretch(turn.seq, turn.role, offsets[index], end))
        else:
            start = offsets[index - 1] if index > 0 else -math.inf
            stretches.append(TurnStretch(turn.seq, turn.role, start, offsets[index]))
    return stretches


def overlap_s(segment: TranscriptSegment, stretch: TurnStretch) -> float | None:
    """How long they share; None when they do not meet (a point segment
    inside the stretch shares 0 s)."""
    shared = min(segment.end_s, stretch.end_s) - max(segment.start_s, stretch.start_s)
    if shared > 0 or (shared == 0 and segment.start_s == segment.end_s):
        return shared
    return None


def turn_of(segment: TranscriptSegment, stretches: Sequence[TurnStretch]) -> int | None:
    """The seq of the turn of the segment's speaker it overlaps most (ties: the earlier)."""
    if segment.speaker is None:
        return None
    role = SPEAKER_ROLES[segment.speaker]
    best: tuple[float, int] | None = None
    for stretch in stretches:
        shared = overlap_s(segment, stretch) if stretch.role == role else None
        if shared is not None and (best is None or (shared, -stretch.seq) > best):
            best = (shared, -stretch.seq)
    return None if best is None else -best[1]


def aligned_with_turns(
    transcript: RecordingTranscript, turns: Sequence[Turn], recording_start: datetime | None
) -> RecordingTranscript:
    """The transcript with each dual-channel segment's `seq` set (as it was
    otherwise: mono, no turns, or no known start)."""
    if transcript.channels != 2 or recording_start is None or not turns:
        return transcript
    stretches = turn_stretches(turns, recording_start)
    segments = tuple(
        segment.model_copy(update={"seq": turn_of(segment, stretches)})
        for segment in transcript.segments
    )
    return transcript.model_copy(update={"segments": segments})
