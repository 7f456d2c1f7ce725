"""Issue 6, "Must show" 9: the demo runs and exits 0.

`make demo` is `scripts/demo.py` after `make install broker`; the test runs the
script itself with this interpreter (the venv the suite runs in), as a child
process, on the deterministic policy (no LLM configured), against the test's
RabbitMQ. Once with the test's MongoDB, and once with none, as on a fresh
clone on a machine without MongoDB: the demo then starts the stand-in itself
and says so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest
from e2e_harness import ROOT
from pymongo import MongoClient

pytestmark = pytest.mark.e2e

TRANSCRIPT = [
    r"0 AGENT  Hi Ada, this is Ava from Acme Support\. .*Could you tell me your full name\?",
    r"1 CALLEE Yes, this is Ada Lovelace\.",
    r"2 AGENT  Thank you\. Could you tell me your email address\?",
    r"3 CALLEE Sure, my email is ada@example\.com\.",
    r"4 AGENT  Thank you\. Could you tell me your callback phone number\?",
    r"5 CALLEE You can call me back at \+1 415 555 0134\.",
    r"6 AGENT  Thank you, Ada, I have everything I need\. Have a great day\. Goodbye!",
]
STANDIN_WARNING = "No MONGODB_URL: using the in-memory MongoDB stand-in"


@pytest.mark.parametrize("mongo", ["test-mongodb", "no-mongodb"])
def test_demo_runs_a_whole_call_and_exits_0(
    rabbitmq_url: str, mongodb_url: str, mongo: str
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "MONGODB_", "RABBITMQ_", "LLM_"))
    }
    env["RABBITMQ_URL"] = rabbitmq_url
    if mongo == "test-mongodb":
        env["MONGODB_URL"] = mongodb_url

    client: MongoClient[dict[str, Any]]
    with MongoClient(mongodb_url, serverSelectionTimeoutMS=5000) as client:
        databases_before = set(client.list_database_names())
        try:
            demo = subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "demo.py")],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        finally:
            # The demo keeps its call in MongoDB for whoever wants to look; the test does not.
            for name in set(client.list_database_names()) - databases_before:
                if name.startswith("callbot_demo"):
                    client.drop_database(name)

    output = demo.stdout
    assert demo.returncode == 0, f"demo exited {demo.returncode}\n{output}\n{demo.stderr}"
    assert "dialog: deterministic policy (no LLM)" in output
    assert (STANDIN_WARNING in output) == (mongo == "no-mongodb")
    transcript = output[output.index("transcript:") : output.index("stored call document:")]
    turns = [line.strip() for line in transcript.splitlines() if re.match(r"\s+\d+ ", line)]
    assert len(turns) == len(TRANSCRIPT), transcript
    for pattern, line in zip(TRANSCRIPT, turns, strict=True):
        assert re.fullmatch(pattern, line), f"{line!r} does not match {pattern!r}"
    assert re.search(r"ended_by: system_complete\s+status: completed\s+duration: \d+ s", output)
    assert (
        'data collected: {"full_name": "Ada Lovelace", "email": "ada@example.com", '
        '"callback_phone": "+14155550134"}'
    ) in output
    assert '"completed_published_at": "' in output  # the stored document, as printed
