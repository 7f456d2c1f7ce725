"""py-spy on running services, summed up as printed figures.

`ServiceProfiles.start()` attaches `py-spy record` (sampling, no change to the
profiled process) to each service for a fixed time and writes its collapsed
stacks (`--format raw`: one `frame;frame;... count` line per distinct stack,
which speedscope and flamegraph.pl open as a flame graph). `print_top()`
prints, per service, the functions holding the most samples themselves
(self) and the share of samples under each of our own packages and the big
libraries (inclusive), which is what points at something to remove. Only
samples holding the GIL count, so the shares are of the time the service
ran Python (idle threads and uvloop's wait for I/O release it).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

SAMPLE_RATE = 250
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# Inclusive shares: the first of these path markers a frame's file holds names it.
_AREAS = (
    ("callbot/gateway", "callbot.gateway"),
    ("callbot/dialog", "callbot.dialog"),
    ("callbot/persistence", "callbot.persistence"),
    ("callbot/common", "callbot.common"),
    ("/pydantic", "pydantic"),
    ("/aio_pika", "aio_pika"),
    ("/aiormq", "aiormq"),
    ("/pamqp", "pamqp"),
    ("/openai", "openai"),
    ("/httpx", "httpx"),
    ("/httpcore", "httpcore"),
    ("/pymongo", "pymongo"),
    ("/fastapi", "fastapi"),
    ("/starlette", "starlette"),
    ("/uvicorn", "uvicorn"),
    ("/twilio", "twilio"),
    ("/logging/", "logging"),
    ("/json/", "json"),
)


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: `make install` installs requirements-dev.txt")
    return found


class ServiceProfiles:
    def __init__(self, out_dir: Path) -> None:
        self._out_dir = out_dir
        self._running: dict[str, asyncio.subprocess.Process] = {}

    def _raw(self, name: str) -> Path:
        return self._out_dir / f"{name}.txt"

    async def start(self, pids: dict[str, int], duration_s: float) -> None:
        self._out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            self._running[name] = await asyncio.create_subprocess_exec(
                py_spy(),
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(SAMPLE_RATE),
                "--duration",
                str(int(duration_s)),
                "--format",
                "raw",
                "--gil",  # on-CPU Python only: not an idle thread, not uvloop's epoll
                "--nonblocking",  # do not pause the service for each sample
                "--full-filenames",
                "--output",
                str(self._raw(name)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )

    async def finish(self) -> None:
        for key, process in self._running.items():
            if await process.wait() != 0:
                raise RuntimeError(f"py-spy {key} exited {process.returncode}")
        self._running.clear()

    def print_top(self, count: int) -> None:
        print(f"    profiles (py-spy, {SAMPLE_RATE}/s, collapsed stacks): {self._out_dir}")
        for raw in sorted(self._out_dir.glob("*.txt")):
            print_summary(raw.stem, raw, count)


def print_summary(name: str, raw: Path, count: int) -> None:
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples_text = line.rpartition(" ")
        if not stack:
            continue
        samples = int(samples_text)
        total += samples
        frames = stack.split(";")[1:]  # [0] names the process
        if frames:
            self_samples[_short(frames[-1])] += samples
        for area in {_area(frame) for frame in frames} - {None}:
            inclusive[str(area)] += samples
    if not total:
        print(f"    {name}: no samples")
        return
    print(f"    {name}: {total} samples on CPU")
    shares = ", ".join(f"{area} {100 * n / total:.0f}%" for area, n in inclusive.most_common())
    print(f"      inclusive: {shares}")
    for frame, samples in self_samples.most_common(count):
        print(f"      self {100 * samples / total:5.1f}%  {frame}")


def _short(frame: str) -> str:
    """`function (…/package/module.py)`, the line number dropped so a function
    is one row, the path cut to its last two parts."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    parts = match["file"].split("/")
    return f"{match['function']} ({'/'.join(parts[-2:])})"


def _area(frame: str) -> str | None:
    return next((area for marker, area in _AREAS if marker in frame), None)
