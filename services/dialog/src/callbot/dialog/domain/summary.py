"""Post-call summaries: the deterministic one, and the request for the model's. Pure.

A summary is what the agent's next call with the same number reads instead of
the whole transcript, so it says what matters then: how the call went, what
the callee gave, what they asked for.

Once the recording's transcript is announced the summary is remade with it
(`RecordingEvidence`): the model reads both transcripts; the deterministic
summary notes that the recording was transcribed and which collected values
it contradicts (`data_review`), never the recording's words themselves, so
the next call's context never carries raw transcript text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callbot.common.calls import DataReviewItem, RecordingTranscript, Turn

DETERMINISTIC = "deterministic"
MAX_TRANSCRIPT_CHARS = 6000
SUMMARY_INSTRUCTIONS = (
    "Summarize this phone call for the agent who will call this person next time: "
    "in at most three short sentences, say how it went, what the person gave or "
    "asked for, and what is still open. Plain text, no preamble."
)
RECORDING_INSTRUCTIONS = (
    " A transcript of the call's recording follows the live one: where they "
    "differ, say so briefly (the recording is the better evidence of what was "
    "said); do not quote it at length."
)

_ENDINGS = {
    "system_complete": "every requested detail was collected",
    "user_goodbye": "the callee ended the conversation",
    "callee_hangup": "the callee hung up",
    "system_timeout": "the callee stopped answering",
    "max_turns": "the call reached its turn limit",
    "max_duration": "the call reached its time limit",
    "voicemail": "an answering machine took the call and a message was left",
    "opt_out": "the callee asked not to be called again",
    "error": "the call ended on an error",
}


@dataclass(frozen=True)
class RecordingEvidence:
    """The recording's transcript and the data check's flags (None: not checked)."""

    transcript: RecordingTranscript
    data_review: tuple[DataReviewItem, ...] | None


def deterministic_summary(
    turns: list[Turn],
    data: dict[str, Any],
    ended_by: str | None,
    missing: list[str],
    recording: RecordingEvidence | None = None,
) -> str:
    """How the call ended, what was collected and what is missing, from the facts alone."""
    spoken = sum(1 for turn in turns if turn.role == "user" and not turn.no_input)
    ending = _ENDINGS.get(ended_by or "", f"the call ended ({ended_by or 'unknown'})")
    parts = [f"Call of {spoken} callee answer(s); {ending}."]
    collected = [f"{name}={value}" for name, value in data.items() if value is not None]
    parts.append(f"Collected: {', '.join(collected)}." if collected else "Nothing collected.")
    if missing:
        parts.append(f"Still missing: {', '.join(missing)}.")
    if recording is not None:
        parts.append(recording_note(recording))
    return " ".join(parts)


def recording_note(recording: RecordingEvidence) -> str:
    """That the recording was transcribed, how much of it, and the values it
    contradicts: facts about the recording, never its words."""
    transcript = recording.transcript
    length = f"{transcript.duration_s:.0f} s, " if transcript.duration_s is not None else ""
    note = f"The recording was transcribed ({length}{len(transcript.text.split())} words)"
    review = recording.data_review
    if review is None:
        return note + "."
    if not review:
        return note + "; it contradicts none of the values collected."
    flags = "; ".join(
        f"{item.field} {item.value} (the recording has {', '.join(item.heard)})" for item in review
    )
    return f"{note}; to check, it contradicts: {flags}."


def summary_messages(
    turns: list[Turn],
    data: dict[str, Any],
    ended_by: str | None,
    recording: RecordingEvidence | None = None,
) -> list[dict[str, str]]:
    """The chat messages asking the model for a summary (the transcripts, clipped)."""
    lines = [
        f"{'Agent' if turn.role == 'assistant' else 'Callee'}: {turn.content or '(said nothing)'}"
        for turn in turns
    ]
    facts = f"Data collected: {data or 'none'}. Ended by: {ended_by or 'unknown'}."
    if recording is None:
        content = f"{_clipped(lines)}\n\n{facts}"
        return [
            {"role": "system", "content": SUMMARY_INSTRUCTIONS},
            {"role": "user", "content": content},
        ]
    heard = [
        f"{(segment.speaker or 'Speaker').capitalize()}: {segment.text}"
        for segment in recording.transcript.segments
    ] or [recording.transcript.text]
    content = (
        f"Live transcript:\n{_clipped(lines)}\n\n"
        f"Recording transcript:\n{_clipped(heard)}\n\n{facts} {recording_note(recording)}"
    )
    return [
        {"role": "system", "content": SUMMARY_INSTRUCTIONS + RECORDING_INSTRUCTIONS},
        {"role": "user", "content": content},
    ]


def _clipped(lines: list[str]) -> str:
    """The transcript's end when it is too long (how the call ended matters most)."""
    transcript = "\n".join(lines)
    if len(transcript) > MAX_TRANSCRIPT_CHARS:
        return "...\n" + transcript[-MAX_TRANSCRIPT_CHARS:]
    return transcript
