"""One call's ConversationRelay WebSocket, once its handshake checked out.

Twilio's messages are read in one loop; the callee's inputs (final `prompt`s,
`dtmf` digits) are answered one after the other by a worker task, each with a
streaming RPC to dialog whose chunks go back as `text` tokens as they arrive
(an empty token marked `last` closes the reply). On `interrupt` the answer in
progress is cancelled (dialog stops the model) and `call.turn_interrupted`
records the line the callee spoke over as far as they heard it. An ending
reply sends `end` with the closing line in `handoffData`; Twilio then asks the
`<Connect action>` URL what next, and gateway answers with that line and a
hang-up. The socket closing (the call ended, or dropped) cancels any answer in
progress; the call is then finalized from Twilio's status callbacks as today.

When dialog gives no usable reply within the turn deadline, the callee hears
gateway's fallback line, stored as on the Gather path: `call.fallback` (the
utterance and the line at `seq + 1`, where dialog's late reply, if any, gives
way), the next input goes to `seq + 2` with `after_fallback`, so dialog puts
the line in its session in place of whatever it answered too late.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from callbot.common.calls import Turn
from callbot.common.contracts import (
    DIALOG_RESPONSE_ADAPTER,
    CallTurnInterrupted,
    DialogReply,
    DialogTurn,
    RpcFailure,
    utcnow,
)
from callbot.common.logs import log_context
from callbot.common.messaging import RpcError, RpcStream
from callbot.common.streaming import still_to_send
from callbot.gateway.domain.fallback import turn_fallback, turn_fallback_spoken
from callbot.gateway.domain.relay import (
    CALL_ID_PARAMETER,
    GREETING_PARAMETER,
    RELAY_MESSAGE_ADAPTER,
    RelayDtmf,
    RelayEnd,
    RelayError,
    RelayHandoff,
    RelayInterrupt,
    RelayPrompt,
    RelaySetup,
    RelayText,
)
from callbot.gateway.metrics import DIALOG_FALLBACKS
from callbot.gateway.publishing import publish_best_effort, publish_fallback_spoken
from callbot.gateway.resources import GatewayResources

log = logging.getLogger(__name__)

# The greeting is turn 0; the callee's first words are turn 1.
_FIRST_USER_SEQ = 1


@dataclass
class _Line:
    """The assistant line Twilio is speaking (or last spoke)."""

    seq: int
    sent: str = ""
    fallback: bool = False  # gateway's fallback line (stored from `call.fallback`)


class RelayConversation:
    def __init__(self, websocket: WebSocket, call_id: str, resources: GatewayResources) -> None:
        self._socket = websocket
        self._call_id = call_id
        self._resources = resources
        self._next_seq = _FIRST_USER_SEQ
        self._line: _Line | None = None
        self._inputs: asyncio.Queue[str] = asyncio.Queue()
        self._answering: asyncio.Task[None] | None = None
        self._ended = False
        # The line last cut by an interrupt: it goes with the next turn too, so
        # dialog answers from what was heard whichever message reaches it first.
        self._cut: Turn | None = None
        # The callee heard the fallback line just before the next turn.
        self._after_fallback = False
        # `call.fallback` publishes in flight: the next turn does not wait on
        # them, and the socket closing does not cancel them.
        self._publishing: set[asyncio.Task[bool]] = set()

    async def run(self) -> None:
        with log_context(call_id=self._call_id):
            worker = asyncio.create_task(self._answer_inputs(), name=f"relay-{self._call_id}")
            try:
                await self._read()
            finally:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
                log.info("relay socket closed", extra={"next_seq": self._next_seq})
                await asyncio.gather(*self._publishing)

    async def _read(self) -> None:
        try:
            async for raw in self._socket.iter_text():
                try:
                    message = RELAY_MESSAGE_ADAPTER.validate_json(raw)
                except ValidationError as exc:
                    log.warning(
                        "relay message not understood; ignored",
                        extra={"error": str(exc), "raw": raw[:200]},
                    )
                    continue
                if isinstance(message, RelaySetup):
                    await self._setup(message)
                elif isinstance(message, RelayPrompt):
                    if message.last:  # partial prompts are previews; the last one is the utterance
                        self._inputs.put_nowait(message.voice_prompt)
                elif isinstance(message, RelayDtmf):
                    self._inputs.put_nowait(message.digit)
                elif isinstance(message, RelayInterrupt):
                    await self._interrupted(message)
                elif isinstance(message, RelayError):
                    log.warning(
                        "Twilio reported a relay error", extra={"error": message.description}
                    )
        except WebSocketDisconnect:
            pass

    async def _setup(self, setup: RelaySetup) -> None:
        named = setup.custom_parameters.get(CALL_ID_PARAMETER)
        if named is not None and named != self._call_id:
            log.warning(
                "setup names another call than the signed socket URL; closing",
                extra={"setup_call_id": named},
            )
            await self._socket.close(code=1008)
            return
        log.info("relay session set up", extra={"call_sid": setup.call_sid})
        self._line = _Line(seq=0)  # the greeting, spoken as welcomeGreeting or sent now
        greeting = setup.custom_parameters.get(GREETING_PARAMETER)
        if greeting:
            await self._send(RelayText(token=greeting, last=True))
            self._line.sent = greeting

    async def _answer_inputs(self) -> None:
        while not self._ended:
            speech = await self._inputs.get()
            answering = asyncio.create_task(self._answer(speech))
            self._answering = answering
            try:
                await asyncio.wait([answering])
            finally:
                if not answering.done():  # the socket closed: stop the answer too
                    answering.cancel()
                    await asyncio.gather(answering, return_exceptions=True)
                self._answering = None
            if not answering.cancelled() and answering.exception() is not None:
                log.error(
                    "relay answer failed; the call goes on",
                    extra={"error": repr(answering.exception())},
                )

    async def _answer(self, speech: str) -> None:
        seq = self._next_seq
        line = _Line(seq=seq + 1)
        turn = DialogTurn(
            call_id=self._call_id,
            seq=seq,
            speech=speech,
            after_fallback=self._after_fallback,
            interrupted_line=self._cut,
        )
        self._cut = None
        self._after_fallback = False
        stream: RpcStream[DialogReply | RpcFailure] | None = None
        reply: DialogReply | RpcFailure | None = None
        deadline_s = self._resources.settings.dialog_deadline_ms / 1000
        try:
            stream = await self._resources.dialog_stream.open(
                self._resources.topology.dialog_stream_queue,
                turn,
                DIALOG_RESPONSE_ADAPTER,
                timeout_s=deadline_s,
            )
            async for chunk in stream.chunks():
                self._line = line
                await self._send(RelayText(token=chunk))
                line.sent += chunk
            reply = stream.reply
        except asyncio.CancelledError:
            if stream is not None:
                await stream.cancel("the callee interrupted")
            # dialog stores the callee's words and what went out (see its handlers).
            self._next_seq = seq + 2
            raise
        except RpcError as exc:
            _count_fallback("stream_error", str(exc))
        if not isinstance(reply, DialogReply):
            if isinstance(reply, RpcFailure):
                _count_fallback("rpc_failure", f"{reply.code}: {reply.message}")
            await self._fall_back(turn, line.sent)
            return
        self._next_seq = reply.next_seq
        self._line = _Line(seq=reply.next_seq - 1, sent=line.sent)
        if reply.action == "hangup":
            await self._end(reply, still_to_send(line.sent, reply.say).strip())
        else:
            await self._send(RelayText(token="", last=True))

    async def _fall_back(self, turn: DialogTurn, sent: str) -> None:
        """Speak the fallback line in place of dialog's reply (after what of it
        went out, `sent`), and store what was heard as the Gather path does
        (`call.fallback`); the next turn follows it."""
        spoken = turn_fallback_spoken(turn, utcnow(), sent)
        heard = spoken.line.content
        await self._send(RelayText(token=still_to_send(sent, heard), last=True))
        self._line = _Line(seq=spoken.line.seq, sent=heard, fallback=True)
        self._next_seq = turn_fallback(self._call_id, turn.seq).next_seq
        self._after_fallback = True
        publishing = asyncio.create_task(
            publish_fallback_spoken(self._resources.publisher, spoken),
            name=f"relay-fallback-{self._call_id}",
        )
        self._publishing.add(publishing)
        publishing.add_done_callback(self._publishing.discard)

    async def _end(self, reply: DialogReply, closing: str) -> None:
        """The call ends: `end` now; the closing line is spoken by the
        `<Connect action>` answer, whole, before the hang-up."""
        self._ended = True
        handoff = RelayHandoff(
            call_id=self._call_id,
            say=closing,
            voice=reply.voice,
            language=reply.language,
            ended_by=reply.ended_by,
        )
        await self._send(RelayEnd(handoff_data=handoff.model_dump_json()))
        log.info("relay session ended by dialog", extra={"ended_by": reply.ended_by})

    async def _interrupted(self, message: RelayInterrupt) -> None:
        answering = self._answering
        if answering is not None and not answering.done() and not self._ended:
            answering.cancel("the callee interrupted")
            # Until the stream is cancelled and the seq moved on.
            await asyncio.gather(answering, return_exceptions=True)
        line = self._line
        if line is None or self._ended:
            return  # nothing said yet, or the closing line (said whole by <Say>)
        heard = message.utterance_until_interrupt
        # A fallback line stays one when cut: dialog's late reply at its seq
        # still gives way to it, whichever event persistence stores first.
        cut = Turn(
            seq=line.seq,
            role="assistant",
            content=heard,
            at=utcnow(),
            interrupted=True,
            fallback=line.fallback,
        )
        self._cut = cut
        log.info("the callee interrupted", extra={"seq": line.seq, "heard_chars": len(heard)})
        await publish_best_effort(
            self._resources.publisher,
            CallTurnInterrupted(call_id=self._call_id, turn=cut),
            timeout_s=self._resources.settings.dialog_deadline_ms / 1000,
            consequence="the stored line keeps the words the callee did not hear",
        )

    async def _send(self, message: RelayText | RelayEnd) -> None:
        await self._socket.send_text(message.to_text())


def _count_fallback(reason: str, detail: str) -> None:
    DIALOG_FALLBACKS.labels("dialog.turn", reason).inc()
    log.warning(
        "dialog gave no usable streamed reply; the relay speaks the fallback line",
        extra={"reason": reason, "detail": detail},
    )
