"""``TwilioEmulator``: the emulator served by uvicorn inside the current event loop."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette.types import ASGIApp

from callbot.emulator.app import build_app
from callbot.emulator.embedded import EmbeddedApp
from callbot.emulator.process import EMULATOR_NAME
from callbot.emulator.records import CallRecord
from callbot.emulator.scenario import Scenario, parse_scenario
from callbot.emulator.switchboard import Fault, FaultPlan, RecordedRequest, Switchboard
from callbot.emulator.webhooks import TWILIO_WEBHOOK_TIMEOUT_S


class TwilioEmulator(EmbeddedApp):
    """Fake Twilio REST API plus call player, for in-process tests::

    async with TwilioEmulator("AC...", "token") as twilio:
        twilio.add_scenario({"to": "+15005550006", "steps": [{"say": "Hi"}]})
        client.api.base_url = twilio.base_url
        ...
        call = await twilio.wait_for_call(sid)
    """

    name = EMULATOR_NAME

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        scenarios: Iterable[Scenario] = (),
        *,
        webhook_timeout_s: float = TWILIO_WEBHOOK_TIMEOUT_S,
    ) -> None:
        self.switchboard = Switchboard(
            account_sid, auth_token, scenarios, webhook_timeout_s=webhook_timeout_s
        )

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``: what replaces ``https://api.twilio.com`` for the client."""
        return self.serving.url

    def _open(self) -> ASGIApp:
        # Opened before serving: the first request may place a call.
        self.switchboard.open()
        return build_app(self.switchboard)

    async def _close(self) -> None:
        await self.switchboard.close()

    def add_scenario(self, scenario: Scenario | Mapping[str, Any]) -> Scenario:
        """Answer calls to ``scenario.to`` (or every other call, without ``to``) this way."""
        if not isinstance(scenario, Scenario):
            scenario = parse_scenario(scenario, source="add_scenario()")
        self.switchboard.scenarios.register(scenario)
        return scenario

    def fail_next_creates(self, *faults: Fault | Mapping[str, Any]) -> None:
        """The next ``calls.create`` requests answer these errors, in order."""
        self.switchboard.inject_faults(
            FaultPlan(calls_create=[Fault.model_validate(fault) for fault in faults])
        )

    @property
    def calls(self) -> dict[str, CallRecord]:
        return {sid: player.record for sid, player in self.switchboard.players.items()}

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self.switchboard.requests)

    async def wait_for_call(self, call_sid: str, timeout_s: float = 30.0) -> CallRecord:
        """The call once fully finished, recording callback included."""
        return await self.switchboard.wait_for_call(call_sid, timeout_s)
