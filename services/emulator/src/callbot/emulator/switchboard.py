"""The emulator's state and operations, shared by its HTTP app and its Python API.

Holds the scenarios, the calls placed (one ``CallPlayer`` each), the scripted REST
faults and the log of REST requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime

import httpx
from pydantic import BaseModel, ConfigDict, Field

from callbot.emulator.player import CallPlayer
from callbot.emulator.records import CallRecord
from callbot.emulator.resources import (
    FormFields,
    TwilioApiError,
    new_sid,
    parse_call_request,
    parse_call_update,
)
from callbot.emulator.scenario import Scenario, ScenarioBook
from callbot.emulator.webhooks import TWILIO_WEBHOOK_TIMEOUT_S, DroppableCallback, WebhookSender

logger = logging.getLogger("callbot.emulator")


class Fault(BaseModel):
    """One scripted REST error, answered in Twilio's error shape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: int = Field(ge=400, le=599)
    code: int
    message: str = "Service Unavailable (scripted by the emulator)"


class FaultPlan(BaseModel):
    """``POST /_control/faults``: errors the next requests answer, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calls_create: list[Fault] = Field(default_factory=list)


class CallbackSwitch(BaseModel):
    """``POST /_control/callbacks``: the kinds of callback not sent from now on
    (recorded with an error, never delivered), as when Twilio's callbacks are
    lost; an empty list sends them all again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    drop: list[DroppableCallback] = Field(default_factory=list)


class RecordedRequest(BaseModel):
    """One REST request as received."""

    at: datetime
    method: str
    path: str
    query: str
    form: dict[str, list[str]]
    auth_user: str | None
    status: int | None = None  # the HTTP status answered


class Switchboard:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        scenarios: Iterable[Scenario] = (),
        *,
        webhook_timeout_s: float = TWILIO_WEBHOOK_TIMEOUT_S,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.scenarios = ScenarioBook(scenarios)
        self.players: dict[str, CallPlayer] = {}
        self.requests: list[RecordedRequest] = []
        self._create_faults: deque[Fault] = deque()
        self._webhook_timeout_s = webhook_timeout_s
        self._client: httpx.AsyncClient | None = None
        self._sender: WebhookSender | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        """Ready to place calls; call inside the event loop the calls will play on."""
        # Twilio follows redirects when it fetches TwiML.
        self._client = httpx.AsyncClient(
            timeout=self._webhook_timeout_s, follow_redirects=True, trust_env=False
        )
        self._sender = WebhookSender(self.auth_token, self._client)

    async def close(self) -> None:
        """Stops the calls still playing (no further callbacks) and closes connections."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        self._client = self._sender = None

    def inject_faults(self, plan: FaultPlan) -> None:
        self._create_faults.extend(plan.calls_create)

    def drop_callbacks(self, kinds: Iterable[DroppableCallback]) -> None:
        """Status, recording or AMD callbacks of every call are dropped from now on."""
        if self._sender is None:
            raise RuntimeError("the switchboard is closed; open() it inside the event loop")
        self._sender.dropped = frozenset(kinds)

    def reset(self) -> None:
        """Forget calls, requests, faults and runtime scenarios (calls in flight play on)."""
        self.players.clear()
        self.requests.clear()
        self._create_faults.clear()
        self.scenarios.reset()

    def place_call(self, account_sid: str, form: FormFields) -> CallRecord:
        """``calls.create``: validates, answers ``queued``, and starts playing the call."""
        if self._sender is None:
            raise RuntimeError("the switchboard is closed; open() it inside the event loop")
        if self._create_faults:
            fault = self._create_faults.popleft()
            raise TwilioApiError(fault.status, fault.code, fault.message)
        request = parse_call_request(form)
        scenario = self.scenarios.for_number(request.to)
        now = datetime.now(UTC)
        record = CallRecord(
            sid=new_sid("CA"),
            account_sid=account_sid,
            to=request.to,
            from_=request.from_,
            scenario=scenario.name,
            created_at=now,
            updated_at=now,
            request={name: list(values) for name, values in form.items()},
        )
        player = CallPlayer(record, request, scenario, self._sender)
        self.players[record.sid] = player
        task = asyncio.create_task(player.play(), name=f"call-{record.sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        logger.info(
            "call %s placed to %s: scenario %r (%s)",
            record.sid,
            record.to,
            scenario.name,
            scenario.outcome,
        )
        return record

    def update_call(self, call_sid: str, form: FormFields) -> CallRecord:
        player = self.player(call_sid)
        player.update(parse_call_update(form))
        return player.record

    def player(self, call_sid: str) -> CallPlayer:
        player = self.players.get(call_sid)
        if player is None:
            raise KeyError(call_sid)
        return player

    async def wait_for_call(self, call_sid: str, timeout_s: float) -> CallRecord:
        """The call's record once it has fully finished; TimeoutError if it has not in time."""
        player = self.player(call_sid)
        async with asyncio.timeout(timeout_s):
            await player.finished.wait()
        return player.record
