"""The OpenAI-compatible chat API as dialog's conversation model.

One turn gets a time budget (the agent's `llm.timeout_s`, cut to what the RPC
deadline leaves); transient failures (connection, timeout, 429, 5xx) are
retried with tenacity only while enough of that budget remains for another
attempt. When the budget is spent, `ModelUnavailable` tells the caller to
speak the fallback line instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import openai
from openai import AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from opentelemetry.trace import Span, SpanKind
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from callbot.common.calls import Turn
from callbot.common.settings import Settings
from callbot.common.storable import well_formed_text
from callbot.common.tracing import span
from callbot.dialog.domain.actions import ModelAnswer, ModelUnavailable, parse_tool_call
from callbot.dialog.domain.passages import Passage
from callbot.dialog.domain.prompt import LlmRequest, build_llm_request
from callbot.dialog.domain.session import Session
from callbot.dialog.llm_stream import read_streamed_completion
from callbot.dialog.metrics import LLM_ERRORS, LLM_SECONDS
from callbot.dialog.streamed_speech import StreamedSpeech

log = logging.getLogger(__name__)

# Below this, another attempt could not finish: give up and speak the fallback.
MIN_ATTEMPT_S = 0.25
_BACKOFF = wait_exponential(multiplier=0.05, min=0.05, max=0.4)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError | TimeoutError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


class SpokenThenFailed(Exception):
    """A streamed attempt failed after some of its text went out: not retried,
    or the callee would hear the start of the reply twice."""


class OpenAIConversation:
    """Answers a turn with one chat completion (tools: record_data, end_call);
    streamed when given a `StreamedSpeech` (ConversationRelay turns)."""

    def __init__(self, settings: Settings) -> None:
        api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed",
            base_url=settings.openai_base_url,
            max_retries=0,  # retries are ours, bounded by the turn's deadline
            # aiohttp under the client's httpx2 interface: about 0.3 ms less CPU
            # per request than httpx2's own transport (docs/performance.md).
            http_client=openai.DefaultAioHttpClient(),
        )
        self._default_model = settings.llm_model

    async def close(self) -> None:
        await self._client.close()

    async def answer(
        self,
        session: Session,
        heard: Turn,
        budget_s: float,
        speech: StreamedSpeech | None = None,
        passages: Sequence[Passage] = (),
    ) -> ModelAnswer:
        request = build_llm_request(session, heard, passages)
        return to_answer(await self.complete(request, budget_s, speech))

    async def complete(
        self, request: LlmRequest, budget_s: float, speech: StreamedSpeech | None = None
    ) -> ChatCompletion:
        """One completion within `budget_s`, retried while time allows (the tool loop
        sends several per turn); raises ModelUnavailable."""
        give_up_at = time.monotonic() + budget_s

        def out_of_time(state: RetryCallState) -> bool:
            upcoming_wait = _BACKOFF(state)
            return give_up_at - time.monotonic() - upcoming_wait < MIN_ATTEMPT_S

        if give_up_at - time.monotonic() < MIN_ATTEMPT_S:
            raise ModelUnavailable(f"no time left for the model (budget {budget_s:.2f}s)")
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_is_transient),
                stop=out_of_time,
                wait=_BACKOFF,
                reraise=True,
            ):
                with attempt:
                    return await self._complete(request, give_up_at - time.monotonic(), speech)
        except Exception as exc:
            raise ModelUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable: tenacity either returns or reraises")

    async def _complete(
        self, request: LlmRequest, time_left_s: float, speech: StreamedSpeech | None
    ) -> ChatCompletion:
        options = request.options
        model = options.model or self._default_model
        # The low-level `post`, not `chat.completions.create`: create() runs
        # its parameter transform over every message, which cost ~0.12 ms a
        # message here (45 ms at 380) and grew each turn; our messages are
        # plain JSON already (bench/turn_overhead.py, docs/performance.md).
        body = {
            "model": model,
            "messages": list(request.messages),
            "tools": list(request.tools),
            "temperature": options.temperature,
            "max_tokens": options.max_tokens,
        }
        started = time.perf_counter()
        sent_before = speech.sent if speech is not None else ""
        try:
            with chat_span(model, self._client, options.temperature, options.max_tokens) as current:
                # asyncio.timeout bounds the whole attempt, connect and body included.
                async with asyncio.timeout(time_left_s):
                    if speech is None:
                        completion = await self._client.post(
                            "/chat/completions",
                            body=body,
                            cast_to=ChatCompletion,
                            options={"timeout": time_left_s},
                        )
                    else:
                        stream = await self._client.post(
                            "/chat/completions",
                            body={**body, "stream": True},
                            cast_to=ChatCompletion,
                            options={"timeout": time_left_s},
                            stream=True,
                            stream_cls=AsyncStream[ChatCompletionChunk],
                        )
                        completion = await read_streamed_completion(stream, speech)
                record_completion(current, completion)
        except Exception as exc:
            if speech is not None and speech.sent != sent_before:
                LLM_ERRORS.labels(type(exc).__name__).inc()
                raise SpokenThenFailed(f"the stream broke after text went out: {exc!r}") from exc
            LLM_SECONDS.labels("error").observe(time.perf_counter() - started)
            LLM_ERRORS.labels(type(exc).__name__).inc()
            log.warning(
                "LLM attempt failed",
                extra={"error": repr(exc), "transient": _is_transient(exc)},
            )
            raise
        LLM_SECONDS.labels("ok").observe(time.perf_counter() - started)
        return completion


def chat_span(
    model: str, client: openai.AsyncOpenAI, temperature: float | None, max_tokens: int | None
) -> AbstractContextManager[Span | None]:
    """The CLIENT span of one chat request, after OpenTelemetry's GenAI
    conventions. By hand: opentelemetry-instrumentation-openai-v2 wraps
    `chat.completions.create`, which dialog does not call (see `_complete`)."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "server.address": client.base_url.host,
    }
    if temperature is not None:
        attributes["gen_ai.request.temperature"] = temperature
    if max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    return span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes)


