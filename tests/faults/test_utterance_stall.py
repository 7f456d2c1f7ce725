"""Issue 13: one utterance must not stall dialog for every call.

A callee says a 64 kB token as their email while two other callees hesitate
and answer in the same seconds. Extraction used to take quadratic time on a
long token (a second at 20 kB) with dialog's event loop blocked: another
call's turn then passed its deadline and got gateway's fallback line. Now
every turn of the other calls is answered by dialog, and the long token gets
the normal reprompt for a valid email.
"""

from __future__ import annotations

import pytest
from faults_harness import (
    EMAIL_AGENT_ID,
    EMAIL_UTTERANCE,
    FALLBACK_LINES,
    HESITATIONS,
    RunningStack,
    StackOptions,
    answered_utterances,
    assert_completed_by_email,
    place_call_saying,
    start_hesitant_calls,
)

pytestmark = pytest.mark.faults

TOKEN = "a" * (64 * 1024 - len("@example.com")) + "@example.com"
REPROMPT = "Sorry, I didn't get a valid email address. Could you tell me your email address?"


@pytest.fixture(scope="module")
def stack_options() -> StackOptions:
    # Room in a webhook body for the 64 kB utterance (the default limit is 64 kB in all).
    return StackOptions(extra_env={"MAX_WEBHOOK_BODY_BYTES": str(256 * 1024)})


def test_a_64_kb_token_said_as_an_email_stalls_no_other_call(stack: RunningStack) -> None:
    others = start_hesitant_calls(stack, ["+15005550361", "+15005550362"], utterance_s=0.4)
    long_call = place_call_saying(stack, EMAIL_AGENT_ID, "+15005550363", [TOKEN, EMAIL_UTTERANCE])
    (long_document, long_played), *finished = stack.finished([long_call, *others])

    for document, played in finished:
        assert_completed_by_email(document)
        # Every utterance answered by dialog: no turn fell back to gateway's line.
        assert answered_utterances(played) == [*HESITATIONS, EMAIL_UTTERANCE]
        assert not [line for line in played.lines("agent") if line in FALLBACK_LINES]

    agent_lines = long_played.lines("agent")
    assert agent_lines[1] == REPROMPT, agent_lines
    assert not [line for line in agent_lines if line in FALLBACK_LINES]
    assert long_document["data_collected"] == {"email": "ada@example.com"}
    assert long_document["ended_by"] == "system_complete"
    # The stored user turn is what was said (clipped nowhere in the transcript).
    assert long_document["turns"][1]["content"] == TOKEN
