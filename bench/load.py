"""Load: concurrent calls, each speaking like a person, ramped until our turn
overhead breaks.

Every step places N new calls through `POST /v1/calls` (the Twilio emulator
answers them and stays silent; the greeting is stored before a call counts as
placed), then each call speaks a turn every 3-5 s (uniformly at random, as
Twilio posts `/voice/process-speech` after each utterance) for `--step-s`
seconds. The scripted LLM answers at once, so a turn's latency is our
overhead plus one LLM HTTP hop. A step fails when its p99 passes
`--max-p99-ms` or any turn errs (non-200, the fallback TwiML, a wrong next
`seq`, a timeout); the ramp stops there and the knee is the last step that
held.

After the step's speech ends, every call's stored document is read back:
its turns must be exactly seq 0..2k (the greeting plus k exchanges), none
lost, none twice. Then each call is hung up (the final status callback) so
the next step starts with only its own calls live. Persistence lag is
publish -> durable write of every `call.turn` of the step (bench/_persistence_lag.py).

Usage: .venv/bin/python bench/load.py [--dialog-replicas 1] [--steps 25,50,100,...]
       [--step-s 30] [--max-p99-ms 100] [--profile-dir DIR]  (py-spy on every service,
       every step; it costs CPU itself, so take the knee from a run without it)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvloop
from _harness import (
    DEFAULT_RABBITMQ_URL,
    FINAL_STATUS_SEQUENCE,
    SPEECH,
    BenchStack,
    Callee,
    CpuMeter,
    PlacedCall,
    api_headers,
    machine_line,
    place_calls,
    read_lags,
    running_stack,
)
from _profile import ServiceProfiles
from _stats import summary_ms

TURN_GAP_S = (3.0, 5.0)
DRAIN_TIMEOUT_S = 120.0
# Connections, caches and lazy imports settle before the first counted step.
WARM_UP_CALLS, WARM_UP_S = 10, 12.0


@dataclass
class StepResult:
    calls: int
    window_s: float
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    spoken: dict[str, int] = field(default_factory=dict)  # call_id -> user turns answered
    lost: int = 0
    duplicated: int = 0
    lags_s: list[float] = field(default_factory=list)
    cpu_percent: dict[str, float] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)

    def held(self, max_p99_ms: float) -> bool:
        p99 = summary_ms(self.latencies_s)["p99"] if self.latencies_s else float("inf")
        return p99 <= max_p99_ms and not self.errors and not self.lost and not self.duplicated


async def speak(
    callee: Callee, call: PlacedCall, until: float, result: StepResult, rng: random.Random
) -> None:
    """One caller: a turn every 3-5 s until `until`, each checked."""
    seq = 1
    next_turn_at = time.monotonic() + rng.uniform(0, TURN_GAP_S[1])  # not in lockstep
    while next_turn_at < until:
        await asyncio.sleep(next_turn_at - time.monotonic())
        try:
            answer = await callee.say(call, seq, SPEECH)
        except httpx.HTTPError as error:
            result.errors.append(f"{call.call_id} seq {seq}: {type(error).__name__}")
            return
        if not answer.follows(seq):
            result.errors.append(f"{call.call_id} seq {seq}: {answer}")
            return
        result.latencies_s.append(answer.elapsed_s)
        result.spoken[call.call_id] = result.spoken.get(call.call_id, 0) + 1
        seq += 2
        next_turn_at += rng.uniform(*TURN_GAP_S)


async def verify_stored(
    api: httpx.AsyncClient, calls: list[PlacedCall], result: StepResult
) -> None:
    """Wait until every answered turn is stored; count the lost and the doubled."""
    give_up_at = time.monotonic() + DRAIN_TIMEOUT_S
    pending = {call.call_id for call in calls}
    seqs: dict[str, list[int]] = {}
    while pending and time.monotonic() < give_up_at:
        for call_id in list(pending):
            document = (await api.get(f"/v1/calls/{call_id}")).json()
            seqs[call_id] = [turn["seq"] for turn in document["turns"]]
            if len(seqs[call_id]) >= 1 + 2 * result.spoken.get(call_id, 0):
                pending.discard(call_id)
        if pending:
            await asyncio.sleep(0.5)
    for call_id, stored in seqs.items():
        expected = 1 + 2 * result.spoken.get(call_id, 0)
        result.duplicated += len(stored) - len(set(stored))
        result.lost += len(set(range(expected)) - set(stored))


async def run_step(
    bench: BenchStack,
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    calls_wanted: int,
    step_s: float,
    profiles: ServiceProfiles | None,
) -> StepResult:
    calls = await place_calls(api, calls_wanted, in_flight=16)
    result = StepResult(calls=calls_wanted, window_s=step_s)
    callee = Callee(client, bench.gateway_url)
    rng = random.Random(calls_wanted)
    pids = bench.all_pids()
    meter = CpuMeter(pids)
    meter.start()
    if profiles is not None:
        await profiles.start(bench.service_pids(), step_s)
    started = time.monotonic()
    await asyncio.gather(*(speak(callee, call, started + step_s, result, rng) for call in calls))
    result.window_s = time.monotonic() - started
    result.cpu_percent = {
        name: 100 * used / result.window_s for name, used in meter.used_s().items()
    }
    result.rss_mib = bench.service_rss()
    if profiles is not None:
        await profiles.finish()
    await verify_stored(api, calls, result)
    result.lags_s = read_lags(bench.lag_file, {call.call_id for call in calls})
    await asyncio.gather(
        *(callee.hang_up(call, FINAL_STATUS_SEQUENCE, int(step_s)) for call in calls)
    )
    return result


def print_step(result: StepResult) -> None:
    turns = len(result.latencies_s)
    figures = summary_ms(result.latencies_s) if turns else {"p50": 0, "p95": 0, "p99": 0}
    lag = summary_ms(result.lags_s) if result.lags_s else {"p50": 0, "p99": 0}
    print(
        f"calls={result.calls:<5} turns={turns:<6} {turns / result.window_s:7.1f} turns/s  "
        f"p50={figures['p50']:7.2f} p95={figures['p95']:7.2f} p99={figures['p99']:8.2f} ms  "
        f"errors={len(result.errors)} lost={result.lost} duplicated={result.duplicated}  "
        f"persistence lag p50={lag['p50']:.1f} p99={lag['p99']:.1f} ms"
    )
    print(
        "    CPU %: "
        + ", ".join(f"{name} {percent:.0f}" for name, percent in result.cpu_percent.items())
    )
    print("    RSS MiB: " + ", ".join(f"{n} {m:.0f}" for n, m in result.rss_mib.items()))
    for error in result.errors[:3]:
        print(f"    error: {error}")


async def ramp(
    bench: BenchStack, steps: list[int], step_s: float, max_p99_ms: float, profile_dir: Path | None
) -> None:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with (
        httpx.AsyncClient(
            base_url=bench.gateway_url, headers=api_headers(), timeout=30, limits=limits
        ) as api,
        httpx.AsyncClient(timeout=30, limits=limits) as client,
    ):
        print(
            "idle RSS MiB: "
            + ", ".join(f"{name} {mib:.0f}" for name, mib in bench.service_rss().items())
        )
        warm_up = await run_step(bench, api, client, WARM_UP_CALLS, WARM_UP_S, None)
        print(f"warm-up: {WARM_UP_CALLS} calls for {WARM_UP_S:.0f} s, not counted")
        if warm_up.errors or warm_up.lost or warm_up.duplicated:
            print_step(warm_up)
            raise SystemExit("the warm-up failed")
        knee: StepResult | None = None
        for calls_wanted in steps:
            profiles = (
                ServiceProfiles(profile_dir / f"{calls_wanted}-calls") if profile_dir else None
            )
            result = await run_step(bench, api, client, calls_wanted, step_s, profiles)
            print_step(result)
            if profiles is not None:
                profiles.print_top(12)
            if not result.held(max_p99_ms):
                print(f"step of {calls_wanted} calls broke (p99 > {max_p99_ms} ms or errors)")
                break
            knee = result
    if knee is None:
        print("knee: none; the first step already broke")
    else:
        lag = summary_ms(knee.lags_s)
        print(
            f"knee: {knee.calls} concurrent calls, "
            f"{len(knee.latencies_s) / knee.window_s:.1f} turns/s, "
            f"turn p99 {summary_ms(knee.latencies_s)['p99']:.2f} ms, "
            f"persistence lag p99 {lag['p99']:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", default="25,50,100,200,300,400,500,600,800,1000")
    parser.add_argument("--step-s", type=float, default=30.0)
    parser.add_argument("--max-p99-ms", type=float, default=100.0)
    parser.add_argument("--dialog-replicas", type=int, default=1)
    parser.add_argument("--profile-dir", type=Path, help="py-spy every service at every step")
    parser.add_argument("--rabbitmq-url", default=DEFAULT_RABBITMQ_URL)
    parser.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL")
    arguments = parser.parse_args()
    steps = [int(step) for step in arguments.steps.split(",")]
    with running_stack(
        arguments.rabbitmq_url, arguments.log_level, dialog_replicas=arguments.dialog_replicas
    ) as bench:
        print(machine_line())
        print(
            f"{bench.mongo_kind}\nservices' LOG_LEVEL={arguments.log_level}  "
            f"dialog replicas={arguments.dialog_replicas}  step={arguments.step_s:.0f} s, "
            f"a turn every {TURN_GAP_S[0]:.0f}-{TURN_GAP_S[1]:.0f} s per call"
        )
        uvloop.run(
            ramp(bench, steps, arguments.step_s, arguments.max_p99_ms, arguments.profile_dir)
        )
        print(machine_line())


if __name__ == "__main__":
    main()
