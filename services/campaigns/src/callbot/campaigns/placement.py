"""Placing a campaign's call: through gateway's `POST /v1/calls`, the one path
every call takes (agent and variable checks, opt-out refusal, Twilio and its
retries, `call.created`). Campaigns never talk to Twilio themselves.

Every placement carries an `Idempotency-Key` derived from the attempt and its
try number, so placing the same try again (a replica died after gateway
answered but before the placement was recorded; a timeout on the request)
returns the call already placed instead of ringing the callee twice.

The answer is sorted into what the dialer does next:
- `Placed`: the call exists (`call_id`);
- `Throttled`: Twilio (429 / 20429) or gateway (503) said "not now": the
  campaign backs off and the attempt waits, not counted as an attempt;
- `Refused`: this recipient cannot be called (opted out: 409; invalid
  number: a 422 about `to`; any other 422, or Twilio refused it: 400,
  `rejected`); the attempt ends with the reason;
- `Unsure`: no answer, or gateway failed (5xx, connection error): the call
  may or may not exist, so the attempt stays claimed and the same key is
  sent again later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CallOrder:
    agent_id: str
    to: str
    recipient: dict[str, Any]
    variables: dict[str, Any]
    idempotency_key: str


@dataclass(frozen=True)
class Placed:
    call_id: str


@dataclass(frozen=True)
class Throttled:
    retry_after_s: float | None
    detail: str


@dataclass(frozen=True)
class Refused:
    reason: str  # "opted_out" | "invalid_number" | "rejected"
    detail: str


@dataclass(frozen=True)
class Unsure:
    detail: str


PlacementResult = Placed | Throttled | Refused | Unsure


class CallPlacer(Protocol):
    async def place(self, order: CallOrder) -> PlacementResult: ...

    async def close(self) -> None: ...


class GatewayCallPlacer:
    def __init__(self, base_url: str, api_key: str) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=REQUEST_TIMEOUT_S,
        )

    async def place(self, order: CallOrder) -> PlacementResult:
        body = {
            "agent_id": order.agent_id,
            "to": order.to,
            "recipient": order.recipient,
            "variables": order.variables,
        }
        try:
            response = await self._client.post(
                "/v1/calls", json=body, headers={"Idempotency-Key": order.idempotency_key}
            )
        except httpx.HTTPError as exc:
            return Unsure(f"gateway did not answer: {exc!r}")
        return classify_answer(response.status_code, response.headers, _json(response))

    async def close(self) -> None:
        await self._client.aclose()


def classify_answer(status: int, headers: Any, body: Any) -> PlacementResult:
    """What gateway's answer to `POST /v1/calls` means for the dialer."""
    detail = body.get("detail") if isinstance(body, dict) else body
    if status in (200, 201) and isinstance(body, dict) and body.get("call_id"):
        return Placed(str(body["call_id"]))
    if status in (429, 503) or _twilio_code(detail) == 20429:
        return Throttled(_retry_after(headers), str(detail))
    if status == 409:
        return Refused("opted_out", str(detail))
    if status == 422:
        return Refused("invalid_number" if _names_the_number(detail) else "rejected", str(detail))
    if status in (400, 404):
        return Refused("rejected", str(detail))
    return Unsure(f"gateway answered {status}: {detail}")


def _names_the_number(detail: Any) -> bool:
    """Whether a 422's errors are about `to` (a validation error list, each
    with a `loc`), rather than, say, a template value the row does not give."""
    if not isinstance(detail, list):
        return False
    locs = [error.get("loc") for error in detail if isinstance(error, dict)]
    return bool(locs) and all(isinstance(loc, list) and loc[-1:] == ["to"] for loc in locs)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def _twilio_code(detail: Any) -> int | None:
    if isinstance(detail, dict):
        code = detail.get("twilio_code")
        return code if isinstance(code, int) else None
    return None


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
