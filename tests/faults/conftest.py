"""The faults suite: failures provoked on real processes (issue 7).

Makes `faults_harness` importable (pytest runs with --import-mode=importlib,
which leaves test directories off sys.path) and prints the figures every test
recorded, for docs/reliability.md, at the end of the run. Set
CALLBOT_FAULTS_REPORT=path.json to keep them as JSON too.

Fixtures, one of each per test module:
- `stack`: callbot running with `stack_options`: by default the email agent
  (`EMAIL_AGENT_ID`), no LLM. A module changes that by defining a fixture
  `stack_options` of its own, or a `stack` of its own for more.
- `fake_llm`: the scripted LLM, as a process of its own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from faults_harness import REPORT, RunningStack, StackOptions, report_path, running_stack

from callbot.testkit.fake_openai import FakeOpenAIProcess, start_fake_openai_process


@pytest.fixture(scope="module")
def stack_options() -> StackOptions:
    return StackOptions()


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    rabbitmq_url: str,
    mongodb_url: str,
    stack_options: StackOptions,
) -> Iterator[RunningStack]:
    # The services' logs go to a folder named after the module: test_llm_faults.py, llm-faults0.
    log_dir = tmp_path_factory.mktemp(request.path.stem.removeprefix("test_").replace("_", "-"))
    with running_stack(log_dir, rabbitmq_url, mongodb_url, stack_options) as running:
        yield running


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAIProcess]:
    with start_fake_openai_process() as fake:
        yield fake


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT.rows:
        return
    terminalreporter.section("faults suite: figures for docs/reliability.md")
    for line in REPORT.lines():
        terminalreporter.write_line(line)
    totals = {
        "faults injected": sum(row.faults_injected for row in REPORT.rows),
        "turns lost": sum(row.turns_lost for row in REPORT.rows),
        "duplicate turns": sum(row.duplicate_turns for row in REPORT.rows),
        "fuzz cases": sum(row.fuzz_cases for row in REPORT.rows),
        "5xx seen": sum(row.http_5xx for row in REPORT.rows),
    }
    terminalreporter.write_line("totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    if (path := report_path()) is not None:
        REPORT.write(path)
        terminalreporter.write_line(f"figures written to {path}")
