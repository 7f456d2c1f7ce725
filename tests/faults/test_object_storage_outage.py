"""Item 13: object storage unreachable for 30 s while calls go on.

Three recorded calls are answered and greeted; then the S3 server process is
frozen (SIGSTOP: connections hang, as with a dead network path) for 30 s.
The calls play to their end and `call.completed` goes out for each while
storage is away (nothing in a call waits for object storage); the media
worker keeps each recording event unacknowledged. Once the server
is thawed every recording is archived once, verified, announced, and nothing
is dead-lettered.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from faults_harness import (
    RunningStack,
    StackOptions,
    assert_completed_by_email,
    check_and_report,
    queue_depth,
    start_hesitant_calls,
    wait_until,
)

from callbot.testkit.s3_server import S3ServerProcess

pytestmark = pytest.mark.faults

CALLS = 3
OUTAGE_S = 30.0


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3ServerProcess]:
    """A server of this module's own: freezing it must not touch other tests."""
    server = S3ServerProcess(Path(tmp_path_factory.mktemp("s3-outage")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack_options(storage: S3ServerProcess) -> StackOptions:
    suffix = uuid.uuid4().hex[:8]
    buckets = {
        "S3_RECORDINGS_BUCKET": f"faults-{suffix}-recordings",
        "S3_AGENT_FILES_BUCKET": f"faults-{suffix}-agent-files",
    }
    storage.create_buckets(*buckets.values())
    env = {**storage.env(), **buckets, "TWILIO_DELETE_RECORDINGS_AFTER_ARCHIVE": "true"}
    return StackOptions(extra_env=env, media=True)


def test_calls_go_on_while_object_storage_is_away_and_every_archive_lands_after(
    stack: RunningStack, storage: S3ServerProcess
) -> None:
    tap = stack.tap("call.completed")
    numbers = [f"+1500555090{index}" for index in range(1, CALLS + 1)]
    calls = start_hesitant_calls(stack, numbers, utterance_s=0.6)

    storage.pause()
    frozen_at = time.monotonic()
    try:
        # The calls end, and are announced, while storage is still away.
        finished = stack.finished(calls)
        completed_during_outage = time.monotonic() - frozen_at < OUTAGE_S
        archives_during_outage = [
            document.get("recording", {}).get("archive") for document, _ in finished
        ]
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - frozen_at)))
        # Every archive is still waiting when the outage ends.
        archived_before_resume = [
            (stack.document(call.call_id) or {}).get("recording", {}).get("archive")
            for call in calls
        ]
    finally:
        storage.resume()

    checked = check_and_report(
        "13", f"object storage frozen {OUTAGE_S:.0f} s mid-call (SIGSTOP), recorded calls", finished
    )
    bucket = stack.stack.config.extra_env["S3_RECORDINGS_BUCKET"]

    def archived() -> list[dict[str, object]] | None:
        documents = [stack.document(call.call_id) or {} for call in calls]
        archives = [document.get("recording", {}).get("archive") for document in documents]
        return archives if all(archives) else None

    archives = wait_until(archived, "every recording archived once storage is back", 90.0)
    checked.assert_clean()
    assert completed_during_outage, "call.completed waited for object storage"
    assert archives_during_outage == [None] * CALLS
    for (document, played), archive in zip(finished, archives, strict=True):
        assert_completed_by_email(document)
        assert archive["key"] == f"calls/{document['_id']}/{played.recording_sid}.wav"
        audio = storage.read(bucket, str(archive["key"]))
        assert (len(audio), hashlib.sha256(audio).hexdigest()) == (
            archive["size_bytes"],
            archive["sha256"],
        )
        assert storage.keys(bucket, f"calls/{document['_id']}/") == [archive["key"]]
    recordings = httpx.get(f"{stack.stack.emulator.base_url}/_control/recordings").json()
    assert {item["sid"] for item in recordings if item["deleted"]} == {
        played.recording_sid for _, played in finished
    }
    assert queue_depth(stack.rabbitmq_url, stack.topology.dead_letter_queue) == 0
    assert archived_before_resume == [None] * CALLS, "an archive landed during the outage"
    assert tap.count_by_call("call.completed") == {call.call_id: 1 for call in calls}
