"""The post-call summary: deterministic text, and the summarizer's fallbacks."""

from __future__ import annotations

import asyncio

from dialog_doubles import make_session, said

from callbot.common.contracts import CallSummarized, Event
from callbot.dialog.domain.session import Session
from callbot.dialog.domain.summary import DETERMINISTIC, deterministic_summary, summary_messages
from callbot.dialog.summaries import CallSummarizer


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event, *, timeout_s: float = 10.0) -> None:
        self.events.append(event)


class SlowModel:
    async def summarize(self, messages: list[dict[str, str]], timeout_s: float) -> tuple[str, str]:
        async with asyncio.timeout(timeout_s):
            await asyncio.sleep(10)
        return "never", "slow"


class FixedModel:
    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []

    async def summarize(self, messages: list[dict[str, str]], timeout_s: float) -> tuple[str, str]:
        self.messages = messages
        return "Ada gave her name.", "gpt-test"


def _finished_session() -> Session:
    session = make_session(turns=[said(0, "Hi Ada, what is your full name?")])
    session.turns.append(said(1, "Ada Lovelace"))
    session.data_collected = {"full_name": "Ada Lovelace"}
    session.ended_by = "user_goodbye"
    return session


def test_the_deterministic_summary_says_ending_data_and_what_is_missing() -> None:
    text = deterministic_summary(
        [said(0, "Hi"), said(1, "Ada")],
        {"full_name": "Ada", "email": None},
        "opt_out",
        ["email"],
    )
    assert text == (
        "Call of 1 callee answer(s); the callee asked not to be called again. "
        "Collected: full_name=Ada. Still missing: email."
    )


def test_the_summary_request_carries_the_transcript_clipped() -> None:
    turns = [said(seq, "word " * 500) for seq in range(1, 10)]
    messages = summary_messages(turns, {}, "max_turns")
    assert messages[0]["role"] == "system"
    assert len(messages[1]["content"]) < 6200
    assert messages[1]["content"].endswith("Ended by: max_turns.")


async def test_a_slow_model_gets_the_deterministic_summary_after_its_timeout() -> None:
    sink = Sink()
    summarizer = CallSummarizer(SlowModel(), sink, timeout_s=0.05)
    summarizer.summarize(_finished_session())
    await summarizer.close()
    [event] = sink.events
    assert isinstance(event, CallSummarized)
    assert event.model == DETERMINISTIC
    assert "full_name=Ada Lovelace" in event.summary


async def test_the_model_summary_is_published_with_the_model_name() -> None:
    sink, model = Sink(), FixedModel()
    summarizer = CallSummarizer(model, sink, timeout_s=5)
    summarizer.summarize(_finished_session())
    await summarizer.close()
    [event] = sink.events
    assert isinstance(event, CallSummarized)
    assert (event.summary, event.model) == ("Ada gave her name.", "gpt-test")
    assert "Callee: Ada Lovelace" in model.messages[1]["content"]
