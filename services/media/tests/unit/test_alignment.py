"""Aligning a dual-channel recording's transcript with the live turns: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callbot.common.calls import (
    CallDocument,
    Recording,
    RecordingTranscript,
    Role,
    Speaker,
    TranscriptSegment,
    Turn,
)
from callbot.media.domain.alignment import (
    aligned_with_turns,
    recording_start,
    turn_of,
    turn_stretches,
)

START = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def turn(seq: int, role: Role, at_s: float) -> Turn:
    return Turn(seq=seq, role=role, content=f"line {seq}", at=START + timedelta(seconds=at_s))


def segment(start_s: float, end_s: float, speaker: Speaker | None) -> TranscriptSegment:
    channel = {"callee": 1, "agent": 2, None: None}[speaker]
    return TranscriptSegment(
        start_s=start_s, end_s=end_s, text="…", channel=channel, speaker=speaker
    )


# The greeting is written 0.5 s into the recording and spoken; the callee's
# answer is stored at 4.0 s, the reply written at 4.3 s, and so on.
TURNS = [
    turn(0, "assistant", 0.5),
    turn(1, "user", 4.0),
    turn(2, "assistant", 4.3),
    turn(3, "user", 9.0),
    turn(4, "assistant", 9.2),
]


def transcript(*segments: TranscriptSegment, channels: int = 2) -> RecordingTranscript:
    return RecordingTranscript(
        recording_sid="RE1",
        model="whisper-1",
        text="…",
        channels=channels,
        segments=segments,
        transcribed_at=START + timedelta(minutes=5),
    )


def test_each_turn_covers_the_stretch_its_timestamp_implies() -> None:
    stretches = [(s.seq, s.role, s.start_s, s.end_s) for s in turn_stretches(TURNS, START)]
    assert stretches == [
        (0, "assistant", 0.5, 4.0),  # written, then spoken until the callee's answer
        (1, "user", 0.5, 4.0),  # said after the greeting, before it was stored
        (2, "assistant", 4.3, 9.0),
        (3, "user", 4.3, 9.0),
        (4, "assistant", 9.2, float("inf")),
    ]


def test_a_segment_takes_the_seq_of_the_turn_of_its_role_it_overlaps_most() -> None:
    stretches = turn_stretches(TURNS, START)
    cases = [
        (segment(1.0, 3.0, "agent"), 0),  # the greeting as heard
        (segment(0.0, 0.4, "callee"), None),  # "Hello?" before the greeting: no turn heard it
        (segment(3.2, 3.9, "callee"), 1),
        (segment(4.5, 6.0, "agent"), 2),
        (segment(6.5, 8.8, "callee"), 3),
        (segment(9.5, 10.5, "agent"), 4),
        (segment(3.8, 4.6, "agent"), 2),  # straddles two lines: 0.3 s of seq 2, 0.2 s of seq 0
        (segment(9.4, 10.0, "callee"), None),  # after the callee's last turn
        (segment(0.1, 0.3, "agent"), None),  # before the greeting was written
        (segment(5.0, 5.0, "callee"), 3),  # a point inside a stretch
        (segment(1.0, 2.0, None), None),  # mono: no speaker, no turn
    ]
    assert [turn_of(seg, stretches) for seg, _ in cases] == [seq for _, seq in cases]


def test_a_tie_goes_to_the_earlier_turn() -> None:
    turns = [turn(0, "assistant", 0.0), turn(1, "user", 4.0), turn(2, "assistant", 4.0)]
    assert turn_of(segment(3.5, 4.5, "agent"), turn_stretches(turns, START)) == 0


def test_only_a_dual_channel_transcript_with_a_known_start_is_aligned() -> None:
    dual = transcript(segment(1.0, 3.0, "agent"), segment(6.5, 8.8, "callee"))
    aligned = aligned_with_turns(dual, TURNS, START)
    assert [s.seq for s in aligned.segments] == [0, 3]
    assert aligned.model_copy(update={"segments": dual.segments}) == dual  # nothing else moved
    assert aligned_with_turns(dual, TURNS, None) == dual
    assert aligned_with_turns(dual, [], START) == dual
    mono = transcript(segment(1.0, 3.0, None), channels=1)
    assert aligned_with_turns(mono, TURNS, START) == mono


def test_the_recording_starts_at_twilios_start_time_else_at_the_answer() -> None:
    answered = START + timedelta(seconds=1)
    call = CallDocument(call_id="c1", answered_at=answered, recording=Recording(sid="RE1"))
    assert recording_start(call) == answered
    started = call.model_copy(update={"recording": Recording(sid="RE1", started_at=START)})
    assert recording_start(started) == START
    assert recording_start(CallDocument(call_id="c2")) is None
