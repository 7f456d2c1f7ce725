"""`RABBITMQ_URL` naming one broker or the nodes of a RabbitMQ cluster.

A cluster is written the way MongoDB writes a replica set: several
`host[:port]` in one URL, sharing its credentials, vhost and query,
`amqp://user:secret@rabbit-0:5672,rabbit-1:5672,rabbit-2:5672/callbot`.
Each node becomes a URL of its own, since an AMQP connection goes to one
node; the connection layer tries them in turn. Pure: no I/O.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("amqp", "amqps")
_DEFAULT_PORT = {"amqp": 5672, "amqps": 5671}


class BadBrokerUrl(ValueError):
    """`RABBITMQ_URL` cannot name a broker; the message says why."""


def node_urls(url: str) -> tuple[str, ...]:
    """One URL per node of `url`, in the order given; raises `BadBrokerUrl`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES:
        raise BadBrokerUrl(
            f"RABBITMQ_URL must start with amqp:// or amqps://, not {parts.scheme or '(none)'}://"
        )
    credentials, _, hosts = parts.netloc.rpartition("@")
    nodes = [host.strip() for host in hosts.split(",")]
    if not nodes or not all(nodes):
        raise BadBrokerUrl(
            "RABBITMQ_URL names no host (or an empty one between commas): "
            "amqp://user:password@host[:port][,host[:port]...]/vhost"
        )
    for node in nodes:
        _check_port(node)
    prefix = f"{credentials}@" if credentials else ""
    return tuple(
        urlunsplit(parts._replace(netloc=f"{prefix}{node}", scheme=parts.scheme)) for node in nodes
    )


def node_address(url: str) -> str:
    """`host:port` of a one-node URL, without the credentials."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or _DEFAULT_PORT.get(parts.scheme, 5672)}"


def _check_port(node: str) -> None:
    host, colon, port = node.rpartition(":") if not node.endswith("]") else (node, "", "")
    if not colon:
        return
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadBrokerUrl(f"RABBITMQ_URL: {node!r} is not host:port with a port of 1-65535")
