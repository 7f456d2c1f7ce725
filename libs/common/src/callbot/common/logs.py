"""Structured JSON logs, with the `call_id` of the call being served on every line.

`log_context(call_id=...)` binds fields for everything logged inside it,
across awaits, through a context variable; each asyncio task inherits the
context it was created in. With tracing on, the span in hand gets the same
`call_id`, and every line the `trace_id` of its span.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from callbot.common.tracing import current_trace_id, tag_call

_context: ContextVar[dict[str, Any]] = ContextVar("callbot_log_context", default={})  # noqa: B039

# Attributes every LogRecord has; anything else came in through `extra=`.
# uvicorn's `color_message` is its message again, with ANSI colour escapes.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` to every log line written inside the block (and a `call_id`
    to the span in hand, when tracing is on)."""
    tag_call(fields.get("call_id"))
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_context.get(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _RECORD_FIELDS)
        trace_id = current_trace_id()
        if trace_id is not None:
            entry["trace_id"] = trace_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stderr for the whole process (call once, at start-up)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiormq logs every reconnect attempt with a traceback; our own lines say it once.
    logging.getLogger("aiormq").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aio_pika").setLevel(max(logging.WARNING, root.level))
    # The Twilio client logs every request header and response at INFO: eleven
    # lines per call placed; gateway's own "call placed" line says what matters.
    logging.getLogger("twilio.http_client").setLevel(max(logging.WARNING, root.level))
    # "service started" and "service stopped" are said at any LOG_LEVEL: two
    # lines a process, and what ops and the test harness wait for.
    logging.getLogger("callbot.common.lifecycle").setLevel(logging.INFO)
    # What a record collects that no line prints (the JSON leaves out the
    # caller's file and line, thread and process): skipped, as the logging
    # HOWTO's "Optimization" section describes, ~2 us less per line.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
