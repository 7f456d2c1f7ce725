"""Makes `gateway_harness` importable (pytest runs with --import-mode=importlib,
which leaves test directories off sys.path), and the fixtures the gateway's
test modules share: `tap` (every event published) and `fake_twilio`."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from callbot.common.messaging import Topology

sys.path.insert(0, str(Path(__file__).parent))

from gateway_harness import EventTap, FakeTwilio, serving_fake_twilio


@pytest.fixture
async def tap(amqp_connection: AbstractRobustConnection, topology: Topology) -> EventTap:
    tap = EventTap()
    await tap.start(amqp_connection, topology)
    return tap


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with serving_fake_twilio() as fake:
        yield fake
