"""The frames of a streaming RPC (dialog's reply spoken as it is written).

A streaming request is an ordinary RPC request (same queue, same deadline
header) that asks for its reply in pieces: the server sends `StreamChunk`s,
numbered from 0, to the caller's reply-to address, then one `StreamFinal`
holding the whole reply and the number of chunks sent before it. The caller
may stop the work with a `StreamCancel` on the cancel exchange, which every
server replica listens to; the replica doing the work cancels it. Pure: no I/O.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from callbot.common.contracts import Message


class StreamChunk(Message):
    """server → caller: the next piece of text, in order (`seq` from 0)."""

    type: Literal["stream.chunk"] = "stream.chunk"
    seq: int = Field(ge=0)
    text: str


class StreamFinal(Message):
    """server → caller: the end of the stream; `chunks` were sent before it,
    `reply` is the whole reply (validated by the caller with its own adapter)."""

    type: Literal["stream.final"] = "stream.final"
    chunks: int = Field(ge=0)
    reply: dict[str, Any]


class StreamCancel(Message):
    """caller → every server replica: stop the request `correlation_id`
    (the caller no longer listens: the callee interrupted, or the call ended)."""

    type: Literal["stream.cancel"] = "stream.cancel"
    correlation_id: str = Field(min_length=1)
    reason: str = ""


def heard_line(sent: str, line: str) -> str:
    """The whole line the callee hears when `sent` went out before the turn's
    line was decided: `line` itself when it goes on from what was sent (the
    model's own text), else `line` spoken after it (the policy replaced the
    model's text, with a re-ask or a closing line: what went out stays said)."""
    said = sent.rstrip()
    if not said or line.startswith(said):
        return line
    return f"{said} {line}"


def still_to_send(sent: str, line: str) -> str:
    """What of `line` (a `heard_line` of `sent`) has not gone out yet."""
    said = sent.rstrip()
    if not said:
        return line
    rest = line[len(said) :]
    # The whitespace after `said` went out with it.
    return rest if sent == said else rest.lstrip()


StreamFrame = Annotated[StreamChunk | StreamFinal, Field(discriminator="type")]
STREAM_FRAME_ADAPTER: TypeAdapter[StreamFrame] = TypeAdapter(StreamFrame)
STREAM_CANCEL_ADAPTER: TypeAdapter[StreamCancel] = TypeAdapter(StreamCancel)
