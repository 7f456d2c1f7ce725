"""A scripted server speaking OpenAI's chat-completions HTTP protocol, for tests.

It serves the audio transcription endpoint too (``fake_transcriptions``).

The real ``openai`` client talks to it over HTTP, so tests exercise the same
request building, response parsing, streaming and error mapping as production.
Tests script answers with rules; every request body is recorded for assertions.

In-process (async tests)::

    async with FakeOpenAI() as fake:
        fake.when(last_user_regex="email").reply_tool_calls(
            {"name": "record_data", "arguments": {"field": "email", "value": "a@b.co"}}
        )
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test")

As a separate process (end-to-end tests)::

    with start_fake_openai_process() as fake:
        fake.control.add_rule(match={"last_user_regex": "bye"}, response={"text": "Bye!"})
        ...  # point the service under test at fake.base_url

Rule JSON, as taken by ``add_rules`` and ``POST /_control/rules``::

    {"match": {"last_user_regex": "...", "system_regex": "...", "any_regex": "..."},
     "response": {"text": "...",
                  "tool_calls": [{"name": "record_data", "arguments": {...} or "raw string"}],
                  "error": {"status": 429, "message": "...", "type": "...", "code": "..."},
                  "delay_s": 0.5, "first_token_s": 0.2, "token_interval_s": 0.01},
     "times": 1}

``times: null`` makes a rule answer forever. A streamed answer waits
``first_token_s`` before its first content or tool-call piece and
``token_interval_s`` between pieces; ``GET /_control/streams`` tells, per
stream, when its first piece went out and whether the client closed it early.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import signal
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeAlias

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from callbot.emulator.embedded import EmbeddedApp
from callbot.emulator.server_process import SRC_DIR as EMULATOR_SRC_DIR
from callbot.emulator.server_process import ServerProcess, ready_line
from callbot.testkit.fake_openai_errors import ScriptedError, error_response
from callbot.testkit.fake_transcriptions import (
    TranscriptionRequest,
    TranscriptionRule,
    TranscriptionScript,
    transcriptions_router,
)

# A fixed timestamp keeps responses byte-identical from one run to the next.
_CREATED = 1_700_000_000
# Tool-call arguments are streamed in pieces this long so clients must reassemble them.
_ARGUMENT_PIECE_LEN = 8
TranscriptionRuleLike: TypeAlias = TranscriptionRule | Mapping[str, Any]
# How the child names itself in its ready line (``server_process.ready_line``).
FAKE_OPENAI_NAME = "fake-openai"


class RuleMatch(BaseModel):
    """Conditions on the request's messages; every condition given must hold.

    ``any_regex`` is searched in ``json.dumps(messages, ensure_ascii=False)``, so
    quotes and newlines inside contents appear JSON-escaped there.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    last_user_regex: str | None = None
    system_regex: str | None = None
    any_regex: str | None = None

    @field_validator("last_user_regex", "system_regex", "any_regex")
    @classmethod
    def _must_compile(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"{pattern!r} is not a valid Python regular expression: {exc}"
                ) from exc
        return pattern

    def fits(self, messages: Sequence[object]) -> bool:
        wanted_and_actual = (
            (self.last_user_regex, _last_user_text(messages)),
            (self.system_regex, _system_text(messages)),
            (self.any_regex, json.dumps(messages, ensure_ascii=False)),
        )
        return all(
            pattern is None or (text is not None and re.search(pattern, text) is not None)
            for pattern, text in wanted_and_actual
        )


