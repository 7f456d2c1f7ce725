"""`/voice/process-speech` end to end, against a bare FastAPI endpoint.

Both servers run as their own processes with uvicorn (uvloop + httptools):
`python -m callbot.gateway`, and a FastAPI app whose one endpoint returns a
fixed TwiML document. A dialog RPC responder that answers at once runs in
this process, as does the client, which sends signed webhooks one at a time
over keep-alive HTTP. The difference is gateway's own work: reading and
checking the signed form, the dialog RPC round trip through RabbitMQ, and
rendering the TwiML.

Usage: .venv/bin/python bench/gateway_turn.py [--requests 2000] [--log-level WARNING]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import httpx
import uvloop
from _floor import start_bare  # bench/ is on sys.path when a script here runs
from _stats import print_row, summary_ms
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from callbot.common.contracts import DIALOG_REQUEST_ADAPTER, DialogReply, DialogRequest
from callbot.common.messaging import (
    Deadline,
    RpcServer,
    Topology,
    connect,
    declare_topology,
    delete_topology,
)
from callbot.common.settings import Settings
from callbot.testkit.processes import ServiceProcess, free_port

AUTH_TOKEN = "bench-auth-token"
FIELDS = {
    "AccountSid": "AC" + "0" * 32,
    "CallSid": "CA" + "0" * 32,
    "SpeechResult": "my email is ada at example dot com",
    "Confidence": "0.93",
}


async def measure(label: str, client: httpx.AsyncClient, url: str, total: int) -> list[float]:
    body = urlencode(FIELDS)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(url, FIELDS),
    }
    for _ in range(min(200, total)):  # warm-up: connections, caches, JIT-free but lazy paths
        (await client.post(url, content=body, headers=headers)).raise_for_status()
    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(total):
        sent = time.perf_counter()
        response = await client.post(url, content=body, headers=headers)
        samples.append(time.perf_counter() - sent)
        if response.status_code != 200 or "<Gather" not in response.text:
            raise RuntimeError(f"{label}: unexpected answer {response.status_code} {response.text}")
    print_row(label, samples, time.perf_counter() - started)
    return samples


async def main(requests: int, rabbitmq_url: str, log_level: str) -> None:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(rabbitmq_url=SecretStr(rabbitmq_url), rabbitmq_namespace=namespace)
    topology = Topology(namespace)
    connection = await connect(settings, "bench-dialog")
    channel = await connection.channel()
    await declare_topology(channel, topology)

    async def answer_at_once(request: DialogRequest, _deadline: Deadline) -> DialogReply:
        return DialogReply(call_id=request.call_id, say="OK.", action="gather", next_seq=3)

    await channel.set_qos(prefetch_count=100)
    server = RpcServer(
        channel, await channel.get_queue(topology.dialog_rpc_queue), DIALOG_REQUEST_ADAPTER,
        answer_at_once,
    )  # fmt: skip
    await server.start()

    gateway_port, bare_port = free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    log_dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    gateway = ServiceProcess(
        "gateway",
        "callbot.gateway",
        {
            "RABBITMQ_URL": rabbitmq_url,
            "RABBITMQ_NAMESPACE": namespace,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(gateway_port),
            "PUBLIC_URL": gateway_url,
            "TWILIO_ACCOUNT_SID": FIELDS["AccountSid"],
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "CALLBOT_API_KEYS": "bench",
            "LOG_LEVEL": log_level,
        },
        log_dir,
        ready_url=f"{gateway_url}/readyz",
    )
    bare = await start_bare(bare_port)
    try:
        await asyncio.to_thread(gateway.start)
        print(
            f"RabbitMQ {rabbitmq_url.split('@')[-1]}  cores={os.cpu_count()}  "
            f"requests={requests}  gateway LOG_LEVEL={log_level}  sequential, keep-alive"
        )
        async with httpx.AsyncClient(timeout=10) as client:
            bare_samples = await measure(
                "bare FastAPI, fixed TwiML",
                client,
                f"http://127.0.0.1:{bare_port}/voice/process-speech?call_id=bench&seq=1",
                requests,
            )
            gateway_samples = await measure(
                "gateway /voice/process-speech (dialog RPC)",
                client,
                f"{gateway_url}/voice/process-speech?call_id=bench&seq=1",
                requests,
            )
        bare_ms, gateway_ms = summary_ms(bare_samples), summary_ms(gateway_samples)
        print(
            f"ratio gateway/bare: p50 {gateway_ms['p50'] / bare_ms['p50']:.2f}x  "
            f"p99 {gateway_ms['p99'] / bare_ms['p99']:.2f}x  "
            f"(gateway adds {gateway_ms['p50'] - bare_ms['p50']:.3f} ms at p50)"
        )
    finally:
        gateway.stop()
        bare.terminate()
        await bare.wait()
        await server.stop()
        cleanup = await connection.channel()
        await delete_topology(cleanup, topology)
        await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--rabbitmq-url",
        default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--log-level", default="WARNING", help="gateway's LOG_LEVEL")
    arguments = parser.parse_args()
    uvloop.run(main(arguments.requests, arguments.rabbitmq_url, arguments.log_level))
