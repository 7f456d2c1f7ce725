"""Campaigns at scale: a 2,000-recipient campaign through the whole stack and
the Twilio emulator, then a 100,000-row CSV upload.

Prints: attempts scheduled (placed) per second against the pacing setting,
the most calls the emulator saw in any 1 s window, double dials, recipients
per final state, CPU of the campaigns service per 1,000 attempts (and of
every process), and the RSS of gateway and campaigns before and at the peak
of the 100,000-row upload.

    .venv/bin/python bench/campaign.py [--recipients 2000] [--cps 40] [--upload-rows 100000]

Either phase runs alone when the other's count is 0.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from _harness import STANDIN_NOTE, CpuMeter, commit, machine_line, rss_mib
from campaigns_harness import (
    AGENT,
    EXPECTED,
    SCENARIOS,
    afternoon_zone,
    campaign_body,
    double_dials,
    max_calls_in_any_second,
)

from callbot.testkit.mongo_standin import start_standin_process
from callbot.testkit.stack import API_KEY, CallbotStack, StackConfig

EVERY_DAY = '["mon","tue","wed","thu","fri","sat","sun"]'
KINDS = list(EXPECTED)


def number(index: int) -> str:
    return f"+1646{200 + index // 10000:03d}{index % 10000:04d}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--cps", type=float, default=40)
    parser.add_argument("--upload-rows", type=int, default=100_000)
    args = parser.parse_args()
    with ExitStack() as cleanup:
        log_dir = Path(tempfile.mkdtemp(prefix="callbot-bench-campaign-"))
        mongodb_url = os.environ.get("MONGODB_URL")
        mongo_kind = "MongoDB: the server at MONGODB_URL"
        if mongodb_url is None:
            standin = start_standin_process(log_dir=log_dir)
            cleanup.callback(standin.stop)
            mongodb_url, mongo_kind = standin.url, STANDIN_NOTE
        stack = CallbotStack(
            StackConfig(
                rabbitmq_url=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
                mongodb_url=mongodb_url,
                namespace=f"bench{uuid.uuid4().hex[:8]}",
                log_dir=log_dir,
                campaigns_replicas=1,
                extra_env={"LOG_LEVEL": "WARNING"},
            )
        )
        cleanup.callback(stack.delete_topology)
        cleanup.callback(stack.stop)
        stack.start()
        api = httpx.Client(
            base_url=stack.gateway_url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=600,
        )
        cleanup.callback(api.close)
        api.put("/v1/agents/bench", json=AGENT).raise_for_status()
        print(f"commit {commit()}  {machine_line()}")
        print(mongo_kind)
        if args.recipients:
            run_campaign(stack, api, args.recipients, args.cps)
        if args.upload_rows:
            upload(stack, api, args.upload_rows)
    return 0


def run_campaign(stack: CallbotStack, api: httpx.Client, recipients: int, cps: float) -> None:
    zone = afternoon_zone()
    control = stack.emulator.control
    suppressed = [number(index) for index in range(recipients - 40, recipients - 20)]
    rows = []
    for index in range(recipients - 40):
        kind = KINDS[index % len(KINDS)]
        to = number(index)
        control.add_scenario(
            {"name": f"{kind}-{to}", "to": to, "speed": 100, "ring_s": 2, **SCENARIOS[kind]}
        )
        rows.append(f"{to},{zone},R{index}")
    api.post("/v1/suppressions", json={"numbers": suppressed}).raise_for_status()
    rows += [f"{to},{zone},S" for to in suppressed]
    rows += [f"+1646{index:03d},{zone},bad" for index in range(10)]  # invalid numbers
    rows += [f"{number(index)},{zone},dupe" for index in range(10)]  # duplicates
    csv_text = "to,timezone,name\n" + "\n".join(rows) + "\n"
    settings = campaign_body("bench", [], pacing={"calls_per_second": cps, "max_concurrent": 200})
    del settings["recipients"]  # they come as the CSV
    campaigns = stack.campaigns_replicas[0]
    assert campaigns.pid is not None
    meter = CpuMeter(
        {
            name: pid
            for name, pid in {
                "campaigns": campaigns.pid,
                "gateway": stack.gateway.pid if stack.gateway else None,
                "dialog": stack.dialog.pid if stack.dialog else None,
                "persistence": stack.persistence.pid if stack.persistence else None,
                "emulator": stack.emulator.process.pid,
            }.items()
            if pid is not None
        }
    )
    meter.start()
    started = time.monotonic()
    response = api.post(
        "/v1/campaigns",
        data={"campaign": json.dumps(settings)},
        files={"recipients": ("list.csv", csv_text.encode(), "text/csv")},
    )
    response.raise_for_status()
    campaign_id = response.json()["campaign_id"]
    print(f"campaign of {len(rows)} rows created in {time.monotonic() - started:.2f}s")
    while (body := api.get(f"/v1/campaigns/{campaign_id}").json())["state"] != "completed":
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    counters = body["counters"]
    placed = counters["calls_placed"]
    calls = [call for call in control.calls() if call.to.startswith("+1646")]
    attempts = every_attempt(api, campaign_id)
    kind_of = {f"R{index}": KINDS[index % len(KINDS)] for index in range(recipients - 40)}
    wrong = [
        attempt
        for attempt in attempts
        if attempt["fields"].get("name") in kind_of
        and (attempt["state"], len(attempt["tries"]))
        != EXPECTED[kind_of[attempt["fields"]["name"]]]
    ]
    ends = Counter(
        attempt["skip_reason"] if attempt["state"] == "skipped" else attempt["state"]
        for attempt in attempts
    )
    doubles = double_dials(calls, attempts)
    print(f"counters: {counters}")
    print(
        f"{len(attempts)} rows: final states {dict(ends)}; rows whose state or tries differ "
        f"from the retry policy: {len(wrong)} {wrong[:3]}"
    )
    print(
        f"{placed} calls placed in {elapsed:.1f}s: {placed / elapsed:.1f} attempts/s "
        f"(setting {cps}/s, 25% guard: {cps / 1.25:.1f}/s); emulator saw {len(calls)} calls, "
        f"most in any 1 s window {max_calls_in_any_second(calls)}; "
        f"double dials (calls != tries, or two at once): {len(doubles)} {doubles[:3]}"
    )
    used = meter.used_s()
    thousands = max(placed, 1) / 1000
    print(
        "CPU s per 1,000 attempts: "
        + ", ".join(f"{name} {seconds / thousands:.2f}" for name, seconds in used.items())
        + f"; total {sum(used.values()) / thousands:.2f}"
    )


def every_attempt(api: httpx.Client, campaign_id: str) -> list[dict[str, Any]]:
    """Every row of the campaign, page by page."""
    rows: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = api.get(
            f"/v1/campaigns/{campaign_id}/attempts", params={"after": after, "limit": 1000}
        ).json()
        rows += [{"tries": [], "fields": {}, "skip_reason": None} | row for row in page["items"]]
        after = page["next_after"]
    return rows


def upload(stack: CallbotStack, api: httpx.Client, rows: int) -> None:
    """A list of `rows` rows, scheduled next year: nothing is dialed before the
    stack is torn down (no cancel: it would count the whole list again)."""
    gateway, campaigns = stack.gateway, stack.campaigns_replicas[0]
    assert gateway is not None
    assert gateway.pid is not None
    assert campaigns.pid is not None
    pids = {"gateway": gateway.pid, "campaigns": campaigns.pid}
    before = {name: rss_mib(pid) for name, pid in pids.items()}
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for name, pid in pids.items():
                peak[name] = max(peak[name], rss_mib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = (datetime.now(UTC) + timedelta(days=300)).date().isoformat()
    body = io.StringIO()
    body.write("to,name,plan\n")
    for index in range(rows):
        body.write(f"+1718{200 + index // 10000:03d}{index % 10000:04d},Person {index},gold\n")
    payload = body.getvalue().encode()
    started = time.monotonic()
    response = api.post(
        "/v1/campaigns",
        data={
            "campaign": f'{{"agent_id": "bench", "schedule": {{"start_date": "{start}", '
            f'"days": {EVERY_DAY}}}}}'
        },
        files={"recipients": ("big.csv", payload, "text/csv")},
    )
    elapsed = time.monotonic() - started
    done.set()
    sampler.join()
    size = f"upload of {rows} rows ({len(payload) / 2**20:.1f} MiB)"
    if response.is_success:
        created = response.json()
        print(
            f"{size}: {elapsed:.1f}s, {rows / elapsed:.0f} rows/s, "
            f"total {created['counters']['total']}"
        )
    else:
        # Still a memory figure: the rows were read and sent before the answer.
        print(f"{size}: answered {response.status_code} after {elapsed:.1f}s: {response.text}")
    for name in pids:
        print(f"  {name} RSS: before {before[name]:.1f} MiB, peak {peak[name]:.1f} MiB")


if __name__ == "__main__":
    sys.exit(main())
