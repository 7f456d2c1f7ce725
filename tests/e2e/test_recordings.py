"""Recordings end to end: archived (the media worker copies the recording
from Twilio, the emulator, to the recordings bucket, persistence stores
where, subscribers hear of it, the API serves it, Twilio's copy is deleted
once the archive is verified), transcribed after the call, checked against
the data collected, kept as long as retention says, erased on request.

The agent's files on the same object storage (issue 17, Must show 3 and 4):
- an agent with documents (Markdown and PDF) about the shop: the callee asks
  when the shop opens, the opening-hours passage is in the model's request,
  and the answer built from it is what the callee hears and what is stored;
  a document that cannot be fetched or read makes saving the agent a 422
  naming it; one that breaks after the save costs its passages, not the call;
- a voicemail drop with a recorded audio file: gateway answers the machine
  with `<Play>` of a presigned URL, the emulator (Twilio) fetches it, and what
  it fetched is the file byte for byte.

One stack (the emulator, gateway, dialog, persistence, the media worker with
transcription on, an S3 server, the scripted OpenAI server answering both chat
completions and audio transcriptions) serves every test of the module."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import uuid
import wave
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from e2e_harness import (
    E2EStack,
    FinishedCall,
    agent_definition,
    llm_rule,
    record_data,
    running_e2e_stack,
    wait_until,
)
from pymongo import AsyncMongoClient

from callbot.common.calls import CallDocument, RecordingArchive
from callbot.common.contracts import (
    CallRecordingTranscribed,
    CallRecordingTranscriptionFailed,
    utcnow,
)
from callbot.common.mongo import AUDIT, CALLS
from callbot.common.object_storage import S3Config, S3ObjectStore
from callbot.dialog.domain.summary import RECORDING_INSTRUCTIONS
from callbot.persistence.erasure import CallEraser, RetentionSweeper
from callbot.testkit.documents import silent_wav, text_pdf
from callbot.testkit.fake_openai import FakeOpenAIProcess
from callbot.testkit.s3_server import S3ServerProcess

pytestmark = pytest.mark.e2e

ATTEMPTS = 4
RECORDED_SUMMARY = (
    "Ada gave her name and an email; the recording has another address: confirm it next time."
)
SHORT_RETENTION_DAYS = 1  # the "brief" agent's; the deployment keeps calls 30 days


@pytest.fixture(scope="module")
def e2e(
    tmp_path_factory: pytest.TempPathFactory,
    rabbitmq_url: str,
    mongodb_url: str,
    fake_llm: FakeOpenAIProcess,
    s3_server: S3ServerProcess,
) -> Iterator[E2EStack]:
    namespace = f"e{uuid.uuid4().hex[:10]}"
    bucket = f"{namespace}-recordings"
    agent_files = f"{namespace}-agent-files"
    s3_server.create_buckets(bucket, agent_files)
    env = {
        **s3_server.env(),
        "S3_RECORDINGS_BUCKET": bucket,
        "S3_AGENT_FILES_BUCKET": agent_files,
        "TWILIO_DELETE_RECORDINGS_AFTER_ARCHIVE": "true",
        "MEDIA_RETRY_BACKOFF_S": "0.1",
        "TRANSCRIPTION_MODEL": "whisper-1",
        "TRANSCRIPTION_ATTEMPTS": str(ATTEMPTS),
        "TRANSCRIPTION_BACKOFF_S": "0.1",
        "RETENTION_DAYS": "30",
    }
    log_dir = tmp_path_factory.mktemp("e2e-recordings")
    with running_e2e_stack(
        log_dir, rabbitmq_url, mongodb_url, fake_llm, namespace=namespace, extra_env=env, media=True
    ) as stack:
        yield stack


def scenario(name: str, to: str, *lines: str) -> dict[str, Any]:
    return {
        "name": name,
        "to": to,
        "outcome": "answered",
        "answered_by": "human",
        "ring_s": 1,
        "speed": 10,
        "steps": [*({"say": line} for line in lines), {"hangup": {}}],
    }


def transcribed(e2e: E2EStack, call_id: str) -> list[CallRecordingTranscribed]:
    return [
        event
        for event in e2e.subscriber.events()
        if isinstance(event, CallRecordingTranscribed) and event.call_id == call_id
    ]


def stored(e2e: E2EStack, call_id: str) -> CallDocument:
    document = e2e.document(call_id)
    assert document is not None, f"call {call_id} is not stored"
    return document


def test_a_recorded_call_is_archived_announced_served_and_deleted_at_twilio(
    e2e: E2EStack, s3_server: S3ServerProcess
) -> None:
    # examples/calls/hangup_midway.yaml: a name, a short silence, then the phone goes down.
    tag, to = "archive", "+15005550104"
    e2e.put_agent("e2e-archive", agent_definition(tag))
    e2e.fake_llm.control.add_rules(
        [
            llm_rule(
                tag,
                "Grace Hopper",
                text="Thank you, Grace. What email address should we use?",
                tool_calls=[record_data("full_name", "Grace Hopper")],
            )
        ]
    )

    call = e2e.call("e2e-archive", to, {"name": "Grace"})
    call_id = call.placed.call_id

    def archived() -> RecordingArchive | None:
        document = e2e.document(call_id)
        return document.recording.archive if document and document.recording else None

    archive = wait_until(archived, "recording.archive in the call document", 60, e2e.explain)
    # In the bucket, under a key with the call id, with the size and checksum stored.
    assert (archive.bucket, archive.key) == (
        f"{e2e.stack.config.namespace}-recordings",
        f"calls/{call_id}/{call.played.recording_sid}.wav",
    )
    audio = s3_server.read(archive.bucket, archive.key)
    assert (len(audio), hashlib.sha256(audio).hexdigest()) == (archive.size_bytes, archive.sha256)
    with wave.open(io.BytesIO(audio)) as wav:
        assert wav.getnframes() == min(call.played.duration_s or 1, 3) * 8000
    assert s3_server.keys(archive.bucket, f"calls/{call_id}/") == [archive.key]
    # Deleted at Twilio, after the verified copy.
    assert archive.deleted_at_twilio is True
    recordings = {
        item["sid"]: item
        for item in httpx.get(f"{e2e.stack.emulator.base_url}/_control/recordings").json()
    }
    assert recordings[call.played.recording_sid]["deleted"] is True
    # Subscribers learn where it is: in call.completed when the archive came
    # within persistence's grace, else in a later call.recording_ready.
    announced = call.completed.call.recording.archive if call.completed.call.recording else None
    if announced is None:
        ready = wait_until(
            lambda: [
                event
                for event in e2e.subscriber.recording_ready(call_id)
                if event.recording.archive is not None
            ],
            "call.recording_ready with the archive",
            60,
            e2e.explain,
        )
        announced = ready[0].recording.archive
    assert announced == archive
    # The API serves it to API-key holders, or redirects to a presigned URL.
    served = e2e.api.get(f"/v1/calls/{call_id}/recording")
    assert (served.status_code, served.content) == (200, audio)
    assert served.headers["content-type"] == "audio/wav"
    redirected = e2e.api.get(f"/v1/calls/{call_id}/recording", params={"redirect": "true"})
    assert redirected.status_code == 307
    assert httpx.get(redirected.headers["location"]).content == audio
    anonymous = httpx.get(f"{e2e.stack.gateway_url}/v1/calls/{call_id}/recording")
    assert anonymous.status_code == 401
    # Transcribed too (the scripted endpoint's default transcript), before the
    # next test scripts its own answers.
    wait_until(lambda: stored(e2e, call_id).recording_transcript, "the transcript", 60, e2e.explain)


@pytest.fixture(scope="module")
def dual_channel_call(e2e: E2EStack) -> FinishedCall:
    """A dual-channel call with the data check on, whose transcription is held
    until `call.completed` has gone out; the recording heard another email."""
    tag, to = "transcribe-dual", "+15005550201"
    e2e.add_scenario(
        scenario(
            "transcribe-dual", to, "Yes, this is Ada Lovelace.", "My email is ada@example.com."
        )
    )
    e2e.put_agent(
        "e2e-dual",
        agent_definition(tag, recording_channels="dual", data_check=True),
    )
    e2e.fake_llm.control.add_rules(
        [
            llm_rule(
                tag,
                "Ada",
                text="Thanks Ada. Your email?",
                tool_calls=[record_data("full_name", "Ada Lovelace")],
            ),
            llm_rule(
                tag,
                "email",
                text="Thank you.",
                tool_calls=[record_data("email", "ada@example.com")],
            ),
        ]
    )
    e2e.fake_llm.control.add_transcription_rules(
        [
            {
                "match": {"filename_regex": r"\.callee\.wav$"},
                "response": {
                    "text": "Yes, this is Ada Lovelace. My email is ada.king@example.com.",
                    "segments": [
                        {"start": 2.1, "end": 3.4, "text": "Yes, this is Ada Lovelace."},
                        {"start": 5.0, "end": 7.2, "text": "My email is ada.king@example.com."},
                    ],
                    "hold": True,
                },
            },
            {
                "match": {"filename_regex": r"\.agent\.wav$"},
                "response": {
                    "text": "Hi Ada, this is Ava from Acme Support. Thanks Ada. Your email?",
                    "segments": [
                        {
                            "start": 0.0,
                            "end": 2.0,
                            "text": "Hi Ada, this is Ava from Acme Support.",
                        },
                        {"start": 3.6, "end": 4.8, "text": "Thanks Ada. Your email?"},
                    ],
                },
            },
        ]
    )
    # The summary remade once the transcript is announced: the model reads both transcripts.
    e2e.fake_llm.control.add_rules(
        [
            {
                "match": {
                    "system_regex": re.escape(RECORDING_INSTRUCTIONS[:40]),
                    "any_regex": r"Recording transcript:.*ada\.king@example\.com",
                },
                "response": {"text": RECORDED_SUMMARY},
                "times": None,
            }
        ]
    )
    return e2e.call("e2e-dual", to, {"name": "Ada"})


def test_a_recorded_call_is_transcribed_with_timing_and_speakers_after_call_completed(
    e2e: E2EStack, dual_channel_call: FinishedCall
) -> None:
    call_id = dual_channel_call.placed.call_id
    # call.completed went out while the transcription was still held at the endpoint.
    assert dual_channel_call.completed.call.recording_transcript is None
    held = wait_until(
        lambda: [
            r for r in e2e.fake_llm.control.transcription_requests() if "callee" in r.filename
        ],
        "the callee channel's transcription request",
        60,
        e2e.explain,
    )
    assert held[0].channels == 1
    assert held[0].model == "whisper-1"
    assert transcribed(e2e, call_id) == []
    e2e.fake_llm.control.release_transcriptions()

    event = wait_until(
        lambda: transcribed(e2e, call_id), "call.recording_transcribed", 60, e2e.explain
    )
    transcript = wait_until(
        lambda: stored(e2e, call_id).recording_transcript, "the stored transcript", 30, e2e.explain
    )
    # MongoDB keeps milliseconds: the stored time is the announced one, truncated.
    assert transcript.model_dump(exclude={"transcribed_at"}) == event[0].transcript.model_dump(
        exclude={"transcribed_at"}
    )
    assert transcript.recording_sid == dual_channel_call.played.recording_sid
    assert transcript.channels == 2
    assert [(s.start_s, s.speaker, s.channel, s.text) for s in transcript.segments] == [
        (0.0, "agent", 2, "Hi Ada, this is Ava from Acme Support."),
        (2.1, "callee", 1, "Yes, this is Ada Lovelace."),
        (3.6, "agent", 2, "Thanks Ada. Your email?"),
        (5.0, "callee", 1, "My email is ada.king@example.com."),
    ]
    # Beside the live transcript, which stays as Twilio's recogniser heard it.
    document = stored(e2e, call_id)
    assert document.turns == dual_channel_call.document.turns
    assert document.recording_transcript_failure is None


def test_a_value_the_recording_contradicts_is_flagged_not_changed(
    e2e: E2EStack, dual_channel_call: FinishedCall
) -> None:
    call_id = dual_channel_call.placed.call_id
    document = wait_until(
        lambda: (d := stored(e2e, call_id)).data_review is not None and d, "data_review", 60
    )
    assert document.data_collected["email"] == "ada@example.com"  # never changed
    assert [(item.field, item.value, item.heard) for item in document.data_review or ()] == [
        ("email", "ada@example.com", ("ada.king@example.com",))
    ]


def test_the_transcript_remakes_the_summary_which_reaches_the_recipient_and_the_next_call(
    e2e: E2EStack, dual_channel_call: FinishedCall
) -> None:
    call_id, to = dual_channel_call.placed.call_id, dual_channel_call.placed.to
    remade = wait_until(
        lambda: [s for s in e2e.subscriber.summarized(call_id) if s.uses_recording],
        "call.summarized from the recording",
        60,
        e2e.explain,
    )
    assert [(s.summary, s.sources) for s in remade] == [
        (RECORDED_SUMMARY, ("live_turns", "recording_transcript"))
    ]
    # The live summary came first, at the call's end, from the live turns alone.
    live = [s for s in e2e.subscriber.summarized(call_id) if not s.uses_recording]
    assert [s.sources for s in live] == [("live_turns",)]
    document = wait_until(
        lambda: (d := stored(e2e, call_id)).summary == RECORDED_SUMMARY and d,
        "the remade summary stored",
        30,
        e2e.explain,
    )
    assert document.summary_sources == ("live_turns", "recording_transcript")
    recipient = wait_until(
        lambda: (
            (r := e2e.recipient("e2e-dual", to))
            and r.last_summary
            and r.last_summary.summary == RECORDED_SUMMARY
            and r
        ),
        "the remade summary in the recipient's record",
        30,
        e2e.explain,
    )
    assert recipient.last_summary is not None
    assert recipient.last_summary.call_id == call_id

    # The next call to the number reads the call through that summary, never the transcript.
    e2e.add_scenario(
        {
            "name": "transcribe-dual-again",
            "to": to,
            "steps": [{"say": "Hi, it's Ada again."}, {"say": "Okay, bye."}],
        }
    )
    e2e.fake_llm.control.add_rules(
        [llm_rule("transcribe-dual", "Ada again", text="Welcome back, Ada.")]
    )
    asked_before = len(e2e.llm_requests("transcribe-dual"))
    e2e.call("e2e-dual", to, {"name": "Ada"})
    [request] = [
        r
        for r in e2e.llm_requests("transcribe-dual")[asked_before:]
        if "Ada again" in str(r.body["messages"])
    ]
    contents = [str(m["content"]) for m in request.body["messages"]]
    [past] = [text for text in contents if text.startswith("Earlier calls with this person")]
    assert f"summary: {RECORDED_SUMMARY}" in past
    assert "Yes, this is Ada Lovelace." not in past  # neither transcript's words
    # The address only the recording held never reaches the model.
    assert not any("ada.king@example.com" in text for text in contents)


def test_a_failed_transcription_leaves_the_live_summary_as_it_is(e2e: E2EStack) -> None:
    e2e.fake_llm.control.add_transcription_rules(
        [{"response": {"error": {"status": 400}}, "times": 1}]
    )
    call = brief_call(e2e, "+15005550204", "transcribe-refused")
    call_id = call.placed.call_id
    wait_until(
        lambda: e2e.subscriber.of_call(CallRecordingTranscriptionFailed, call_id),
        "call.recording_transcription_failed",
        60,
        e2e.explain,
    )
    live = wait_until(
        lambda: e2e.subscriber.summarized(call_id), "the live summary", 30, e2e.explain
    )
    document = wait_until(
        lambda: (d := stored(e2e, call_id)).recording_transcript_failure and d,
        "the failure mark",
        30,
    )
    assert document.summary == live[0].summary
    assert document.summary_sources == ("live_turns",)
    assert [s.sources for s in e2e.subscriber.summarized(call_id)] == [("live_turns",)]


def brief_call(e2e: E2EStack, to: str, tag: str) -> FinishedCall:
    """A mono call by the agent that keeps its calls one day."""
    e2e.add_scenario(scenario(tag, to, "Yes, this is Grace Hopper."))
    e2e.put_agent("e2e-brief", agent_definition("brief", retention_days=SHORT_RETENTION_DAYS))
    return e2e.call("e2e-brief", to, {"name": "Grace"})


def test_a_transcription_failing_three_times_then_answering_stores_one_transcript(
    e2e: E2EStack,
) -> None:
    e2e.fake_llm.control.add_transcription_rules(
        [
            {"response": {"error": {"status": 503}}, "times": 3},
            {"response": {"text": "Yes, this is Grace Hopper."}, "times": 1},
        ]
    )
    call = brief_call(e2e, "+15005550202", "transcribe-retried")
    call_id = call.placed.call_id
    wait_until(lambda: stored(e2e, call_id).recording_transcript, "the transcript", 60, e2e.explain)
    sid = call.played.recording_sid
    requests = [r for r in e2e.fake_llm.control.transcription_requests() if sid in r.filename]
    assert [r.status for r in requests] == [503, 503, 503, 200]
    assert len(transcribed(e2e, call_id)) == 1
    transcript = stored(e2e, call_id).recording_transcript
    assert transcript is not None
    assert transcript.text == "Yes, this is Grace Hopper."
    assert transcript.channels == 1
    assert transcript.segments[0].speaker is None


def test_a_transcription_failing_for_good_marks_the_completed_call_and_loses_nothing(
    e2e: E2EStack,
) -> None:
    e2e.fake_llm.control.add_transcription_rules(
        [{"response": {"error": {"status": 503}}, "times": ATTEMPTS}]
    )
    call = brief_call(e2e, "+15005550203", "transcribe-failed")
    call_id = call.placed.call_id
    failed = wait_until(
        lambda: [
            event
            for event in e2e.subscriber.events()
            if isinstance(event, CallRecordingTranscriptionFailed) and event.call_id == call_id
        ],
        "call.recording_transcription_failed",
        60,
        e2e.explain,
    )
    assert failed[0].attempts == ATTEMPTS
    failure = wait_until(
        lambda: stored(e2e, call_id).recording_transcript_failure, "the failure mark", 30
    )
    assert failure.recording_sid == call.played.recording_sid
    document = stored(e2e, call_id)
    # The call is complete and announced, its recording archived and kept.
    assert call.completed.call.status == "completed"
    assert document.recording_transcript is None
    assert document.recording is not None
    assert document.recording.archive is not None
    assert document.turns == call.document.turns


def _sweep_at(e2e: E2EStack, mongodb_url: str, s3: S3ServerProcess, now: datetime) -> int:
    """persistence's retention sweeper, run here with a clock of the test's."""

    async def sweep() -> int:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
        store = S3ObjectStore(S3Config(endpoint_url=s3.endpoint_url))
        await store.open()
        try:
            calls = client[e2e.db_name][CALLS]
            return await RetentionSweeper(calls, CallEraser(calls, store), lambda: now).sweep()
        finally:
            await store.close()
            await client.close()

    return asyncio.run(sweep())


def _objects(s3: S3ServerProcess, document: CallDocument) -> list[str]:
    archive = document.recording.archive if document.recording else None
    assert archive is not None, f"call {document.call_id} has no archive"
    return s3.keys(archive.bucket, f"calls/{document.call_id}/")


def test_retention_erases_expired_calls_recordings_and_transcripts_and_nothing_else(
    e2e: E2EStack, mongodb_url: str, s3_server: S3ServerProcess, dual_channel_call: FinishedCall
) -> None:
    call = brief_call(e2e, "+15005550204", "retention-brief")
    brief_id, kept_id = call.placed.call_id, dual_channel_call.placed.call_id
    brief = wait_until(lambda: (d := stored(e2e, brief_id)).recording_transcript and d, "brief")
    kept = wait_until(lambda: (d := stored(e2e, kept_id)).recording_transcript and d, "kept")
    assert brief.expires_at is not None
    assert brief.created_at is not None
    assert brief.expires_at - brief.created_at == timedelta(days=SHORT_RETENTION_DAYS)
    assert kept.expires_at is not None
    assert kept.created_at is not None
    assert kept.expires_at - kept.created_at == timedelta(days=30)
    assert _objects(s3_server, brief)
    assert _objects(s3_server, kept)
    bucket = f"{e2e.stack.config.namespace}-recordings"

    assert _sweep_at(e2e, mongodb_url, s3_server, utcnow()) == 0  # nothing expired yet
    erased = _sweep_at(e2e, mongodb_url, s3_server, utcnow() + timedelta(days=2))
    assert erased >= 1
    assert e2e.document(brief_id) is None
    assert s3_server.keys(bucket, f"calls/{brief_id}/") == []
    assert e2e.document(kept_id) == kept
    assert _objects(s3_server, kept) == [kept.recording.archive.key]  # type: ignore[union-attr]
    # An agent may keep calls less long than the deployment, not longer.
    longer = e2e.api.put("/v1/agents/e2e-long", json=agent_definition("long", retention_days=31))
    assert longer.status_code == 422
    assert longer.json()["detail"][0]["loc"] == ["body", "retention_days"]
    # The bucket expires recordings by itself after the deployment's 30 days.
    rules = asyncio.run(_lifecycle_rules(s3_server, bucket))
    assert [(r["Filter"], r["Expiration"]) for r in rules] == [({"Prefix": "calls/"}, {"Days": 30})]


async def _lifecycle_rules(s3: S3ServerProcess, bucket: str) -> list[dict[str, Any]]:
    store = S3ObjectStore(S3Config(endpoint_url=s3.endpoint_url))
    await store.open()
    try:
        return await store.lifecycle_rules(bucket)
    finally:
        await store.close()


def test_erasing_a_recipient_removes_all_of_theirs_nothing_of_others_and_keeps_the_opt_out(
    e2e: E2EStack, s3_server: S3ServerProcess, dual_channel_call: FinishedCall
) -> None:
    to = "+15005550205"
    e2e.add_scenario(scenario("erase-me", to, "Please take me off your list."))
    e2e.put_agent("e2e-dual", agent_definition("transcribe-dual", recording_channels="dual"))
    erased_call = e2e.call("e2e-dual", to, {"name": "Alan"})
    erased_id, other_id = erased_call.placed.call_id, dual_channel_call.placed.call_id
    assert erased_call.document.ended_by == "opt_out"
    erased_doc = wait_until(lambda: (d := stored(e2e, erased_id)).recording_transcript and d, "t")
    assert _objects(s3_server, erased_doc)
    other_before = stored(e2e, other_id)
    other_recipient = e2e.recipient("e2e-dual", dual_channel_call.placed.to)

    response = e2e.api.delete(f"/v1/recipients/e2e-dual/{to}", params={"reason": "GDPR art. 17"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["calls_erased"], body["opted_out"]) == (1, True)
    assert body["objects_erased"] == 1

    assert e2e.document(erased_id) is None
    bucket = f"{e2e.stack.config.namespace}-recordings"
    assert s3_server.keys(bucket, f"calls/{erased_id}/") == []
    recipient = e2e.recipient("e2e-dual", to)
    assert recipient is not None
    assert recipient.opted_out is not None
    assert (recipient.call_ids, recipient.data_collected, recipient.profile) == ((), {}, {})
    audit = e2e.collection(AUDIT).find_one({"_id": body["audit_id"]})
    assert audit is not None
    assert (audit["action"], audit["to"], audit["call_ids"]) == (
        "recipient.erase",
        to,
        [erased_id],
    )
    assert audit["requested_by"].startswith("api-key:")
    assert audit["reason"] == "GDPR art. 17"
    # Nothing of anyone else.
    assert stored(e2e, other_id) == other_before
    assert _objects(s3_server, other_before)
    assert e2e.recipient("e2e-dual", dual_channel_call.placed.to) == other_recipient
    # Still opted out: the next call to them is refused.
    refused = e2e.api.post("/v1/calls", json={"agent_id": "e2e-dual", "to": to})
    assert refused.status_code == 409, refused.text


HOURS_MD = """# Acme Hardware

