"""Post-call summaries: the deterministic one, and the request for the model's. Pure.

A summary is what the agent's next call with the same number reads instead of
the whole transcript, so it says what matters then: how the call went, what
the callee gave, what they asked for.
"""

from __future__ import annotations

from typing import Any

from callbot.common.calls import Turn

DETERMINISTIC = "deterministic"
MAX_TRANSCRIPT_CHARS = 6000
SUMMARY_INSTRUCTIONS = (
    "Summarize this phone call for the agent who will call this person next time: "
    "in at most three short sentences, say how it went, what the person gave or "
    "asked for, and what is still open. Plain text, no preamble."
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


def deterministic_summary(
    turns: list[Turn], data: dict[str, Any], ended_by: str | None, missing: list[str]
) -> str:
    """How the call ended, what was collected and what is missing, from the facts alone."""
    spoken = sum(1 for turn in turns if turn.role == "user" and not turn.no_input)
    ending = _ENDINGS.get(ended_by or "", f"the call ended ({ended_by or 'unknown'})")
    parts = [f"Call of {spoken} callee answer(s); {ending}."]
    collected = [f"{name}={value}" for name, value in data.items() if value is not None]
    parts.append(f"Collected: {', '.join(collected)}." if collected else "Nothing collected.")
    if missing:
        parts.append(f"Still missing: {', '.join(missing)}.")
    return " ".join(parts)


def summary_messages(
    turns: list[Turn], data: dict[str, Any], ended_by: str | None
) -> list[dict[str, str]]:
    """The chat messages asking the model for a summary (the transcript, clipped)."""
    lines = [
        f"{'Agent' if turn.role == 'assistant' else 'Callee'}: {turn.content or '(said nothing)'}"
        for turn in turns
    ]
    transcript = "\n".join(lines)
    if len(transcript) > MAX_TRANSCRIPT_CHARS:
        transcript = "...\n" + transcript[-MAX_TRANSCRIPT_CHARS:]
    facts = f"Data collected: {data or 'none'}. Ended by: {ended_by or 'unknown'}."
    return [
        {"role": "system", "content": SUMMARY_INSTRUCTIONS},
        {"role": "user", "content": f"{transcript}\n\n{facts}"},
    ]
