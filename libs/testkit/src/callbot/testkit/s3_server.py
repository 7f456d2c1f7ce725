"""A real S3-compatible server for the tests: moto's server mode as a process.

The suite talks to it over HTTP with the same aiobotocore adapter production
uses (nothing is mocked in the client). `pause()`/`resume()` freeze and thaw
the process (SIGSTOP/SIGCONT): object storage unreachable, its objects kept.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from callbot.common.object_storage import ObjectLocation, S3Config, S3ObjectStore
from callbot.testkit.processes import ServiceProcess, free_port

T = TypeVar("T")

# moto accepts any credentials; botocore needs some to sign with.
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "callbot-test",
    "AWS_SECRET_ACCESS_KEY": "callbot-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3ServerProcess:
    def __init__(self, log_dir: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process = ServiceProcess(
            "s3",
            "moto.server",
            {},
            log_dir,
            arguments=["-H", "127.0.0.1", "-p", str(self.port)],
            ready_url=f"{self.endpoint_url}/moto-api/",
        )

    def start(self, timeout_s: float = 30.0) -> None:
        self._process.start(timeout_s)

    def stop(self) -> None:
        self.resume()
        self._process.kill()  # in-memory: nothing to finish

    def pause(self) -> None:
        """Freeze the server: connections hang until `resume()`; objects are kept."""
        os.kill(self._pid(), signal.SIGSTOP)

    def resume(self) -> None:
        if self._process.pid is not None:
            os.kill(self._process.pid, signal.SIGCONT)

    def _pid(self) -> int:
        pid = self._process.pid
        if pid is None:
            raise RuntimeError("the S3 server is not running: call start() first")
        return pid

    def env(self) -> dict[str, str]:
        """The environment a callbot service needs to use this server."""
        return {"S3_ENDPOINT_URL": self.endpoint_url, **TEST_CREDENTIALS}

    # --- for synchronous tests (end to end, faults): one client per call ---

    def create_buckets(self, *buckets: str) -> None:
        async def create(store: S3ObjectStore) -> None:
            for bucket in buckets:
                await store.create_bucket(bucket)

        self._run(create)

    def read(self, bucket: str, key: str) -> bytes:
        return self._run(lambda store: store.get(ObjectLocation(bucket, key)))

    def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        async def put(store: S3ObjectStore) -> None:
            await store.put(ObjectLocation(bucket, key), data, content_type=content_type)

        self._run(put)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return self._run(lambda store: store.keys(bucket, prefix))

    def _run(self, operation: Callable[[S3ObjectStore], Awaitable[T]]) -> T:
        for name, value in TEST_CREDENTIALS.items():
            os.environ.setdefault(name, value)

        async def run() -> T:
            store = S3ObjectStore(S3Config(endpoint_url=self.endpoint_url))
            await store.open()
            try:
                return await operation(store)
            finally:
                await store.close()

        return asyncio.run(run())
