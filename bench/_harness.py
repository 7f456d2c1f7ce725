"""What the whole-stack benches share: the stack, the callee's side of Twilio,
and the facts a printed figure needs (machine, load, commit, MongoDB kind).

`running_stack()` starts MongoDB (MONGODB_URL, else the in-memory MongoDB-wire
stand-in: mongomock over the wire protocol, not a real server), the scripted
OpenAI-compatible server answering at once, and `CallbotStack` (Twilio
emulator, gateway, dialog x replicas, persistence) with persistence run by
`bench/_persistence_lag.py`: the real service plus a hook that writes each
event's publish -> durable-write lag to a file. It saves the bench agent and
registers a callee who answers and then stays silent, so the bench itself
plays the callee's speech: signed `/voice/process-speech` webhooks, exactly
what Twilio sends after each `<Gather>`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from callbot.common.contracts import CallTurnRecorded
from callbot.gateway.domain.fallback import TURN_FALLBACK
from callbot.testkit.fake_openai import FakeOpenAIProcess, start_fake_openai_process
from callbot.testkit.mongo_standin import start_standin_process
from callbot.testkit.s3_server import S3ServerProcess
from callbot.testkit.stack import ACCOUNT_SID, API_KEY, AUTH_TOKEN, CallbotStack, StackConfig

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
STANDIN_NOTE = (
    "MongoDB: in-memory MongoDB-wire STAND-IN (mongomock behind the wire protocol, "
    "not a real server): persistence figures describe the stand-in"
)
LLM_ANSWER = "Sure, here is one short sentence."
SPEECH = "I would like to hear more about the new plan"  # what every emulated callee says
# The final status callback's SequenceNumber: newer than any the emulator sent.
FINAL_STATUS_SEQUENCE = 1_000
AGENT = {
    "name": "Bench",
    "greeting": "Hello, this is a latency bench.",
    "prompt": "Answer in one short sentence.",
    "max_turns": 400,
    "max_duration_s": 14400,
    "data_to_fill": [{"name": "email", "description": "email address", "type": "email"}],
}
# Every callee (the default scenario: each call has a number of its own, so
# dialog's past-calls query runs and finds none) answers at once and then says
# nothing for four hours (speed 1: emulated time is real time); every
# utterance comes from the bench.
SILENT_CALLEE = {
    "ring_s": 0.2,
    "speed": 1,
    "steps": [{"silence": {"duration_s": 14400}}],
}
_NEXT_SEQ = re.compile(rb"seq=(\d+)")
_numbers = itertools.count(1)  # each run has its own database: numbers never repeat in one


@dataclass
class BenchStack:
    stack: CallbotStack
    llm: FakeOpenAIProcess
    mongo_kind: str
    lag_file: Path
    standin_pid: int | None

    @property
    def gateway_url(self) -> str:
        return self.stack.gateway_url

    def service_pids(self) -> dict[str, int]:
        """Each service process by name (dialog replicas as dialog, dialog-2, ...)."""
        stack = self.stack
        services = [
            stack.gateway,
            *stack.dialog_replicas,
            stack.persistence,
            *stack.campaigns_replicas,
            stack.media,
        ]
        return {s.name: s.pid for s in services if s is not None and s.pid is not None}

    def service_rss(self) -> dict[str, float]:
        """Each service's resident set now, MiB."""
        return {name: rss_mib(pid) for name, pid in self.service_pids().items()}

    def all_pids(self) -> dict[str, int]:
        """The services, and everything else on the machine a turn costs CPU in."""
        others = {
            "rabbitmq": _rabbitmq_pid(),
            "scripted LLM": self.llm.process.pid,
            "emulator": self.stack.emulator.process.pid,
            "mongo stand-in": self.standin_pid,
            "bench client": os.getpid(),
        }
        return {**self.service_pids(), **{k: v for k, v in others.items() if v is not None}}