Family-run hardware shop in the old town, since 1952.

## Opening hours

The shop opens at 8:30 on weekdays and at 10:00 on Saturdays. It is closed on Sundays.

## Returns

Unused items can be returned within 30 days with the receipt.
"""
DELIVERY_PDF = text_pdf([["Delivery", "We deliver anywhere in the city within two working days."]])
HOURS_ANSWER = "We open at 8:30 on weekdays and at 10:00 on Saturdays."


def bucket(e2e: E2EStack) -> str:
    return f"{e2e.stack.config.namespace}-agent-files"


def shop_agent(tag: str, documents: list[str]) -> dict[str, Any]:
    return agent_definition(
        tag,
        data_to_fill=[],
        greeting="Hi {recipient.name}, this is Ava from Acme Hardware. How can I help?",
        knowledge=documents,
        record=False,  # no recording to transcribe: the module's other tests script that endpoint
    )


def test_the_opening_hours_passage_reaches_the_model_and_grounds_the_answer(
    e2e: E2EStack, s3_server: S3ServerProcess
) -> None:
    e2e, tag, to = e2e, "kb-hours", "+15005550401"
    hours = f"s3://{bucket(e2e)}/acme/hours.md"
    delivery = f"s3://{bucket(e2e)}/acme/delivery.pdf"
    s3_server.write(bucket(e2e), "acme/hours.md", HOURS_MD.encode(), "text/markdown")
    s3_server.write(bucket(e2e), "acme/delivery.pdf", DELIVERY_PDF, "application/pdf")
    e2e.put_agent("e2e-kb-hours", shop_agent(tag, [hours, delivery]))
    # The scripted model answers with the hours only when the passage is in its request.
    e2e.fake_llm.control.add_rules(
        [
            {
                "match": {
                    "system_regex": re.escape(f"[{tag}]"),
                    "last_user_regex": "(?i)when does the shop open",
                    "any_regex": re.escape("opens at 8:30 on weekdays"),
                },
                "response": {"text": HOURS_ANSWER},
                "times": None,
            }
        ]
    )
    e2e.add_scenario(
        {
            "name": "kb-hours",
            "to": to,
            "steps": [{"say": "When does the shop open on Saturday?"}, {"hangup": {}}],
        }
    )

    call = e2e.call("e2e-kb-hours", to, {"name": "Ada"})

    [request] = e2e.llm_requests(tag)
    context = [m["content"] for m in request.body["messages"] if m["role"] == "system"]
    [knowledge] = [text for text in context if text.startswith("Passages from the agent's")]
    assert "[hours.md / Opening hours]" in knowledge
    assert "The shop opens at 8:30 on weekdays and at 10:00 on Saturdays." in knowledge
    # Only what fits the budget and matches: the delivery PDF says nothing about opening.
    assert "deliver" not in knowledge
    [answered] = [turn for turn in call.document.turns if turn.content == HOURS_ANSWER]
    assert answered.passages[0] == f"{hours}#1"  # the passage under "Opening hours"
    assert HOURS_ANSWER in call.played.lines("agent")  # what the callee heard


def test_a_document_that_cannot_be_fetched_or_read_is_a_422_naming_it(
    e2e: E2EStack, s3_server: S3ServerProcess
) -> None:
    e2e = e2e
    s3_server.write(bucket(e2e), "acme/broken.pdf", b"%PDF-1.4 not really", "application/pdf")
    s3_server.write(bucket(e2e), "acme/scan.pdf", text_pdf([[]]), "application/pdf")
    documents = [
        f"s3://{bucket(e2e)}/acme/missing.md",
        f"s3://{bucket(e2e)}/acme/broken.pdf",
        f"s3://{bucket(e2e)}/acme/scan.pdf",
        f"s3://{e2e.stack.config.namespace}-recordings/calls/x.wav",
    ]
    response = e2e.api.put("/v1/agents/e2e-kb-broken", json=shop_agent("kb-broken", documents))

    assert response.status_code == 422, response.text
    errors = {tuple(error["loc"]): error["msg"] for error in response.json()["detail"]}
    assert set(errors) == {("body", "knowledge", index) for index in range(4)}
    assert "could not be fetched: no such object" in errors[("body", "knowledge", 0)]
    assert "not a readable PDF" in errors[("body", "knowledge", 1)]
    assert "no text found" in errors[("body", "knowledge", 2)]
    assert "not in the agent files bucket" in errors[("body", "knowledge", 3)]
    assert e2e.api.get("/v1/agents/e2e-kb-broken").status_code == 404  # nothing saved


def test_a_document_broken_after_the_save_costs_its_passages_not_the_call(
    e2e: E2EStack, s3_server: S3ServerProcess
) -> None:
    e2e, tag, to = e2e, "kb-later", "+15005550402"
    s3_server.write(bucket(e2e), "later/hours.md", HOURS_MD.encode(), "text/markdown")
    e2e.put_agent("e2e-kb-later", shop_agent(tag, [f"s3://{bucket(e2e)}/later/hours.md"]))
    s3_server.write(bucket(e2e), "later/hours.md", b"\xff\xfe not text", "text/markdown")
    e2e.fake_llm.control.add_rules(
        [
            {
                "match": {"system_regex": re.escape(f"[{tag}]")},
                "response": {"text": "Let me find that out for you."},
                "times": None,
            }
        ]
    )
    e2e.add_scenario(
        {
            "name": "kb-later",
            "to": to,
            "steps": [{"say": "When does the shop open?"}, {"hangup": {}}],
        }
    )

    call = e2e.call("e2e-kb-later", to, {"name": "Ada"})

    assert call.played.errors == []
    assert "Let me find that out for you." in call.played.lines("agent")
    [request] = e2e.llm_requests(tag)
    assert not any("Passages from" in str(m["content"]) for m in request.body["messages"])
    assert all(turn.passages == () for turn in call.document.turns)


def test_a_voicemail_drop_plays_the_recorded_file_twilio_fetches(
    e2e: E2EStack, s3_server: S3ServerProcess
) -> None:
    e2e, to = e2e, "+15005550403"
    recording = silent_wav(2.5)
    uri = f"s3://{bucket(e2e)}/acme/voicemail.wav"
    s3_server.write(bucket(e2e), "acme/voicemail.wav", recording, "audio/wav")
    definition = agent_definition(
        "vm-drop",
        voicemail_message="Hello, this is Acme Hardware: your order is ready for pickup.",
        audio={"voicemail_message": uri},
        record=False,
    )
    e2e.put_agent("e2e-vm-drop", definition)
    e2e.add_scenario({"name": "vm-drop", "to": to, "answered_by": "machine_end_beep", "steps": []})

    call = e2e.call("e2e-vm-drop", to, {"name": "Ada"})

    # gateway answered the machine with <Play> of a presigned URL of the file ...
    [voice] = call.played.webhooks_of("voice")
    assert voice.response_body is not None
    [url] = re.findall(r"<Play>([^<]+)</Play>", voice.response_body)
    assert "voicemail.wav" in url
    assert "X-Amz-Signature" in url
    # ... which the emulator fetched, as Twilio does: the recording, byte for byte.
    [played] = [entry for entry in call.played.conversation if entry.kind == "play"]
    assert played.audio is not None
    assert (played.audio.size_bytes, played.audio.sha256) == (
        len(recording),
        hashlib.sha256(recording).hexdigest(),
    )
    assert played.duration_s == 2.5
    assert call.played.errors == []
    # The stored transcript says what was played, and its text.
    [line] = call.document.turns
    assert (line.audio, line.content) == (uri, definition["voicemail_message"])
    assert call.document.ended_by == "voicemail"
