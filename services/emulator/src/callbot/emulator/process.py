"""The emulator as a separate OS process, and clients for its ``/_control`` endpoints.

For end-to-end tests::

    with start_emulator_process("AC...", "token", scenarios_dir=Path("examples/calls")) as twilio:
        twilio.control.add_scenario({"to": "+15005550006", "steps": [{"say": "Hi"}]})
        ...  # point the service under test at twilio.base_url
        call = twilio.control.wait_for_call(call_sid)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from callbot.emulator.records import CallRecord
from callbot.emulator.scenario import Scenario
from callbot.emulator.server_process import ServerProcess
from callbot.emulator.switchboard import Fault, RecordedRequest

# How the child names itself in its ready line (``server_process.ready_line``).
EMULATOR_NAME = "twilio-emulator"

ScenarioLike = Scenario | Mapping[str, Any]
FaultLike = Fault | Mapping[str, Any]


def _scenario_payload(scenario: ScenarioLike) -> dict[str, Any]:
    if isinstance(scenario, Scenario):
        return scenario.model_dump(mode="json")
    return dict(scenario)


def _faults_payload(faults: tuple[FaultLike, ...]) -> dict[str, Any]:
    return {"calls_create": [Fault.model_validate(fault).model_dump() for fault in faults]}


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise RuntimeError(
            f"twilio-emulator {response.request.method} {response.request.url} "
            f"answered {response.status_code}: {response.text}"
        )
    return response


def _wait_params(timeout_s: float) -> dict[str, float]:
    return {"timeout": timeout_s}


class EmulatorControl:
    """Drives an emulator over HTTP (blocking calls)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s

    def add_scenario(self, scenario: ScenarioLike) -> None:
        self._send("POST", "/_control/scenarios", json=_scenario_payload(scenario))

    def fail_next_creates(self, *faults: FaultLike) -> None:
        self._send("POST", "/_control/faults", json=_faults_payload(faults))

    def calls(self) -> list[CallRecord]:
        return [CallRecord.model_validate(c) for c in self._send("GET", "/_control/calls").json()]

    def call(self, call_sid: str) -> CallRecord:
        return CallRecord.model_validate(self._send("GET", f"/_control/calls/{call_sid}").json())

    def wait_for_call(self, call_sid: str, timeout_s: float = 30.0) -> CallRecord:
        response = self._send(
            "GET",
            f"/_control/calls/{call_sid}/wait",
            params=_wait_params(timeout_s),
            request_timeout_s=timeout_s + self._timeout_s,
        )
        return CallRecord.model_validate(response.json())

    def requests(self) -> list[RecordedRequest]:
        return [
            RecordedRequest.model_validate(item)
            for item in self._send("GET", "/_control/requests").json()
        ]

    def drop_callbacks(self, *kinds: str) -> None:
        """Status/recording/AMD callbacks of these kinds are not sent from now on."""
        self._send("POST", "/_control/callbacks", json={"drop": list(kinds)})

    def reset(self) -> None:
        self._send("POST", "/_control/reset")

    def _send(
        self, method: str, path: str, *, request_timeout_s: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        response = httpx.request(
            method, self._base_url + path, timeout=request_timeout_s or self._timeout_s, **kwargs
        )
        return _checked(response)


class AsyncEmulatorControl:
    """``EmulatorControl`` for async tests."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s

    async def add_scenario(self, scenario: ScenarioLike) -> None:
        await self._send("POST", "/_control/scenarios", json=_scenario_payload(scenario))

    async def fail_next_creates(self, *faults: FaultLike) -> None:
        await self._send("POST", "/_control/faults", json=_faults_payload(faults))

    async def calls(self) -> list[CallRecord]:
        response = await self._send("GET", "/_control/calls")
        return [CallRecord.model_validate(item) for item in response.json()]

    async def call(self, call_sid: str) -> CallRecord:
        response = await self._send("GET", f"/_control/calls/{call_sid}")
        return CallRecord.model_validate(response.json())

    async def wait_for_call(self, call_sid: str, timeout_s: float = 30.0) -> CallRecord:
        response = await self._send(
            "GET",
            f"/_control/calls/{call_sid}/wait",
            params=_wait_params(timeout_s),
            request_timeout_s=timeout_s + self._timeout_s,
        )
        return CallRecord.model_validate(response.json())

    async def requests(self) -> list[RecordedRequest]:
        response = await self._send("GET", "/_control/requests")
        return [RecordedRequest.model_validate(item) for item in response.json()]

    async def drop_callbacks(self, *kinds: str) -> None:
        await self._send("POST", "/_control/callbacks", json={"drop": list(kinds)})

    async def reset(self) -> None:
        await self._send("POST", "/_control/reset")

    async def _send(
        self, method: str, path: str, *, request_timeout_s: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        async with httpx.AsyncClient(timeout=request_timeout_s or self._timeout_s) as client:
            return _checked(await client.request(method, self._base_url + path, **kwargs))


class EmulatorProcess(ServerProcess):
    """``python -m callbot.emulator`` running as a child process; see ``start_emulator_process``.

    The child prints its conversation log on stdout: ``output()`` returns it.
    """

    @property
    def control(self) -> EmulatorControl:
        return EmulatorControl(self.base_url)


def start_emulator_process(
    account_sid: str,
    auth_token: str,
    *,
    scenarios_dir: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    webhook_timeout_s: float | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = 20.0,
) -> EmulatorProcess:
    """Start ``python -m callbot.emulator`` and wait for its ready line.

    The child prints its conversation log on stdout: ``output()`` returns it, and
    ``log_path`` keeps a copy.
    """
    arguments = [
        "--host",
        host,
        "--port",
        str(port),
        "--account-sid",
        account_sid,
        "--auth-token",
        auth_token,
    ]
    if scenarios_dir is not None:
        arguments += ["--scenarios", str(scenarios_dir)]
    if webhook_timeout_s is not None:
        arguments += ["--webhook-timeout", str(webhook_timeout_s)]
    return EmulatorProcess.launch(
        EMULATOR_NAME,
        "callbot.emulator",
        arguments,
        log_path=log_path,
        ready_timeout_s=ready_timeout_s,
    )
