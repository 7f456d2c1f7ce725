"""Issue 6, "Must show" 8: twenty calls at once, each stored whole and right.

Every callee gives details of their own, and the scripted LLM records exactly
what that callee said, so any crossed wire between calls (a turn in the wrong
document, a session serving the wrong call, data of another callee) shows up
as a wrong value. A stack of its own (conftest.py), so the load meets no
other test's calls.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from e2e_harness import E2EStack, FinishedCall, PlacedCall, agent_definition, llm_rule, record_data

from callbot.common.contracts import CallCompleted

pytestmark = pytest.mark.e2e

CALLS = 20
TAG, AGENT_ID = "concurrent", "e2e-concurrent"


def callee(index: int) -> dict[str, Any]:
    """What callee `index` says, and what should be stored for them."""
    name = f"Caller {index:02d}"
    email = f"caller{index:02d}@example.com"
    spoken_phone = f"415 555 01{index:02d}"
    return {
        "to": f"+150055503{index:02d}",
        "name": name,
        "lines": [
            f"This is {name}.",
            f"My email is {email}.",
            f"Call me back at {spoken_phone}.",
        ],
        "data": {"full_name": name, "email": email, "callback_phone": f"+141555501{index:02d}"},
        "rules": [
            llm_rule(
                TAG,
                f"This is {name}\\.",
                text="Thank you. What email address should we use?",
                tool_calls=[record_data("full_name", name)],
            ),
            llm_rule(
                TAG,
                f"email is {email}",
                text="Thank you. And a number we can call you back on?",
                tool_calls=[record_data("email", email)],
            ),
            llm_rule(
                TAG,
                f"back at {spoken_phone}",
                tool_calls=[record_data("callback_phone", spoken_phone)],
            ),
        ],
    }


def peak_overlap(calls: list[FinishedCall]) -> int:
    """The most calls in progress at one moment (answered, not yet ended)."""
    moments = sorted(
        [(call.document.answered_at, 1) for call in calls if call.document.answered_at]
        + [(call.document.ended_at, -1) for call in calls if call.document.ended_at]
    )
    running = peak = 0
    for _, step in moments:
        running += step
        peak = max(peak, running)
    return peak


def test_twenty_concurrent_calls_are_all_stored_complete_and_correct(e2e: E2EStack) -> None:
    e2e.put_agent(AGENT_ID, agent_definition(TAG))
    callees = [callee(index) for index in range(CALLS)]
    for person in callees:
        e2e.add_scenario(
            {
                "name": person["name"],
                "to": person["to"],
                # Slower than the default, so the twenty calls overlap for most of their length.
                "speed": 10,
                "steps": [{"say": line} for line in person["lines"]],
            }
        )
        e2e.fake_llm.control.add_rules(person["rules"])

    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        placed: list[PlacedCall] = list(
            pool.map(lambda p: e2e.place_call(AGENT_ID, p["to"], {"name": p["name"]}), callees)
        )
        # Every call is in progress before the first one ends.
        finished: list[FinishedCall] = list(pool.map(e2e.finish, placed))

    for person, call in zip(callees, finished, strict=True):
        document = call.document
        assert document.to == person["to"]
        assert document.status == "completed", document
        assert document.ended_by == "system_complete", document
        assert document.data_collected == person["data"]
        assert document.data_complete is True
        turns = document.turns
        assert [turn.seq for turn in turns] == list(range(7))
        assert [turn.content for turn in turns if turn.role == "user"] == person["lines"]
        assert [turn.content for turn in turns if turn.role == "assistant"] == (
            call.played.lines("agent")
        )
        assert turns[0].content.startswith(f"Hi {person['name']}, this is Ava")
        assert turns[-1].content == (
            f"Thank you, {person['name']}, I have everything I need. Goodbye!"
        )
        assert document.duration_s == call.played.duration_s
        assert document.recording is not None
        assert document.recording.sid == call.played.recording_sid
        assert call.completed.call.data_collected == person["data"]
        assert call.completed.call.turns == document.turns
        assert call.completed.call.ended_by == "system_complete"

    print(f"at most {peak_overlap(finished)} of the {CALLS} calls were in progress at once")

    # Exactly one call.completed per call, and none for calls that do not exist.
    completed = Counter(
        event.call_id for event in e2e.subscriber.events() if isinstance(event, CallCompleted)
    )
    assert completed == Counter({call.placed.call_id: 1 for call in finished})
    assert len(e2e.llm_requests(TAG)) == 3 * CALLS
