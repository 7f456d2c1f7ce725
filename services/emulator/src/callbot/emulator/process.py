"""The emulator as a separate OS process, and clients for its ``/_control`` endpoints.

For end-to-end tests::

    with start_emulator_process("AC...", "token", scenarios_dir=Path("examples/calls")) as twilio:
        twilio.control.add_scenario({"to": "+15005550006", "steps": [{"say": "Hi"}]})
        ...  # point the service under test at twilio.base_url
        call = twilio.control.wait_for_call(call_sid)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from callbot.emulator.records import CallRecord
from callbot.emulator.scenario import Scenario
from callbot.emulator.switchboard import Fault, RecordedRequest

READY_LINE_PREFIX = "twilio-emulator listening on "

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

    async def reset(self) -> None:
        await self._send("POST", "/_control/reset")

    async def _send(
        self, method: str, path: str, *, request_timeout_s: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        async with httpx.AsyncClient(timeout=request_timeout_s or self._timeout_s) as client:
            return _checked(await client.request(method, self._base_url + path, **kwargs))


class EmulatorProcess:
    """``python -m callbot.emulator`` running as a child process; see ``start_emulator_process``."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path | None) -> None:
        self.process = process
        self._base_url: str | None = None
        self._ready = threading.Event()
        self._lines: list[str] = []
        # One thread reads stdout from the start: it spots the ready line, and keeps the
        # pipe drained so the child's conversation log never blocks it.
        self._pump = threading.Thread(target=self._drain, args=(log_path,), daemon=True)
        self._pump.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the emulator process has not printed its ready line")
        return self._base_url

    @property
    def control(self) -> EmulatorControl:
        return EmulatorControl(self.base_url)

    def output(self) -> list[str]:
        """Every line the emulator printed so far."""
        return list(self._lines)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"twilio-emulator did not print its ready line within {timeout_s} s "
                    f"(exit code {self.process.returncode}); its output:\n" + "\n".join(self._lines)
                )

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._pump.join(5)
        return self.process.returncode

    def _drain(self, log_path: Path | None) -> None:
        stdout = self.process.stdout
        assert stdout is not None  # started with stdout=PIPE
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(log_path.open("a", encoding="utf-8")) if log_path else None
            for raw in iter(stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                self._lines.append(line)
                if log is not None:
                    log.write(line + "\n")
                    log.flush()
                if not self._ready.is_set() and line.startswith(READY_LINE_PREFIX):
                    self._base_url = line.removeprefix(READY_LINE_PREFIX).strip()
                    self._ready.set()
            stdout.close()


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
    command = [
        sys.executable,
        "-m",
        "callbot.emulator",
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
        command += ["--scenarios", str(scenarios_dir)]
    if webhook_timeout_s is not None:
        command += ["--webhook-timeout", str(webhook_timeout_s)]
    # The child must import this package even when it is not pip-installed.
    src_dir = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(filter(None, [src_dir, os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"},
    )
    handle = EmulatorProcess(process, log_path)
    handle.wait_ready(ready_timeout_s)
    return handle
