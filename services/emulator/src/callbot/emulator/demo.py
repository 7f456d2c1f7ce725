"""One demo call through a running callbot: load the agent, place the call to
the Twilio emulator, let it play the scenario, print what was stored.

    python -m callbot.emulator.demo --gateway-url URL --emulator-url URL \
        --api-key KEY --agent examples/agents/demo.json --scenario examples/calls/demo.yaml

Exits 0 when the call ended and its document was completed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

RECIPIENT = {"name": "Ada"}


def run_demo(
    gateway_url: str, emulator_url: str, api_key: str, agent_path: Path, scenario_path: Path
) -> dict[str, Any]:
    """Play one call and return the stored call document."""
    auth = {"Authorization": f"Bearer {api_key}"}
    agent = json.loads(agent_path.read_text())
    agent_id = agent.pop("agent_id")
    scenario = yaml.safe_load(scenario_path.read_text())
    with httpx.Client(timeout=30) as http:
        saved = http.put(f"{gateway_url}/v1/agents/{agent_id}", json=agent, headers=auth)
        saved.raise_for_status()
        print(f"agent {agent_id!r} saved, version {saved.json()['version']}")
        http.post(f"{emulator_url}/_control/scenarios", json=scenario).raise_for_status()
        placed = http.post(
            f"{gateway_url}/v1/calls",
            json={"agent_id": agent_id, "to": scenario["to"], "recipient": RECIPIENT},
            headers=auth,
        )
        placed.raise_for_status()
        call = placed.json()
        print(f"call {call['call_id']} placed (Twilio sid {call['call_sid']})\n")
        played = http.get(
            f"{emulator_url}/_control/calls/{call['call_sid']}/wait",
            params={"timeout": 120},
            timeout=130,
        )
        played.raise_for_status()
        return _wait_for_completed(http, gateway_url, call["call_id"], auth)


def _wait_for_completed(
    http: httpx.Client, gateway_url: str, call_id: str, auth: dict[str, str]
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    document: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = http.get(f"{gateway_url}/v1/calls/{call_id}", headers=auth)
        if response.status_code == 200:
            document = response.json()
            if document.get("completed_published_at"):
                return document
        time.sleep(0.25)
    raise TimeoutError(f"call {call_id} was not completed in time; last seen: {document}")


def print_call(document: dict[str, Any], saved_to: Path | None = None) -> None:
    """The conversation and its outcome; the whole stored document too, or,
    with `saved_to`, written there instead of printed."""
    print("transcript:")
    for turn in document.get("turns", []):
        speaker = "AGENT " if turn["role"] == "assistant" else "CALLEE"
        print(f"  {turn['seq']:>2} {speaker} {turn['content'] or '(silence)'}")
    print(
        f"\nended_by: {document.get('ended_by')}   status: {document.get('status')}   "
        f"duration: {document.get('duration_s')} s"
    )
    print(f"data collected: {json.dumps(document.get('data_collected', {}))}")
    whole = json.dumps(document, indent=2, sort_keys=True)
    if saved_to is not None:
        saved_to.write_text(whole + "\n")
        print(f"\nstored call document: {saved_to}")
        return
    print("\nstored call document:")
    print(whole)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway-url", required=True)
    parser.add_argument("--emulator-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--agent", type=Path, required=True)
    parser.add_argument("--scenario", type=Path, required=True)
    args = parser.parse_args()
    document = run_demo(
        args.gateway_url, args.emulator_url, args.api_key, args.agent, args.scenario
    )
    print_call(document)
    sys.exit(0 if document.get("status") == "completed" else 1)


if __name__ == "__main__":
    main()
