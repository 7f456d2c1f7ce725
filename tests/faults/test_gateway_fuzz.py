"""Issue 7, item 7: bad input at the gateway, fuzzed with Hypothesis against the
running gateway process (with dialog, persistence and the emulator behind it).

- Twilio's webhooks get random form bodies (Twilio's fields with odd values,
  fields of their own, bytes that are no form) and random query strings,
  first with no, a wrong or a misplaced `X-Twilio-Signature`: nothing may be
  published or asked of dialog, which gateway's own counters and a queue bound
  to every event show. Then correctly signed: gateway must turn them into
  events, RPCs or a 4xx, never a 5xx.
- `/v1/calls` and `/v1/agents` get requests drawn from gateway's OpenAPI
  schemas (mostly fitting them, sometimes not), random ids, with and without
  the API key, and bodies that are not JSON.

No answer may be a 5xx, and gateway may log no unhandled exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from faults_harness import (
    REPORT,
    EventTap,
    Figures,
    RunningStack,
    StackOptions,
    agent_definition,
    log_records,
    settle,
    unhandled_errors,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from callbot.emulator.webhooks import twilio_signature
from callbot.testkit.stack import API_KEY, AUTH_TOKEN

pytestmark = pytest.mark.faults

AGENT_ID = "fuzz"
FUZZ = settings(
    deadline=None,
    database=None,  # no .hypothesis directory in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
CASES: dict[str, int] = {}
ANSWERS: dict[str, list[int]] = {}


@pytest.fixture(scope="module")
def stack_options() -> StackOptions:
    return StackOptions(
        agents={AGENT_ID: agent_definition(past_calls=0)},
        # Signed voice webhooks for calls nobody knows wait for dialog: keep that short.
        dialog_deadline_ms=600,
        # Most fuzzed call ids were never placed: they are orphans at once.
        extra_env={"ORPHAN_WAIT_MS": "0"},
    )


# Calls callbot placed (stored as persistence stores call.created): the fuzzer
# names them now and then, so signed callbacks reach dialog and the events.
PLACED = tuple(f"fuzz-placed-{number}" for number in range(3))


@pytest.fixture(scope="module")
def placed_calls(stack: RunningStack) -> tuple[str, ...]:
    for call_id in PLACED:
        stack.insert_document({"_id": call_id, "agent_id": AGENT_ID, "status": "queued"})
    return PLACED


@pytest.fixture(scope="module")
def everything(stack: RunningStack) -> EventTap:
    """A queue bound to every event of the namespace."""
    return stack.tap("#")


def counted(stack: RunningStack, phase: str, response: httpx.Response) -> httpx.Response:
    CASES[phase] = CASES.get(phase, 0) + 1
    ANSWERS.setdefault(phase, []).append(response.status_code)
    assert response.status_code < 500, (
        f"{response.request.method} {response.request.url} answered "
        f"{response.status_code}: {response.text[:500]}"
    )
    return response


def report_fuzzing(
    phase: str, fault: str, before: Mapping[str, float], after: Mapping[str, float]
) -> None:
    """Item 7's figures: the cases sent in `phase`, and the 5xx gateway counted
    from `before` to `after` (`gateway_counters`)."""
    REPORT.add(
        Figures(
            item="7",
            fault=fault,
            fuzz_cases=CASES[phase],
            http_5xx=int(after["5xx"] - before["5xx"]),
        )
    )


def gateway_counters(stack: RunningStack) -> dict[str, float]:
    """What gateway published and asked, and its 5xx, from its /metrics."""
    text = httpx.get(f"{stack.gateway_url}/metrics", timeout=10).text
    totals = {"events published": 0.0, "rpc calls": 0.0, "5xx": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "callbot_events_published_total":
                totals["events published"] += sample.value
            elif sample.name == "callbot_rpc_seconds_count":
                totals["rpc calls"] += sample.value
            elif sample.name == "callbot_gateway_requests_total" and sample.labels.get(
                "status", ""
            ).startswith("5"):
                totals["5xx"] += sample.value
    return totals


# --- Twilio's webhooks ---------------------------------------------------------

WEBHOOK_PATHS = (
    "/voice/outbound",
    "/voice/process-speech",
    "/voice/amd-status",
    "/call-status",
    "/recording-status",
)
text = st.text(max_size=40)
CALL_STATUSES = (
    *("queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer"),
    *("failed", "canceled", "created", "exploded", ""),
)
numbers = st.one_of(st.integers(-5, 10**6), st.integers(-(2**80), 2**80)).map(str)
TWILIO_FIELDS: dict[str, st.SearchStrategy[str]] = {
    "CallSid": st.from_regex(r"\ACA[0-9a-f]{32}\Z") | text,
    "AccountSid": st.just("AC" + "0" * 31 + "1") | text,
    "CallStatus": st.sampled_from(CALL_STATUSES) | text,
    "SequenceNumber": numbers | text,
    "CallDuration": numbers | text,
    "Timestamp": text,
    "SpeechResult": text,
    "Confidence": st.floats(allow_nan=True).map(str) | text,
    "AnsweredBy": st.sampled_from(["human", "machine_start", "machine_end_beep", "fax", ""]) | text,
    "RecordingSid": st.from_regex(r"\ARE[0-9a-f]{32}\Z") | text,
    "RecordingStatus": st.sampled_from(["in-progress", "completed", "absent", "failed"]) | text,
    "RecordingDuration": numbers | text,
    "RecordingUrl": text,
    "ErrorCode": numbers | text,
    "To": st.just("+15005550006") | text,
    "From": st.just("+15005550001") | text,
}
QUERY_FIELDS: dict[str, st.SearchStrategy[str]] = {
    "call_id": st.sampled_from(PLACED) | st.from_regex(r"\A[0-9a-f]{32}\Z") | text,
    "agent_id": st.just(AGENT_ID) | text,
    "seq": st.integers(1, 20).map(str) | numbers | text,
}


# What Twilio sends to each webhook (query parameters are gateway's own).
TWILIO_SENDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "/voice/outbound": (("call_id", "agent_id"), ("CallSid", "AnsweredBy", "To", "From")),
    "/voice/process-speech": (("call_id", "seq"), ("CallSid", "SpeechResult", "Confidence")),
    "/voice/amd-status": (("call_id", "agent_id"), ("CallSid", "AnsweredBy")),
    "/call-status": (
        ("call_id",),
        ("CallSid", "CallStatus", "SequenceNumber", "CallDuration", "Timestamp", "ErrorCode"),
    ),
    "/recording-status": (
        ("call_id",),
        ("CallSid", "RecordingSid", "RecordingStatus", "RecordingDuration", "RecordingUrl"),
    ),
}
CONTENT_TYPES = (
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "application/json",
    "text/plain",
    "",
)


@st.composite
def webhooks(draw: st.DrawFn) -> dict[str, Any]:
    """A webhook request: path, query, form (or raw bytes) and content type.
    Half of them have the parameters Twilio sends to that webhook, with odd
    values; the others any of Twilio's fields, or bytes that are no form."""
    path = draw(st.sampled_from(WEBHOOK_PATHS))
    query_names, form_names = TWILIO_SENDS[path]
    if draw(st.booleans()):
        query = {name: draw(QUERY_FIELDS[name]) for name in query_names}
        form = {name: draw(TWILIO_FIELDS[name]) for name in form_names}
    else:
        query = draw(st.fixed_dictionaries({}, optional=QUERY_FIELDS))
        form = draw(st.fixed_dictionaries({}, optional=TWILIO_FIELDS))
    form.update(draw(st.dictionaries(text, text, max_size=2)))
    raw = draw(st.none() | st.none() | st.binary(max_size=300))
    content_type = draw(st.sampled_from(CONTENT_TYPES)) if raw is not None else CONTENT_TYPES[0]
    return {"path": path, "query": query, "form": form, "raw": raw, "content_type": content_type}


