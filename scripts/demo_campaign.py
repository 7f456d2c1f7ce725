"""`make demo-campaign`: a campaign of 20 numbers with mixed outcomes, through
the whole system on this machine (as `make demo`: local RabbitMQ, MongoDB at
MONGODB_URL or the in-memory stand-in, the Twilio emulator at 100x speed).

Answered calls give their details (examples/calls/demo.yaml's lines), others
are busy, do not answer, reach voicemail or ask not to be called again; one
number is on the suppression list, one is listed twice, two are not numbers.
Prints the campaign's counters and where each recipient ended.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx

from callbot.testkit.mongo_standin import start_standin_process
from callbot.testkit.stack import API_KEY, CallbotStack, StackConfig

ROOT = Path(__file__).resolve().parents[1]
DEMO_LINES = [
    {"say": "Yes, this is Ada Lovelace."},
    {"say": "Sure, my email is ada@example.com."},
    {"say": "You can call me back at +1 415 555 0134."},
    {"say": "No, that's all. Thank you, goodbye!"},
]
OUTCOMES = {
    "answers": {"outcome": "answered", "steps": DEMO_LINES},
    "busy": {"outcome": "busy"},
    "no answer": {"outcome": "no-answer", "ring_s": 30},
    "voicemail": {"outcome": "answered", "answered_by": "machine_end_beep"},
    "opts out": {"outcome": "answered", "steps": [{"say": "Please don't call me again."}]},
}
PLAN = ["answers"] * 7 + ["busy"] * 3 + ["no answer"] * 3 + ["voicemail"] * 2 + ["opts out"]


def afternoon_zone() -> str:
    """A fixed-offset zone in which it is now early afternoon (so the demo runs any time)."""
    offset = (13 - datetime.now(UTC).hour + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def main() -> int:
    with ExitStack() as cleanup:
        mongodb_url = os.environ.get("MONGODB_URL")
        if mongodb_url is None:
            standin = start_standin_process()
            cleanup.callback(standin.stop)
            mongodb_url = standin.url
            print("!!! No MONGODB_URL: the in-memory MongoDB stand-in; nothing is kept. !!!\n")
        log_dir = ROOT / ".demo" / "logs"
        stack = CallbotStack(
            StackConfig(
                rabbitmq_url=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
                mongodb_url=mongodb_url,
                namespace=f"demo{uuid.uuid4().hex[:6]}",
                log_dir=log_dir,
                campaigns_replicas=1,
            )
        )
        cleanup.callback(stack.delete_topology)
        cleanup.callback(stack.stop)
        stack.start()
        api = httpx.Client(
            base_url=stack.gateway_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
        )
        cleanup.callback(api.close)
        agent = json.loads((ROOT / "examples" / "agents" / "demo.json").read_text())
        api.put("/v1/agents/demo", json=agent).raise_for_status()
        zone = afternoon_zone()
        rows = []
        for index, kind in enumerate(PLAN):
            to = f"+1415555{index + 1:04d}"
            stack.emulator.control.add_scenario(
                {"name": f"{kind} {to}", "to": to, "speed": 100, "ring_s": 3, **OUTCOMES[kind]}
            )
            rows.append(f"{to},{zone},Person {index + 1}")
        api.post("/v1/suppressions", json={"numbers": ["+14155550100"]}).raise_for_status()
        rows += [f"+14155550100,{zone},Suppressed", f"+14155550001,{zone},Listed twice"]
        rows += [f"555-0199,{zone},Not a number", f"+1415,{zone},Too short"]
        csv_text = "to,timezone,name\n" + "\n".join(rows) + "\n"
        settings = {
            "agent_id": "demo",
            "name": "demo campaign",
            "schedule": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
            "pacing": {"calls_per_second": 2, "max_concurrent": 5},
            "retry": {
                key: {"max_attempts": 2, "delay_s": 2} for key in ("no_answer", "busy", "voicemail")
            },
        }
        created = api.post(
            "/v1/campaigns",
            data={"campaign": json.dumps(settings)},
            files={"recipients": ("demo.csv", csv_text.encode(), "text/csv")},
        )
        created.raise_for_status()
        campaign_id = created.json()["campaign_id"]
        print(f"campaign {campaign_id}: {len(rows)} rows, 2 calls/s; logs in {log_dir}")
        while (body := api.get(f"/v1/campaigns/{campaign_id}").json())["state"] != "completed":
            print(f"  {body['state']}: {body['counters']}")
            time.sleep(2)
        print(f"\nfinal counters: {json.dumps(body['counters'], indent=2)}\n")
        attempts = api.get(f"/v1/campaigns/{campaign_id}/attempts").json()["items"]
        for item in attempts:
            why = item.get("skip_reason") or item.get("outcome") or ""
            print(f"  {item['to']:>14}  {item['state']:<9} {why:<16} tries {len(item['tries'])}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