class ScriptedToolCall(BaseModel):
    """One function call; a string ``arguments`` is sent verbatim, e.g. malformed JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, ensure_ascii=False)


class ScriptedResponse(BaseModel):
    """Text and/or tool calls, or an error; ``delay_s`` postpones any of them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str | None = None
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    error: ScriptedError | None = None
    delay_s: float = Field(default=0.0, ge=0.0)
    first_token_s: float = Field(default=0.0, ge=0.0)  # streams only
    token_interval_s: float = Field(default=0.0, ge=0.0)  # streams only

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Self:
        answers = self.text is not None or bool(self.tool_calls)
        if self.error is not None and answers:
            raise ValueError("a response with 'error' cannot also have 'text' or 'tool_calls'")
        if self.error is None and not answers:
            raise ValueError("a response needs 'text', 'tool_calls' or 'error'")
        return self


class Rule(BaseModel):
    """Answer ``response`` to the first ``times`` requests that fit ``match`` (None: forever)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: RuleMatch = Field(default_factory=RuleMatch)
    response: ScriptedResponse
    times: int | None = Field(default=1, ge=1)


class RecordedRequest(BaseModel):
    """A chat-completions request body as received; ``index`` counts from 0 since the last reset."""

    model_config = ConfigDict(frozen=True)

    index: int
    received_at: float  # time.monotonic() in the server's process
    body: dict[str, Any]


class StreamRecord(BaseModel):
    """One streamed answer: when its first piece went out (``time.time()``, comparable
    across processes on one machine), how many pieces it sent, and how it ended."""

    request_index: int
    # time.time() when the request reached the server, before its routing and
    # body parsing: where the model's own time to first token starts.
    received_at: float
    first_piece_at: float | None = None
    pieces_sent: int = 0
    pieces_total: int
    outcome: str = "streaming"  # then "finished" or "closed_by_client"


_DEFAULT_RESPONSE = ScriptedResponse(text="OK.")

ResponseLike: TypeAlias = ScriptedResponse | Mapping[str, Any]
RuleLike: TypeAlias = Rule | Mapping[str, Any]


def _as_rule(rule: RuleLike) -> Rule:
    return rule if isinstance(rule, Rule) else Rule.model_validate(rule)


def _as_response(response: ResponseLike) -> ScriptedResponse:
    if isinstance(response, ScriptedResponse):
        return response
    return ScriptedResponse.model_validate(response)


def _content_text(content: object) -> str:
    """Text of a message's content: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _last_user_text(messages: Sequence[object]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return None


def _system_text(messages: Sequence[object]) -> str | None:
    texts = [
        _content_text(message.get("content"))
        for message in messages
        if isinstance(message, dict) and message.get("role") == "system"
    ]
    return "\n".join(texts) if texts else None


def _estimate_tokens(text: str) -> int:
    # Roughly four characters per token; deterministic, and nothing bills on it.
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class _ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class _Completion:
    """One answer, rendered either as a JSON body or as a stream of chunks."""

    id: str
    model: str
    text: str | None
    tool_calls: list[_ToolCall]
    usage: dict[str, int]
    include_usage_chunk: bool

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    def as_json(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text, "refusal": None}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": _CREATED,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage,
        }

    @property
    def piece_count(self) -> int:
        """Events after the role event that carry content or tool-call pieces."""
        return len(re.findall(r"\s*\S+|\s+$", self.text or "")) + sum(
            1 + len(_pieces(call.arguments, _ARGUMENT_PIECE_LEN)) for call in self.tool_calls
        )

    def as_sse_events(self) -> list[str]:
        """``data:`` events as OpenAI streams them: role, pieces, finish, [usage], [DONE]."""
        deltas: list[dict[str, Any]] = [
            {"role": "assistant", "content": "" if self.text is not None else None}
        ]
        # Word by word, each piece keeping its leading whitespace, so joining restores the text.
        deltas += [{"content": piece} for piece in re.findall(r"\s*\S+|\s+$", self.text or "")]
        for position, call in enumerate(self.tool_calls):
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": position,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            deltas += [
                {"tool_calls": [{"index": position, "function": {"arguments": piece}}]}
                for piece in _pieces(call.arguments, _ARGUMENT_PIECE_LEN)
            ]
        chunks = [self._chunk(delta, finish_reason=None) for delta in deltas]
        chunks.append(self._chunk({}, finish_reason=self.finish_reason))
        if self.include_usage_chunk:
            chunks.append(self._envelope(choices=[], usage=self.usage))
        events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
        events.append("data: [DONE]\n\n")
        return events

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope(choices=[choice], usage=None)

    def _envelope(
        self, choices: list[dict[str, Any]], usage: dict[str, int] | None
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": self.model,
            "choices": choices,
        }
        # With include_usage OpenAI puts "usage": null on every chunk but the last.
        if self.include_usage_chunk:
            chunk["usage"] = usage
        return chunk