def record_completion(current: Span | None, completion: ChatCompletion) -> None:
    """What the model answered, on its span: model, id, finish reasons, tokens."""
    if current is None:
        return
    current.set_attribute("gen_ai.response.model", completion.model or "")
    current.set_attribute("gen_ai.response.id", completion.id or "")
    reasons = [choice.finish_reason for choice in completion.choices if choice.finish_reason]
    current.set_attribute("gen_ai.response.finish_reasons", reasons)
    if completion.usage is not None:
        current.set_attribute("gen_ai.usage.input_tokens", completion.usage.prompt_tokens)
        current.set_attribute("gen_ai.usage.output_tokens", completion.usage.completion_tokens)


def to_answer(completion: ChatCompletion) -> ModelAnswer:
    if not completion.choices:
        raise ModelUnavailable("the model answered with no choices")
    message = completion.choices[0].message
    actions = []
    for call in message.tool_calls or ():
        function: Any = getattr(call, "function", None)  # custom (non-function) tools have none
        if function is not None:
            actions.append(parse_tool_call(function.name, function.arguments or ""))
    # The reply is spoken, stored, published and logged: no lone surrogates.
    return ModelAnswer(text=well_formed_text(message.content or ""), actions=tuple(actions))


class OpenAISummaries:
    """The post-call summary: one chat completion, no tools, its own timeout."""

    def __init__(self, settings: Settings) -> None:
        api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed",
            base_url=settings.openai_base_url,
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(),
        )
        self._model = settings.llm_model

    async def summarize(self, messages: list[dict[str, str]], timeout_s: float) -> tuple[str, str]:
        with chat_span(self._model, self._client, None, 200) as current:
            async with asyncio.timeout(timeout_s):
                completion = await self._client.post(
                    "/chat/completions",
                    body={"model": self._model, "messages": messages, "max_tokens": 200},
                    cast_to=ChatCompletion,
                    options={"timeout": timeout_s},
                )
            record_completion(current, completion)
        text = well_formed_text(completion.choices[0].message.content or "").strip()
        if not text:
            raise ModelUnavailable("the summary model answered with no text")
        return text, completion.model or self._model

    async def close(self) -> None:
        await self._client.close()
