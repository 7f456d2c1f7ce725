"""What to archive, where, and which Twilio answers are worth retrying. Pure.

The object key holds the call id and the recording sid, so a recording has
exactly one place in the bucket: archiving it again (a redelivered event, a
retry after a crash) overwrites that one object and never makes a second.
"""

from __future__ import annotations

from datetime import datetime

from callbot.common.calls import RecordingArchive
from callbot.common.contracts import CallRecordingUpdated
from callbot.common.object_storage import ObjectLocation, StoredObject

ARCHIVE_CONTENT_TYPE = "audio/wav"
# Every call's objects are under calls/<call_id>/ (the bucket's expiration rule covers it).
RECORDINGS_PREFIX = "calls/"
_ARCHIVED_STATUS = "completed"
# Twilio answers these when it is busy or briefly unable to serve the media.
_RETRYABLE_STATUSES = frozenset({404, 408, 409, 425, 429})


def wants_archive(event: CallRecordingUpdated) -> bool:
    """Only a finished recording has audio to copy; `in-progress`, `absent`
    and `failed` have none."""
    return event.recording.status == _ARCHIVED_STATUS


def recording_location(bucket: str, call_id: str, recording_sid: str) -> ObjectLocation:
    return ObjectLocation(bucket, f"{RECORDINGS_PREFIX}{call_id}/{recording_sid}.wav")


def fetch_is_retryable(status_code: int | None) -> bool:
    """None: no answer at all (connection refused, timeout). 404 is retried
    too: the media may lag the `completed` callback by a moment. 401 and 403
    are not: wrong credentials stay wrong until someone fixes them."""
    return status_code is None or status_code >= 500 or status_code in _RETRYABLE_STATUSES


def archive_of(stored: StoredObject, *, at: datetime, deleted_at_twilio: bool) -> RecordingArchive:
    return RecordingArchive(
        bucket=stored.location.bucket,
        key=stored.location.key,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        content_type=stored.content_type or ARCHIVE_CONTENT_TYPE,
        archived_at=at,
        deleted_at_twilio=deleted_at_twilio,
    )
