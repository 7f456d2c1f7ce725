"""One contract for every store: the in-memory fake and MongoDB must give the
documents the projection specifies, for any delivery order, with duplicates,
and handle the `call.completed` claim the same way."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.agents import Agent
from callbot.common.calls import (
    LIVE_TURNS,
    RECORDING_TRANSCRIPT,
    CallbackRequest,
    CallDocument,
    SummarySource,
    TranscriptSegment,
    Turn,
)
from callbot.common.contracts import (
    CallEvent,
    CallFallbackSpoken,
    CallSummarized,
    CallTurnInterrupted,
    CallTurnRecorded,
    utcnow,
)
from callbot.common.mongo import AGENTS, CALLS, Document
from callbot.persistence.domain.completion import recording_missed_completion
from callbot.persistence.domain.projection import project
from callbot.persistence.store import (
    AgentStore,
    CallStore,
    InMemoryAgentStore,
    InMemoryCallStore,
    MongoAgentStore,
    MongoCallStore,
)

if TYPE_CHECKING:
    from conftest import CallScript


def _content(call: CallDocument | None) -> CallDocument:
    """The document without the store's own timestamp."""
    assert call is not None, "the call document was not written"
    return call.model_copy(update={"updated_at": None})


async def _apply_all(store: CallStore, events: list[CallEvent]) -> None:
    for event in events:
        await store.apply(event)


async def _finalized(store: CallStore, script: CallScript) -> None:
    await _apply_all(store, [script.created(), script.status("completed", 3, 31, duration=42)])