def send_webhook(
    stack: RunningStack, webhook: Mapping[str, Any], signature: str | None
) -> httpx.Response:
    query = webhook["query"]
    url = stack.gateway_url + webhook["path"] + (f"?{urlencode(query)}" if query else "")
    body = webhook["raw"] if webhook["raw"] is not None else urlencode(webhook["form"]).encode()
    headers = {"Content-Type": webhook["content_type"]} if webhook["content_type"] else {}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return stack.twilio.post(url, content=body, headers=headers)


def valid_signature(stack: RunningStack, webhook: Mapping[str, Any]) -> str:
    query = webhook["query"]
    url = stack.gateway_url + webhook["path"] + (f"?{urlencode(query)}" if query else "")
    return twilio_signature(AUTH_TOKEN, url, webhook["form"] if webhook["raw"] is None else {})


@st.composite
def wrong_signatures(
    draw: st.DrawFn, webhook: Mapping[str, Any], stack: RunningStack
) -> str | None:
    kind = draw(st.sampled_from(["none", "garbage", "other token", "other url", "other form"]))
    query = webhook["query"]
    url = stack.gateway_url + webhook["path"] + (f"?{urlencode(query)}" if query else "")
    form = webhook["form"]
    if kind == "none":
        return None
    if kind == "garbage":
        return draw(st.text(min_size=1, max_size=60).filter(str.isprintable))
    if kind == "other token":
        return twilio_signature("not-the-auth-token", url, form)
    if kind == "other url":
        return twilio_signature(AUTH_TOKEN, url + "&call_id=someone-else", form)
    return twilio_signature(AUTH_TOKEN, url, {**form, "CallStatus": "forged"})


