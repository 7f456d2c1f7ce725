"""The end-to-end suite (issue 6): whole calls through callbot's real processes.

One stack per test module (starting five processes costs seconds, a call
costs about one): tests share it and keep apart by using agents and `to`
numbers of their own. Makes `e2e_harness` importable (pytest runs with
--import-mode=importlib, which leaves test directories off sys.path).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from e2e_harness import E2EStack, running_e2e_stack

from callbot.testkit.fake_openai import FakeOpenAIProcess, start_fake_openai_process


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAIProcess]:
    """The scripted OpenAI-compatible server, as a process of its own."""
    with start_fake_openai_process() as fake:
        yield fake


@pytest.fixture(scope="module")
def e2e(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    rabbitmq_url: str,
    mongodb_url: str,
    fake_llm: FakeOpenAIProcess,
) -> Iterator[E2EStack]:
    log_dir = tmp_path_factory.mktemp(f"e2e-{request.module.__name__.rpartition('.')[2]}")
    with running_e2e_stack(log_dir, rabbitmq_url, mongodb_url, fake_llm) as stack:
        yield stack
