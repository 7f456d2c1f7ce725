"""The media worker's ports: what its handlers are given to act through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from callbot.common.contracts import Event

T = TypeVar("T")


class RecordingSource(Protocol):
    async def download(self, recording_sid: str) -> bytes: ...

    async def delete(self, recording_sid: str) -> None: ...


class EventSink(Protocol):
    async def publish(self, event: Event) -> None: ...


class DeadLetters(Protocol):
    async def dead_letter(self, event: Event, reason: str) -> None: ...


class WhileStorageAway(Protocol):
    """Runs an object-storage operation until storage answers (`RetryWhileStorageAway`)."""

    async def __call__(self, operation: Callable[[], Awaitable[T]]) -> T: ...
