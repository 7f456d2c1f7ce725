"""Fixtures shared by the fake OpenAI server's tests: the server in this
process, and the real ``openai`` client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from callbot.testkit.fake_openai import FakeOpenAI


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0) as c:
        yield c