class CallStoreContract:
    @pytest.fixture
    def store(self) -> CallStore:
        raise NotImplementedError("each store's test class provides it")

    async def test_a_whole_call_in_order_gives_the_projected_document(
        self, store: CallStore, script: CallScript
    ) -> None:
        events = script.whole_call()
        await _apply_all(store, events)
        stored = await store.get(script.call_id)
        assert _content(stored) == project(events, script.call_id)
        assert stored is not None
        assert stored.updated_at is not None

    @pytest.mark.parametrize("seed", range(6))
    async def test_shuffled_and_duplicated_events_give_the_same_document(
        self, store: CallStore, script: CallScript, seed: int
    ) -> None:
        events = script.whole_call()
        await _apply_all(store, script.shuffled_with_duplicates(events, seed))
        assert _content(await store.get(script.call_id)) == project(events, script.call_id)

    async def test_concurrent_delivery_gives_the_same_document(
        self, store: CallStore, script: CallScript
    ) -> None:
        events = script.whole_call()
        delivered = script.shuffled_with_duplicates(events, seed=7)
        await asyncio.gather(*(store.apply(event) for event in delivered))
        assert _content(await store.get(script.call_id)) == project(events, script.call_id)

    @pytest.mark.parametrize("archive_first", [False, True])
    async def test_the_archive_lands_on_its_recording_whichever_comes_first(
        self, store: CallStore, script: CallScript, archive_first: bool
    ) -> None:
        recording = [script.recording("completed"), script.archived()]
        events = [script.created(), *(reversed(recording) if archive_first else recording)]
        await _apply_all(store, events)
        call = await store.get(script.call_id)
        assert call is not None
        assert call.recording is not None
        assert call.recording.status == "completed"
        assert call.recording.archive == script.archived().archive
        assert _content(call) == project(events, script.call_id)

    @pytest.mark.parametrize("seed", range(3))
    async def test_transcripts_and_failures_converge_in_any_order(
        self, store: CallStore, script: CallScript, seed: int
    ) -> None:
        # The latest transcript wins and clears the failure mark; a failure
        # never marks a transcribed call. They come after the call exists (they
        # never create it, see below): media transcribes an archived recording.
        first = [script.created(), script.archived()]
        later = [
            script.transcription_failed(),
            script.transcribed(at=60, text="first"),
            script.transcribed(at=61, text="replayed"),
        ]
        events = first + later
        await _apply_all(store, first + script.shuffled_with_duplicates(later, seed))
        call = await store.get(script.call_id)
        assert call is not None
        assert call.recording_transcript is not None
        assert (call.recording_transcript.text, call.recording_transcript_failure) == (
            "replayed",
            None,
        )
        assert call.data_review == ()
        assert _content(call) == project(events, script.call_id)

    async def test_a_dual_channel_transcript_is_stored_with_each_segments_turn(
        self, store: CallStore, script: CallScript
    ) -> None:
        # As the media worker publishes it: the greeting (seq 0) and the
        # callee's answer (seq 1) aligned; words after their last turn, none.
        segments = (
            TranscriptSegment(
                start_s=0.6, end_s=2.0, text="Hi Ada.", channel=2, speaker="agent", seq=0
            ),
            TranscriptSegment(
                start_s=2.5, end_s=3.5, text="Yes.", channel=1, speaker="callee", seq=1
            ),
            TranscriptSegment(start_s=9.0, end_s=9.5, text="Bye.", channel=1, speaker="callee"),
        )
        event = script.transcribed()
        aligned = event.model_copy(
            update={
                "transcript": event.transcript.model_copy(
                    update={"channels": 2, "segments": segments}
                )
            }
        )
        await _apply_all(store, [*script.whole_call(), aligned])
        call = await store.get(script.call_id)
        assert call is not None
        assert call.recording_transcript is not None
        assert [(s.text, s.seq) for s in call.recording_transcript.segments] == [
            ("Hi Ada.", 0),
            ("Yes.", 1),
            ("Bye.", None),
        ]

    async def test_a_transcript_or_failure_never_creates_a_call(
        self, store: CallStore, script: CallScript
    ) -> None:
        await _apply_all(store, [script.transcribed(), script.transcription_failed()])
        assert await store.get(script.call_id) is None

    async def test_an_archive_of_another_recording_is_ignored(
        self, store: CallStore, script: CallScript
    ) -> None:
        events = [
            script.created(),
            script.recording("completed"),
            script.archived(recording_sid="RE2"),
        ]
        await _apply_all(store, events)
        call = await store.get(script.call_id)
        assert call is not None
        assert call.recording is not None
        assert (call.recording.sid, call.recording.archive) == ("RE1", None)
        assert _content(call) == project(events, script.call_id)

    @pytest.mark.parametrize("order", ["fallback_first", "late_first", "status_then_fallback"])
    async def test_the_fallback_line_holds_its_seq_and_voids_the_late_ending(
        self, store: CallStore, script: CallScript, order: str
    ) -> None:
        # dialog closed the call at seq 4 after gateway's deadline: the callee
        # heard gateway's fallback line there, and then hung up.
        late = [script.exchange(3, 4), script.ending()]
        fallback = script.fallback(4)
        completed = script.status("completed", 3, 31, duration=40)
        tail = {
            "fallback_first": [fallback, *late, completed],
            "late_first": [*late, fallback, completed],
            "status_then_fallback": [*late, completed, fallback],
        }[order]
        events = [script.created(), script.answered(), *script.exchanges()[:2], *tail]
        await _apply_all(store, events)
        call = _content(await store.get(script.call_id))
        assert [turn.seq for turn in call.turns] == [0, 1, 2, 3, 4]
        assert (call.turns[4].content, call.turns[4].fallback) == (fallback.line.content, True)
        # The callee's words stay, and so does what was collected from them.
        assert call.turns[3] == script.exchange(3).turns[0]
        assert call.data_collected == script.exchange(3, 4).data_collected
        assert (call.ended_by, call.ending_reason, call.ending_seq) == ("callee_hangup", None, None)
        assert call == project(events, script.call_id)

    @pytest.mark.parametrize("order", ["fallback_first", "late_first", "status_then_fallback"])
    async def test_a_late_voicemail_message_gives_way_to_the_one_gateway_left(
        self, store: CallStore, script: CallScript, order: str
    ) -> None:
        # A machine answered; dialog's voicemail message (seq 0, with its
        # ending) came after gateway had left the agent's message itself.
        message = "Hello Ada, this is Ava. We will call you back later."
        said = Turn(seq=0, role="assistant", content=message, at=script.at(6))
        late = [
            CallTurnRecorded(call_id=script.call_id, occurred_at=script.at(9), turns=(said,)),
            script.ending("voicemail").model_copy(update={"seq": 0}),
        ]
        left = said.model_copy(update={"at": script.at(5), "fallback": True})
        fallback = CallFallbackSpoken(call_id=script.call_id, occurred_at=left.at, turns=(left,))
        completed = script.status("completed", 3, 31, duration=20)
        tail = {
            "fallback_first": [fallback, *late, completed],
            "late_first": [*late, fallback, completed],
            "status_then_fallback": [*late, completed, fallback],
        }[order]
        events = [script.created(), script.answered("machine_end_beep"), *tail]
        await _apply_all(store, events)
        call = _content(await store.get(script.call_id))
        assert call.turns == (left,)
        # The machine heard a voicemail message, and the call ended with it.
        assert (call.ended_by, call.ending_seq) == ("voicemail", None)
        assert call == project(events, script.call_id)

    @pytest.mark.parametrize("order", ["fallback_first", "cut_first", "late_first", "cut_last"])
    async def test_a_fallback_line_the_callee_spoke_over_stays_cut_and_a_fallback(
        self, store: CallStore, script: CallScript, order: str
    ) -> None:
        # ConversationRelay: the callee spoke over gateway's fallback line at
        # seq 4, and dialog's reply there came late, with a closing line.
        late = [script.exchange(3, 4), script.ending()]
        fallback = script.fallback(4)
        heard = fallback.line.model_copy(update={"content": "Sorry, give", "interrupted": True})
        cut = CallTurnInterrupted(call_id=script.call_id, occurred_at=heard.at, turn=heard)
        tail = {
            "fallback_first": [fallback, cut, *late],
            "cut_first": [cut, *late, fallback],
            "late_first": [*late, cut, fallback],
            "cut_last": [*late, fallback, cut],
        }[order]
        events = [script.created(), script.answered(), *script.exchanges()[:2], *tail]
        await _apply_all(store, events)
        call = _content(await store.get(script.call_id))
        assert call.turns[4] == heard
        assert (call.ended_by, call.ending_seq) == (None, None)
        assert call == project(events, script.call_id)

    async def test_asynchronous_machine_detection_says_who_answered(
        self, store: CallStore, script: CallScript
    ) -> None:
        events = [
            script.created(),
            script.answered(answered_by=None),
            script.answered_by("machine_end_beep"),
            script.status("completed", 3, 31, duration=20),
        ]
        await _apply_all(store, events)
        call = _content(await store.get(script.call_id))
        assert (call.answered_by, call.ended_by) == ("machine_end_beep", "voicemail")
        assert call.answered_at == script.answered().occurred_at
        assert call == project(events, script.call_id)

    async def test_a_redelivered_turn_changes_nothing(
        self, store: CallStore, script: CallScript
    ) -> None:
        await _apply_all(store, [script.created(), *script.turns()])
        before = _content(await store.get(script.call_id))
        await store.apply(script.turn(2))
        assert _content(await store.get(script.call_id)) == before

    async def test_an_exchange_whose_user_turn_is_stored_adds_only_the_reply(
        self, store: CallStore, script: CallScript
    ) -> None:
        # A redelivered request answered anew: its exchange repeats the callee's
        # turn an earlier event stored, with the reply that event lacked.
        events = [script.created(), script.exchange(0), script.turn(1), script.exchange(1, 2)]
        await _apply_all(store, events)
        call = await store.get(script.call_id)
        assert call is not None
        assert [turn.seq for turn in call.turns] == [0, 1, 2]
        assert call.data_collected == script.exchange(1, 2).data_collected
        assert _content(call) == project(events, script.call_id)

    async def test_an_older_exchange_arriving_late_keeps_the_newest_data(
        self, store: CallStore, script: CallScript
    ) -> None:
        events = [script.created(), script.exchange(3, 4), script.exchange(1, 2)]
        await _apply_all(store, events)
        call = await store.get(script.call_id)
        assert call is not None
        assert [turn.seq for turn in call.turns] == [1, 2, 3, 4]
        assert (call.data_collected, call.data_complete) == (
            script.exchange(3, 4).data_collected,
            True,
        )
        assert _content(call) == project(events, script.call_id)

    async def test_events_of_one_turn_and_exchanges_give_the_same_document(
        self, store: CallStore, script: CallScript
    ) -> None:
        # Across the upgrade to schema version 2 a call may get both shapes.
        events = [script.created(), script.turn(0), script.turn(1), script.turn(2)]
        await _apply_all(store, [*events, script.exchange(3, 4)])
        mixed = _content(await store.get(script.call_id))
        assert mixed == project([script.created(), *script.exchanges()], script.call_id)

    @pytest.mark.parametrize("interrupt_first", [False, True])
    async def test_an_interrupted_line_keeps_only_what_was_heard_in_either_order(
        self, store: CallStore, script: CallScript, interrupt_first: bool
    ) -> None:
        exchange, cut = script.exchange(1, 2), script.interrupted(2, "Thanks! Could")
        events = [script.created(), script.exchange(0)]
        events += [cut, exchange] if interrupt_first else [exchange, cut]
        await _apply_all(store, [*events, exchange, script.interrupted(2, "another cut")])
        call = await store.get(script.call_id)
        assert call is not None
        assert [(t.seq, t.content, t.interrupted) for t in call.turns][1:] == [
            (1, script.exchange(1).turns[0].content, False),
            (2, "Thanks! Could", True),
        ]
        assert call.data_collected == exchange.data_collected
        assert _content(call) == project(events, script.call_id)

    async def test_a_repeated_answer_keeps_the_first_answer_time(
        self, store: CallStore, script: CallScript
    ) -> None:
        # Twilio may send the answer webhook again: each one makes a call.answered.
        answers = [script.answered(at=9), script.answered(at=5), script.answered(at=7)]
        await _apply_all(store, [script.created(), *answers])
        call = await store.get(script.call_id)
        assert call is not None
        assert call.answered_at == script.at(5)
        assert _content(call) == project([script.created(), *answers], script.call_id)

    async def test_status_callbacks_out_of_order_end_terminal_with_the_duration(
        self, store: CallStore, script: CallScript
    ) -> None:
        await _apply_all(
            store,
            [
                script.status("completed", 3, 31, duration=42),
                script.status("in-progress", 2, 5),
                script.status("ringing", 1, 2),
                script.created(),
            ],
        )
        call = await store.get(script.call_id)
        assert call is not None
        assert (call.status, call.status_seq, call.duration_s) == ("completed", 3, 42)
        assert (call.ended_at, call.ended_by) == (script.at(31), "callee_hangup")

    async def test_calls_known_only_by_their_turns_coexist(
        self, store: CallStore, script: CallScript
    ) -> None:
        # The unique call_sid index is sparse: documents without a SID yet must not collide.
        other = type(script)()
        await store.apply(script.turn(0))
        await store.apply(other.turn(0))
        assert await store.get(script.call_id) is not None
        assert await store.get(other.call_id) is not None

    async def test_completion_is_claimed_once(self, store: CallStore, script: CallScript) -> None:
        await _finalized(store, script)
        now = utcnow()
        stale_before = now - timedelta(minutes=1)
        claimed = await store.claim_completion(script.call_id, now=now, stale_before=stale_before)
        assert claimed is not None
        assert claimed.completed_claimed_at is not None
        assert claimed.ended_by == "callee_hangup"
        again = await store.claim_completion(script.call_id, now=now, stale_before=stale_before)
        assert again is None

    async def test_a_stale_claim_is_taken_over_until_publication_is_marked(
        self, store: CallStore, script: CallScript
    ) -> None:
        await _finalized(store, script)
        first = utcnow()
        await store.claim_completion(script.call_id, now=first, stale_before=first)
        later = first + timedelta(minutes=5)
        retaken = await store.claim_completion(
            script.call_id, now=later, stale_before=later - timedelta(minutes=1)
        )
        assert retaken is not None
        await store.mark_completion_published(script.call_id, now=later)
        much_later = later + timedelta(hours=1)
        assert (
            await store.claim_completion(script.call_id, now=much_later, stale_before=much_later)
            is None
        )
        call = await store.get(script.call_id)
        assert call is not None
        assert call.completed_published_at is not None

    async def test_a_call_in_progress_cannot_be_claimed(
        self, store: CallStore, script: CallScript
    ) -> None:
        await _apply_all(store, [script.created(), script.status("in-progress", 2, 5)])
        now = utcnow()
        assert await store.claim_completion(script.call_id, now=now, stale_before=now) is None

    async def test_completions_due_are_finalized_quiet_and_unclaimed(
        self, store: CallStore, script: CallScript
    ) -> None:
        claimed, in_progress = type(script)(), type(script)()
        await _finalized(store, script)
        await _finalized(store, claimed)
        await _apply_all(store, [in_progress.created(), in_progress.status("ringing", 1, 2)])
        now = utcnow()
        await store.claim_completion(claimed.call_id, now=now, stale_before=now)
        future = now + timedelta(seconds=5)

        due = await store.completions_due(quiet_since=future, stale_before=now, limit=10)
        assert due == [script.call_id]
        assert (
            await store.completions_due(
                quiet_since=now - timedelta(hours=1), stale_before=now, limit=10
            )
            == []
        )
        # Once the claim is stale, the claimed call is due again.
        stale = await store.completions_due(quiet_since=future, stale_before=future, limit=10)
        assert sorted(stale) == sorted([script.call_id, claimed.call_id])

    async def test_after_the_claim_ending_is_frozen_but_turns_and_recordings_land(
        self, store: CallStore, script: CallScript
    ) -> None:
        await _finalized(store, script)
        now = utcnow()
        await store.claim_completion(script.call_id, now=now, stale_before=now)
        await _apply_all(
            store, [script.ending("user_goodbye"), script.turn(0), script.recording("completed")]
        )
        call = await store.get(script.call_id)
        assert call is not None
        assert call.ended_by == "callee_hangup"
        assert [turn.seq for turn in call.turns] == [0]
        assert recording_missed_completion(call)

    async def test_a_late_ending_corrects_the_hangup_guess_before_the_claim(
        self, store: CallStore, script: CallScript
    ) -> None:
        await _finalized(store, script)
        await store.apply(script.ending("user_goodbye"))
        call = await store.get(script.call_id)
        assert call is not None
        assert (call.ended_by, call.ending_reason) == ("user_goodbye", "all data")

    async def test_a_callback_request_is_stored_with_the_ending(
        self, store: CallStore, script: CallScript
    ) -> None:
        request = CallbackRequest(when="tomorrow at 3 pm", said="Call me tomorrow at 3 pm.")
        ending = script.ending("user_goodbye").model_copy(update={"callback_request": request})
        await _apply_all(store, [script.created(), ending])
        call = await store.get(script.call_id)
        assert call is not None
        assert call.callback_request == request
        assert _content(call) == project([script.created(), ending], script.call_id)

    async def test_a_late_machine_answer_makes_it_voicemail(
        self, store: CallStore, script: CallScript
    ) -> None:
        await _finalized(store, script)
        await store.apply(script.answered("machine_end_beep"))
        call = await store.get(script.call_id)
        assert call is not None
        assert call.ended_by == "voicemail"

    async def test_an_unknown_status_is_rejected_and_nothing_written(
        self, store: CallStore, script: CallScript
    ) -> None:
        with pytest.raises(ValueError, match="unknown call status"):
            await store.apply(script.status("ringing-ish", 1, 1))
        assert await store.get(script.call_id) is None

    @pytest.mark.parametrize("seed", range(3))
    async def test_summaries_in_any_order_keep_the_latest(
        self, store: CallStore, script: CallScript, seed: int
    ) -> None:
        summaries = [
            CallSummarized(
                call_id=script.call_id,
                summary=text,
                model=model,
                summarized_at=script.at(at),
            )
            for text, model, at in (
                ("Ada gave her name.", "deterministic", 40),
                ("Ada gave her name and email.", "gpt-test", 45),
                ("A tie, lesser text.", "gpt-test", 45),
            )
        ]
        events = [*script.whole_call(), *summaries]
        await _apply_all(store, script.shuffled_with_duplicates(events, seed))
        call = _content(await store.get(script.call_id))
        assert call == project(events, script.call_id)
        assert (call.summary, call.summary_model) == ("Ada gave her name and email.", "gpt-test")

    @pytest.mark.parametrize("seed", range(4))
    async def test_the_summary_from_the_recording_outranks_a_later_live_one(
        self, store: CallStore, script: CallScript, seed: int
    ) -> None:
        def summary(text: str, at: int, *sources: SummarySource) -> CallSummarized:
            return CallSummarized(
                call_id=script.call_id,
                summary=text,
                model="gpt-test",
                summarized_at=script.at(at),
                sources=sources,
            )

        both = (LIVE_TURNS, RECORDING_TRANSCRIPT)
        summaries = [
            summary("From the recording, first.", 50, *both),
            summary("From the recording, remade.", 55, *both),
            summary("Live turns, but slow.", 60, LIVE_TURNS),
        ]
        # The recording's summary is made from a stored call: it follows the call's events.
        await _apply_all(store, script.whole_call())
        await _apply_all(store, script.shuffled_with_duplicates(summaries, seed))
        call = _content(await store.get(script.call_id))
        assert call == project([*script.whole_call(), *summaries], script.call_id)
        assert (call.summary, call.summary_sources) == ("From the recording, remade.", both)

    async def test_a_summary_from_the_recording_never_creates_a_call(
        self, store: CallStore, script: CallScript
    ) -> None:
        event = CallSummarized(
            call_id=script.call_id,
            summary="An erased call's summary.",
            model="deterministic",
            sources=(LIVE_TURNS, RECORDING_TRANSCRIPT),
        )
        await store.apply(event)
        assert await store.get(script.call_id) is None


