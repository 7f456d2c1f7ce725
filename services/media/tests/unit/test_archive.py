"""The archive handler against its fakes: what is stored, published, dead-lettered, deleted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from callbot.common.calls import Recording
from callbot.common.contracts import CallRecordingArchived, CallRecordingUpdated, Event
from callbot.common.object_storage import (
    InMemoryObjectStore,
    ObjectLocation,
    ObjectStorageUnavailable,
    sha256_hex,
)
from callbot.media.domain.archive import fetch_is_retryable, recording_location
from callbot.media.handlers import ArchivePolicy, MediaPorts, handle_event
from callbot.media.twilio_recordings import RecordingFetchFailed

T = TypeVar("T")
AUDIO = b"RIFF....WAVEfmt " + bytes(1000)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
BUCKET = "callbot-recordings"


@dataclass
class FakeTwilio:
    failures: list[int | None] = field(default_factory=list)
    downloads: int = 0
    deleted: list[str] = field(default_factory=list)
    delete_fails: bool = False

    async def download(self, recording_sid: str) -> bytes:
        self.downloads += 1
        if self.failures:
            status = self.failures.pop(0)
            raise RecordingFetchFailed(f"scripted {status}", status_code=status)
        return AUDIO

    async def delete(self, recording_sid: str) -> None:
        if self.delete_fails:
            raise RecordingFetchFailed("scripted delete failure", status_code=500)
        self.deleted.append(recording_sid)


@dataclass
class Sink:
    events: list[Event] = field(default_factory=list)
    dead: list[tuple[Event, str]] = field(default_factory=list)

    async def publish(self, event: Event) -> None:
        self.events.append(event)

    async def dead_letter(self, event: Event, reason: str) -> None:
        self.dead.append((event, reason))


class OutageThenBack:
    """Retries while the fake store is away; the test's clock ends the outage."""

    def __init__(self, store: InMemoryObjectStore, failing_calls: int) -> None:
        self.store = store
        self.failing_calls = failing_calls
        self.retries = 0

    async def __call__(self, operation: Callable[[], Awaitable[T]]) -> T:
        while True:
            self.store.unavailable = self.failing_calls > 0
            try:
                return await operation()
            except ObjectStorageUnavailable:
                self.failing_calls -= 1
                self.retries += 1


def _event(status: str = "completed") -> CallRecordingUpdated:
    return CallRecordingUpdated(
        call_id="c-1", call_sid="CA1", recording=Recording(sid="RE1", status=status)
    )


def _ports(
    twilio: FakeTwilio,
    sink: Sink,
    store: InMemoryObjectStore,
    *,
    delete: bool = False,
    outage_calls: int = 0,
) -> MediaPorts:
    return MediaPorts(
        store=store,
        twilio=twilio,
        events=sink,
        dead_letters=sink,
        while_storage_away=OutageThenBack(store, outage_calls),
        policy=ArchivePolicy(
            bucket=BUCKET, delete_after_archive=delete, download_attempts=3, first_backoff_s=0.001
        ),
        clock=lambda: NOW,
    )


async def test_a_completed_recording_is_stored_checked_and_announced() -> None:
    twilio, sink, store = FakeTwilio(), Sink(), InMemoryObjectStore()

    await handle_event(_event(), _ports(twilio, sink, store))

    location = ObjectLocation(BUCKET, "calls/c-1/RE1.wav")
    assert store.objects[location][0] == AUDIO
    [archived] = sink.events
    assert isinstance(archived, CallRecordingArchived)
    assert (archived.call_id, archived.recording_sid) == ("c-1", "RE1")
    assert archived.archive.uri == f"s3://{BUCKET}/calls/c-1/RE1.wav"
    assert (archived.archive.size_bytes, archived.archive.sha256) == (len(AUDIO), sha256_hex(AUDIO))
    assert (archived.archive.archived_at, archived.archive.deleted_at_twilio) == (NOW, False)
    assert twilio.deleted == []


@pytest.mark.parametrize("status", ["in-progress", "absent", "failed"])
async def test_a_recording_without_audio_is_left_alone(status: str) -> None:
    twilio, sink, store = FakeTwilio(), Sink(), InMemoryObjectStore()
    await handle_event(_event(status), _ports(twilio, sink, store))
    assert (twilio.downloads, sink.events, store.objects) == (0, [], {})


async def test_failing_twice_then_succeeding_archives_once() -> None:
    twilio, sink, store = FakeTwilio(failures=[503, None]), Sink(), InMemoryObjectStore()

    await handle_event(_event(), _ports(twilio, sink, store))

    assert (twilio.downloads, store.puts, len(store.objects), len(sink.events)) == (3, 1, 1, 1)


async def test_failing_for_good_is_dead_lettered_with_the_reason_and_nothing_deleted() -> None:
    twilio, sink, store = FakeTwilio(failures=[503, 503, 503]), Sink(), InMemoryObjectStore()

    recording = _event()
    await handle_event(recording, _ports(twilio, sink, store, delete=True))

    [(event, reason)] = sink.dead
    assert event == recording
    assert "RE1 could not be fetched from Twilio" in reason
    assert "scripted 503" in reason
    assert (twilio.downloads, twilio.deleted, sink.events, store.objects) == (3, [], [], {})


async def test_wrong_credentials_are_not_retried() -> None:
    twilio, sink, store = FakeTwilio(failures=[401]), Sink(), InMemoryObjectStore()
    await handle_event(_event(), _ports(twilio, sink, store))
    assert (twilio.downloads, len(sink.dead)) == (1, 1)


async def test_with_the_delete_setting_twilio_deletes_after_the_verified_copy() -> None:
    twilio, sink, store = FakeTwilio(), Sink(), InMemoryObjectStore()

    await handle_event(_event(), _ports(twilio, sink, store, delete=True))

    assert twilio.deleted == ["RE1"]
    [archived] = sink.events
    assert isinstance(archived, CallRecordingArchived)
    assert archived.archive.deleted_at_twilio is True


async def test_a_failed_delete_still_announces_the_archive_and_says_so() -> None:
    twilio, sink, store = FakeTwilio(delete_fails=True), Sink(), InMemoryObjectStore()
    await handle_event(_event(), _ports(twilio, sink, store, delete=True))
    [archived] = sink.events
    assert isinstance(archived, CallRecordingArchived)
    assert archived.archive.deleted_at_twilio is False


async def test_a_redelivered_event_reuses_the_copy_without_downloading() -> None:
    # A crash after Twilio deleted its copy but before the event was acked.
    twilio, sink, store = FakeTwilio(), Sink(), InMemoryObjectStore()
    ports = _ports(twilio, sink, store, delete=True)
    await handle_event(_event(), ports)
    await handle_event(_event(), ports)
    assert (twilio.downloads, store.puts, len(sink.events)) == (1, 1, 2)


async def test_object_storage_away_is_waited_out_and_nothing_is_lost() -> None:
    twilio, sink, store = FakeTwilio(), Sink(), InMemoryObjectStore()
    ports = _ports(twilio, sink, store, outage_calls=4)

    await handle_event(_event(), ports)

    assert isinstance(ports.while_storage_away, OutageThenBack)
    assert ports.while_storage_away.retries == 4
    assert store.objects[recording_location(BUCKET, "c-1", "RE1")][0] == AUDIO
    assert len(sink.events) == 1


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(None, True), (500, True), (503, True), (429, True), (404, True), (401, False), (403, False)],
)
def test_which_twilio_answers_are_retried(status: int | None, retryable: bool) -> None:
    assert fetch_is_retryable(status) is retryable
