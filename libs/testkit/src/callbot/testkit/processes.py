"""Running callbot services as real OS processes, for end-to-end tests and the demo.

Each process writes its JSON log lines to a file of its own; readiness is a
JSON log line whose `msg` is "service started" or an HTTP URL answering 200.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

from callbot.emulator.server_process import end_process

READY_MESSAGE = "service started"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcess:
    """`python -m <module> <arguments>` with its own environment and log file."""

    def __init__(
        self,
        name: str,
        module: str,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        arguments: Sequence[str] = (),
        ready_url: str | None = None,
    ) -> None:
        self.name = name
        self.module = module
        self.arguments = list(arguments)
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.ready_url = ready_url
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._pump: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout_s: float = 30.0) -> None:
        self._ready.clear()
        environment = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.arguments],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        log = self.log_path.open("ab")
        assert self._process.stdout is not None
        self._pump = threading.Thread(
            target=self._copy_output, args=(self._process.stdout, log), daemon=True
        )
        self._pump.start()
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self._process.returncode} while starting; "
                    f"log:\n{self.tail()}"
                )
            if self._is_ready():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout_s}s; log:\n{self.tail()}")

    def _is_ready(self) -> bool:
        if self.ready_url is None:
            return self._ready.is_set()
        try:
            return httpx.get(self.ready_url, timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def _copy_output(self, source: IO[bytes], sink: IO[bytes]) -> None:
        with sink:
            for line in iter(source.readline, b""):
                sink.write(line)
                sink.flush()
                if _is_ready_line(line):
                    self._ready.set()

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM and wait: the service finishes the work in hand first."""
        return self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> int | None:
        """SIGKILL: a crash, nothing finished."""
        return self._end(signal.SIGKILL, 10.0)

    def restart(self, timeout_s: float = 30.0) -> None:
        self.stop()
        self.start(timeout_s)

    def _end(self, signum: signal.Signals, timeout_s: float) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        returncode = end_process(process, signum, timeout_s)
        if self._pump is not None:
            self._pump.join(5)
        if process.stdout is not None:
            process.stdout.close()
        return returncode

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_lines(self) -> list[str]:
        return (
            self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        )


def _is_ready_line(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("msg") == READY_MESSAGE
