"""MongoDB wire-protocol framing: OP_MSG both ways, OP_QUERY in and OP_REPLY out.

PyMongo speaks OP_MSG for everything except the first handshake of a
connection, which it still sends as a legacy OP_QUERY on `admin.$cmd`.
Reference: https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import bson
from bson.codec_options import CodecOptions

Document = dict[str, Any]

OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013

HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
MAX_MESSAGE_BYTES = 48_000_000

_CHECKSUM_PRESENT = 1 << 0
_MORE_TO_COME = 1 << 1

# Naive UTC datetimes: what the in-memory engine compares and stores.
_CODEC: CodecOptions[Document] = CodecOptions(document_class=dict, tz_aware=False)


class ProtocolError(Exception):
    """The peer sent bytes that are not a message we understand."""


@dataclass(frozen=True)
class Request:
    request_id: int
    op_code: int
    command: Document
    """The command document, with OP_MSG kind-1 sequences folded in as lists."""
    expects_reply: bool = True


def parse_header(data: bytes) -> tuple[int, int, int, int]:
    length, request_id, response_to, op_code = HEADER.unpack(data)
    if not HEADER.size <= length <= MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message length {length} out of range")
    return length, request_id, response_to, op_code


def parse_body(request_id: int, op_code: int, body: bytes) -> Request:
    if op_code == OP_MSG:
        return _parse_op_msg(request_id, body)
    if op_code == OP_QUERY:
        return _parse_op_query(request_id, body)
    raise ProtocolError(f"unsupported opCode {op_code}")


def _parse_op_msg(request_id: int, body: bytes) -> Request:
    (flags,) = struct.unpack_from("<I", body)
    end = len(body) - 4 if flags & _CHECKSUM_PRESENT else len(body)
    position = 4
    command: Document | None = None
    sequences: dict[str, list[Document]] = {}
    while position < end:
        kind = body[position]
        position += 1
        if kind == 0:
            (size,) = struct.unpack_from("<i", body, position)
            command = bson.decode(body[position : position + size], _CODEC)
            position += size
        elif kind == 1:
            (size,) = struct.unpack_from("<i", body, position)
            section_end = position + size
            name_end = body.index(b"\x00", position + 4)
            identifier = body[position + 4 : name_end].decode()
            sequences[identifier] = bson.decode_all(body[name_end + 1 : section_end], _CODEC)
            position = section_end
        else:
            raise ProtocolError(f"unknown OP_MSG section kind {kind}")
    if command is None:
        raise ProtocolError("OP_MSG without a body section")
    command.update(sequences)
    return Request(request_id, OP_MSG, command, expects_reply=not flags & _MORE_TO_COME)


def _parse_op_query(request_id: int, body: bytes) -> Request:
    name_end = body.index(b"\x00", 4)
    collection = body[4:name_end].decode()
    if not collection.endswith(".$cmd"):
        raise ProtocolError(f"legacy OP_QUERY on {collection!r}: only commands are served")
    position = name_end + 1 + 8  # numberToSkip, numberToReturn
    (size,) = struct.unpack_from("<i", body, position)
    command = bson.decode(body[position : position + size], _CODEC)
    # A command wrapped for a read preference: {$query: {...}, $readPreference: ...}.
    command = command.get("$query", command)
    command.setdefault("$db", collection.removesuffix(".$cmd"))
    return Request(request_id, OP_QUERY, command)


def encode_reply(request: Request, reply_id: int, reply: Document) -> bytes:
    payload = bson.encode(reply)
    if request.op_code == OP_QUERY:
        # responseFlags, cursorID, startingFrom, numberReturned
        body = struct.pack("<iqii", 0, 0, 0, 1) + payload
        op_code = OP_REPLY
    else:
        body = struct.pack("<IB", 0, 0) + payload
        op_code = OP_MSG
    return HEADER.pack(HEADER.size + len(body), reply_id, request.request_id, op_code) + body
