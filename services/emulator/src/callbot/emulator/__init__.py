"""Twilio emulator: a fake Twilio REST API for calls and a scripted call player.

In-process: ``TwilioEmulator``; as a separate process: ``start_emulator_process``; from
the command line: ``python -m callbot.emulator``.
"""

from callbot.emulator.process import (
    AsyncEmulatorControl,
    EmulatorControl,
    EmulatorProcess,
    start_emulator_process,
)
from callbot.emulator.records import CallError, CallRecord, ConversationEntry, WebhookRecord
from callbot.emulator.scenario import Scenario, ScenarioError, load_scenario_dir
from callbot.emulator.server import TwilioEmulator
from callbot.emulator.switchboard import Fault, RecordedRequest

__all__ = [
    "AsyncEmulatorControl",
    "CallError",
    "CallRecord",
    "ConversationEntry",
    "EmulatorControl",
    "EmulatorProcess",
    "Fault",
    "RecordedRequest",
    "Scenario",
    "ScenarioError",
    "TwilioEmulator",
    "WebhookRecord",
    "load_scenario_dir",
    "start_emulator_process",
]
