"""The earlier-calls context dialog sends the model, with and without summaries.

Builds five finished calls between one agent and one number (14 turns each,
lines of realistic length), and prints the size of the "Earlier calls" message
dialog builds from them three ways:
- raw: every turn of every call, as a model would need without a summary or a cut;
- clipped turns: what dialog sends for calls without a summary (the last
  `TURNS_PER_CALL` turns, each clipped), within the agent's token budget;
- summaries: what dialog sends once calls have summaries (3 sentences each).
Tokens are estimated at 4 characters a token (no tokenizer is installed
here); the ratio between the rows does not depend on that estimate much.

Usage: .venv/bin/python bench/past_call_context.py [--calls 5] [--budget 1000]
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from callbot.common.calls import CallDocument, Turn
from callbot.dialog.domain.past_calls import CHARS_PER_TOKEN, summarise_past_calls

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
AGENT_LINES = (
    "Hi Ada, this is Ava from Acme Support calling about your recent order. Do you have a minute?",
    "Thank you. Could you confirm your full name as it should appear on the account?",
    "Got it, thank you. What email address should we use for the order updates?",
    "Sorry, I didn't quite catch that. Could you spell the part before the at sign?",
    "Perfect. And what is the best phone number to reach you if the courier needs to call?",
    "Thanks. Is there a time of day that works best for a delivery to that address?",
    "Great, I have everything I need. Thank you for your time, Ada, and have a lovely day!",
)
CALLEE_LINES = (
    "Yes, sure, I have a couple of minutes now, what is it about exactly?",
    "It's Ada Lovelace, that's L O V E L A C E, with one L at the end.",
    "It's ada at example dot com, the same one I used when I placed the order.",
    "A D A, then at example dot com. Sorry, the line is a bit noisy here.",
    "You can reach me at 415 555 0134, that's my mobile, it's usually on.",
    "Mornings are best, ideally before eleven, I work from home most afternoons.",
    "Thank you, bye now.",
)
SUMMARY = (
    "Ada Lovelace confirmed her name, email ada@example.com and mobile +14155550134. "
    "She prefers deliveries in the morning before 11 am. Nothing is left open."
)


def past_call(n: int, *, summarized: bool) -> CallDocument:
    started = START - timedelta(days=n + 1)
    turns = []
    for index, (agent_line, callee_line) in enumerate(zip(AGENT_LINES, CALLEE_LINES, strict=True)):
        at = started + timedelta(seconds=10 * index)
        turns.append(Turn(seq=2 * index, role="assistant", content=agent_line, at=at))
        turns.append(Turn(seq=2 * index + 1, role="user", content=callee_line, at=at))
    return CallDocument(
        call_id=f"past-{n}",
        agent_id="acme",
        to="+14155550100",
        status="completed",
        ended_by="system_complete",
        created_at=started,
        turns=tuple(turns),
        data_collected={"full_name": "Ada Lovelace", "email": "ada@example.com"},
        summary=SUMMARY if summarized else None,
    )


def raw_context(calls: list[CallDocument]) -> str:
    return "\n".join(f"{turn.role}: {turn.content}" for call in calls for turn in call.turns)


def described(calls: list[CallDocument], budget: int) -> tuple[int, str]:
    kept = summarise_past_calls(calls, token_budget=budget)
    return len(kept), "\n".join(past.describe() for past in kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--budget", type=int, default=1000, help="past_calls_token_budget")
    args = parser.parse_args()

    plain = [past_call(n, summarized=False) for n in range(args.calls)]
    with_summaries = [past_call(n, summarized=True) for n in range(args.calls)]
    rows = [
        ("raw turns (no summary, no cut)", args.calls, raw_context(plain)),
        ("clipped turns (calls without summary)", *described(plain, args.budget)),
        ("summaries", *described(with_summaries, args.budget)),
        ("clipped turns, budget 400 tokens", *described(plain, 400)),
    ]
    baseline = len(rows[0][2])
    print(f"{args.calls} past calls of {len(plain[0].turns)} turns; budget {args.budget} tokens")
    print(f"{'context':40} {'calls':>5} {'chars':>7} {'~tokens':>8} {'vs raw':>7}")
    for name, count, text in rows:
        tokens = len(text) // CHARS_PER_TOKEN
        print(f"{name:40} {count:>5} {len(text):>7} {tokens:>8} {len(text) / baseline:>7.0%}")


if __name__ == "__main__":
    main()
