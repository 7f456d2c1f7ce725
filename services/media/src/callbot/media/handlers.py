"""Archiving one recording, run against the ports it is given.

1. A copy already in the bucket, intact (its SHA-256 matches the one written
   with it), is used as it is: a redelivered event, or a retry after a crash
   that came after Twilio deleted its copy, never downloads again.
2. Otherwise the audio is downloaded from Twilio, retried with exponential
   backoff on answers worth retrying, and written to the recordings bucket,
   then read back and checked (size and SHA-256).
3. Only then, when `TWILIO_DELETE_RECORDINGS_AFTER_ARCHIVE` is set, is the
   recording deleted at Twilio.
4. `call.recording_archived` is published; persistence stores it.

Object storage unreachable: the operation is retried until it answers (the
message stays unacknowledged meanwhile), so an outage delays archives and
loses none. A recording Twilio will not give (after the attempts allowed, or
at once for 401/403) is dead-lettered with the reason; nothing is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from callbot.common.contracts import (
    AnyEvent,
    CallRecordingArchived,
    CallRecordingUpdated,
    utcnow,
)
from callbot.common.object_storage import (
    ObjectLocation,
    ObjectStore,
    StoredObject,
    put_verified,
    sha256_hex,
)
from callbot.media.domain.archive import (
    ARCHIVE_CONTENT_TYPE,
    archive_of,
    recording_location,
    wants_archive,
)
from callbot.media.ports import DeadLetters, EventSink, RecordingSource, WhileStorageAway
from callbot.media.retries import with_backoff
from callbot.media.transcribing import TranscriptionPorts, transcribe_recording
from callbot.media.twilio_recordings import RecordingFetchFailed

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_DOWNLOAD_BACKOFF_S = 30.0


@dataclass(frozen=True)
class ArchivePolicy:
    bucket: str
    delete_after_archive: bool = False
    download_attempts: int = 6
    first_backoff_s: float = 1.0


@dataclass(frozen=True)
class MediaPorts:
    store: ObjectStore
    twilio: RecordingSource
    events: EventSink
    dead_letters: DeadLetters
    while_storage_away: WhileStorageAway
    policy: ArchivePolicy
    clock: Callable[[], datetime] = utcnow


async def handle_event(
    event: AnyEvent, ports: MediaPorts, transcription: TranscriptionPorts | None = None
) -> None:
    """Archive a finished recording; transcribe an archived one (when configured)."""
    if isinstance(event, CallRecordingUpdated) and wants_archive(event):
        await archive_recording(event, ports)
    elif isinstance(event, CallRecordingArchived) and transcription is not None:
        await transcribe_recording(event, transcription)


async def archive_recording(event: CallRecordingUpdated, ports: MediaPorts) -> None:
    sid = event.recording.sid
    location = recording_location(ports.policy.bucket, event.call_id, sid)
    stored = await ports.while_storage_away(lambda: _intact_copy(ports.store, location))
    if stored is not None:
        log.info("recording already archived; using that copy", extra={"key": location.key})
    else:
        try:
            audio = await _download(ports, sid)
        except RecordingFetchFailed as exc:
            reason = f"recording {sid} could not be fetched from Twilio: {exc}"
            log.error(
                "recording not archived; event dead-lettered, nothing deleted at Twilio",
                extra={"recording_sid": sid, "reason": reason},
            )
            await ports.dead_letters.dead_letter(event, reason)
            return
        stored = await ports.while_storage_away(
            lambda: put_verified(ports.store, location, audio, content_type=ARCHIVE_CONTENT_TYPE)
        )
    deleted = ports.policy.delete_after_archive and await _delete_at_twilio(ports, sid)
    archive = archive_of(stored, at=ports.clock(), deleted_at_twilio=deleted)
    await ports.events.publish(
        CallRecordingArchived(call_id=event.call_id, recording_sid=sid, archive=archive)
    )
    log.info(
        "recording archived",
        extra={
            "recording_sid": sid,
            "uri": archive.uri,
            "size_bytes": archive.size_bytes,
            "sha256": archive.sha256,
            "deleted_at_twilio": deleted,
        },
    )


async def _intact_copy(store: ObjectStore, location: ObjectLocation) -> StoredObject | None:
    """The object already archived there, if it reads back with the checksum it was written with."""
    head = await store.head(location)
    if head is None or not head.sha256:
        return None
    data = await store.get(location)
    if len(data) != head.size_bytes or sha256_hex(data) != head.sha256:
        log.warning("archived copy is damaged; archiving again", extra={"key": location.key})
        return None
    return head


async def _download(ports: MediaPorts, sid: str) -> bytes:
    policy = ports.policy
    retrying = with_backoff(
        retryable=lambda exc: isinstance(exc, RecordingFetchFailed) and exc.retryable,
        attempts=policy.download_attempts,
        first_backoff_s=policy.first_backoff_s,
        max_backoff_s=MAX_DOWNLOAD_BACKOFF_S,
        what="recording download",
    )
    async for attempt in retrying:
        with attempt:
            return await ports.twilio.download(sid)
    raise AssertionError("unreachable: tenacity reraises the last error")


async def _delete_at_twilio(ports: MediaPorts, sid: str) -> bool:
    """Delete the verified recording at Twilio; a failure leaves it there (logged)."""
    try:
        await ports.twilio.delete(sid)
    except RecordingFetchFailed as exc:
        log.warning(
            "archived, but the recording could not be deleted at Twilio; it stays there",
            extra={"recording_sid": sid, "error": str(exc)},
        )
        return False
    return True
