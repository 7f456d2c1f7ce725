"""Our share of a turn: the whole `/voice/process-speech` path against the floor.

The path: gateway, RabbitMQ, dialog (asking the scripted OpenAI-compatible
server, which answers at once) and persistence consuming the turn events in
parallel, each service its own process, as in production. The bench plays
Twilio: it places calls through `POST /v1/calls` (the Twilio emulator answers
them and then stays silent), then sends signed speech webhooks one at a time,
`--turns-per-call` user turns per call (each makes two turns in the document).

The floor, measured in the same run: a bare FastAPI endpoint returning fixed
TwiML, and one raw aio-pika RPC round trip (bench/_floor.py). Their sum is
what any design with one HTTP request and one broker hop pays. The whole path
also holds dialog's HTTP round trip to the LLM; the bench replays one of
dialog's own requests (from the middle of a call) to the scripted server to
show that hop's share too.

MongoDB: MONGODB_URL when set, else the in-memory MongoDB-wire stand-in (the
turn path does not wait for MongoDB: dialog reads it once per call).

Tracing (`--tracing`): `off` (the default: no OTEL_* variable set), `on`
(every turn traced: OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP
receiver process, `callbot.testkit.otlp_receiver`, sampling 100 %), or
`sampled-out` (the same, with `parentbased_traceidratio` at 0: the SDK is
loaded and the context travels, but no span is recorded or exported).

Usage: .venv/bin/python bench/turn_overhead.py [--turns 600] [--turns-per-call 20]
       [--tracing off|on|sampled-out] [--log-level INFO] [--profile-dir DIR]
       (py-spy on every service while the timed turns run; profiling costs CPU
       itself, so compare figures without it)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx
import uvloop
from _floor import raw_rpc_round_trips, start_bare  # bench/ is on sys.path here
from _harness import (
    DEFAULT_RABBITMQ_URL,
    SPEECH,
    BenchStack,
    Callee,
    CpuMeter,
    PlacedCall,
    api_headers,
    machine_line,
    place_calls,
    running_stack,
)
from _profile import ServiceProfiles
from _stats import print_row, summary_ms

from callbot.testkit.processes import free_port


async def timed(
    label: str, operation: Callable[[], Awaitable[float]], count: int, warm_up: int
) -> list[float]:
    """`warm_up + count` sequential runs of `operation` (which returns its own
    elapsed seconds); prints and returns the last `count`."""
    samples: list[float] = []
    started = time.perf_counter()
    for index in range(warm_up + count):
        elapsed = await operation()
        if index >= warm_up:
            samples.append(elapsed)
    print_row(label, samples, time.perf_counter() - started)
    return samples


async def measure_bare(count: int, warm_up: int) -> list[float]:
    port = free_port()
    bare = await start_bare(port)
    url = f"http://127.0.0.1:{port}/voice/process-speech?call_id=bench&seq=1"
    body = urlencode({"SpeechResult": SPEECH})
    try:
        async with httpx.AsyncClient(timeout=10) as client:

            async def post() -> float:
                sent = time.perf_counter()
                (await client.post(url, content=body)).raise_for_status()
                return time.perf_counter() - sent

            return await timed("floor: bare FastAPI, fixed TwiML", post, count, warm_up)
    finally:
        bare.terminate()
        await bare.wait()


async def measure_turns(
    bench: BenchStack,
    turns: int,
    turns_per_call: int,
    warm_up: int,
    profiles: ServiceProfiles | None,
) -> list[float]:
    calls_needed = -(-(turns + warm_up) // turns_per_call)
    async with httpx.AsyncClient(
        base_url=bench.gateway_url, headers=api_headers(), timeout=30
    ) as api:
        calls = await place_calls(api, calls_needed)
    plan: list[tuple[PlacedCall, int]] = [
        (call, 1 + 2 * index) for call in calls for index in range(turns_per_call)
    ]
    steps = iter(plan)
    async with httpx.AsyncClient(timeout=10) as client:
        callee = Callee(client, bench.gateway_url)

        async def turn() -> float:
            call, seq = next(steps)
            answer = await callee.say(call, seq, SPEECH)
            if not answer.follows(seq):
                raise RuntimeError(f"turn {seq} of {call.call_id}: unexpected answer {answer}")
            return answer.elapsed_s

        label = f"callbot: /voice/process-speech, {turns_per_call} turns/call"
        warm_up_started = time.perf_counter()
        for _ in range(warm_up):
            await turn()
        if profiles is not None:
            # py-spy records for a fixed time: most of what the timed turns
            # should take at the warm-up's pace.
            per_turn_s = (time.perf_counter() - warm_up_started) / warm_up
            await profiles.start(bench.service_pids(), max(1.0, 0.8 * turns * per_turn_s))
        meter = CpuMeter(bench.all_pids())
        meter.start()
        samples = await timed(label, turn, turns, 0)
        print("  " + meter.report(turns, "turn"))
        if profiles is not None:
            await profiles.finish()
            profiles.print_top(12)
        return samples


async def measure_llm_hop(bench: BenchStack, turns_per_call: int, count: int) -> list[float]:
    """dialog's request from the middle of a call, replayed to the scripted server."""
    recorded = await asyncio.to_thread(bench.llm.control.requests)
    middle = [r.body for r in recorded if len(r.body["messages"]) >= turns_per_call]
    body = (middle or [recorded[-1].body])[0]
    url = f"{bench.llm.base_url}/chat/completions"
    async with httpx.AsyncClient(timeout=10) as client:

        async def post() -> float:
            sent = time.perf_counter()
            (await client.post(url, json=body)).raise_for_status()
            return time.perf_counter() - sent

        return await timed(
            f"  for scale: scripted LLM hop ({len(body['messages'])} msgs)", post, count, 50
        )


