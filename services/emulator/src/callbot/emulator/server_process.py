"""``ServerProcess``: a test server run as ``python -m MODULE``, in a child process.

The child prints ``ready_line(name, base_url)`` once it listens. This package's
emulator and the scripted OpenAI server in callbot's testkit both follow that
convention; ``end_process`` is also how the testkit stops callbot's services.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

# The source folder this package is imported from: a child that imports it needs this
# on its path when the package is not pip-installed.
SRC_DIR = Path(__file__).resolve().parents[2]


def ready_line(name: str, base_url: str) -> str:
    """What a child prints on stdout once it serves ``base_url``."""
    return f"{_ready_prefix(name)}{base_url}"


def _ready_prefix(name: str) -> str:
    return f"{name} listening on "


def end_process(
    process: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout_s: float = 10.0
) -> int:
    """Send ``signum`` unless it has exited, SIGKILL it if it has not exited within
    ``timeout_s``; its exit code."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class ServerProcess:
    """A running child server; ``launch()`` one, ``stop()`` it (or use ``with``)."""

    def __init__(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        *,
        log_path: Path | None = None,
        stderr_in_output: bool = True,
    ) -> None:
        self.name = name
        self.process = process
        self._stderr_in_output = stderr_in_output
        self._base_url: str | None = None
        self._ready = threading.Event()
        self._lines: list[str] = []
        # One thread reads stdout from the start: it spots the ready line, and keeps the
        # pipe drained so whatever the child logs there never blocks it.
        self._pump = threading.Thread(target=self._drain, args=(log_path,), daemon=True)
        self._pump.start()

    @classmethod
    def launch(
        cls,
        name: str,
        module: str,
        arguments: Sequence[str] = (),
        *,
        src_dirs: Sequence[Path] = (SRC_DIR,),
        log_path: Path | None = None,
        stderr_in_output: bool = True,
        ready_timeout_s: float = 20.0,
    ) -> Self:
        """Start ``python -m module *arguments`` and wait for its ready line.

        ``src_dirs`` go first on the child's ``PYTHONPATH``, so that it imports these
        packages even when they are not pip-installed. Without ``stderr_in_output`` the
        child's stderr is this process's, where pytest shows it beside a failing test.
        """
        pythonpath = os.pathsep.join(
            filter(None, [*map(str, src_dirs), os.environ.get("PYTHONPATH")])
        )
        process = subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stderr_in_output else None,
            env={**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"},
        )
        handle = cls(name, process, log_path=log_path, stderr_in_output=stderr_in_output)
        handle.wait_ready(ready_timeout_s)
        return handle

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
        """The URL the ready line announced."""
        if self._base_url is None:
            raise RuntimeError(f"the {self.name} process has not printed its ready line")
        return self._base_url

    def output(self) -> list[str]:
        """Every line the child printed on stdout so far."""
        return list(self._lines)

    def wait_ready(self, timeout_s: float) -> None:
        """Return once the ready line is printed; else stop the child and raise."""
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = "its output" if self._stderr_in_output else "its stdout (stderr is above)"
                raise RuntimeError(
                    f"{self.name} did not print its ready line within {timeout_s} s "
                    f"(exit code {self.process.returncode}); {output}:\n" + "\n".join(self._lines)
                )

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; the exit code."""
        returncode = end_process(self.process, signal.SIGTERM, timeout_s)
        self._pump.join(5)
        return returncode

    def _drain(self, log_path: Path | None) -> None:
        stdout = self.process.stdout
        assert stdout is not None  # launched with stdout=PIPE
        prefix = _ready_prefix(self.name)
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(log_path.open("a", encoding="utf-8")) if log_path else None
            for raw in iter(stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                self._lines.append(line)
                if log is not None:
                    log.write(line + "\n")
                    log.flush()
                if not self._ready.is_set() and line.startswith(prefix):
                    self._base_url = line.removeprefix(prefix).strip()
                    self._ready.set()
            stdout.close()
