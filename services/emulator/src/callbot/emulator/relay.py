"""Twilio's side of a ConversationRelay session, played from a scenario.

The emulator opens the WebSocket the TwiML names, signed as Twilio signs it
(``X-Twilio-Signature`` over the socket URL, no form), sends ``setup``, then
plays the callee's steps: each ``say`` becomes a final ``prompt`` once the
agent's reply ended (a ``text`` token marked ``last``); a ``say`` with
``barge_in_after_tokens`` is said over the agent's reply instead: once that
many tokens arrived (the last one included), ``interrupt`` (with the tokens heard so far as
``utteranceUntilInterrupt``), the callee's speaking time, then the ``prompt``.
``dtmf`` sends a digit, ``drop_socket`` breaks the socket, ``hangup`` (or no
step left) closes it. An ``end`` from the application ends the session with
its ``handoffData``. Text tokens are taken as spoken as they arrive; each
reply's tokens and real timings go to the call record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from callbot.emulator.records import CallRecord, RelayReply
from callbot.emulator.scenario import (
    DropSocketStep,
    DtmfStep,
    HangupStep,
    SayStep,
    SilenceStep,
    Step,
    speaking_seconds,
)
from callbot.emulator.twiml import Relay
from callbot.emulator.webhooks import twilio_signature

SessionEnd = Literal["end", "callee_hangup", "dropped", "closed"]

# How long the callee waits for the agent's reply before giving up (real
# seconds, like Twilio's webhook timeout): a reply that never ends is an
# application failure, not a hang.
REPLY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class RelayOutcome:
    how: SessionEnd
    handoff_data: str | None = None
    session_id: str = ""


class RelayCallee:
    """Plays one relay session for a call (see the module doc)."""

    def __init__(
        self,
        record: CallRecord,
        steps: deque[Step],
        auth_token: str,
        *,
        advance: Callable[[float], Awaitable[None]],
        entry: Callable[..., None],
    ) -> None:
        self._record = record
        self._steps = steps
        self._auth_token = auth_token
        self._advance = advance  # the call clock's `advance` (emulated seconds)
        self._entry = entry
        self._session_id = "VX" + record.sid.removeprefix("CA")

    async def play(self, relay: Relay) -> RelayOutcome:
        signature = twilio_signature(self._auth_token, relay.url, {})
        socket = await connect(relay.url, additional_headers={"X-Twilio-Signature": signature})
        try:
            return await self._converse(socket, relay)
        except ConnectionClosed:
            self._entry("system", "note", "the application closed the relay socket")
            return RelayOutcome("closed", session_id=self._session_id)
        finally:
            with contextlib.suppress(ConnectionClosed, OSError):
                await socket.close()

    async def _converse(self, socket: ClientConnection, relay: Relay) -> RelayOutcome:
        setup = {
            "type": "setup",
            "sessionId": self._session_id,
            "accountSid": self._record.account_sid,
            "callSid": self._record.sid,
            "from": self._record.from_,
            "to": self._record.to,
            "direction": "outbound-api",
            "callType": "PSTN",
            "customParameters": dict(relay.parameters),
        }
        await socket.send(json.dumps(setup))
        if relay.welcome_greeting:
            seconds = speaking_seconds(relay.welcome_greeting)
            self._entry("agent", "say", relay.welcome_greeting, voice="relay", duration_s=seconds)
            await self._advance(seconds)
            reply: _Heard | None = None
        else:
            reply = await self._hear(socket, "setup")
        while True:
            if reply is not None and reply.ended is not None:
                return RelayOutcome("end", reply.ended, self._session_id)
            step = self._steps.popleft() if self._steps else None
            if step is None or isinstance(step, HangupStep):
                why = "hangs up" if step is not None else "hangs up (nothing left to say)"
                self._entry("callee", "hangup", why)
                return RelayOutcome("callee_hangup", session_id=self._session_id)
            if isinstance(step, DropSocketStep):
                self._entry("system", "note", "the relay WebSocket breaks")
                socket.transport.abort()
                return RelayOutcome("dropped", session_id=self._session_id)
            if isinstance(step, SilenceStep):
                seconds = step.silence.duration_s or 5.0
                self._entry("callee", "silence", duration_s=seconds)
                await self._advance(seconds)
                reply = None
                continue
            if isinstance(step, DtmfStep):
                self._entry("callee", "dtmf", step.dtmf)
                await socket.send(json.dumps({"type": "dtmf", "digit": step.dtmf}))
                reply = await self._hear(socket, f"dtmf {step.dtmf}")
                continue
            assert isinstance(step, SayStep)
            if reply is None or not reply.interrupted_by_next:
                self._entry(
                    "callee",
                    "speech",
                    step.say,
                    confidence=step.confidence,
                    duration_s=step.seconds,
                )
                await self._advance(step.seconds)
            prompt = {"type": "prompt", "voicePrompt": step.say, "lang": "en-US", "last": True}
            await socket.send(json.dumps(prompt))
            reply = await self._hear(socket, step.say)

    async def _hear(self, socket: ClientConnection, after: str) -> _Heard:
        """The agent's reply to `after`: tokens until one marked `last`, or `end`.
        When the next step barges in, it is said over the reply (see the module doc)."""
        upcoming = self._steps[0] if self._steps else None
        barge_in = upcoming.barge_in_after_tokens if isinstance(upcoming, SayStep) else None
        reply = RelayReply(after=after)
        self._record.relay_replies.append(reply)
        started = time.perf_counter()
        tokens: list[str] = []
        heard = _Heard()
        while True:
            message = await _next_message(socket, REPLY_TIMEOUT_S)
            kind = message.get("type")
            if kind == "end":
                heard.ended = str(message.get("handoffData") or "")
                break
            if kind != "text":
                continue
            token = str(message.get("token", ""))
            if token:
                elapsed_ms = (time.perf_counter() - started) * 1000
                if reply.first_token_ms is None:
                    reply.first_token_ms = elapsed_ms
                reply.last_token_ms = elapsed_ms
                tokens.append(token)
                reply.tokens += 1
            # Before `last`: a reply whose last token carries text is still being
            # spoken when that token arrives, and can be spoken over too.
            if barge_in is not None and reply.tokens >= barge_in:
                assert isinstance(upcoming, SayStep)
                await self._barge_in(socket, reply, "".join(tokens), upcoming)
                heard.interrupted_by_next = True
                return heard
            if message.get("last") is True:
                break
        reply.text = "".join(tokens)
        if reply.text:
            seconds = speaking_seconds(reply.text)
            self._entry("agent", "say", reply.text, voice="relay", duration_s=seconds)
            await self._advance(seconds)
        return heard

    async def _barge_in(
        self, socket: ClientConnection, reply: RelayReply, spoken: str, speech: SayStep
    ) -> None:
        """The callee speaks over the reply: `interrupt` now, the prompt after
        their speaking time; tokens arriving meanwhile are counted, not spoken."""
        reply.text = reply.heard = spoken
        reply.interrupted = True
        self._entry("agent", "say", spoken, voice="relay", duration_s=speaking_seconds(spoken))
        self._entry("system", "note", "the callee speaks over the agent (interrupt)")
        interrupt = {
            "type": "interrupt",
            "utteranceUntilInterrupt": spoken,
            "durationUntilInterruptMs": round(speaking_seconds(spoken) * 1000),
        }
        await socket.send(json.dumps(interrupt))
        self._entry(
            "callee", "speech", speech.say, confidence=speech.confidence, duration_s=speech.seconds
        )
        late = asyncio.create_task(_count_tokens(socket, reply))
        try:
            await self._advance(speech.seconds)
        finally:
            late.cancel()
            await asyncio.gather(late, return_exceptions=True)


@dataclass
class _Heard:
    ended: str | None = None  # the `end` message's handoffData
    interrupted_by_next: bool = False


async def _next_message(socket: ClientConnection, timeout_s: float) -> dict[str, Any]:
    try:
        # asyncio.timeout, not wait_for: no task of its own per message
        # (Python 3.11), so the reply's timing is not billed a loop turn.
        async with asyncio.timeout(timeout_s):
            raw = await socket.recv()
    except TimeoutError:
        raise RelayStalled(f"no reply within {timeout_s} s") from None
    message = json.loads(raw)
    if not isinstance(message, dict):
        raise RelayStalled(f"the application sent a message that is not an object: {raw!r}")
    return message


async def _count_tokens(socket: ClientConnection, reply: RelayReply) -> None:
    while True:
        message = json.loads(await socket.recv())
        if isinstance(message, dict) and message.get("type") == "text" and message.get("token"):
            reply.tokens_after_interrupt += 1


class RelayStalled(Exception):
    """The application did not answer over the socket as ConversationRelay expects."""