def test_webhooks_without_a_valid_signature_publish_nothing(
    stack: RunningStack, everything: EventTap
) -> None:
    before = gateway_counters(stack)
    refused: list[int] = []

    @settings(FUZZ, max_examples=300)
    @given(data=st.data(), webhook=webhooks())
    def unsigned(data: st.DataObject, webhook: dict[str, Any]) -> None:
        signature = data.draw(wrong_signatures(webhook, stack))
        if signature is not None and not signature.isascii():
            signature = quote(signature)  # an HTTP header carries ASCII
        response = counted(stack, "unsigned webhooks", send_webhook(stack, webhook, signature))
        assert response.status_code in (400, 403, 413), response.text
        refused.append(response.status_code)

    unsigned()
    after = gateway_counters(stack)
    leaked = everything.drain()
    report_fuzzing("unsigned webhooks", "webhooks fuzzed, no or a wrong signature", before, after)
    assert (after["events published"], after["rpc calls"]) == (
        before["events published"],
        before["rpc calls"],
    ), "gateway published or asked dialog for a request without a valid signature"
    assert leaked == [], leaked[:3]
    assert refused.count(403) > len(refused) / 2  # most got as far as the signature check
    assert after["5xx"] == before["5xx"]


@pytest.mark.usefixtures("placed_calls")
def test_signed_webhooks_never_get_a_5xx(stack: RunningStack, everything: EventTap) -> None:
    before = gateway_counters(stack)

    @settings(FUZZ, max_examples=300)
    @given(webhook=webhooks())
    def signed(webhook: dict[str, Any]) -> None:
        signature = valid_signature(stack, webhook)
        counted(stack, "signed webhooks", send_webhook(stack, webhook, signature))

    signed()
    after = gateway_counters(stack)
    report_fuzzing("signed webhooks", "webhooks fuzzed, validly signed", before, after)
    # The signature opened the door: gateway acted on some of them.
    assert after["events published"] > before["events published"]
    assert after["rpc calls"] > before["rpc calls"]
    assert ANSWERS["signed webhooks"].count(403) < len(ANSWERS["signed webhooks"]) / 10
    assert after["5xx"] == before["5xx"]
    assert unhandled_errors(stack.gateway) == []
    # What gateway accepted, persistence could store. The one exception: the
    # fuzzer pairs any CallSid with any call_id, so one call's SID can come
    # back signed for another call, which Twilio never does (it signs the
    # call_id gateway gave it); persistence refuses that conflict and the
    # event ends in the dead-letter queue, as designed.
    settle(stack, everything)
    refused = [
        record
        for record in log_records(stack.persistence)
        if record.get("msg", "").startswith(("handler failed", "poison message"))
        and "DuplicateKeyError" not in str(record.get("reason") or record.get("exc"))
    ]
    assert refused == [], refused[:3]
    # dialog answered every odd request it was asked (not_found, a fallback), no error.
    assert [r for r in log_records(stack.dialog) if r["level"] == "error"] == []


# --- The internal API, from its OpenAPI schema -------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
PHONES = st.sampled_from(["+15005550006", "+14155550100", "+442079460958", "555-0100", "+1"])
TEMPLATES = st.sampled_from(
    ["Hi {recipient.name}", "About {variables.topic}", "I am {agent.name}", "{unknown}", "{", "}{"]
)
HINTS: dict[str, st.SearchStrategy[Any]] = {
    "to": PHONES | st.from_regex(r"\A\+[0-9]{1,16}\Z"),
    "from": PHONES,
    "agent_id": st.sampled_from([AGENT_ID, "nobody"]),
    "greeting": TEMPLATES,
    "prompt": TEMPLATES,
    "goodbye_message": TEMPLATES,
    "type": st.sampled_from(["string", "email", "phone", "number", "date", "boolean", "choice"]),
    "role": st.sampled_from(["user", "assistant", "system"]),
}


