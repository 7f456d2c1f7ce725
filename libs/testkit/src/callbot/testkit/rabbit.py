"""Finding a RabbitMQ broker for tests, and dropping connections on purpose."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit

LOCAL_BROKER = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass(frozen=True)
class BrokerChoice:
    url: str
    how: str  # shown in the pytest header


def port_answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def docker_answers() -> bool:
    """A Docker engine answers (testcontainers can run)."""
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker  # type: ignore[import-untyped]  # testcontainers' dependency

        client = docker.from_env(timeout=2)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def start_local_broker() -> bool:
    """Start the machine's own RabbitMQ when it is installed but stopped."""
    if shutil.which("rabbitmq-server") is None:
        return False
    subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)
    if shutil.which("rabbitmqctl") is not None:
        subprocess.run(["rabbitmqctl", "await_startup", "--timeout", "60"], check=False)
    return port_answers("127.0.0.1", 5672)


def choose_broker() -> BrokerChoice | str:
    """The broker the tests use, or why there is none (with how to get one)."""
    if url := os.environ.get("RABBITMQ_URL"):
        parts = urlsplit(url)
        return BrokerChoice(url, f"RABBITMQ_URL ({parts.hostname}:{parts.port or 5672})")
    if port_answers("127.0.0.1", 5672):
        return BrokerChoice(LOCAL_BROKER, "local broker at 127.0.0.1:5672")
    if start_local_broker():
        return BrokerChoice(LOCAL_BROKER, "local broker at 127.0.0.1:5672 (started by the tests)")
    if docker_answers():
        return BrokerChoice("testcontainers", "testcontainers RabbitMQ")
    return (
        "No RabbitMQ for the tests: set RABBITMQ_URL, or start one on 127.0.0.1:5672 "
        "(`rabbitmq-server -detached`, or `apt-get install rabbitmq-server`), "
        "or run a Docker engine for testcontainers."
    )


def close_connections(name_prefix: str) -> int:
    """Close (server side, as a broker restart would) every connection whose
    `connection_name` starts with `name_prefix`; returns how many. Needs
    `rabbitmqctl` on this machine."""
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
    )
    # Each line: "<rabbit@host.N.N.N>\t[{...},{"connection_name","NAME"},...]". The JSON
    # formatter prints pids in a form close_connection does not accept.
    marker = f'{{"connection_name","{name_prefix}'
    pids = [line.split("\t", 1)[0] for line in listing.stdout.splitlines() if marker in line]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "close_connection", pid, "closed by a test"],
            check=True,
            capture_output=True,
        )
    return len(pids)