@contextmanager
def running_stack(
    rabbitmq_url: str,
    log_level: str,
    *,
    dialog_replicas: int = 1,
    extra_env: dict[str, str] | None = None,
    workers: bool = False,
) -> Iterator[BenchStack]:
    """`workers`: the campaigns service and the media worker too (with an S3
    server of their own), idle unless the bench gives them work."""
    log_dir = Path(tempfile.mkdtemp(prefix="callbot-bench-"))
    lag_file = log_dir / "persistence-lag.txt"
    with ExitStack() as cleanup:
        mongodb_url = os.environ.get("MONGODB_URL")
        mongo_kind = "MongoDB: the server at MONGODB_URL"
        standin_pid = None
        if mongodb_url is None:
            standin = start_standin_process(log_dir=log_dir)
            cleanup.callback(standin.stop)
            mongodb_url, mongo_kind, standin_pid = standin.url, STANDIN_NOTE, standin.pid
        llm = start_fake_openai_process()
        cleanup.callback(llm.stop)
        llm.control.set_default({"text": LLM_ANSWER})
        namespace = f"bench{uuid.uuid4().hex[:8]}"
        storage_env: dict[str, str] = {}
        if workers:
            s3 = S3ServerProcess(log_dir)
            s3.start()
            cleanup.callback(s3.stop)
            recordings = f"{namespace}-recordings"
            s3.create_buckets(recordings)
            storage_env = {**s3.env(), "S3_RECORDINGS_BUCKET": recordings}
        stack = CallbotStack(
            StackConfig(
                rabbitmq_url=rabbitmq_url,
                mongodb_url=mongodb_url,
                namespace=namespace,
                log_dir=log_dir,
                openai_base_url=llm.base_url,
                dialog_replicas=dialog_replicas,
                persistence_module="_persistence_lag",
                extra_env={
                    "LOG_LEVEL": log_level,
                    "PYTHONPATH": str(BENCH_DIR),
                    "BENCH_LAG_FILE": str(lag_file),
                    **storage_env,
                    **(extra_env or {}),
                },
                campaigns_replicas=1 if workers else 0,
                media=workers,
            )
        )
        cleanup.callback(stack.delete_topology)
        cleanup.callback(stack.stop)
        stack.start()
        stack.emulator.control.add_scenario(SILENT_CALLEE)
        with httpx.Client(base_url=stack.gateway_url, headers=api_headers(), timeout=10) as api:
            api.put("/v1/agents/bench", json=AGENT).raise_for_status()
        print(f"logs: {log_dir}")
        yield BenchStack(stack, llm, mongo_kind, lag_file, standin_pid)


def api_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


@dataclass(frozen=True)
class PlacedCall:
    call_id: str
    call_sid: str


async def place_calls(
    api: httpx.AsyncClient,
    count: int,
    *,
    in_flight: int = 8,
    timeout_s: float = 60.0,
    agent_id: str = "bench",
) -> list[PlacedCall]:
    """`count` calls through `POST /v1/calls`, returned once each is answered and
    greeted (the greeting is in the stored document), `in_flight` at a time."""
    gate = asyncio.Semaphore(in_flight)

    async def one() -> PlacedCall:
        async with gate:
            to = f"+1415{2_000_000 + next(_numbers)}"  # valid San Francisco numbers
            created = await api.post("/v1/calls", json={"agent_id": agent_id, "to": to})
            created.raise_for_status()
            call = PlacedCall(created.json()["call_id"], created.json()["call_sid"])
            give_up_at = time.monotonic() + timeout_s
            while not (await api.get(f"/v1/calls/{call.call_id}")).json().get("turns"):
                if time.monotonic() > give_up_at:
                    raise RuntimeError(f"call {call.call_id} not greeted within {timeout_s:.0f}s")
                await asyncio.sleep(0.05)
            return call

    return list(await asyncio.gather(*(one() for _ in range(count))))


