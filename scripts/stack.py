"""`make up` / `make down` / `make logs`: the whole stack as local background
processes that keep running until `make down`.

up: RabbitMQ must answer (the Makefile runs scripts/ensure-rabbitmq.sh first);
MongoDB is MONGODB_URL, else the in-memory MongoDB-wire stand-in (said
loudly; its data is written to .run/mongo-standin.json at `make down` and
loaded at the next `make up`). Starts the Twilio emulator with
examples/calls/*.yaml, persistence, dialog and gateway, each detached with its
pid in .run/<name>.pid and its log in .run/logs/<name>.log (emptied at every
`make up`); writes .run/env (CALLBOT, KEY) and prints the URLs and the key.
down: SIGTERM to every process in .run/*.pid, SIGKILL to any still there
after 15 s; nothing is left running.

Ports: GATEWAY_PORT (8080), EMULATOR_PORT (8090), STANDIN_PORT (27017);
CALLBOT_RUN_DIR replaces .run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# CALLBOT_RUN_DIR: elsewhere than .run (the tests use a directory of their own).
RUN = Path(os.environ.get("CALLBOT_RUN_DIR", ROOT / ".run")).resolve()
LOGS = RUN / "logs"
ACCOUNT_SID = "AC" + "0" * 31 + "1"  # the emulator's: nothing here reaches real Twilio
AUTH_TOKEN = "local-emulator-auth-token"
FROM_NUMBER = "+15005550001"
NAMESPACE = "callbot-local"
# Started in this order, stopped in the reverse one.
ORDER = ("mongo-standin", "emulator", "persistence", "dialog", "gateway")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def _pid_file(name: str) -> Path:
    return RUN / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running() -> dict[str, int]:
    found = {}
    for name in ORDER:
        path = _pid_file(name)
        if path.exists():
            pid = int(path.read_text().strip() or 0)
            if pid and _alive(pid):
                found[name] = pid
            else:
                path.unlink()
    return found


def _spawn(name: str, arguments: list[str], env: dict[str, str]) -> int:
    log = (LOGS / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, *arguments],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # keeps running after `make up` returns; Ctrl-C there spares it
    )
    log.close()
    _pid_file(name).write_text(f"{process.pid}\n")
    return process.pid


def _wait(name: str, pid: int, ready: str) -> None:
    """Until `ready` is in the log (a line) or answers 200 (a URL)."""
    log = LOGS / f"{name}.log"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise SystemExit(f"{name} exited while starting; the end of {log}:\n{tail}")
        if ready.startswith("http"):
            try:
                if httpx.get(ready, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        elif ready in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"{name} not ready after {READY_TIMEOUT_S:.0f} s; see {log}")


def up() -> int:
    if running := _running():
        print(f"already up ({', '.join(running)}); `make down` first to restart.")
        _print_next_steps()
        return 0
    LOGS.mkdir(parents=True, exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()  # every run starts with empty logs
    gateway_port = int(os.environ.get("GATEWAY_PORT", "8080"))
    emulator_port = int(os.environ.get("EMULATOR_PORT", "8090"))
    key_file = RUN / "api-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(24))
    api_key = key_file.read_text().strip()
    mongodb_url = os.environ.get("MONGODB_URL")
    started: list[str] = []
    try:
        if mongodb_url is None:
            standin_port = int(os.environ.get("STANDIN_PORT", "27017"))
            pid = _spawn(
                "mongo-standin",
                [
                    "-m",
                    "callbot.testkit.mongo_standin",
                    "--port",
                    str(standin_port),
                    "--state-file",
                    str(RUN / "mongo-standin.json"),
                ],
                {},
            )
            started.append("mongo-standin")
            _wait("mongo-standin", pid, '"service started"')
            mongodb_url = f"mongodb://127.0.0.1:{standin_port}/"
            print(
                "!!! No MONGODB_URL: using the in-memory MongoDB stand-in on port "
                f"{standin_port}. NOT A DATABASE: its data is only written to "
                ".run/mongo-standin.json at `make down`. Set MONGODB_URL for a real one. !!!"
            )
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        pid = _spawn(
            "emulator",
            [
                "-m",
                "callbot.emulator",
                "--port",
                str(emulator_port),
                "--scenarios",
                str(ROOT / "examples" / "calls"),
                "--account-sid",
                ACCOUNT_SID,
                "--auth-token",
                AUTH_TOKEN,
            ],
            {},
        )
        started.append("emulator")
        _wait("emulator", pid, f"{emulator_url}/_control/calls")
        common = {
            "RABBITMQ_NAMESPACE": NAMESPACE,
            "MONGODB_URL": mongodb_url,
            "MONGODB_DB": os.environ.get("MONGODB_DB", "callbot"),
        }
        for name in ("persistence", "dialog"):
            pid = _spawn(name, ["-m", f"callbot.{name}"], common)
            started.append(name)
            _wait(name, pid, '"service started"')
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        pid = _spawn(
            "gateway",
            ["-m", "callbot.gateway"],
            {
                **common,
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_PORT": str(gateway_port),
                "PUBLIC_URL": gateway_url,
                "CALLBOT_API_KEYS": api_key,
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_FROM_NUMBER": FROM_NUMBER,
                "TWILIO_API_BASE_URL": emulator_url,
            },
        )
        started.append("gateway")
        _wait("gateway", pid, f"{gateway_url}/readyz")
    except BaseException:
        print("start-up failed: stopping what was started", file=sys.stderr)
        down()
        raise
    (RUN / "env").write_text(f"export CALLBOT={gateway_url}\nexport KEY={api_key}\n")
    (RUN / "urls.json").write_text(json.dumps({"gateway": gateway_url, "emulator": emulator_url}))
    uses_llm = bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))
    print(f"dialog: {'the configured LLM' if uses_llm else 'deterministic policy (no LLM)'}")
    _print_next_steps()
    return 0


def _print_next_steps() -> None:
    urls = json.loads((RUN / "urls.json").read_text()) if (RUN / "urls.json").exists() else {}
    key = (RUN / "api-key").read_text().strip() if (RUN / "api-key").exists() else "?"
    gateway = urls.get("gateway", "?")
    print(
        f"""
callbot is up (RabbitMQ namespace {NAMESPACE}):
  API          {gateway}/v1   (Swagger UI: {gateway}/docs)
  Twilio emulator {urls.get("emulator", "?")}   (plays examples/calls/*.yaml by `to` number)
  API key      {key}
  logs         .run/logs/   (`make logs` follows them)
Next: `source .run/env` (sets CALLBOT and KEY), then the curl examples in the
README ("Run it yourself"). `make down` stops everything."""
    )


def down() -> int:
    running = _running()
    for name in reversed(ORDER):
        if name in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running[name], signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(_alive(pid) for pid in running.values()):
        time.sleep(0.1)
    for name, pid in running.items():
        if _alive(pid):
            print(f"{name} (pid {pid}) did not stop in {STOP_TIMEOUT_S:.0f} s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _pid_file(name).unlink(missing_ok=True)
    print(f"stopped: {', '.join(running) or 'nothing was running'}")
    return 0


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "up":
        return up()
    if command == "down":
        return down()
    sys.exit("usage: scripts/stack.py up|down")


if __name__ == "__main__":
    sys.exit(main())