def _pieces(text: str, length: int) -> list[str]:
    return [text[start : start + length] for start in range(0, len(text), length)]


@dataclass
class _ArmedRule:
    rule: Rule
    remaining: int | None


class _Script:
    """Rules, default answer and recorded requests; shared by the HTTP app and its owner."""

    def __init__(self) -> None:
        self.transcriptions = TranscriptionScript()
        self.reset()

    def reset(self) -> None:
        self.transcriptions.reset()
        self.rules: list[_ArmedRule] = []
        self.default = _DEFAULT_RESPONSE
        self.requests: list[RecordedRequest] = []
        self.streams: list[StreamRecord] = []
        self._tool_calls_issued = 0

    def add(self, rules: Iterable[Rule]) -> None:
        self.rules += [_ArmedRule(rule, rule.times) for rule in rules]

    def record(self, body: dict[str, Any]) -> RecordedRequest:
        recorded = RecordedRequest(
            index=len(self.requests), received_at=time.monotonic(), body=body
        )
        self.requests.append(recorded)
        return recorded

    def choose(self, messages: Sequence[object]) -> ScriptedResponse:
        for armed in self.rules:
            if armed.remaining != 0 and armed.rule.match.fits(messages):
                if armed.remaining is not None:
                    armed.remaining -= 1
                return armed.rule.response
        return self.default

    def complete(
        self, recorded: RecordedRequest, model: str, response: ScriptedResponse
    ) -> _Completion:
        tool_calls = []
        for call in response.tool_calls:
            self._tool_calls_issued += 1
            tool_calls.append(
                _ToolCall(f"call_{self._tool_calls_issued}", call.name, call.arguments_json())
            )
        prompt_tokens = _estimate_tokens(json.dumps(recorded.body["messages"]))
        completion_tokens = _estimate_tokens(
            (response.text or "") + "".join(call.arguments for call in tool_calls)
        )
        stream_options = recorded.body.get("stream_options")
        return _Completion(
            id=f"chatcmpl-{recorded.index + 1}",
            model=model,
            text=response.text,
            tool_calls=tool_calls,
            usage={
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            include_usage_chunk=isinstance(stream_options, dict)
            and stream_options.get("include_usage") is True,
        )


def _bad_request(message: str) -> JSONResponse:
    return error_response(ScriptedError(status=400, message=message))


async def _paced_events(
    completion: _Completion, response: ScriptedResponse, record: StreamRecord
) -> AsyncIterator[str]:
    """The SSE events with the scripted time to first piece and between pieces;
    the record says how far the stream got when the client closed it."""
    events = completion.as_sse_events()
    try:
        for position, event in enumerate(events):
            is_piece = 1 <= position <= completion.piece_count
            if is_piece:
                pause = response.first_token_s if position == 1 else response.token_interval_s
                if pause:
                    await asyncio.sleep(pause)
            yield event
            if is_piece:
                if record.first_piece_at is None:
                    record.first_piece_at = time.time()
                record.pieces_sent += 1
        record.outcome = "finished"
    finally:
        if record.outcome != "finished":
            record.outcome = "closed_by_client"


def _completion_response(
    completion: _Completion,
    stream: bool,
    response: ScriptedResponse,
    script: _Script,
    arrived_at: float,
) -> Response:
    if stream:
        record = StreamRecord(
            request_index=len(script.requests) - 1,
            received_at=arrived_at,
            pieces_total=completion.piece_count,
        )
        script.streams.append(record)
        return StreamingResponse(
            _paced_events(completion, response, record), media_type="text/event-stream"
        )
    # ASCII with \u escapes: text holding a lone surrogate (a model can emit half
    # an emoji) travels as JSON's `\ud800` escape instead of failing to encode.
    return Response(json.dumps(completion.as_json()), media_type="application/json")


async def _wait_unless_client_leaves(request: Request, delay_s: float) -> None:
    """Sleep ``delay_s``, but stop early once the client hangs up (e.g. it timed out).

    Returning early keeps a timed-out request from holding up the server's shutdown.
    """

    async def client_left() -> None:
        # Once the body is read, the server's next receive() message is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(client_left(), timeout=delay_s)


ARRIVED_AT = "fake_openai_arrived_at"


class _StampArrival:
    """Notes in each request's ASGI state when it reached the server, before
    routing and body parsing: a model's time to first token is counted from
    there, so the scripted server's own request handling is not billed to
    the client's overhead (bench/relay_first_token.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[ARRIVED_AT] = time.time()
        await self._app(scope, receive, send)


def _build_app(script: _Script) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(_StampArrival)

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _bad_request("fake-openai expects a JSON request body")
        if not isinstance(body, dict):
            return _bad_request("fake-openai expects a JSON object as request body")
        recorded = script.record(body)
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list):
            return _bad_request("the request needs 'model' (a string) and 'messages' (a list)")
        scripted = script.choose(messages)
        # Built before the delay so concurrent requests take their ids in arrival order.
        answer = (
            error_response(scripted.error)
            if scripted.error is not None
            else _completion_response(
                script.complete(recorded, model, scripted),
                stream=body.get("stream") is True,
                response=scripted,
                script=script,
                arrived_at=request.scope["state"][ARRIVED_AT],
            )
        )
        if scripted.delay_s:
            await _wait_unless_client_leaves(request, scripted.delay_s)
        return answer

    app.include_router(transcriptions_router(script.transcriptions))

    @app.post("/_control/rules", status_code=204)
    async def add_rules(rules: list[Rule]) -> None:
        script.add(rules)

    @app.put("/_control/default", status_code=204)
    async def set_default(default: ScriptedResponse) -> None:
        script.default = default

    @app.post("/_control/reset", status_code=204)
    async def reset() -> None:
        script.reset()

    @app.get("/_control/streams")
    async def stream_records() -> list[StreamRecord]:
        return script.streams

    @app.get("/_control/requests")
    async def recorded_requests() -> list[RecordedRequest]:
        return script.requests

    return app


class RuleBuilder:
    """``fake.when(...)`` half of a rule; each ``reply_*`` completes and adds it."""

    def __init__(self, fake: FakeOpenAI, match: RuleMatch, times: int | None) -> None:
        self._fake = fake
        self._match = match
        self._times = times

    def reply_text(self, text: str, *, delay_s: float = 0.0) -> Rule:
        return self._add(ScriptedResponse(text=text, delay_s=delay_s))

    def reply_tool_calls(
        self,
        *calls: ScriptedToolCall | Mapping[str, Any],
        text: str | None = None,
        delay_s: float = 0.0,
    ) -> Rule:
        tool_calls = [ScriptedToolCall.model_validate(call) for call in calls]
        return self._add(ScriptedResponse(text=text, tool_calls=tool_calls, delay_s=delay_s))

    def reply_error(
        self,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        code: str | None = None,
        delay_s: float = 0.0,
    ) -> Rule:
        error = ScriptedError(status=status, message=message, type=type, code=code)
        return self._add(ScriptedResponse(error=error, delay_s=delay_s))

    def _add(self, response: ScriptedResponse) -> Rule:
        rule = Rule(match=self._match, response=response, times=self._times)
        self._fake.add_rules([rule])
        return rule


class FakeOpenAI(EmbeddedApp):
    """The scripted server, run by uvicorn inside the current event loop."""

    name = FAKE_OPENAI_NAME

    def __init__(self) -> None:
        self._script = _Script()

    @property
    def base_url(self) -> str:
        """What to pass as ``openai.AsyncOpenAI(base_url=...)``: ``http://HOST:PORT/v1``."""
        return f"{self.serving.url}/v1"

    def _open(self) -> ASGIApp:
        return _build_app(self._script)

    def add_rule(
        self,
        *,
        match: RuleMatch | Mapping[str, str] | None = None,
        response: ResponseLike,
        times: int | None = 1,
    ) -> Rule:
        rule = Rule(
            match=RuleMatch.model_validate(match or {}),
            response=_as_response(response),
            times=times,
        )
        self.add_rules([rule])
        return rule

    def add_rules(self, rules: Iterable[RuleLike]) -> None:
        self._script.add([_as_rule(rule) for rule in rules])

    def when(
        self,
        *,
        last_user_regex: str | None = None,
        system_regex: str | None = None,
        any_regex: str | None = None,
        times: int | None = 1,
    ) -> RuleBuilder:
        match = RuleMatch(
            last_user_regex=last_user_regex, system_regex=system_regex, any_regex=any_regex
        )
        return RuleBuilder(self, match, times)

    def set_default(self, response: ResponseLike) -> None:
        self._script.default = _as_response(response)

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self._script.requests)

    def streams(self) -> list[StreamRecord]:
        return [record.model_copy() for record in self._script.streams]

    def add_transcription_rules(
        self, rules: Iterable[TranscriptionRule | Mapping[str, Any]]
    ) -> None:
        self._script.transcriptions.add([TranscriptionRule.model_validate(r) for r in rules])

    def transcription_requests(self) -> list[TranscriptionRequest]:
        return [request.model_copy() for request in self._script.transcriptions.requests]

    def reset(self) -> None:
        """Forget rules, recorded requests and id counters; the default is "OK." again."""
        self._script.reset()


