"""Tracing's switch and its off path: pure, no I/O. (The on path, across
processes and the broker, is tests/e2e/test_tracing.py.)"""

from __future__ import annotations

import logging

import aio_pika
import pytest
from opentelemetry import trace
from pydantic import ValidationError

from callbot.common.logs import JsonFormatter, log_context
from callbot.common.messaging.trace_context import sending
from callbot.common.settings import Settings
from callbot.common.tracing import configure_tracing, span, tracing_enabled


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_tracing_is_off_by_default_and_on_with_an_otlp_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not Settings().tracing_enabled
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert Settings().tracing_enabled
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/traces")
    assert Settings().tracing_enabled


@pytest.mark.parametrize(
    ("name", "value"), [("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "none")]
)
def test_the_standard_switches_turn_it_off_even_with_an_endpoint(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv(name, value)
    assert not Settings().tracing_enabled


def test_only_otlp_over_http_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ValidationError, match="otel_exporter_otlp_protocol"):
        Settings()


def test_off_nothing_is_configured_spanned_or_written_into_messages() -> None:
    assert configure_tracing("test", Settings()) is False
    assert not tracing_enabled()
    # The API's default provider is still the proxy: no SDK was installed.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    message = aio_pika.Message(b"{}", headers={"call_id": "c1"})
    with sending(message, exchange="x", routing_key="call.turn", call_id="c1") as current:
        assert current is None
    assert message.headers == {"call_id": "c1"}
    with span("anything") as current:
        assert current is None


def test_off_log_lines_carry_no_trace_id() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None)
    with log_context(call_id="c1"):
        line = JsonFormatter("test").format(record)
    assert '"call_id":"c1"' in line
    assert "trace_id" not in line