@dataclass(frozen=True)
class TurnAnswer:
    elapsed_s: float
    status: int
    next_seq: int | None
    fallback: bool

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.next_seq is not None and not self.fallback

    def follows(self, seq: int) -> bool:
        """A good answer to the user turn `seq`: the reply is `seq + 1`, so
        Twilio's next `<Gather>` posts `seq + 2`."""
        return self.ok and self.next_seq == seq + 2


class Callee:
    """Plays Twilio's side after each `<Gather>`: signed speech webhooks, and
    the final status callback."""

    def __init__(self, client: httpx.AsyncClient, gateway_url: str) -> None:
        self._client = client
        self._gateway_url = gateway_url
        self._validator = RequestValidator(AUTH_TOKEN)

    async def say(self, call: PlacedCall, seq: int, speech: str) -> TurnAnswer:
        url = f"{self._gateway_url}/voice/process-speech?call_id={call.call_id}&seq={seq}"
        form = {
            "AccountSid": ACCOUNT_SID,
            "CallSid": call.call_sid,
            "SpeechResult": speech,
            "Confidence": "0.93",
        }
        headers = self._signed_headers(url, form)
        body = urlencode(form)
        sent = time.perf_counter()
        response = await self._client.post(url, content=body, headers=headers)
        elapsed = time.perf_counter() - sent
        found = _NEXT_SEQ.findall(response.content) if response.status_code == 200 else []
        return TurnAnswer(
            elapsed_s=elapsed,
            status=response.status_code,
            next_seq=int(found[-1]) if found else None,
            fallback=TURN_FALLBACK in response.text,
        )

    async def hang_up(self, call: PlacedCall, sequence_number: int, duration_s: int) -> None:
        url = f"{self._gateway_url}/call-status?call_id={call.call_id}"
        form = {
            "AccountSid": ACCOUNT_SID,
            "CallSid": call.call_sid,
            "CallStatus": "completed",
            "SequenceNumber": str(sequence_number),
            "CallDuration": str(duration_s),
        }
        response = await self._client.post(
            url, content=urlencode(form), headers=self._signed_headers(url, form)
        )
        response.raise_for_status()

    def _signed_headers(self, url: str, form: dict[str, str]) -> dict[str, str]:
        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": self._validator.compute_signature(url, form),
        }


def read_lags(lag_file: Path, call_ids: set[str]) -> list[float]:
    """Publish -> durable-write lag (s) of every `call.turn` of these calls."""
    if not lag_file.exists():
        return []
    lags = []
    for line in lag_file.read_text().splitlines():
        call_id, event_type, _seq, lag = line.split()
        if event_type == CallTurnRecorded.__name__ and call_id in call_ids:
            lags.append(float(lag))
    return lags


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time each process used between `start()` and `per()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def used_s(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self._before[name] for name, pid in self._pids.items()}

    def report(self, per: int, unit: str) -> str:
        """`name X.XX ms` per `unit`, every process, then the total."""
        used = self.used_s()
        parts = [f"{name} {seconds * 1000 / per:.2f}" for name, seconds in used.items()]
        total = sum(used.values()) * 1000 / per
        return f"CPU ms per {unit}: " + ", ".join(parts) + f"; total {total:.2f}"


def _rabbitmq_pid() -> int | None:
    found = subprocess.run(
        ["pgrep", "-o", "beam.smp"], capture_output=True, text=True, check=False
    ).stdout.split()
    return int(found[0]) if found else None


def commit() -> str:
    """HEAD's short hash, marked when the tree the services run from has local changes."""

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], capture_output=True, text=True, check=True, cwd=BENCH_DIR
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "../services", "../libs", ".")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+local-changes" if dirty else head


def machine_line() -> str:
    """nproc, load averages and the test runs sharing the machine, for every report."""
    load = Path("/proc/loadavg").read_text().split()[:3]
    pytest_runs = subprocess.run(
        ["pgrep", "-fc", "bin/pytest"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"nproc={os.cpu_count()}  load average {' '.join(load)}  "
        f"pytest processes running: {pytest_runs or '0'}  commit={commit()}"
    )