async def measure(
    bench: BenchStack,
    turns: int,
    turns_per_call: int,
    rabbitmq_url: str,
    profiles: ServiceProfiles | None,
) -> None:
    warm_up = 50
    bare_samples = await measure_bare(turns, warm_up)
    started = time.perf_counter()
    rpc_samples = await raw_rpc_round_trips(rabbitmq_url, turns, warm_up)
    print_row("floor: raw aio-pika RPC round trip", rpc_samples, time.perf_counter() - started)
    turn_samples = await measure_turns(bench, turns, turns_per_call, warm_up, profiles)
    llm_samples = await measure_llm_hop(bench, turns_per_call, turns)

    bare_ms, rpc_ms, turn_ms, llm_ms = (
        summary_ms(s) for s in (bare_samples, rpc_samples, turn_samples, llm_samples)
    )
    for mark in ("p50", "p95", "p99"):
        floor = bare_ms[mark] + rpc_ms[mark]
        print(
            f"{mark}: floor (HTTP + RPC) {floor:7.3f} ms   callbot {turn_ms[mark]:7.3f} ms   "
            f"ratio {turn_ms[mark] / floor:5.2f}x   overhead {turn_ms[mark] - floor:7.3f} ms   "
            f"(floor + LLM hop {floor + llm_ms[mark]:7.3f} ms: "
            f"ratio {turn_ms[mark] / (floor + llm_ms[mark]):5.2f}x)"
        )


TRACING_MODES = ("off", "on", "sampled-out")


@contextmanager
def tracing_env(mode: str) -> Iterator[dict[str, str]]:
    """The services' OTEL_* variables for `mode`, and the receiver they export to
    (a process of its own: decoding spans must not cost the bench client)."""
    if mode == "off":
        yield {}
        return
    receiver = subprocess.Popen(
        [sys.executable, "-m", "callbot.testkit.otlp_receiver"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    endpoint = receiver.stdout.readline().strip().rpartition(" ")[2]
    sampler = (
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}
        if mode == "sampled-out"
        else {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
    )
    try:
        yield {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **sampler}
    finally:
        receiver.send_signal(signal.SIGTERM)
        print(receiver.communicate(timeout=30)[0].strip())


def main(
    turns: int,
    turns_per_call: int,
    rabbitmq_url: str,
    log_level: str,
    profile_dir: Path | None,
    tracing: str,
) -> None:
    profiles = ServiceProfiles(profile_dir) if profile_dir else None
    with (
        tracing_env(tracing) as otel_env,
        running_stack(rabbitmq_url, log_level, extra_env=otel_env) as bench,
    ):
        print(machine_line())
        print(
            f"{bench.mongo_kind}\nservices' LOG_LEVEL={log_level}  {turns} sequential turns, "
            f"{turns_per_call} user turns per call  tracing: {tracing}"
        )
        uvloop.run(measure(bench, turns, turns_per_call, rabbitmq_url, profiles))
        print(machine_line())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=600)
    parser.add_argument("--turns-per-call", type=int, default=20)
    parser.add_argument("--rabbitmq-url", default=DEFAULT_RABBITMQ_URL)
    parser.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL")
    parser.add_argument("--profile-dir", type=Path, help="py-spy every service during the turns")
    parser.add_argument("--tracing", choices=TRACING_MODES, default="off")
    arguments = parser.parse_args()
    main(
        arguments.turns,
        arguments.turns_per_call,
        arguments.rabbitmq_url,
        arguments.log_level,
        arguments.profile_dir,
        arguments.tracing,
    )
