"""pytest fixtures for every callbot test suite (registered as the `callbot` plugin).

- `rabbitmq_url`: RABBITMQ_URL, else the local broker (started if installed
  but stopped), else testcontainers, else the session fails saying how to get
  a broker. Never a skip.
- `mongodb_url`: MONGODB_URL, else testcontainers, else the MongoDB-wire
  stand-in. The session header says which; `realmongo` tests skip on the
  stand-in, with the reason in the summary.
- `settings`: a `Settings` with a namespace and a database of the test's own,
  so tests never see each other's messages or documents.
- `amqp_connection`, `topology`, `mongo_db`: opened for the test, removed after.
- `s3_server`: one S3-compatible server process (moto) for the session;
  `object_store`: an `S3ObjectStore` on it with the test's own buckets
  (`settings.s3_recordings_bucket`, `settings.s3_agent_files_bucket`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from callbot.common.messaging import Topology, connect, declare_topology, delete_topology
from callbot.common.mongo import Document
from callbot.common.object_storage import S3ObjectStore
from callbot.common.settings import Settings
from callbot.testkit.mongo import MongoChoice, choose_mongo, running_mongo
from callbot.testkit.rabbit import BrokerChoice, choose_broker
from callbot.testkit.s3_server import TEST_CREDENTIALS, S3ServerProcess

_MONGO_CHOICE = pytest.StashKey[MongoChoice]()
_BROKER_CHOICE = pytest.StashKey["BrokerChoice | str"]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_MONGO_CHOICE] = choose_mongo()
    config.stash[_BROKER_CHOICE] = choose_broker()


def pytest_report_header(config: pytest.Config) -> list[str]:
    broker = config.stash[_BROKER_CHOICE]
    mongo = config.stash[_MONGO_CHOICE]
    return [
        f"callbot RabbitMQ: {broker.how if isinstance(broker, BrokerChoice) else 'NONE'}",
        f"callbot MongoDB: {mongo.describe()}",
    ]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    terminalreporter.write_line(f"callbot MongoDB used: {config.stash[_MONGO_CHOICE].describe()}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash[_MONGO_CHOICE].is_real:
        return
    skip = pytest.mark.skip(reason="needs a real MongoDB server; this run uses the stand-in")
    for item in items:
        if "realmongo" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def rabbitmq_url(pytestconfig: pytest.Config) -> Iterator[str]:
    choice = pytestconfig.stash[_BROKER_CHOICE]
    if isinstance(choice, str):
        pytest.fail(choice, pytrace=False)
    if choice.url != "testcontainers":
        yield choice.url
        return
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-management") as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5672)
        yield f"amqp://guest:guest@{host}:{port}/"


@pytest.fixture(scope="session")
def mongodb_url(pytestconfig: pytest.Config) -> Iterator[str]:
    with running_mongo(pytestconfig.stash[_MONGO_CHOICE]) as url:
        yield url


@pytest.fixture
def namespace() -> str:
    """A name of the test's own for exchanges, queues and the database."""
    return f"t{uuid.uuid4().hex[:10]}"


_NEEDS_MONGO = ("mongo", "e2e", "faults")


@pytest.fixture
def settings(request: pytest.FixtureRequest, rabbitmq_url: str, namespace: str) -> Settings:
    """Settings of the test's own; MongoDB is started only for tests marked
    `mongo`, `e2e` or `faults`."""
    needs_mongo = any(request.node.get_closest_marker(name) for name in _NEEDS_MONGO)
    mongodb_url = (
        request.getfixturevalue("mongodb_url") if needs_mongo else "mongodb://127.0.0.1:1/"
    )
    return Settings(
        rabbitmq_url=SecretStr(rabbitmq_url),
        rabbitmq_namespace=namespace,
        mongodb_url=SecretStr(mongodb_url),
        mongodb_db=f"callbot_{namespace}",
        rabbitmq_reconnect_interval_s=0.5,
        s3_recordings_bucket=f"{namespace}-recordings",
        s3_agent_files_bucket=f"{namespace}-agent-files",
    )


@pytest.fixture
async def amqp_connection(
    settings: Settings, namespace: str
) -> AsyncIterator[AbstractRobustConnection]:
    connection = await connect(settings, f"test-{namespace}-fixture", wait_s=5)
    yield connection
    await connection.close()


@pytest.fixture
async def topology(
    amqp_connection: AbstractRobustConnection, settings: Settings
) -> AsyncIterator[Topology]:
    """The test's own topology, declared, and deleted after the test."""
    topology = Topology(settings.rabbitmq_namespace, settings.rabbitmq_delivery_limit)
    channel = await amqp_connection.channel()
    await declare_topology(channel, topology)
    yield topology
    cleanup = await amqp_connection.channel()
    await delete_topology(cleanup, topology)
    await cleanup.close()


@pytest.fixture
async def mongo_db(settings: Settings, mongodb_url: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        mongodb_url, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    database = client[settings.mongodb_db]
    yield database
    await client.drop_database(settings.mongodb_db)
    await client.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3ServerProcess]:
    """An S3-compatible server process (moto) for the whole session; the test
    process gets its credentials in the environment, as services do."""
    for name, value in TEST_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    server = S3ServerProcess(Path(tmp_path_factory.mktemp("s3")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def object_store(
    s3_server: S3ServerProcess, settings: Settings
) -> AsyncIterator[S3ObjectStore]:
    """The S3 adapter on the session's server, with the test's own buckets created."""
    store = S3ObjectStore(
        settings.model_copy(update={"s3_endpoint_url": s3_server.endpoint_url}).s3_config()
    )
    await store.open()
    for bucket in (settings.s3_recordings_bucket, settings.s3_agent_files_bucket):
        await store.create_bucket(bucket)
    yield store
    await store.close()
