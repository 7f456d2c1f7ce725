"""Our share of a turn: the whole `/voice/process-speech` path against the floor.

The path: gateway, RabbitMQ, dialog (asking the scripted OpenAI-compatible
server, which answers at once) and persistence consuming the turn events in
parallel, each service its own process, as in production. The bench plays
Twilio: it places calls through `POST /v1/calls` (the Twilio emulator answers
them and then stays silent), then sends signed speech webhooks one at a time.

The floor, measured in the same run: a bare FastAPI endpoint returning fixed
TwiML, and one raw aio-pika RPC round trip (bench/_floor.py). Their sum is
what any design with one HTTP request and one broker hop pays.

MongoDB: MONGODB_URL when set, else the in-memory MongoDB-wire stand-in
(then say so when quoting persistence figures; the turn path does not wait
for MongoDB, dialog reads it once per call).

Usage: .venv/bin/python bench/turn_overhead.py [--turns 600] [--log-level INFO]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

import httpx
import uvloop
from _floor import raw_rpc_round_trips, start_bare  # bench/ is on sys.path here
from _stats import print_row, summary_ms
from twilio.request_validator import RequestValidator

from callbot.testkit.fake_openai import start_fake_openai_process
from callbot.testkit.mongo_standin import start_standin_process
from callbot.testkit.processes import free_port
from callbot.testkit.stack import ACCOUNT_SID, API_KEY, AUTH_TOKEN, CallbotStack, StackConfig

SILENT_NUMBER = "+15005550199"
USER_TURNS_PER_CALL = 190  # the agent allows 400 turns: two per user turn, plus the greeting
SPEECH = "I would like to hear more about the new plan"
AGENT = {
    "name": "Bench",
    "greeting": "Hello, this is a latency bench.",
    "prompt": "Answer in one short sentence.",
    "max_turns": 400,
    "max_duration_s": 14400,
    "data_to_fill": [{"name": "email", "description": "email address", "type": "email"}],
}


def place_calls(api: httpx.Client, count: int) -> list[tuple[str, str]]:
    """(call_id, call_sid) of `count` answered calls, each greeted and waiting."""
    calls = []
    for _ in range(count):
        created = api.post("/v1/calls", json={"agent_id": "bench", "to": SILENT_NUMBER})
        created.raise_for_status()
        calls.append((created.json()["call_id"], created.json()["call_sid"]))
    for call_id, _ in calls:
        deadline = time.monotonic() + 30
        while not api.get(f"/v1/calls/{call_id}").json().get("turns"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"call {call_id} was not greeted within 30 s")
            time.sleep(0.05)
    return calls


async def post_turn(
    client: httpx.AsyncClient, url: str, validator: RequestValidator, form: dict[str, str]
) -> float:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": validator.compute_signature(url, form),
    }
    sent = time.perf_counter()
    response = await client.post(url, content=urlencode(form), headers=headers)
    elapsed = time.perf_counter() - sent
    if response.status_code != 200 or "<Gather" not in response.text:
        raise RuntimeError(f"unexpected answer {response.status_code}: {response.text}")
    return elapsed


async def measure_turns(
    gateway_url: str, calls: list[tuple[str, str]], turns: int, warm_up: int
) -> list[float]:
    validator = RequestValidator(AUTH_TOKEN)
    plan = [
        (call_id, call_sid, 1 + 2 * index)
        for call_id, call_sid in calls
        for index in range(USER_TURNS_PER_CALL)
    ][: warm_up + turns]
    samples: list[float] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for position, (call_id, call_sid, seq) in enumerate(plan):
            url = f"{gateway_url}/voice/process-speech?call_id={call_id}&seq={seq}"
            form = {
                "AccountSid": ACCOUNT_SID,
                "CallSid": call_sid,
                "SpeechResult": SPEECH,
                "Confidence": "0.93",
            }
            elapsed = await post_turn(client, url, validator, form)
            if position >= warm_up:
                samples.append(elapsed)
    return samples


async def measure_bare(port: int, count: int, warm_up: int) -> list[float]:
    url = f"http://127.0.0.1:{port}/voice/process-speech?call_id=bench&seq=1"
    samples: list[float] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for index in range(warm_up + count):
            sent = time.perf_counter()
            (await client.post(url, content=urlencode({"SpeechResult": SPEECH}))).raise_for_status()
            if index >= warm_up:
                samples.append(time.perf_counter() - sent)
    return samples


def main(turns: int, rabbitmq_url: str, log_level: str) -> None:
    warm_up = 50
    calls_needed = -(-(turns + warm_up) // USER_TURNS_PER_CALL)
    with ExitStack() as cleanup:
        mongodb_url = os.environ.get("MONGODB_URL")
        mongo_kind = "MONGODB_URL"
        if mongodb_url is None:
            standin = start_standin_process()
            cleanup.callback(standin.stop)
            mongodb_url, mongo_kind = standin.url, "in-memory MongoDB-wire stand-in"
        llm = start_fake_openai_process()
        cleanup.callback(llm.stop)
        llm.control.set_default({"text": "Sure, here is one short sentence."})
        stack = CallbotStack(
            StackConfig(
                rabbitmq_url=rabbitmq_url,
                mongodb_url=mongodb_url,
                namespace=f"bench{uuid.uuid4().hex[:8]}",
                log_dir=Path(tempfile.mkdtemp(prefix="turn-overhead-")),
                openai_base_url=llm.base_url,
                extra_env={"LOG_LEVEL": log_level},
            )
        )
        cleanup.callback(stack.delete_topology)
        cleanup.callback(stack.stop)
        stack.start()
        stack.emulator.control.add_scenario(
            {"to": SILENT_NUMBER, "steps": [{"silence": {"duration_s": 14000}}]}
        )
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=10) as api:
            api.put("/v1/agents/bench", json=AGENT).raise_for_status()
            calls = place_calls(api, calls_needed)
        print(
            f"cores={os.cpu_count()}  commit={_commit()}  MongoDB: {mongo_kind}  "
            f"services' LOG_LEVEL={log_level}  {turns} sequential turns over {len(calls)} calls"
        )
        uvloop.run(_measure(stack.gateway_url, calls, turns, warm_up, rabbitmq_url))


async def _measure(
    gateway_url: str, calls: list[tuple[str, str]], turns: int, warm_up: int, rabbitmq_url: str
) -> None:
    bare_port = free_port()
    bare = await start_bare(bare_port)
    try:
        started = time.perf_counter()
        bare_samples = await measure_bare(bare_port, turns, warm_up)
        print_row("floor: bare FastAPI, fixed TwiML", bare_samples, time.perf_counter() - started)
    finally:
        bare.terminate()
        await bare.wait()
    started = time.perf_counter()
    rpc_samples = await raw_rpc_round_trips(rabbitmq_url, turns, warm_up)
    print_row("floor: raw aio-pika RPC round trip", rpc_samples, time.perf_counter() - started)
    started = time.perf_counter()
    turn_samples = await measure_turns(gateway_url, calls, turns, warm_up)
    print_row(
        "callbot: /voice/process-speech, whole path", turn_samples, time.perf_counter() - started
    )

    bare_ms, rpc_ms, turn_ms = (summary_ms(s) for s in (bare_samples, rpc_samples, turn_samples))
    for mark in ("p50", "p95", "p99"):
        floor = bare_ms[mark] + rpc_ms[mark]
        print(
            f"{mark}: floor (HTTP + RPC) {floor:7.3f} ms   callbot {turn_ms[mark]:7.3f} ms   "
            f"ratio {turn_ms[mark] / floor:5.2f}x   overhead {turn_ms[mark] - floor:7.3f} ms"
        )


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=600)
    parser.add_argument(
        "--rabbitmq-url",
        default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL")
    arguments = parser.parse_args()
    main(arguments.turns, arguments.rabbitmq_url, arguments.log_level)
