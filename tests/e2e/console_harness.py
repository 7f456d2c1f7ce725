"""What the console's browser tests drive: the whole stack as processes (the
emulator, gateway, dialog on its deterministic policy, persistence, one
campaigns replica, the media worker on an S3 server process) and Debian's
headless Chromium through Playwright, with screenshots of every page kept
under test-artifacts/console/."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from e2e_harness import EXAMPLE_SCENARIOS, wait_until
from pymongo import MongoClient

from callbot.emulator.process import EmulatorControl
from callbot.testkit.s3_server import S3ServerProcess
from callbot.testkit.stack import API_KEY, CallbotStack, StackConfig

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = "chromium"


def chromium_path() -> str:
    """Debian's chromium (scripts/ensure-tools.sh installs it; `make test` runs that)."""
    path = shutil.which(CHROMIUM)
    if path is None:
        raise RuntimeError(
            "Debian's chromium is missing: run scripts/ensure-tools.sh "
            "(apt-get install chromium); the console's browser tests need it"
        )
    return path


@dataclass
class ConsoleStack:
    stack: CallbotStack
    api: httpx.Client

    @property
    def url(self) -> str:
        return f"{self.stack.gateway_url}/console"

    @property
    def emulator(self) -> EmulatorControl:
        return self.stack.emulator.control

    def put_agent(self, agent_id: str, definition: Mapping[str, Any]) -> None:
        response = self.api.put(f"/v1/agents/{agent_id}", json=dict(definition))
        assert response.status_code == 200, response.text

    def place_call(self, agent_id: str, to: str, name: str = "Ada") -> str:
        response = self.api.post(
            "/v1/calls", json={"agent_id": agent_id, "to": to, "recipient": {"name": name}}
        )
        assert response.status_code == 201, response.text
        call_id: str = response.json()["call_id"]
        return call_id

    def wait_completed(self, call_id: str, timeout_s: float = 60) -> dict[str, Any]:
        """The call once persistence announced it (`call.completed` published)."""

        def completed() -> dict[str, Any] | None:
            # persistence writes the document from `call.created`: a moment after the 201.
            response = self.api.get(f"/v1/calls/{call_id}")
            if response.status_code == 404:
                return None
            response.raise_for_status()
            call: dict[str, Any] = response.json()
            return call if call["completed_published_at"] else None

        return wait_until(
            completed,
            f"call {call_id} completed",
            timeout_s,
            self.explain,
        )

    def explain(self) -> str:
        parts = [f"\nlogs in {self.stack.config.log_dir}"]
        for service in (self.stack.gateway, self.stack.dialog, self.stack.persistence):
            if service is not None:
                parts.append(f"--- {service.name} ---\n{service.tail(15)}")
        return "\n".join(parts)


@contextmanager
def running_console_stack(
    log_dir: Path, rabbitmq_url: str, mongodb_url: str, s3_server: S3ServerProcess
) -> Iterator[ConsoleStack]:
    namespace = f"ui{uuid.uuid4().hex[:10]}"
    buckets = {
        "S3_RECORDINGS_BUCKET": f"{namespace}-recordings",
        "S3_AGENT_FILES_BUCKET": f"{namespace}-agent-files",
    }
    s3_server.create_buckets(*buckets.values())
    stack = CallbotStack(
        StackConfig(
            rabbitmq_url=rabbitmq_url,
            mongodb_url=mongodb_url,
            namespace=namespace,
            log_dir=log_dir,
            scenarios_dir=EXAMPLE_SCENARIOS,
            campaigns_replicas=1,
            media=True,
            extra_env={
                **s3_server.env(),
                **buckets,
                "MEDIA_RETRY_BACKOFF_S": "0.1",
                "CONSOLE_SECRET_KEY": f"console-test-{namespace}",
            },
        )
    )
    try:
        stack.start()
        with httpx.Client(
            base_url=stack.gateway_url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        ) as api:
            yield ConsoleStack(stack, api)
    finally:
        stack.stop()
        stack.delete_topology()
        with MongoClient(mongodb_url, serverSelectionTimeoutMS=5000) as mongo:
            mongo.drop_database(f"callbot_{namespace}")
