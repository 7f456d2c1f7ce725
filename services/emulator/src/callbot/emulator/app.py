"""HTTP face of the emulator: Twilio's REST API for calls, and ``/_control`` for tests."""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Body, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from callbot.emulator.call_recordings import recordings_page
from callbot.emulator.recordings import recordings_router
from callbot.emulator.records import CallRecord
from callbot.emulator.resources import (
    API_VERSION,
    TwilioApiError,
    authentication_error,
    call_resource,
    not_found,
)
from callbot.emulator.scenario import ScenarioError, parse_scenario
from callbot.emulator.switchboard import CallbackSwitch, FaultPlan, RecordedRequest, Switchboard

_ACCOUNT_PATH = f"/{API_VERSION}/Accounts/{{account_sid}}"


def build_app(switchboard: Switchboard) -> FastAPI:
    app = FastAPI(title="callbot Twilio emulator", openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(TwilioApiError)
    async def twilio_error(request: Request, exc: TwilioApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.middleware("http")
    async def record_rest_requests(request: Request, call_next: Any) -> Response:
        if not request.url.path.startswith(f"/{API_VERSION}/"):
            response: Response = await call_next(request)
            return response
        body = (await request.body()).decode("utf-8", errors="replace")
        form: dict[str, list[str]] = {}
        for name, value in parse_qsl(body, keep_blank_values=True):
            form.setdefault(name, []).append(value)
        recorded = RecordedRequest(
            at=datetime.now(UTC),
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            form=form,
            auth_user=_basic_auth(request)[0],
        )
        switchboard.requests.append(recorded)
        request.state.form = form
        response = await call_next(request)
        recorded.status = response.status_code
        return response

    def authenticate(request: Request, account_sid: str) -> None:
        user, password = _basic_auth(request)
        if not (
            user is not None
            and password is not None
            and secrets.compare_digest(user, switchboard.account_sid)
            and secrets.compare_digest(password, switchboard.auth_token)
        ):
            raise authentication_error()
        if account_sid != switchboard.account_sid:
            raise not_found(request.url.path)

    def call_player_record(request: Request, call_sid: str) -> CallRecord:
        try:
            return switchboard.player(call_sid).record
        except KeyError:
            raise not_found(request.url.path) from None

    @app.post(f"{_ACCOUNT_PATH}/Calls.json", status_code=201)
    async def create_call(request: Request, account_sid: str) -> dict[str, Any]:
        authenticate(request, account_sid)
        return call_resource(switchboard.place_call(account_sid, request.state.form))

    @app.get(f"{_ACCOUNT_PATH}/Calls/{{call_sid}}.json")
    async def fetch_call(request: Request, account_sid: str, call_sid: str) -> dict[str, Any]:
        authenticate(request, account_sid)
        return call_resource(call_player_record(request, call_sid))

    @app.post(f"{_ACCOUNT_PATH}/Calls/{{call_sid}}.json")
    async def update_call(request: Request, account_sid: str, call_sid: str) -> dict[str, Any]:
        authenticate(request, account_sid)
        call_player_record(request, call_sid)
        return call_resource(switchboard.update_call(call_sid, request.state.form))

    @app.get(f"{_ACCOUNT_PATH}/Calls/{{call_sid}}/Recordings.json")
    async def list_call_recordings(
        request: Request, account_sid: str, call_sid: str
    ) -> dict[str, Any]:
        authenticate(request, account_sid)
        return recordings_page(call_player_record(request, call_sid), request.url.path)

    app.include_router(recordings_router(switchboard, authenticate))

    @app.api_route(f"/{API_VERSION}/{{resource:path}}", methods=["GET", "POST", "DELETE"])
    async def unknown_resource(request: Request, resource: str) -> None:
        # Twilio checks the credentials before it says a resource does not exist.
        authenticate(request, switchboard.account_sid)
        raise not_found(request.url.path)

    @app.get("/_control/calls")
    async def list_calls() -> list[dict[str, Any]]:
        return [_dump(player.record) for player in switchboard.players.values()]

    @app.get("/_control/calls/{call_sid}")
    async def get_call(call_sid: str) -> Response:
        player = switchboard.players.get(call_sid)
        if player is None:
            return _unknown_call(call_sid)
        return JSONResponse(_dump(player.record))

    @app.get("/_control/calls/{call_sid}/wait")
    async def wait_for_call(
        call_sid: str, timeout_s: Annotated[float, Query(alias="timeout", gt=0, le=600)] = 30.0
    ) -> Response:
        if call_sid not in switchboard.players:
            return _unknown_call(call_sid)
        try:
            record = await switchboard.wait_for_call(call_sid, timeout_s)
        except TimeoutError:
            record = switchboard.players[call_sid].record
            return JSONResponse(
                {
                    "message": f"call {call_sid} is still playing after {timeout_s} s "
                    f"(status {record.status}); wait again or look at 'call'",
                    "call": _dump(record),
                },
                status_code=408,
            )
        return JSONResponse(_dump(record))

    @app.get("/_control/scenarios")
    async def list_scenarios() -> list[dict[str, Any]]:
        return [scenario.model_dump(mode="json") for scenario in switchboard.scenarios.all()]

    @app.post("/_control/scenarios", status_code=201)
    async def add_scenario(payload: Annotated[Any, Body()]) -> Response:
        try:
            scenario = parse_scenario(payload, source="POST /_control/scenarios")
        except ScenarioError as exc:
            return JSONResponse({"message": str(exc)}, status_code=422)
        switchboard.scenarios.register(scenario)
        return JSONResponse(scenario.model_dump(mode="json"), status_code=201)

    @app.post("/_control/faults", status_code=204)
    async def inject_faults(plan: FaultPlan) -> None:
        switchboard.inject_faults(plan)

    @app.post("/_control/callbacks", status_code=204)
    async def drop_callbacks(switch: CallbackSwitch) -> None:
        switchboard.drop_callbacks(switch.drop)

    @app.get("/_control/requests")
    async def recorded_requests() -> list[RecordedRequest]:
        return switchboard.requests

    @app.post("/_control/reset", status_code=204)
    async def reset() -> None:
        switchboard.reset()

    return app


def _dump(record: CallRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", by_alias=True)


def _unknown_call(call_sid: str) -> JSONResponse:
    return JSONResponse(
        {"message": f"no call {call_sid} here; GET /_control/calls lists the calls placed"},
        status_code=404,
    )


def _basic_auth(request: Request) -> tuple[str | None, str | None]:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, separator, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return (user, password) if separator else (user, None)
