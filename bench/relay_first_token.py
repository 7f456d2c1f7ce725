"""Time to the first spoken word: ConversationRelay against the scripted model's
own time to first token, and the Gather path's whole reply, in one run.

The whole stack runs as processes (`_harness.running_stack`). Relay calls are
played by the Twilio emulator (`callbot.emulator.relay`): it opens the signed
WebSocket, sends each scripted `prompt` once the previous reply ended, and
times each reply from the `prompt` it sent to the first `text` token it got.
The scripted OpenAI-compatible server streams the answer and records, per
stream, when the request arrived and when its first piece went out: the
model's own time to first token, measured in the same run for the same
prompt (each prompt is unique, so a stream is paired with its reply). Our
overhead on a prompt is the difference: the socket, gateway, the streaming
RPC through RabbitMQ, dialog's turn and the text release, both ways.

Phase 1 (the overhead): the model waits `--ttft` before its first piece and
then streams the rest at once, so the release rule (speech starts at the
first clause boundary) costs nothing and the difference is our machinery.
The Gather path gets the same model (answering whole after `--ttft`) and its
figure is the signed `/voice/process-speech` webhook to its TwiML.

Phase 2 (what a callee notices): the model streams a 24-word answer at
`--token-interval` per piece after `--ttft`. Relay: prompt to the first
token (speech starts at the first clause). Gather: the webhook waits for the
whole answer; Twilio then synthesises all of it before speaking.

Calls last `--prompts-per-call` exchanges (default 19: as long as an agent's
default `max_turns` of 40 lets a call run); each turn's model request carries
the call's whole history, so a longer call costs more per turn.

Usage: .venv/bin/python bench/relay_first_token.py [--prompts 500] [--calls 5]
       [--ttft 0.2] [--token-interval 0.03] [--phase2-prompts 100]
       [--prompts-per-call 19]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx
import uvloop
from _harness import (
    AGENT,
    DEFAULT_RABBITMQ_URL,
    BenchStack,
    Callee,
    PlacedCall,
    api_headers,
    machine_line,
    place_calls,
    running_stack,
)
from _stats import summary_ms

from callbot.emulator.records import RelayReply
from callbot.testkit.fake_openai import RecordedRequest, StreamRecord

RELAY_TAG = "[relay-bench]"
GATHER_TAG = "[gather-bench]"
PHASE1_ANSWER = "Sure. Here is one short sentence."
PHASE2_ANSWER = (
    "Sure, the new plan keeps your number and your current price, adds unlimited "
    "calls abroad, and starts on the first day of next month."
)
_relay_numbers = iter(range(3_000_000, 4_000_000))
# The bench agent's max_turns is 400: a call of 150 prompts (301 turns) stays within.
MAX_PROMPTS_PER_CALL = 150
# An agent's default max_turns (40) holds the greeting and 19 exchanges: a
# call as long as callbot lets one run by default. Each turn's model request
# carries the whole history, so longer calls cost more per turn.
DEFAULT_PROMPTS_PER_CALL = 19


def _agent(tag: str, **extra: Any) -> dict[str, Any]:
    return {**AGENT, "prompt": f"{tag} {AGENT['prompt']}", **extra}


def _script(llm_control: Any, ttft_s: float, interval_s: float, text: str) -> None:
    """Relay's model streams `text`; Gather's answers the same text whole once a
    stream would have finished (the same generation time)."""
    pieces = len(text.split())
    llm_control.reset()
    llm_control.add_rules(
        [
            {
                "match": {"system_regex": RELAY_TAG.replace("[", r"\[").replace("]", r"\]")},
                "response": {
                    "text": text,
                    "first_token_s": ttft_s,
                    "token_interval_s": interval_s,
                },
                "times": None,
            },
            {
                "match": {"system_regex": GATHER_TAG.replace("[", r"\[").replace("]", r"\]")},
                "response": {"text": text, "delay_s": ttft_s + interval_s * (pieces - 1)},
                "times": None,
            },
        ]
    )


async def relay_calls(
    bench: BenchStack, prompts: int, calls: int, per_call_cap: int, label: str
) -> list[tuple[RelayReply, StreamRecord]]:
    """`prompts` unique prompts over relay calls played by the emulator, `calls`
    at a time; each reply paired with the model stream that answered it."""
    per_call = _per_call(prompts, calls, per_call_cap)
    emulator = bench.stack.emulator.control
    records = []
    async with httpx.AsyncClient(
        base_url=bench.gateway_url, headers=api_headers(), timeout=30
    ) as api:
        for batch in _batches(-(-prompts // per_call), calls):
            placed: list[str] = []
            for index in batch:
                to = f"+1415{next(_relay_numbers)}"
                steps = [{"say": f"{label} call {index} question {n}"} for n in range(per_call)]
                emulator.add_scenario({"to": to, "ring_s": 0.1, "speed": 1000, "steps": steps})
                created = await api.post("/v1/calls", json={"agent_id": "relay-bench", "to": to})
                created.raise_for_status()
                placed.append(created.json()["call_sid"])
            records += await asyncio.gather(
                *(asyncio.to_thread(emulator.wait_for_call, sid, 600) for sid in placed)
            )
    requests = {_last_user(r): r for r in bench.llm.control.requests()}
    streams = {s.request_index: s for s in bench.llm.control.streams()}
    paired = []
    for record in records:
        for reply in record.relay_replies:
            if reply.after == "setup" or reply.first_token_ms is None:
                continue
            request = requests.get(reply.after)
            if request is None or request.index not in streams:
                raise RuntimeError(f"no model stream found for the prompt {reply.after!r}")
            paired.append((reply, streams[request.index]))
    return paired[:prompts]


def _per_call(total: int, calls: int, cap: int) -> int:
    """Prompts per call: spread over `calls`, at most `cap`."""
    return min(-(-total // calls), cap)


def _batches(count: int, size: int) -> list[range]:
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def _last_user(request: RecordedRequest) -> str:
    users = [m for m in request.body["messages"] if m.get("role") == "user"]
    return str(users[-1]["content"]) if users else ""


async def gather_turns(bench: BenchStack, turns: int, calls: int, per_call_cap: int) -> list[float]:
    """`turns` signed speech webhooks over Gather calls, `calls` at a time."""
    per_call = _per_call(turns, calls, per_call_cap)
    samples: list[float] = []
    async with httpx.AsyncClient(
        base_url=bench.gateway_url, headers=api_headers(), timeout=30
    ) as api:
        callee = Callee(api, bench.gateway_url)

        async def one_call(call: PlacedCall, index: int) -> list[float]:
            seq, taken = 1, []
            for n in range(per_call):
                answer = await callee.say(call, seq, f"gather call {index} question {n}")
                if not answer.ok or answer.next_seq is None:
                    raise RuntimeError(f"turn {seq} of {call.call_id} fell back: {answer}")
                taken.append(answer.elapsed_s)
                seq = answer.next_seq
            return taken

        for batch in _batches(-(-turns // per_call), calls):
            placed = await place_calls(api, len(batch), agent_id="gather-bench")
            results = await asyncio.gather(
                *(one_call(call, index) for call, index in zip(placed, batch, strict=True))
            )
            samples += [sample for taken in results for sample in taken]
    return samples[:turns]


def row(label: str, samples_ms: list[float]) -> str:
    figures = summary_ms([sample / 1000 for sample in samples_ms])
    return (
        f"{label:<52} n={len(samples_ms):<5} p50={figures['p50']:8.2f}ms "
        f"p95={figures['p95']:8.2f}ms p99={figures['p99']:8.2f}ms"
    )


async def phase(
    bench: BenchStack,
    prompts: int,
    calls: int,
    per_call_cap: int,
    ttft_s: float,
    interval_s: float,
    text: str,
    *,
    quiet: bool = False,
) -> None:
    _script(bench.llm.control, ttft_s, interval_s, text)
    label = f"p{ttft_s}-{interval_s}"
    paired = await relay_calls(bench, prompts, calls, per_call_cap, label)
    first = [reply.first_token_ms or 0.0 for reply, _ in paired]
    model = [
        ((stream.first_piece_at or stream.received_at) - stream.received_at) * 1000
        for _, stream in paired
    ]
    last = [reply.last_token_ms or 0.0 for reply, _ in paired]
    gather = [sample * 1000 for sample in await gather_turns(bench, prompts, calls, per_call_cap)]
    if quiet:
        return
    print(row("relay: prompt -> first text token (emulator)", first))
    print(row("model's own time to first token (same prompts)", model))
    print(row("relay overhead: first token - model's, per prompt", _diff(first, model)))
    print(row("relay: prompt -> last text token", last))
    print(row("gather: utterance webhook -> TwiML (whole reply)", gather))


def _diff(ours: list[float], model: list[float]) -> list[float]:
    return [a - b for a, b in zip(ours, model, strict=True)]


def main(args: argparse.Namespace) -> None:
    with running_stack(args.rabbitmq_url, args.log_level) as bench:
        with httpx.Client(base_url=bench.gateway_url, headers=api_headers(), timeout=10) as api:
            relay = {"type": "conversation_relay"}
            api.put("/v1/agents/relay-bench", json=_agent(RELAY_TAG, transport=relay))
            api.put("/v1/agents/gather-bench", json=_agent(GATHER_TAG)).raise_for_status()
        print(machine_line())
        print(bench.mongo_kind)
        uvloop.run(measure(bench, args))


async def measure(bench: BenchStack, args: argparse.Namespace) -> None:
    # Warm-up: connections, caches and lazy imports on every path.
    per_call = args.prompts_per_call
    await phase(bench, 20, 2, per_call, args.ttft, 0.0, PHASE1_ANSWER, quiet=True)
    print(
        f"\nphase 1: model first token after {args.ttft}s, the rest at once "
        f"(at most {per_call} prompts a call)"
    )
    started = time.perf_counter()
    await phase(bench, args.prompts, args.calls, per_call, args.ttft, 0.0, PHASE1_ANSWER)
    print(f"({time.perf_counter() - started:.0f}s)")
    print(
        f"\nphase 2: model first token after {args.ttft}s, then one piece every "
        f"{args.token_interval}s ({len(PHASE2_ANSWER.split())} pieces)"
    )
    await phase(
        bench,
        args.phase2_prompts,
        args.calls,
        per_call,
        args.ttft,
        args.token_interval,
        PHASE2_ANSWER,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--ttft", type=float, default=0.2)
    parser.add_argument("--token-interval", type=float, default=0.03)
    parser.add_argument("--phase2-prompts", type=int, default=100)
    parser.add_argument(
        "--prompts-per-call",
        type=int,
        default=DEFAULT_PROMPTS_PER_CALL,
        choices=range(1, MAX_PROMPTS_PER_CALL + 1),
        metavar=f"1..{MAX_PROMPTS_PER_CALL}",
    )
    parser.add_argument("--rabbitmq-url", default=DEFAULT_RABBITMQ_URL)
    parser.add_argument("--log-level", default="WARNING")
    main(parser.parse_args())
