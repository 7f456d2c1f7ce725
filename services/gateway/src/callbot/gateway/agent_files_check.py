"""Checking an agent's files when it is saved: a 422 that names each file
that cannot be used, rather than a call that finds out mid-conversation.

- Every file is in the agent files bucket (`S3_AGENT_FILES_BUCKET`): the one
  bucket dialog reads documents from and gateway presigns audio in, so an
  agent can never hand Twilio a URL to a recording or any other object.
- A knowledge document is read and its text extracted, as dialog will do.
- An audio line exists and is a format Twilio's `<Play>` plays.
Object storage unreachable raises `ObjectStorageUnavailable` (the caller
answers 503: nothing could be checked).
"""

from __future__ import annotations

import asyncio
from pathlib import PurePosixPath
from typing import Any

from callbot.common.agent_documents import DocumentUnreadable, document_text, read_document
from callbot.common.agents import Agent
from callbot.common.object_storage import ObjectLocation, ObjectNotFound, ObjectStore

# What Twilio's <Play> plays (its documentation: MP3, WAV, AIFF, GSM, u-law).
PLAYABLE_SUFFIXES = frozenset({".mp3", ".wav", ".aif", ".aiff", ".gsm", ".ulaw"})


async def agent_file_errors(agent: Agent, store: ObjectStore, bucket: str) -> list[dict[str, Any]]:
    """Validation errors (FastAPI's shape) for the agent's files that cannot be used."""
    checks: list[tuple[list[str | int], Any]] = [
        (["knowledge", index], _document_problem(uri, store, bucket))
        for index, uri in enumerate(agent.knowledge)
    ]
    checks += [
        (["audio", line], _audio_problem(uri, store, bucket))
        for line, uri in agent.audio.files().items()
    ]
    problems = await asyncio.gather(*(check for _, check in checks))
    return [
        {"loc": ["body", *where], "msg": problem, "type": "value_error"}
        for (where, _), problem in zip(checks, problems, strict=True)
        if problem is not None
    ]


def _outside(location: ObjectLocation, bucket: str) -> str | None:
    if location.bucket == bucket:
        return None
    return (
        f"{location.uri} is not in the agent files bucket {bucket!r} (S3_AGENT_FILES_BUCKET); "
        f"upload it there: s3://{bucket}/{location.key}"
    )


async def _document_problem(uri: str, store: ObjectStore, bucket: str) -> str | None:
    location = ObjectLocation.parse(uri)
    outside = _outside(location, bucket)
    if outside:
        return outside
    try:
        data = await read_document(store, location)
        await asyncio.to_thread(document_text, location, data)
    except ObjectNotFound:
        return f"{uri} could not be fetched: no such object; upload it first"
    except DocumentUnreadable as exc:
        return str(exc)
    return None


async def _audio_problem(uri: str, store: ObjectStore, bucket: str) -> str | None:
    location = ObjectLocation.parse(uri)
    outside = _outside(location, bucket)
    if outside:
        return outside
    suffix = PurePosixPath(location.key).suffix.lower()
    if suffix not in PLAYABLE_SUFFIXES:
        return f"{uri}: Twilio plays {', '.join(sorted(PLAYABLE_SUFFIXES))} files; got {suffix!r}"
    if await store.head(location) is None:
        return f"{uri} could not be fetched: no such object; upload it first"
    return None
