"""The reconciler's decisions (which calls are overdue, what Twilio's record
becomes) and its outcomes against fakes of Twilio, the documents and the broker."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from callbot.common.agents import Agent
from callbot.common.calls import CallDocument
from callbot.common.contracts import (
    CallAnswered,
    CallRecordingUpdated,
    CallStatusChanged,
    Event,
)
from callbot.common.messaging import PublishFailed
from callbot.gateway.domain.reconciliation import (
    TwilioCallState,
    TwilioRecording,
    is_overdue,
    reconciling_events,
)
from callbot.gateway.reconciler import Reconciler
from callbot.gateway.twilio_rest import TwilioApiError, TwilioUnreachable

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BOUNDS = {"ring_timeout_s": 30.0, "max_duration_s": 300.0, "margin_s": 60.0}


def _call(**fields: object) -> CallDocument:
    values: dict[str, object] = {
        "call_id": "c1",
        "call_sid": "CA1",
        "agent_id": "survey",
        "status": "in-progress",
        "status_seq": 2,
        "created_at": T0,
        "answered_at": T0 + timedelta(seconds=5),
        "updated_at": T0 + timedelta(seconds=40),
    }
    return CallDocument.model_validate({**values, **fields})


def _twilio(status: str = "completed", **fields: object) -> TwilioCallState:
    values: dict[str, object] = {
        "sid": "CA1",
        "status": status,
        "duration_s": 42,
        "start_time": T0 + timedelta(seconds=5),
        "end_time": T0 + timedelta(seconds=47),
        "answered_by": None,
    }
    return TwilioCallState(**{**values, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "seconds_after_t0", "overdue"),
    [
        ({}, 5 + 300 + 60 - 1, False),  # in progress, within max_duration + margin
        ({}, 5 + 300 + 60, True),
        ({"status": "ringing", "answered_at": None}, 30 + 60 - 1, False),
        ({"status": "ringing", "answered_at": None}, 30 + 60, True),
        ({"status": "queued", "answered_at": None}, 30 + 60, True),
        ({"status": "completed"}, 10_000, False),  # final: nothing to do
        ({"call_sid": None}, 10_000, False),  # Twilio never gave a CallSid
    ],
)
def test_a_call_is_overdue_past_what_twilio_allows_plus_the_margin(
    fields: dict[str, object], seconds_after_t0: int, overdue: bool
) -> None:
    now = T0 + timedelta(seconds=seconds_after_t0)
    assert is_overdue(_call(**fields), now, **BOUNDS) is overdue


def test_twilios_final_record_becomes_the_callback_events_final_status_last() -> None:
    call = _call(answered_at=None)
    recording = TwilioRecording(
        sid="RE1", status="completed", duration_s=41, url="https://r/RE1", started_at=T0
    )
    events = reconciling_events(call, _twilio(answered_by="human"), [recording])

    answered, recorded, status = events
    assert isinstance(answered, CallAnswered)
    assert (answered.occurred_at, answered.answered_by) == (T0 + timedelta(seconds=5), "human")
    assert isinstance(recorded, CallRecordingUpdated)
    assert (recorded.recording.sid, recorded.recording.duration_s) == ("RE1", 41)
    assert recorded.recording.started_at == T0  # the transcript's alignment needs it
    assert isinstance(status, CallStatusChanged)
    assert (status.status, status.call_duration, status.sequence_number) == ("completed", 42, 3)
    assert status.occurred_at == T0 + timedelta(seconds=47)
    assert status.params["CallbackSource"] == "reconciler"


def test_known_answer_and_recording_are_not_published_again() -> None:
    call = _call(recording={"sid": "RE1", "status": "completed"})
    recording = TwilioRecording(sid="RE1", status="completed", duration_s=41, url=None)
    [status] = reconciling_events(call, _twilio(), [recording])
    assert isinstance(status, CallStatusChanged)


def test_a_call_twilio_still_has_going_gives_no_event() -> None:
    assert reconciling_events(_call(), _twilio("in-progress"), []) == []


class FakeCalls:
    def __init__(self, calls: Sequence[CallDocument]) -> None:
        self.calls = list(calls)

    async def quiet_non_final_calls(
        self, statuses: Sequence[str], *, quiet_since: datetime, limit: int
    ) -> list[CallDocument]:
        return [c for c in self.calls if c.status in statuses][:limit]

    async def agent(self, agent_id: str) -> Agent | None:
        return Agent(agent_id=agent_id, name="S", greeting="Hi", prompt="P", max_duration_s=300)


class FakeTwilio:
    def __init__(self, states: dict[str, TwilioCallState | Exception]) -> None:
        self.states = states
        self.asked: list[str] = []

    async def fetch(self, call_sid: str) -> TwilioCallState:
        self.asked.append(call_sid)
        state = self.states[call_sid]
        if isinstance(state, Exception):
            raise state
        return state

    async def recordings(self, call_sid: str) -> list[TwilioRecording]:
        return [TwilioRecording(sid=f"RE-{call_sid}", status="completed", duration_s=1, url=None)]


class FakeBroker:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.events: list[Event] = []

    async def publish(self, event: Event) -> None:
        if self.fail:
            raise PublishFailed("broker away")
        self.events.append(event)


async def test_a_sweep_reconciles_only_overdue_calls_and_counts_outcomes() -> None:
    calls = [
        _call(call_id="done", call_sid="CA-done"),
        _call(call_id="alive", call_sid="CA-alive"),
        _call(call_id="gone", call_sid="CA-gone"),
        _call(call_id="down", call_sid="CA-down"),
        _call(call_id="young", call_sid="CA-young", answered_at=T0 + timedelta(seconds=900)),
    ]
    twilio = FakeTwilio(
        {
            "CA-done": _twilio(sid="CA-done"),
            "CA-alive": _twilio("in-progress", sid="CA-alive"),
            "CA-gone": TwilioApiError(404, 20404, "not found"),
            "CA-down": TwilioUnreachable("no route"),
        }
    )
    broker = FakeBroker()
    reconciler = Reconciler(
        FakeCalls(calls),
        twilio,
        broker,
        margin_s=60,
        batch=100,
        twilio_rps=1000,
        clock=lambda: T0 + timedelta(seconds=1000),
    )

    outcomes = await reconciler.sweep()

    assert outcomes == {"finalized": 1, "still_active": 1, "not_found": 1, "failed": 1}
    assert "CA-young" not in twilio.asked
    assert [(e.type, e.call_id) for e in broker.events] == [
        ("call.recording", "done"),
        ("call.status", "done"),
    ]


async def test_an_unconfirmed_event_leaves_the_call_for_the_next_sweep() -> None:
    reconciler = Reconciler(
        FakeCalls([_call()]),
        FakeTwilio({"CA1": _twilio()}),
        FakeBroker(fail=True),
        margin_s=60,
        batch=100,
        twilio_rps=1000,
        clock=lambda: T0 + timedelta(seconds=1000),
    )
    assert await reconciler.sweep() == {"failed": 1}
