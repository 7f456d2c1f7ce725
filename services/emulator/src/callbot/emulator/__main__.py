"""``python -m callbot.emulator``: the Twilio emulator as a server of its own."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from callbot.emulator.process import EMULATOR_NAME
from callbot.emulator.scenario import ScenarioError, load_scenario_dir
from callbot.emulator.server import TwilioEmulator
from callbot.emulator.server_process import ready_line
from callbot.emulator.webhooks import TWILIO_WEBHOOK_TIMEOUT_S


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m callbot.emulator",
        description="Fake Twilio REST API and call player; scripted by YAML scenarios "
        "and the /_control endpoints.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("EMULATOR_PORT", "8090")),
        help="0 lets the OS pick a free port (default: $EMULATOR_PORT or 8090)",
    )
    parser.add_argument(
        "--account-sid",
        default=os.environ.get("TWILIO_ACCOUNT_SID"),
        help="the AccountSid clients authenticate with (default: $TWILIO_ACCOUNT_SID)",
    )
    parser.add_argument(
        "--auth-token",
        default=os.environ.get("TWILIO_AUTH_TOKEN"),
        help="the auth token for REST auth and webhook signatures (default: $TWILIO_AUTH_TOKEN)",
    )
    parser.add_argument(
        "--scenarios",
        type=Path,
        help="a directory of *.yaml scenarios (default: none; calls get the default callee)",
    )
    parser.add_argument(
        "--webhook-timeout",
        type=float,
        default=TWILIO_WEBHOOK_TIMEOUT_S,
        help="seconds to wait for a webhook answer, as Twilio does (default: %(default)s)",
    )
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    return parser


async def _serve_until_signalled(args: argparse.Namespace) -> None:
    scenarios = load_scenario_dir(args.scenarios) if args.scenarios else []
    emulator = TwilioEmulator(
        args.account_sid, args.auth_token, scenarios, webhook_timeout_s=args.webhook_timeout
    )
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)
    await emulator.start(args.host, args.port)
    names = ", ".join(
        f"{s.name} ({s.to or 'default'})" for s in emulator.switchboard.scenarios.all()
    )
    logging.getLogger("callbot.emulator").info("scenarios: %s", names)
    print(ready_line(EMULATOR_NAME, emulator.base_url), flush=True)
    await stop_requested.wait()
    await emulator.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.account_sid or not args.auth_token:
        parser.error("pass --account-sid and --auth-token (or set TWILIO_ACCOUNT_SID/_AUTH_TOKEN)")
    # The conversation log is the emulator's main output: plain lines on stdout.
    logging.basicConfig(
        stream=sys.stdout, level=args.log_level.upper(), format="%(message)s", force=True
    )
    # Every webhook already gets its own line; httpx's per-request lines would double them.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        asyncio.run(_serve_until_signalled(args))
    except ScenarioError as exc:
        sys.exit(f"twilio-emulator: {exc}")


if __name__ == "__main__":
    main()
