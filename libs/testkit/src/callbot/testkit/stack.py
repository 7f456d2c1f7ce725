"""The whole of callbot as separate OS processes: the Twilio emulator, gateway,
dialog and persistence, wired to one RabbitMQ namespace and one MongoDB.

Used by the end-to-end tests and by `make demo`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika

from callbot.common.messaging import Topology, delete_topology
from callbot.emulator.process import EmulatorProcess, start_emulator_process
from callbot.testkit.processes import ServiceProcess, free_port

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "stack-test-auth-token"
API_KEY = "stack-test-api-key"
FROM_NUMBER = "+15005550001"


@dataclass
class StackConfig:
    rabbitmq_url: str
    mongodb_url: str
    namespace: str
    log_dir: Path
    openai_base_url: str | None = None  # None: dialog runs its deterministic policy
    scenarios_dir: Path | None = None
    dialog_deadline_ms: int = 4000
    extra_env: dict[str, str] = field(default_factory=dict)
    dialog_replicas: int = 1
    # What runs as persistence: the benches run it with a hook that records write lag.
    persistence_module: str = "callbot.persistence"
    campaigns_replicas: int = 0  # the campaigns service (0: not started)
    # The media worker (recording archive); it needs object storage: S3_* in `extra_env`.
    media: bool = False
    # Where Twilio (the emulator) reaches gateway: a front of several gateways
    # (`callbot.testkit.tcp_front`); None: the gateway itself.
    public_url: str | None = None


class CallbotStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        config.log_dir.mkdir(parents=True, exist_ok=True)
        self._emulator: EmulatorProcess | None = None
        self.gateway_port = free_port()
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self.gateway: ServiceProcess | None = None
        self.dialog: ServiceProcess | None = None  # the first of `dialog_replicas`
        self.dialog_replicas: list[ServiceProcess] = []
        self.persistence: ServiceProcess | None = None
        self.campaigns_replicas: list[ServiceProcess] = []
        self.media: ServiceProcess | None = None

    @property
    def emulator(self) -> EmulatorProcess:
        """The running Twilio emulator (`base_url`, `control`, `output()`)."""
        if self._emulator is None:
            raise RuntimeError("the stack is not started: call start() first")
        return self._emulator

    def _env(self) -> dict[str, str]:
        config = self.config
        env = {
            "RABBITMQ_URL": config.rabbitmq_url,
            "RABBITMQ_NAMESPACE": config.namespace,
            "RABBITMQ_RECONNECT_INTERVAL_S": "0.5",
            "MONGODB_URL": config.mongodb_url,
            "MONGODB_DB": f"callbot_{config.namespace}",
            "LOG_LEVEL": "INFO",
            "COMPLETED_SWEEP_INTERVAL_S": "2",
            "OPENAI_API_KEY": "test-key" if config.openai_base_url else "",
            "OPENAI_BASE_URL": config.openai_base_url or "",
            **config.extra_env,
        }
        # An empty value would be read as "configured": leave unset instead.
        return {key: value for key, value in env.items() if value}

    def gateway_env(self) -> dict[str, str]:
        return {
            **self._env(),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.gateway_port),
            "PUBLIC_URL": self.config.public_url or self.gateway_url,
            "CALLBOT_API_KEYS": API_KEY,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            "TWILIO_API_BASE_URL": self.emulator.base_url,
            "DIALOG_DEADLINE_MS": str(self.config.dialog_deadline_ms),
        }

    def campaigns_env(self) -> dict[str, str]:
        return {
            "CAMPAIGNS_GATEWAY_URL": self.gateway_url,
            "CAMPAIGNS_API_KEY": API_KEY,
            "CAMPAIGNS_PROGRESS_INTERVAL_S": "1",
            **self._env(),
        }

    def media_env(self) -> dict[str, str]:
        """The media worker downloads and deletes recordings at Twilio (the emulator)."""
        return {
            **self._env(),
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_BASE_URL": self.emulator.base_url,
        }

    def start(self) -> None:
        log_dir = self.config.log_dir
        self._emulator = start_emulator_process(
            ACCOUNT_SID,
            AUTH_TOKEN,
            scenarios_dir=self.config.scenarios_dir,
            log_path=log_dir / "emulator.log",
            ready_timeout_s=30.0,
        )
        self.persistence = ServiceProcess(
            "persistence", self.config.persistence_module, self._env(), log_dir
        )
        self.dialog_replicas = [
            ServiceProcess(
                "dialog" if index == 0 else f"dialog-{index + 1}",
                "callbot.dialog",
                self._env(),
                log_dir,
            )
            for index in range(self.config.dialog_replicas)
        ]
        self.dialog = self.dialog_replicas[0]
        self.gateway = ServiceProcess(
            "gateway",
            "callbot.gateway",
            self.gateway_env(),
            log_dir,
            ready_url=f"{self.gateway_url}/readyz",
        )
        self.campaigns_replicas = [
            ServiceProcess(
                f"campaigns-{index + 1}", "callbot.campaigns", self.campaigns_env(), log_dir
            )
            for index in range(self.config.campaigns_replicas)
        ]
        if self.config.media:
            self.media = ServiceProcess("media", "callbot.media", self.media_env(), log_dir)
        for service in (
            self.persistence,
            *self.dialog_replicas,
            self.gateway,
            *self.campaigns_replicas,
            self.media,
        ):
            if service is not None:
                service.start()

    def stop(self) -> None:
        for service in (
            *self.campaigns_replicas,
            self.gateway,
            *self.dialog_replicas,
            self.persistence,
            self.media,
        ):
            if service is not None:
                service.stop()
        if self._emulator is not None:
            self._emulator.stop()

    def delete_topology(self) -> None:
        """Remove the namespace's exchanges and queues from the broker (after `stop`):
        they are durable, and every stack uses a namespace of its own."""

        async def delete() -> None:
            connection = await aio_pika.connect(self.config.rabbitmq_url)
            async with connection:
                await delete_topology(await connection.channel(), Topology(self.config.namespace))

        asyncio.run(delete())
