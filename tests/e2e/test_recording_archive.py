"""The recording archive end to end: a recorded call ends, the media worker
copies the recording from Twilio (the emulator) to the recordings bucket (an
S3 server process), persistence stores where, subscribers hear of it, the API
serves it, and Twilio's copy is deleted once the archive is verified."""

from __future__ import annotations

import hashlib
import io
import uuid
import wave
from collections.abc import Iterator

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
