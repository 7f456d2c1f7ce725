"""Finding a MongoDB for tests: a real one when there is one, else the stand-in.

Order (DESIGN.md §6): `MONGODB_URL`; testcontainers MongoDB where a Docker
engine answers; the MongoDB-wire stand-in started by the suite itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from callbot.testkit.rabbit import docker_answers

MongoKind = Literal["env", "testcontainers", "standin"]


@dataclass(frozen=True)
class MongoChoice:
    kind: MongoKind

    @property
    def is_real(self) -> bool:
        return self.kind != "standin"

    def describe(self) -> str:
        return {
            "env": "real MongoDB from MONGODB_URL",
            "testcontainers": "real MongoDB (testcontainers)",
            "standin": "MongoDB-wire stand-in (in-memory, not a real server)",
        }[self.kind]


def choose_mongo() -> MongoChoice:
    if os.environ.get("MONGODB_URL"):
        return MongoChoice("env")
    if docker_answers():
        return MongoChoice("testcontainers")
    return MongoChoice("standin")


@contextmanager
def running_mongo(choice: MongoChoice) -> Iterator[str]:
    """Yield a MongoDB URL for the whole test session."""
    if choice.kind == "env":
        yield os.environ["MONGODB_URL"]
    elif choice.kind == "testcontainers":
        from testcontainers.mongodb import MongoDbContainer

        with MongoDbContainer("mongo:7") as container:
            yield container.get_connection_url()
    else:
        from callbot.testkit.mongo_standin import start_standin_process

        standin = start_standin_process()
        try:
            yield standin.url
        finally:
            standin.stop()
