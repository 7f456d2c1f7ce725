"""The faults suite: failures provoked on real processes (issue 7).

Makes `faults_harness` importable (pytest runs with --import-mode=importlib,
which leaves test directories off sys.path) and prints the figures every test
recorded, for docs/reliability.md, at the end of the run. Set
CALLBOT_FAULTS_REPORT=path.json to keep them as JSON too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from faults_harness import REPORT, report_path


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