def _control_root(base_url: str) -> str:
    # Control endpoints sit beside /v1, so the printed OpenAI base URL works here too.
    return base_url.rstrip("/").removesuffix("/v1")


def _rules_payload(rules: Iterable[RuleLike]) -> list[dict[str, Any]]:
    return [_as_rule(rule).model_dump(mode="json") for rule in rules]


def _rule_payload(
    match: RuleMatch | Mapping[str, str] | None, response: ResponseLike, times: int | None
) -> list[dict[str, Any]]:
    return _rules_payload([{"match": match or {}, "response": response, "times": times}])


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise RuntimeError(
            f"fake-openai control {response.request.method} {response.request.url} "
            f"answered {response.status_code}: {response.text}"
        )
    return response


def _parse_requests(response: httpx.Response) -> list[RecordedRequest]:
    return [RecordedRequest.model_validate(item) for item in _checked(response).json()]


def _parse_streams(response: httpx.Response) -> list[StreamRecord]:
    return [StreamRecord.model_validate(item) for item in _checked(response).json()]


class FakeOpenAIControl:
    """Drives a fake-openai server in another process through its ``/_control`` endpoints."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self._root = _control_root(base_url)
        self._timeout_s = timeout_s

    def add_rule(
        self,
        *,
        match: RuleMatch | Mapping[str, str] | None = None,
        response: ResponseLike,
        times: int | None = 1,
    ) -> None:
        self._send("POST", "/_control/rules", _rule_payload(match, response, times))

    def add_rules(self, rules: Iterable[RuleLike]) -> None:
        self._send("POST", "/_control/rules", _rules_payload(rules))

    def set_default(self, response: ResponseLike) -> None:
        self._send("PUT", "/_control/default", _as_response(response).model_dump(mode="json"))

    def reset(self) -> None:
        self._send("POST", "/_control/reset")

    def requests(self) -> list[RecordedRequest]:
        return _parse_requests(self._send("GET", "/_control/requests"))

    def streams(self) -> list[StreamRecord]:
        return _parse_streams(self._send("GET", "/_control/streams"))

    def add_transcription_rules(
        self, rules: Iterable[TranscriptionRule | Mapping[str, Any]]
    ) -> None:
        payload = [TranscriptionRule.model_validate(r).model_dump(mode="json") for r in rules]
        self._send("POST", "/_control/transcriptions/rules", payload)

    def release_transcriptions(self) -> None:
        """Answer every held transcription (rules with ``hold: true``), and later ones at once."""
        self._send("POST", "/_control/transcriptions/release")

    def transcription_requests(self) -> list[TranscriptionRequest]:
        response = self._send("GET", "/_control/transcriptions")
        return [TranscriptionRequest.model_validate(item) for item in response.json()]

    def _send(self, method: str, path: str, payload: object = None) -> httpx.Response:
        response = httpx.request(method, self._root + path, json=payload, timeout=self._timeout_s)
        return _checked(response)


class AsyncFakeOpenAIControl:
    """``FakeOpenAIControl`` for async tests."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self._root = _control_root(base_url)
        self._timeout_s = timeout_s

    async def add_rule(
        self,
        *,
        match: RuleMatch | Mapping[str, str] | None = None,
        response: ResponseLike,
        times: int | None = 1,
    ) -> None:
        await self._send("POST", "/_control/rules", _rule_payload(match, response, times))

    async def add_rules(self, rules: Iterable[RuleLike]) -> None:
        await self._send("POST", "/_control/rules", _rules_payload(rules))

    async def set_default(self, response: ResponseLike) -> None:
        await self._send("PUT", "/_control/default", _as_response(response).model_dump(mode="json"))

    async def reset(self) -> None:
        await self._send("POST", "/_control/reset")

    async def requests(self) -> list[RecordedRequest]:
        return _parse_requests(await self._send("GET", "/_control/requests"))

    async def streams(self) -> list[StreamRecord]:
        return _parse_streams(await self._send("GET", "/_control/streams"))

    async def _send(self, method: str, path: str, payload: object = None) -> httpx.Response:
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            return _checked(await client.request(method, self._root + path, json=payload))