class TestInMemoryCallStore(CallStoreContract):
    @pytest.fixture
    def store(self) -> CallStore:
        return InMemoryCallStore()


@pytest.mark.mongo
class TestMongoCallStore(CallStoreContract):
    @pytest.fixture
    async def store(self, mongo_db: AsyncDatabase[Document]) -> CallStore:
        store = MongoCallStore(mongo_db[CALLS])
        await store.ensure_indexes()
        await store.ensure_indexes()  # idempotent: every start-up runs it
        return store

    async def test_indexes_of_the_design_exist(
        self, store: CallStore, mongo_db: AsyncDatabase[Document]
    ) -> None:
        indexes = await mongo_db[CALLS].index_information()
        keys = {tuple(spec["key"]): spec for spec in indexes.values()}
        sid = keys[(("call_sid", 1),)]
        assert sid.get("unique")
        assert sid.get("sparse")
        assert (("agent_id", 1), ("to", 1), ("created_at", -1)) in keys
        assert (("agent_id", 1), ("created_at", -1)) in keys
        assert (("status", 1), ("updated_at", 1)) in keys


AGENT = Agent(agent_id="support", name="Support", greeting="Hi {recipient.name}", prompt="Help.")


class AgentStoreContract:
    @pytest.fixture
    def agents(self) -> AgentStore:
        raise NotImplementedError("each store's test class provides it")

    async def test_saving_bumps_the_version(self, agents: AgentStore) -> None:
        now = utcnow()
        assert await agents.save(AGENT, now=now) == 1
        changed = AGENT.model_copy(update={"greeting": "Hello {recipient.name}"})
        assert await agents.save(changed, now=now + timedelta(seconds=1)) == 2


class TestInMemoryAgentStore(AgentStoreContract):
    @pytest.fixture
    def agents(self) -> AgentStore:
        return InMemoryAgentStore()


@pytest.mark.mongo
class TestMongoAgentStore(AgentStoreContract):
    @pytest.fixture
    def agents(self, mongo_db: AsyncDatabase[Document]) -> AgentStore:
        return MongoAgentStore(mongo_db[AGENTS])

    async def test_the_document_keeps_created_at_and_reads_back_as_the_agent(
        self, agents: AgentStore, mongo_db: AsyncDatabase[Document]
    ) -> None:
        first = utcnow().replace(microsecond=0)
        await agents.save(AGENT, now=first)
        await agents.save(AGENT, now=first + timedelta(seconds=5))
        document = await mongo_db[AGENTS].find_one({"_id": "support"})
        assert document is not None
        assert document["created_at"] == first
        assert document["updated_at"] == first + timedelta(seconds=5)
        stored = Agent.model_validate(document)
        assert stored.version == 2
        assert stored.greeting == AGENT.greeting
