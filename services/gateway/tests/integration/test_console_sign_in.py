"""Console sign-in through the whole app: wrong keys from one address are
refused 429 with `Retry-After` past the limit, and a right key signs in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_harness import API_KEY, gateway_settings, running_gateway

from callbot.common.settings import Settings

pytestmark = pytest.mark.rabbit


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    configured = gateway_settings(
        settings, console_sign_in_failures=3, console_sign_in_window_s=600
    )
    async with running_gateway(configured) as (_app, client):
        yield client


async def _sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/console/sign-in", data={"api_key": key, "next": "/console/calls"})


async def test_wrong_keys_past_the_limit_are_refused_until_the_window_passes(
    client: httpx.AsyncClient,
) -> None:
    # A right key resets the count: two wrong, one right, then three wrong still answer 401.
    assert [(await _sign_in(client, f"guess-{n}")).status_code for n in range(2)] == [401, 401]
    assert (await _sign_in(client, API_KEY)).status_code == 303
    assert [(await _sign_in(client, f"guess-{n}")).status_code for n in range(3)] == [401] * 3

    refused = await _sign_in(client, "guess-4")
    assert refused.status_code == 429, refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= 600
    assert "Too many failed sign-ins from this address" in refused.text
    # Even the right key waits: the address is held, not the guess.
    held = await _sign_in(client, API_KEY)
    assert held.status_code == 429
    assert "set-cookie" not in held.headers
