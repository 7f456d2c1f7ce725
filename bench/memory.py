"""Memory: each service's resident set at idle, with N live sessions, and
after those calls ended (campaigns and media run alongside, idle: no
campaign, no recording; their figures are their floor).

A live session is a call in progress whose history dialog holds in its
session cache (bounded: `DIALOG_SESSION_CACHE_SIZE` entries, least recently used first
out, each expiring `SESSION_TTL_S` after its last turn; a terminal
`call.status` evicts it at once). The bench places N calls (`POST /v1/calls`,
the Twilio emulator answers and stays silent), speaks `--turns` user turns on
each (two stored turns apiece), reads RSS from /proc, then hangs every call
up (the final status callback) and reads it again; then the next round, with
new calls. Python keeps freed memory for reuse, so RSS does not fall when
calls end; a leak shows as growth from one round to the next.

Usage: .venv/bin/python bench/memory.py [--sessions 200] [--turns 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio

import httpx
import uvloop
from _harness import (
    DEFAULT_RABBITMQ_URL,
    FINAL_STATUS_SEQUENCE,
    SPEECH,
    BenchStack,
    Callee,
    PlacedCall,
    api_headers,
    machine_line,
    place_calls,
    running_stack,
)

from callbot.common.settings import Settings
from callbot.dialog.sessions import SESSION_TTL_S

SETTLE_S = 2.0  # let the final events drain before reading RSS after hang-up


def print_rss(label: str, rss: dict[str, float], baseline: dict[str, float] | None = None) -> None:
    cells = []
    for name, mib in rss.items():
        grown = f" (+{mib - baseline[name]:.1f})" if baseline else ""
        cells.append(f"{name} {mib:6.1f}{grown}")
    print(f"{label:<34} RSS MiB: " + ", ".join(cells))


async def talk(callee: Callee, call: PlacedCall, turns: int, gate: asyncio.Semaphore) -> None:
    for index in range(turns):
        seq = 1 + 2 * index
        async with gate:
            answer = await callee.say(call, seq, SPEECH)
        if not answer.follows(seq):
            raise RuntimeError(f"turn {seq} of {call.call_id}: unexpected answer {answer}")


async def measure(bench: BenchStack, sessions: int, turns: int, rounds: int) -> None:
    idle = bench.service_rss()
    print_rss("idle", idle)
    limits = httpx.Limits(max_connections=64)
    async with (
        httpx.AsyncClient(
            base_url=bench.gateway_url, headers=api_headers(), timeout=30, limits=limits
        ) as api,
        httpx.AsyncClient(timeout=30, limits=limits) as client,
    ):
        callee = Callee(client, bench.gateway_url)
        for round_number in range(1, rounds + 1):
            calls = await place_calls(api, sessions, in_flight=16)
            gate = asyncio.Semaphore(16)
            await asyncio.gather(*(talk(callee, call, turns, gate) for call in calls))
            live = bench.service_rss()
            print_rss(f"round {round_number}: {sessions} live sessions", live, idle)
            if round_number == 1:
                per_session_kib = (live["dialog"] - idle["dialog"]) * 1024 / sessions
                bound = Settings().dialog_session_cache_size
                print(
                    f"  dialog: {per_session_kib:.1f} KiB per live session of {1 + 2 * turns} "
                    f"turns; the cache holds at most {bound} sessions "
                    f"(DIALOG_SESSION_CACHE_SIZE; each at most "
                    f"{SESSION_TTL_S / 60:.0f} min after its last turn)"
                )
            await asyncio.gather(
                *(callee.hang_up(call, FINAL_STATUS_SEQUENCE, 60) for call in calls)
            )
            await asyncio.sleep(SETTLE_S)
            print_rss(f"round {round_number}: those calls ended", bench.service_rss(), idle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--turns", type=int, default=20, help="user turns per call")
    parser.add_argument("--rounds", type=int, default=3, help="batches of calls, one after another")
    parser.add_argument("--rabbitmq-url", default=DEFAULT_RABBITMQ_URL)
    parser.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL")
    arguments = parser.parse_args()
    with running_stack(arguments.rabbitmq_url, arguments.log_level, workers=True) as bench:
        print(machine_line())
        print(f"{bench.mongo_kind}\nservices' LOG_LEVEL={arguments.log_level}")
        uvloop.run(measure(bench, arguments.sessions, arguments.turns, arguments.rounds))


if __name__ == "__main__":
    main()