def from_schema(
    schema: Mapping[str, Any], components: Mapping[str, Any], name: str = "", depth: int = 0
) -> st.SearchStrategy[Any]:
    """Values of a JSON schema (gateway's OpenAPI subset), sometimes not fitting it."""
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].split("/")[-1]], components, name, depth)
    if "anyOf" in schema:
        fitting = st.one_of([from_schema(s, components, name, depth) for s in schema["anyOf"]])
    else:
        fitting = _typed(schema, components, depth)
    if name in HINTS:
        fitting = HINTS[name] | fitting
    # One value in ten is any JSON at all.
    return st.integers(0, 9).flatmap(lambda roll: JSON_VALUES if roll == 0 else fitting)


def _typed(
    schema: Mapping[str, Any], components: Mapping[str, Any], depth: int
) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        low, high = schema.get("minLength", 0), min(schema.get("maxLength", 80), 300)
        return st.text(min_size=low, max_size=high) | st.text(max_size=high + 5)
    if kind == "integer":
        low, high = schema.get("minimum", -(10**6)), schema.get("maximum", 10**6)
        return st.integers(int(low) - 3, int(high) + 3) | st.integers()
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = schema.get("items", {})
        inner = JSON_VALUES if depth > 2 else from_schema(items, components, "", depth + 1)
        return st.lists(inner, max_size=3)
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        part = {
            key: from_schema(value, components, key, depth + 1) for key, value in properties.items()
        }
        fitting = st.fixed_dictionaries(
            {key: part[key] for key in required},
            optional={key: part[key] for key in part if key not in required},
        )
        if schema.get("additionalProperties", True) is not False or not properties:
            extra = st.dictionaries(text, JSON_VALUES, max_size=2)
            fitting = st.tuples(fitting, extra).map(lambda pair: {**pair[1], **pair[0]})
        return fitting
    return JSON_VALUES


@st.composite
def api_requests(draw: st.DrawFn, components: Mapping[str, Any]) -> dict[str, Any]:
    operations = ["put agent", "get agent", "place call", "a call placed", "get call"]
    operation = draw(st.sampled_from(operations))
    agent_id = draw(st.sampled_from([AGENT_ID, "nobody", "fuzz-other"]) | text)
    call_id = draw(st.from_regex(r"\A[0-9a-f]{32}\Z") | text)
    method, path, schema = {
        "put agent": ("PUT", f"/v1/agents/{quote(agent_id, safe='')}", "AgentDefinition"),
        "get agent": ("GET", f"/v1/agents/{quote(agent_id, safe='')}", None),
        "place call": ("POST", "/v1/calls", "CallRequest"),
        "a call placed": ("POST", "/v1/calls", None),
        "get call": ("GET", f"/v1/calls/{quote(call_id, safe='')}", None),
    }[operation]
    body: bytes | None = None
    content_type = "application/json"
    if schema is not None:
        if draw(st.integers(0, 9)) == 0:  # not JSON at all
            body = draw(st.binary(max_size=200))
            content_type = draw(st.sampled_from(["application/json", "text/plain", ""]))
        else:
            value = draw(from_schema({"$ref": f"#/{schema}"}, components))
            body = httpx.Request("POST", "http://x", json=value).content
    if operation == "a call placed":  # a request that fits, with odd recipient data
        # The agent's templates use {recipient.name}: without it the call is a 422.
        recipient = {**draw(st.dictionaries(text, JSON_VALUES, max_size=3)), "name": draw(text)}
        value = {"agent_id": AGENT_ID, "to": "+15005550006", "recipient": recipient}
        body = httpx.Request("POST", "http://x", json=value).content
    auth = draw(st.sampled_from(["valid", "valid", "valid", "valid", "none", "wrong"]))
    headers = {"Content-Type": content_type} if body is not None and content_type else {}
    if auth != "none":
        headers["Authorization"] = f"Bearer {API_KEY if auth == 'valid' else 'not-a-key'}"
    return {"method": method, "url": path, "content": body, "headers": headers}


def test_api_requests_from_the_openapi_schema_never_get_a_5xx(stack: RunningStack) -> None:
    components = stack.api.get("/openapi.json").json()["components"]["schemas"]
    before = gateway_counters(stack)

    @settings(FUZZ, max_examples=300)
    @given(request=api_requests(components))
    def api(request: dict[str, Any]) -> None:
        counted(stack, "api", stack.twilio.request(**request))

    api()
    after = gateway_counters(stack)
    answers = ANSWERS["api"]
    report_fuzzing("api", "/v1/calls and /v1/agents fuzzed from the OpenAPI schema", before, after)
    # The fuzzing reached past validation: agents saved, calls placed, and refusals.
    assert {200, 201, 401, 404, 422} <= set(answers), sorted(set(answers))
    assert after["5xx"] == before["5xx"]
    assert unhandled_errors(stack.gateway) == []
    assert not [r for r in log_records(stack.gateway) if r.get("level") == "critical"]
