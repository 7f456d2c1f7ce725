"""Connection settings for a RabbitMQ cluster and a MongoDB replica set.

- `RABBITMQ_URL` naming several nodes is parsed into one URL per node, and a
  robust connection fails over between them: two TCP fronts stand for two
  nodes of a cluster (both lead to the one real broker), and the node a
  connection is on is then closed.
- A MongoDB replica set is named in `MONGODB_URL`; every client callbot
  creates writes with `w=majority`.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aio_pika
import pytest
from pydantic import SecretStr, ValidationError
from pymongo import WriteConcern

from callbot.common.broker_nodes import BadBrokerUrl, node_address, node_urls
from callbot.common.messaging import connect, connect_once, is_connected
from callbot.common.messaging.connection import ClusterConnection
from callbot.common.mongo import create_mongo_client
from callbot.common.settings import Settings
from callbot.testkit.processes import free_port
from callbot.testkit.tcp_front import TcpFront

CLUSTER = "amqp://callbot:s3cret@rabbit-0:5672,rabbit-1,rabbit-2:5673/callbot?heartbeat=30"


def test_one_url_per_node_with_the_credentials_vhost_and_query_of_the_whole() -> None:
    assert node_urls(CLUSTER) == (
        "amqp://callbot:s3cret@rabbit-0:5672/callbot?heartbeat=30",
        "amqp://callbot:s3cret@rabbit-1/callbot?heartbeat=30",
        "amqp://callbot:s3cret@rabbit-2:5673/callbot?heartbeat=30",
    )
    assert [node_address(url) for url in node_urls(CLUSTER)] == [
        "rabbit-0:5672",
        "rabbit-1:5672",
        "rabbit-2:5673",
    ]
    assert node_urls("amqps://broker.example.com/") == ("amqps://broker.example.com/",)
    assert node_address("amqps://broker.example.com/") == "broker.example.com:5671"
    assert node_urls("amqp://guest:guest@[::1]:5672,[::2]/") == (
        "amqp://guest:guest@[::1]:5672/",
        "amqp://guest:guest@[::2]/",
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://rabbit-0/", "must start with amqp://"),
        ("amqp://u:p@/vhost", "names no host"),
        ("amqp://u:p@rabbit-0,,rabbit-1/", "names no host"),
        ("amqp://u:p@rabbit-0:99999/", "port of 1-65535"),
        ("amqp://u:p@rabbit-0:five/", "port of 1-65535"),
    ],
)
def test_a_url_that_names_no_broker_is_refused_saying_why(url: str, says: str) -> None:
    with pytest.raises(BadBrokerUrl, match=says):
        node_urls(url)


def test_settings_refuse_a_bad_broker_url_without_showing_its_password() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(rabbitmq_url=SecretStr("amqp://u:hunter2@rabbit-0,,rabbit-1/"))
    assert "names no host" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    settings = Settings(rabbitmq_url=SecretStr(CLUSTER))
    assert settings.rabbitmq_nodes == node_urls(CLUSTER)


async def test_a_replica_set_url_gives_a_majority_writing_client() -> None:
    settings = Settings(
        mongodb_url=SecretStr("mongodb://u:p@m0:27017,m1:27017,m2:27017/?replicaSet=rs0"),
    )
    client = create_mongo_client(settings, "persistence")  # connects on first use only
    try:
        assert client.options.replica_set_name == "rs0"
        assert set(client.topology_description.server_descriptions()) == {
            ("m0", 27017),
            ("m1", 27017),
            ("m2", 27017),
        }
        assert client.write_concern == WriteConcern(w="majority")
        assert client["callbot"]["calls"].write_concern == WriteConcern(w="majority")
    finally:
        await client.close()


def _broker_address(rabbitmq_url: str) -> tuple[str, int]:
    parts = urlsplit(rabbitmq_url)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def _cluster_url(rabbitmq_url: str, ports: list[int]) -> str:
    parts = urlsplit(rabbitmq_url)
    credentials = parts.netloc.rpartition("@")[0]
    nodes = ",".join(f"127.0.0.1:{port}" for port in ports)
    return parts._replace(netloc=f"{credentials}@{nodes}").geturl()


@pytest.mark.rabbit
async def test_start_up_skips_a_node_that_is_down(settings: Settings, rabbitmq_url: str) -> None:
    broker = _broker_address(rabbitmq_url)
    with TcpFront([broker]) as node:
        url = _cluster_url(rabbitmq_url, [free_port(), node.port])
        cluster = settings.model_copy(update={"rabbitmq_url": SecretStr(url)})
        connection = await connect(cluster, "cluster-start-test", wait_s=10)
        try:
            assert isinstance(connection, ClusterConnection)
            assert connection.url.port == node.port
            assert is_connected(connection)
        finally:
            await connection.close()
        plain = await connect_once(cluster, "cluster-start-test-plain")
        await plain.close()


@pytest.mark.rabbit
async def test_a_connection_whose_node_dies_comes_back_on_another_with_its_consumer(
    settings: Settings, rabbitmq_url: str
) -> None:
    broker = _broker_address(rabbitmq_url)
    node_a, node_b = TcpFront([broker]).start(), TcpFront([broker]).start()
    url = _cluster_url(rabbitmq_url, [node_a.port, node_b.port])
    cluster = settings.model_copy(update={"rabbitmq_url": SecretStr(url)})
    connection = await connect(cluster, "cluster-failover-test", wait_s=10)
    received: asyncio.Queue[bytes] = asyncio.Queue()
    try:
        assert connection.url.port == node_a.port
        channel = await connection.channel()
        queue = await channel.declare_queue(
            f"{settings.rabbitmq_namespace}.failover", exclusive=True
        )

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await received.put(message.body)

        await queue.consume(on_message, no_ack=True)
        reconnected = asyncio.Event()
        connection.reconnect_callbacks.add(lambda *_: reconnected.set())

        await asyncio.to_thread(node_a.close)  # node A dies: its connections drop, it refuses
        await asyncio.wait_for(reconnected.wait(), 30)

        assert connection.url.port == node_b.port
        assert is_connected(connection)
        await channel.default_exchange.publish(aio_pika.Message(b"after"), routing_key=queue.name)
        assert await asyncio.wait_for(received.get(), 10) == b"after"
    finally:
        await connection.close()
        node_a.close()
        node_b.close()
