"""`make demo`: one emulated call through the whole system, on this machine.

Starts gateway, dialog and persistence as processes against the local
RabbitMQ, the Twilio emulator, and MongoDB (`MONGODB_URL`, else the in-memory
stand-in, announced loudly); loads examples/agents/demo.json, plays
examples/calls/demo.yaml, prints the transcript and the stored document.
dialog uses the LLM when OPENAI_API_KEY/OPENAI_BASE_URL are set, else its
deterministic policy.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

from callbot.emulator.demo import print_call, run_demo
from callbot.testkit.mongo_standin import start_standin_process
from callbot.testkit.stack import API_KEY, CallbotStack, StackConfig

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    with ExitStack() as cleanup:
        mongodb_url = os.environ.get("MONGODB_URL")
        if mongodb_url is None:
            standin = start_standin_process()
            cleanup.callback(standin.stop)
            mongodb_url = standin.url
            print(
                "!!! No MONGODB_URL: using the in-memory MongoDB stand-in. "
                "NOTHING IS DURABLE: the data is gone when the demo ends. !!!\n"
            )
        # dialog inherits OPENAI_API_KEY / OPENAI_BASE_URL from this environment.
        uses_llm = bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))
        print(f"dialog: {'the configured LLM' if uses_llm else 'deterministic policy (no LLM)'}")
        # CALLBOT_DEMO_DIR: elsewhere than .demo (the tests run the demo as another user).
        demo_dir = Path(os.environ.get("CALLBOT_DEMO_DIR", ROOT / ".demo"))
        log_dir = demo_dir / "logs"
        shutil.rmtree(log_dir, ignore_errors=True)  # this run's logs only
        stack = CallbotStack(
            StackConfig(
                rabbitmq_url=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
                mongodb_url=mongodb_url,
                namespace=f"demo{uuid.uuid4().hex[:6]}",
                log_dir=log_dir,
                # A service that cannot reach a dependency says so and exits
                # before the demo's own 30 s wait would time out on it.
                extra_env={"STARTUP_TIMEOUT_S": "20"},
            )
        )
        # Runs last: the namespace is the demo's own, so nothing is left on the broker.
        cleanup.callback(_delete_topology, stack)
        cleanup.callback(stack.stop)
        stack.start()
        print(
            f"gateway {stack.gateway_url}, emulator {stack.emulator.base_url}; logs in {log_dir}\n"
        )
        document = run_demo(
            stack.gateway_url,
            stack.emulator.base_url,
            API_KEY,
            ROOT / "examples" / "agents" / "demo.json",
            ROOT / "examples" / "calls" / "demo.yaml",
        )
        print_call(document, saved_to=demo_dir / "call.json")
        print(WHAT_NEXT)
        return 0 if document.get("status") == "completed" else 1


WHAT_NEXT = """
What next:
  make up         the same stack kept running: gateway's API at http://127.0.0.1:8080/v1,
                  Swagger UI at http://127.0.0.1:8080/docs, the emulator at :8090;
                  then the README's "Run it yourself" (curl: save an agent, place a call,
                  read it). `make down` stops it.
  a real LLM      OPENAI_API_KEY=sk-... (and LLM_MODEL, or OPENAI_BASE_URL for any
                  OpenAI-compatible endpoint) before `make demo` or `make up`.
  real calls      the README's "Talking to real Twilio"."""


def _delete_topology(stack: CallbotStack) -> None:
    try:
        stack.delete_topology()
    except Exception as exc:  # the demo's own outcome matters more than its clean-up
        print(f"could not delete the demo's queues ({stack.config.namespace}.*): {exc!r}")


if __name__ == "__main__":
    sys.exit(main())
