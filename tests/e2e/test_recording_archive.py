"""Object storage end to end (issue 17), one stack for the module: the
services as processes, an S3 server process, the emulator as Twilio.

The recording archive (Must show 1): a recorded call ends, the media worker
copies the recording from Twilio to the recordings bucket, persistence stores
where, subscribers hear of it, the API serves it, and Twilio's copy is
deleted once the archive is verified.

The agent's files (Must show 3 and 4):
- an agent with documents (Markdown and PDF) about the shop: the callee asks
  when the shop opens, the opening-hours passage is in the model's request,
  and the answer built from it is what the callee hears and what is stored;
  a document that cannot be fetched or read makes saving the agent a 422
  naming it; one that breaks after the save costs its passages, not the call;
- a voicemail drop with a recorded audio file: gateway answers the machine
  with `<Play>` of a presigned URL, the emulator (Twilio) fetches it, and what
  it fetched is the file byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e_harness import (
    E2EStack,
    agent_definition,
    llm_rule,
    record_data,
    running_e2e_stack,
    wait_until,
)

from callbot.common.calls import RecordingArchive
from callbot.testkit.documents import silent_wav, text_pdf
from callbot.testkit.fake_openai import FakeOpenAIProcess
from callbot.testkit.s3_server import S3ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def archive_e2e(
    tmp_path_factory: pytest.TempPathFactory,
    rabbitmq_url: str,
    mongodb_url: str,
    fake_llm: FakeOpenAIProcess,
    s3_server: S3ServerProcess,
) -> Iterator[E2EStack]:
    namespace = f"e{uuid.uuid4().hex[:10]}"
    buckets = {
        "S3_RECORDINGS_BUCKET": f"{namespace}-recordings",
        "S3_AGENT_FILES_BUCKET": f"{namespace}-agent-files",
    }
    s3_server.create_buckets(*buckets.values())
    env = {
        **s3_server.env(),
        **buckets,
        "TWILIO_DELETE_RECORDINGS_AFTER_ARCHIVE": "true",
        "MEDIA_RETRY_BACKOFF_S": "0.1",
    }
    log_dir = tmp_path_factory.mktemp("e2e-recording-archive")
    with running_e2e_stack(
        log_dir, rabbitmq_url, mongodb_url, fake_llm, namespace=namespace, extra_env=env, media=True
    ) as stack:
        yield stack


def test_a_recorded_call_is_archived_announced_served_and_deleted_at_twilio(
    archive_e2e: E2EStack, s3_server: S3ServerProcess
) -> None:
    e2e = archive_e2e
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
    )


def test_the_opening_hours_passage_reaches_the_model_and_grounds_the_answer(
    archive_e2e: E2EStack, s3_server: S3ServerProcess
) -> None:
    e2e, tag, to = archive_e2e, "kb-hours", "+15005550401"
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
    archive_e2e: E2EStack, s3_server: S3ServerProcess
) -> None:
    e2e = archive_e2e
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
    archive_e2e: E2EStack, s3_server: S3ServerProcess
) -> None:
    e2e, tag, to = archive_e2e, "kb-later", "+15005550402"
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
    archive_e2e: E2EStack, s3_server: S3ServerProcess
) -> None:
    e2e, to = archive_e2e, "+15005550403"
    recording = silent_wav(2.5)
    uri = f"s3://{bucket(e2e)}/acme/voicemail.wav"
    s3_server.write(bucket(e2e), "acme/voicemail.wav", recording, "audio/wav")
    definition = agent_definition(
        "vm-drop",
        voicemail_message="Hello, this is Acme Hardware: your order is ready for pickup.",
        audio={"voicemail_message": uri},
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
