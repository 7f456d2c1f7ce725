"""Typed settings read from environment variables.

One class holds every variable callbot reads, so the README's configuration
table has exactly one source. Each service reads the fields it needs; secrets
are `SecretStr` so they never appear in logs, reprs or tracebacks.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from callbot.common.broker_nodes import node_urls
from callbot.common.mcp_servers import parse_allowed_hosts
from callbot.common.object_storage import S3Config

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

_TWILIO_API = "https://api.twilio.com"


class Settings(BaseSettings):
    """Every environment variable of every callbot service, with safe defaults."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, frozen=True)

    # Messaging. A cluster: every node in one URL, `amqp://u:p@rabbit-0,rabbit-1,rabbit-2/`.
    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    rabbitmq_namespace: str = Field(
        default="callbot",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Prefix of every exchange and queue name; lets deployments share a vhost.",
    )
    rabbitmq_prefetch: int = Field(default=32, ge=1, le=1000)
    rabbitmq_delivery_limit: int = Field(default=5, ge=1, le=100)
    rabbitmq_reconnect_interval_s: float = Field(default=1.0, gt=0, le=60)

    # MongoDB
    mongodb_url: SecretStr = SecretStr("mongodb://127.0.0.1:27017/")
    mongodb_db: str = Field(default="callbot", pattern=r"^[A-Za-z0-9_-]+$")
    mongodb_timeout_ms: int = Field(default=5000, ge=100)

    # LLM (dialog)
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    dialog_session_cache_size: int = Field(
        default=2000,
        ge=1,
        le=1_000_000,
        description="Live sessions one dialog replica keeps in memory (LRU; a miss rebuilds "
        "the session from the call document).",
    )

    # MCP tool servers (dialog calls them; gateway checks them when an agent is saved)
    mcp_allowed_hosts: str = Field(
        default="",
        description="Comma-separated hosts (`host`, `host:port`, `*.domain`) MCP servers may "
        "be on; empty: none.",
    )
    mcp_tools_ttl_s: float = Field(default=300.0, gt=0, le=86400)
    mcp_max_tool_steps: int = Field(default=3, ge=1, le=8)

    # Twilio (gateway)
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from_number: str = ""
    twilio_api_base_url: str = _TWILIO_API

    # Gateway HTTP
    public_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8080")
    gateway_host: str = "0.0.0.0"
    gateway_port: int = Field(default=8080, ge=0, le=65535)
    # Longer than the idle timeout of the proxy in front (AWS ALB: 60 s), so
    # the proxy, never gateway, closes an idle connection: otherwise the proxy
    # may send a webhook down a connection gateway is closing, and Twilio gets a 502.
    gateway_keepalive_s: int = Field(default=75, ge=1, le=3600)
    callbot_api_keys: SecretStr = SecretStr("")
    dialog_deadline_ms: int = Field(default=4000, ge=100, le=14000)
    max_webhook_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # How long a callback for a call not stored yet waits for its call.created
    # before it is an orphan (not stored; gateway's placed_calls.py).
    orphan_wait_ms: int = Field(default=2000, ge=0, le=10000)
    # Reconciliation with Twilio (gateway): calls stuck in a non-final state.
    reconcile_interval_s: float = Field(default=60.0, ge=0)  # 0: off
    reconcile_margin_s: float = Field(default=120.0, ge=0)
    reconcile_batch: int = Field(default=100, ge=1, le=10000)
    reconcile_twilio_rps: float = Field(default=5.0, gt=0, le=100)

    # Console (gateway's web UI under /console)
    console_secret_key: SecretStr = Field(
        default=SecretStr(""),
        description="Signs the console's session cookies and CSRF tokens; empty: a random key "
        "per gateway process (sessions end when it restarts and do not carry across replicas).",
    )
    console_session_ttl_s: int = Field(default=8 * 3600, ge=60, le=30 * 86400)
    # Failed sign-ins one client address may make within the window (per process).
    console_sign_in_failures: int = Field(default=10, ge=1, le=10_000)
    console_sign_in_window_s: int = Field(default=300, ge=1, le=86_400)

    # Persistence
    completed_sweep_interval_s: float = Field(default=30.0, gt=0)
    summary_wait_s: float = Field(
        default=3.0,
        ge=0,
        le=60,
        description="How long call.completed waits (after the grace period) for an answered "
        "call's summary; later summaries arrive as call.summarized.",
    )
    summary_timeout_s: float = Field(
        default=20.0,
        gt=0,
        le=120,
        description="dialog's budget for the model's post-call summary; past it (or on an "
        "error) the deterministic summary is published instead.",
    )

    # Campaigns
    campaigns_gateway_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Where the campaigns service places calls (gateway's POST /v1/calls).",
    )
    campaigns_api_key: SecretStr = SecretStr("")
    campaigns_progress_interval_s: float = Field(default=5.0, gt=0, le=3600)
    campaigns_lease_s: float = Field(default=60.0, ge=1, le=3600)
    campaigns_outcome_timeout_s: float = Field(default=3600.0, ge=1, le=7 * 86400)

    # Object storage (S3 API: AWS S3, MinIO, any S3-compatible server). Credentials
    # come from the environment botocore reads (AWS_ACCESS_KEY_ID, ...), never from here.
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_recordings_bucket: str = Field(default="callbot-recordings", min_length=3, max_length=63)
    s3_agent_files_bucket: str = Field(default="callbot-agent-files", min_length=3, max_length=63)
    s3_presigned_url_ttl_s: int = Field(default=900, ge=60, le=7 * 24 * 3600)

    # Recording archive (media worker)
    twilio_delete_recordings_after_archive: bool = False
    media_download_attempts: int = Field(default=6, ge=1, le=20)
    media_retry_backoff_s: float = Field(default=1.0, gt=0, le=60)

    # Transcripts of archived recordings (media worker; OPENAI_API_KEY / OPENAI_BASE_URL)
    transcription_model: str = Field(
        default="",
        description="Model of the audio transcription endpoint (e.g. gpt-4o-transcribe, "
        "whisper-1); empty: recordings are not transcribed.",
    )
    # verbose_json gives segment timestamps; models that only answer json
    # (gpt-4o-transcribe) give the text alone.
    transcription_response_format: Literal["verbose_json", "json"] = "verbose_json"
    transcription_attempts: int = Field(default=5, ge=1, le=20)
    transcription_backoff_s: float = Field(default=2.0, gt=0, le=300)
    transcription_timeout_s: float = Field(default=120.0, gt=0, le=1800)

    # Retention (persistence erases, the media worker sets the bucket's lifecycle rule)
    retention_days: int = Field(
        default=0,
        ge=0,
        le=36500,
        description="Days calls, recordings and transcripts are kept unless the agent says "
        "otherwise; 0: kept until deleted.",
    )
    retention_sweep_interval_s: float = Field(default=3600.0, gt=0, le=86400)
    retention_ttl_grace_days: int = Field(default=7, ge=1, le=365)

    # Operations
    startup_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="How long a starting service waits for RabbitMQ and MongoDB before it "
        "exits non-zero.",
    )
    log_level: LogLevel = "INFO"
    # Tracing: the standard OpenTelemetry variables. These decide whether it is
    # on; the SDK itself reads the rest (OTEL_TRACES_SAMPLER, OTEL_BSP_*, ...).
    otel_sdk_disabled: bool = False
    otel_traces_exporter: Literal["otlp", "none"] = "otlp"
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None
    otel_exporter_otlp_protocol: Literal["http/protobuf"] = Field(
        default="http/protobuf",
        description="Only OTLP over HTTP with protobuf is shipped (no gRPC stack to carry).",
    )
    otel_exporter_otlp_traces_protocol: Literal["http/protobuf"] = "http/protobuf"
    otel_service_name: str | None = None
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Prometheus port for dialog/persistence; 0 = off."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("rabbitmq_url")
    @classmethod
    def _names_broker_nodes(cls, value: SecretStr) -> SecretStr:
        node_urls(value.get_secret_value())  # raises, saying why, without the secret
        return value

    @field_validator("twilio_api_base_url", "openai_base_url", "s3_endpoint_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @cached_property
    def api_keys(self) -> frozenset[str]:
        """The accepted API keys, from the comma-separated `CALLBOT_API_KEYS`."""
        raw = self.callbot_api_keys.get_secret_value()
        return frozenset(key.strip() for key in raw.split(",") if key.strip())

    @property
    def rabbitmq_nodes(self) -> tuple[str, ...]:
        """One URL per RabbitMQ node named in `RABBITMQ_URL`, in its order."""
        return node_urls(self.rabbitmq_url.get_secret_value())

    @property
    def public_base_url(self) -> str:
        """`PUBLIC_URL` without a trailing slash: the prefix of every callback URL."""
        return str(self.public_url).rstrip("/")

    @cached_property
    def mcp_allowed_host_set(self) -> frozenset[str]:
        """The parsed `MCP_ALLOWED_HOSTS`."""
        return parse_allowed_hosts(self.mcp_allowed_hosts)

    @property
    def transcription_configured(self) -> bool:
        """Recordings are transcribed: a model is named (and an endpoint, key or base URL)."""
        return bool(self.transcription_model) and self.llm_configured

    @property
    def llm_configured(self) -> bool:
        """An LLM endpoint is configured; otherwise dialog runs its deterministic policy."""
        return self.openai_api_key is not None or self.openai_base_url is not None

    @property
    def tracing_enabled(self) -> bool:
        """Traces are exported: an OTLP endpoint is set, and neither
        `OTEL_SDK_DISABLED` nor `OTEL_TRACES_EXPORTER=none` says otherwise."""
        endpoint = self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint
        return bool(endpoint) and not self.otel_sdk_disabled and self.otel_traces_exporter == "otlp"

    def s3_config(self) -> S3Config:
        """How to reach object storage (`S3_ENDPOINT_URL` unset: AWS S3 itself)."""
        return S3Config(endpoint_url=self.s3_endpoint_url or None, region=self.s3_region)


def load_settings() -> Settings:
    """Read the settings from the environment (one call per process start)."""
    return Settings()
