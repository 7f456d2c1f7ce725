"""An OTLP/HTTP trace receiver for tests: what a collector would be handed.

It serves `POST /v1/traces` (protobuf, optionally gzip-compressed), decodes
each `ExportTraceServiceRequest` with opentelemetry-proto and keeps every
span with the `service.name` of the process that sent it. Run it in the test
process (a thread) and point the services at it with
`OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint`; or as a process of its own
(`main`).
"""

from __future__ import annotations

import argparse
import gzip
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

TRACES_PATH = "/v1/traces"
_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # empty for a root span
    name: str
    kind: str  # SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL
    attributes: dict[str, Any]
    error: bool  # status ERROR


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which) if which else None


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        found[pair.key] = _value(pair.value)
    return found


def decode_spans(body: bytes) -> list[ReceivedSpan]:
    """Every span of one OTLP export request."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=service,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=_KINDS.get(span.kind, str(span.kind)),
                        attributes=_attributes(span.attributes),
                        error=span.status.code == 2,
                    )
                )
    return spans


class _TracesHandler(BaseHTTPRequestHandler):
    server: _ReceiverServer

    def do_POST(self) -> None:
        if self.path != TRACES_PATH:
            self.send_error(404, f"only {TRACES_PATH} is served")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            spans = decode_spans(body)
        except Exception as exc:  # a malformed export is the sender's bug: say so
            self.send_error(400, f"not an ExportTraceServiceRequest: {exc}")
            return
        with self.server.lock:
            self.server.received.extend(spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a line per export would drown the test output."""


class _ReceiverServer(ThreadingHTTPServer):
    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _TracesHandler)
        self.received: list[ReceivedSpan] = []
        self.lock = threading.Lock()


class OtlpReceiver:
    """The spans received so far; `endpoint` is the base URL exporters want."""

    def __init__(self, server: _ReceiverServer) -> None:
        self._server = server
        host, port = server.server_address[:2]
        self.endpoint = f"http://{host!s}:{port}"

    def stop(self) -> None:
        """Stop answering (a collector gone away): exports are refused from now on."""
        self._server.shutdown()
        self._server.server_close()

    def spans(self) -> list[ReceivedSpan]:
        with self._server.lock:
            return list(self._server.received)

    def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], what: str, timeout_s: float = 30.0
    ) -> list[ReceivedSpan]:
        """The spans received, once `found` holds for them; AssertionError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans()
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({(s.service, s.name) for s in spans})
                raise AssertionError(
                    f"timed out after {timeout_s:.0f}s waiting for {what}; received {names}"
                )
            time.sleep(0.05)


@contextmanager
def running_otlp_receiver(host: str = "127.0.0.1") -> Iterator[OtlpReceiver]:
    """A receiver on a free port, served from a thread until the block ends."""
    server = _ReceiverServer(host)
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    receiver = OtlpReceiver(server)
    try:
        yield receiver
    finally:
        receiver.stop()
        thread.join(5)


def main() -> None:
    """`python -m callbot.testkit.otlp_receiver --port N`: a receiver process of its
    own (the benches use one, so decoding spans costs the measured client nothing);
    prints its address once ready and the number of spans received on SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with running_otlp_receiver(args.host) as receiver:
        print(f"otlp receiver ready at {receiver.endpoint}", flush=True)
        stop.wait()
        print(f"otlp receiver: {len(receiver.spans())} spans received", flush=True)


if __name__ == "__main__":
    main()
