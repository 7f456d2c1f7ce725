"""`python -m callbot.testkit.mongo_standin [--host H] [--port P] [--state-file F]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from callbot.common.lifecycle import run_service
from callbot.common.logs import configure_logging
from callbot.testkit.mongo_standin.server import MongoStandin


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m callbot.testkit.mongo_standin",
        description="Serve the MongoDB wire protocol from memory (tests only).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=27017)
    parser.add_argument("--state-file", type=Path, help="load at start, write at a clean stop")
    args = parser.parse_args()
    configure_logging("mongo-standin")
    run_service(MongoStandin(args.host, args.port, args.state_file))


if __name__ == "__main__":
    main()
