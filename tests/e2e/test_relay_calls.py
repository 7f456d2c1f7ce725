"""Issue 19, "Must show" 1-3: calls whose agent talks over Twilio ConversationRelay,
through gateway, dialog and persistence as processes, the emulator playing
Twilio's side of the WebSocket, and the scripted LLM streaming its answers.

The tests share one stack (see conftest.py); each uses an agent and a `to`
number of its own, and its LLM rules match only its own agent's prompt.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_harness import (
    E2EStack,
    FinishedCall,
    agent_definition,
    llm_rule,
    record_data,
    wait_until,
)
from twilio.request_validator import RequestValidator
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from callbot.common.calls import CallDocument
from callbot.emulator.records import RelayReply
from callbot.testkit.stack import AUTH_TOKEN

pytestmark = pytest.mark.e2e

RELAY = {"type": "conversation_relay", "interruptible": "any"}
# Written once the call ended; not the conversation's shape.
BOOKKEEPING = {"completed_claimed_at", "completed_published_at", "updated_at", "recording"}


def contact_rules(tag: str) -> list[dict[str, Any]]:
    return [
        llm_rule(
            tag,
            "Lovelace",
            text="Thank you, Ada. What email address should we use?",
            tool_calls=[record_data("full_name", "Ada Lovelace")],
        ),
        llm_rule(
            tag,
            "example",
            text="Got it, thanks. And a callback number?",
            tool_calls=[record_data("email", "ada@example.com")],
        ),
        llm_rule(
            tag,
            "555",
            text="Perfect.",
            tool_calls=[record_data("callback_phone", "+14155550123")],
        ),
    ]


CONTACT_STEPS = [
    {"say": "It's Ada Lovelace."},
    {"say": "ada at example dot com"},
    {"say": "four one five, 555, 0123"},
]


def relay_replies(call: FinishedCall) -> list[RelayReply]:
    return call.played.relay_replies


def populated(document: CallDocument) -> set[str]:
    dumped = document.model_dump(exclude=BOOKKEEPING)
    return {key for key, value in dumped.items() if value not in (None, [], {}, ())}


def test_a_relay_call_collects_its_data_and_is_stored_like_a_gather_call(e2e: E2EStack) -> None:
    for tag, transport in (("relay-1", RELAY), ("gather-1", "gather")):
        e2e.put_agent(tag, agent_definition(tag, transport=transport))
        e2e.fake_llm.control.add_rules([{**rule, "times": None} for rule in contact_rules(tag)])
    e2e.add_scenario({"name": "relay-1", "to": "+15005551901", "steps": CONTACT_STEPS})
    e2e.add_scenario({"name": "gather-1", "to": "+15005551902", "steps": CONTACT_STEPS})

    relay = e2e.call("relay-1", "+15005551901", {"name": "Ada"})
    gather = e2e.call("gather-1", "+15005551902", {"name": "Ada"})

    # The emulator spoke ConversationRelay: the greeting then one streamed reply a prompt.
    assert [reply.after for reply in relay_replies(relay)] == [
        "setup",
        *(step["say"] for step in CONTACT_STEPS),
    ]
    assert all(reply.first_token_ms is not None for reply in relay_replies(relay)[:-1])
    assert relay.played.webhooks_of("action")[-1].params["SessionStatus"] == "ended"
    assert gather.played.relay_replies == []

    for call in (relay, gather):
        document = call.document
        assert document.ended_by == "system_complete"
        assert document.data_complete
        assert document.data_collected == {
            "full_name": "Ada Lovelace",
            "email": "ada@example.com",
            "callback_phone": "+14155550123",
        }
        assert [turn.seq for turn in document.turns] == list(range(7))
        assert call.completed.call.ended_by == "system_complete"
        assert call.completed.call.data_collected == document.data_collected
    assert populated(relay.document) == populated(gather.document)
    relay_lines = [t.content for t in relay.document.turns]
    gather_lines = [t.content for t in gather.document.turns]
    assert relay_lines[:-1] == gather_lines[:-1]
    # The model's own words went out before the policy's closing line.
    assert relay_lines[-1] == f"Perfect. {gather_lines[-1]}"
    # What the callee heard is what is stored: the streamed lines, then the
    # closing line said before the hang-up.
    heard = relay.played.lines("agent")
    assistant = [t.content for t in relay.document.turns if t.role == "assistant"]
    assert heard[:-2] == assistant[:-1]
    assert " ".join(heard[-2:]) == assistant[-1]
    assert relay.played.lines("callee") == [step["say"] for step in CONTACT_STEPS]
    # Every turn's model answer was streamed, and read to its end.
    requests = {r.index for r in e2e.llm_requests("relay-1")}
    streams = [s for s in e2e.fake_llm.control.streams() if s.request_index in requests]
    assert len(streams) == 3
    assert all(stream.outcome == "finished" for stream in streams)


def test_barge_in_stops_the_model_and_stores_only_what_was_heard(e2e: E2EStack) -> None:
    tag = "relay-2"
    e2e.put_agent(tag, agent_definition(tag, transport=RELAY))
    long_story = (
        "Of course. We are Acme Support, and we keep your contact details current, "
        "so that our engineers can reach you, whenever something changes, "
        "on any of the accounts you hold with us, at home or at work."
    )
    e2e.fake_llm.control.add_rules(
        [
            {
                **llm_rule(tag, "who are you"),
                "response": {"text": long_story, "first_token_s": 0.05, "token_interval_s": 0.05},
            },
            *contact_rules(tag),
        ]
    )
    e2e.add_scenario(
        {
            "name": tag,
            "to": "+15005551903",
            "steps": [
                {"say": "Sorry, who are you?"},
                {"say": "OK. It's Ada Lovelace.", "barge_in_after_tokens": 2},
                {"hangup": {}},
            ],
        }
    )
    call = e2e.call(tag, "+15005551903", {"name": "Ada"})

    story, answer = relay_replies(call)[1:3]
    assert story.interrupted
    assert story.heard
    assert story.heard == story.text
    assert long_story.startswith(story.heard)
    assert len(story.heard) < len(long_story)
    # The stored line is what the callee heard, marked interrupted.
    turns = call.document.turns
    assert (turns[2].role, turns[2].content, turns[2].interrupted) == (
        "assistant",
        story.heard,
        True,
    )
    # The model's stream was closed before its end: generation stopped.
    requests = e2e.llm_requests(tag)
    streams = {s.request_index: s for s in e2e.fake_llm.control.streams()}
    story_stream = streams[requests[0].index]
    assert story_stream.outcome == "closed_by_client"
    assert story_stream.pieces_sent < story_stream.pieces_total
    # The next prompt is answered normally, its model context holding only what was heard.
    assert answer.text == "Thank you, Ada. What email address should we use?"
    assert (turns[3].content, turns[4].content) == ("OK. It's Ada Lovelace.", answer.text)
    assert ("assistant", story.heard) in [
        (m["role"], m["content"]) for m in requests[1].body["messages"]
    ]
    assert call.document.data_collected == {"full_name": "Ada Lovelace"}


def test_a_handshake_without_a_valid_signature_is_refused(e2e: E2EStack) -> None:
    base = e2e.stack.gateway_url.replace("http://", "ws://")
    url = f"{base}/relay?call_id=forged-relay-call"
    wrong = RequestValidator("not-the-auth-token").compute_signature(url, {})
    for headers in ({}, {"X-Twilio-Signature": wrong}):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers, open_timeout=10)
        assert refused.value.response.status_code == 403
    # Signed for another call's URL: refused as well.
    other = RequestValidator(AUTH_TOKEN).compute_signature(f"{base}/relay?call_id=other", {})
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"X-Twilio-Signature": other}, open_timeout=10)
    assert refused.value.response.status_code == 403
    # A signed handshake is accepted (the socket URL is the public one).
    signed = RequestValidator(AUTH_TOKEN).compute_signature(url, {})
    with connect(url, additional_headers={"X-Twilio-Signature": signed}, open_timeout=10):
        pass
    assert e2e.document("forged-relay-call") is None


def test_a_socket_dropped_mid_call_is_finalized_from_the_status_callbacks(
    e2e: E2EStack,
) -> None:
    tag = "relay-3"
    e2e.put_agent(tag, agent_definition(tag, transport=RELAY))
    e2e.fake_llm.control.add_rules(contact_rules(tag))
    e2e.add_scenario(
        {
            "name": tag,
            "to": "+15005551904",
            "steps": [{"say": "It's Ada Lovelace."}, {"drop_socket": {}}],
        }
    )
    call = e2e.call(tag, "+15005551904", {"name": "Ada"})
    assert call.played.webhooks_of("action")[-1].params["SessionStatus"] == "failed"
    document = call.document
    assert document.status == "completed"
    assert document.ended_by == "callee_hangup"
    assert [(t.seq, t.role) for t in document.turns] == [
        (0, "assistant"),
        (1, "user"),
        (2, "assistant"),
    ]
    assert document.data_collected == {"full_name": "Ada Lovelace"}
    assert call.completed.call.turns == document.turns
    wait_until(lambda: e2e.document(call.placed.call_id), "the document")
