"""dialog's LLM request alone: the openai client on httpx2 (its default
transport) against the same client on aiohttp (what dialog uses).

Each run sends `--requests` sequential chat completions, shaped as dialog's
request from the middle of a call (a system prompt and `--messages` turns),
to the scripted OpenAI-compatible server answering at once, through the
low-level `post` dialog uses. It prints latency percentiles and the client
process's CPU per request (the server runs in a process of its own). The two
transports alternate, twice each, so a change in the machine's speed shows
as a difference between runs of the same transport.

Usage: .venv/bin/python bench/llm_client.py [--requests 1500] [--messages 40]
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import openai
import uvloop
from _stats import print_row  # bench/ is on sys.path when a script here runs
from openai.types.chat import ChatCompletion

from callbot.testkit.fake_openai import start_fake_openai_process

WARM_UP = 100


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def request_body(messages: int) -> dict[str, Any]:
    turns = [
        {
            "role": "user" if index % 2 else "assistant",
            "content": "I would like to hear more about the new plan",
        }
        for index in range(messages)
    ]
    return {
        "model": "bench",
        "messages": [{"role": "system", "content": "Answer in one short sentence. " * 10}, *turns],
        "tools": [],
        "temperature": 0.3,
        "max_tokens": 300,
    }


async def run(transport: str, base_url: str, body: dict[str, Any], requests: int) -> None:
    http_client = openai.DefaultAioHttpClient() if transport == "aiohttp" else None
    client = openai.AsyncOpenAI(
        api_key="bench", base_url=base_url, max_retries=0, http_client=http_client
    )
    try:

        async def post() -> None:
            await client.post(
                "/chat/completions", body=body, cast_to=ChatCompletion, options={"timeout": 5}
            )

        for _ in range(WARM_UP):
            await post()
        samples: list[float] = []
        cpu_before, started = cpu_s(), time.perf_counter()
        for _ in range(requests):
            sent = time.perf_counter()
            await post()
            samples.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - started
        print_row(f"openai client on {transport}", samples, elapsed)
        print(f"  client CPU per request: {(cpu_s() - cpu_before) / requests * 1000:.3f} ms")
    finally:
        await client.close()


def main(requests: int, messages: int) -> None:
    llm = start_fake_openai_process()
    try:
        llm.control.set_default({"text": "Sure, here is one short sentence."})
        body = request_body(messages)
        for transport in ("httpx2", "aiohttp", "httpx2", "aiohttp"):
            uvloop.run(run(transport, llm.base_url, body, requests))
    finally:
        llm.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--messages", type=int, default=40)
    arguments = parser.parse_args()
    main(arguments.requests, arguments.messages)