class FakeOpenAIProcess(ServerProcess):
    """A fake-openai server running as a child process; see ``start_fake_openai_process``."""

    @property
    def control(self) -> FakeOpenAIControl:
        return FakeOpenAIControl(self.base_url)


def start_fake_openai_process(
    host: str = "127.0.0.1", port: int = 0, ready_timeout_s: float = 20.0
) -> FakeOpenAIProcess:
    """Start ``python -m callbot.testkit.fake_openai`` and wait for its ready line."""
    return FakeOpenAIProcess.launch(
        FAKE_OPENAI_NAME,
        "callbot.testkit.fake_openai",
        ["--host", host, "--port", str(port)],
        # The child imports the emulator package's embedded server too.
        src_dirs=[Path(__file__).resolve().parents[2], EMULATOR_SRC_DIR],
        # It prints nothing but its ready line; uvicorn's warnings and tracebacks go to
        # stderr, which pytest shows beside a failing test.
        stderr_in_output=False,
        ready_timeout_s=ready_timeout_s,
    )


async def _serve_until_signalled(host: str, port: int) -> None:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)
    fake = FakeOpenAI()
    await fake.start(host, port)
    print(ready_line(FAKE_OPENAI_NAME, fake.base_url), flush=True)
    await stop_requested.wait()
    await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m callbot.testkit.fake_openai",
        description="Serve scripted OpenAI chat completions; script it through /_control.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 lets the OS pick a free port")
    args = parser.parse_args(argv)
    asyncio.run(_serve_until_signalled(args.host, args.port))


if __name__ == "__main__":
    main()
