"""Issue 14, "Must show" 1: `make up`, then the README's "Run it yourself"
lines exactly as written (save the agent, place a call, read it back), then
`make down` leaves no process behind.

The lines are taken from the README itself, so the README stays true. They
run in a directory of their own that holds `examples` (a link) and the `.run`
that `make up` fills (CALLBOT_RUN_DIR), on free ports, against the test's
RabbitMQ; MongoDB is the stand-in `make up` starts, as on a fresh clone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import ROOT

from callbot.testkit.processes import free_port

pytestmark = pytest.mark.e2e

SERVICES = ("mongo-standin", "emulator", "persistence", "dialog", "gateway")


def readme_lines() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Run it yourself") :]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block, "the README's 'Run it yourself' has no sh block"
    return block.group(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _documents(output: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    found, at = [], 0
    while (start := output.find("{", at)) != -1:
        document, at = decoder.raw_decode(output, start)
        found.append(document)
    return found


def test_make_up_then_the_readme_lines_then_make_down(tmp_path: Path, rabbitmq_url: str) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    run_dir = tmp_path / ".run"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "MONGODB_", "RABBITMQ_", "LLM_", "MAKE"))
    }
    env.update(
        RABBITMQ_URL=rabbitmq_url,
        CALLBOT_RUN_DIR=str(run_dir),
        GATEWAY_PORT=str(free_port()),
        EMULATOR_PORT=str(free_port()),
        STANDIN_PORT=str(free_port()),
    )

    def make(target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", "-C", str(ROOT), target],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    up = make("up")
    pids: dict[str, int] = {}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "using the in-memory MongoDB stand-in" in up.stdout
        assert "/docs" in up.stdout
        pids = {name: int((run_dir / f"{name}.pid").read_text()) for name in SERVICES}
        assert all(_alive(pid) for pid in pids.values())

        script = readme_lines() + '\necho "CALL_ID=$CALL_ID"\n'
        shell = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shell.returncode == 0, shell.stdout + shell.stderr
        saved, first_read = _documents(shell.stdout)
        assert saved == {"agent_id": "demo", "version": 1}
        call_id = re.search(r"CALL_ID=(\w+)", shell.stdout)
        assert call_id
        assert first_read["call_id"] == call_id.group(1)

        # "Run it again to see it finish": the README's last line, as written.
        read_again = "source .run/env\nCALL_ID=" + call_id.group(1) + "\n"
        read_again += readme_lines().strip().splitlines()[-1]
        deadline = time.monotonic() + 90
        while True:
            again = subprocess.run(
                ["bash", "-e", "-c", read_again],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            [call] = _documents(again.stdout)
            if call["status"] == "completed" or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert call["status"] == "completed", call
        assert call["ended_by"] == "system_complete"
        assert call["data_collected"]["email"] == "ada@example.com"
        assert call["turns"][0]["content"].startswith("Hi Ada, this is Ava")
    finally:
        down = make("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert [name for name, pid in pids.items() if _alive(pid)] == []
    assert list(run_dir.glob("*.pid")) == []
    logs = {path.name for path in (run_dir / "logs").glob("*.log")}
    assert logs == {f"{name}.log" for name in SERVICES}
