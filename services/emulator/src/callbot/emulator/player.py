"""Plays one call: Twilio's side of it, against the URLs the application gave.

The call runs on a timeline task (ringing, answering, executing TwiML) that an API
update can replace; status and recording callbacks leave through one ordered lane, so
their ``SequenceNumber`` follows the order they are sent in.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import math
import time
import wave
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from websockets.exceptions import InvalidStatus

from callbot.emulator.records import (
    CallError,
    CallRecord,
    ConversationEntry,
    EndedBy,
    EntryKind,
    PlayedAudio,
    Speaker,
    WebhookKind,
    WebhookRecord,
)
from callbot.emulator.relay import RelayCallee, RelayStalled
from callbot.emulator.resources import (
    API_VERSION,
    CallRequest,
    CallUpdate,
    TwilioApiError,
    new_sid,
    rfc2822,
)
from callbot.emulator.scenario import (
    AnsweredBy,
    HangupStep,
    SayStep,
    Scenario,
    SilenceStep,
    speaking_seconds,
)
from callbot.emulator.twiml import (
    Gather,
    Hangup,
    Pause,
    Play,
    Redirect,
    Relay,
    Say,
    TwimlError,
    Verb,
    parse_twiml,
)
from callbot.emulator.webhooks import CALLBACK_ERROR, WebhookFailure, WebhookSender

logger = logging.getLogger("callbot.emulator.calls")

# Twilio's error for a ConversationRelay socket it cannot use (64101 and up).
RELAY_ERROR = 64101
APPLICATION_ERROR_SPEECH = "We are sorry, an application error has occurred. Goodbye."
# An emulated <Play> of audio whose length cannot be read (not WAV) lasts this long.
_PLAY_SECONDS = 3.0
_NOT_ANSWERED = frozenset({"busy", "no-answer", "failed"})


def detected_answerer(machine_detection: str, scenario_answer: AnsweredBy) -> AnsweredBy:
    """What Twilio's machine detection reports for the scenario's answerer.

    ``Enable`` reports a machine as soon as it recognises one (``machine_start``); only
    ``DetectMessageEnd`` waits for the greeting's end (``machine_end_*``).
    """
    if machine_detection == "Enable" and scenario_answer.startswith("machine_"):
        return "machine_start"
    return scenario_answer


class TimeLimitReached(Exception):
    """The call reached its ``TimeLimit``: Twilio ends it there, whatever is going on."""


class CallClock:
    """Emulated seconds since the call was created.

    ``advance`` waits ``seconds / speed`` real seconds but counts ``seconds``, so the
    reported figures do not depend on how fast the machine runs the test. An
    interrupted advance counts only the part that elapsed. Once ``limit_s`` is set, an
    advance that would pass it stops there and raises ``TimeLimitReached``.
    """

    def __init__(self, speed: float) -> None:
        self._speed = speed
        self._elapsed_s = 0.0
        self._advancing: tuple[object, float, float] | None = None  # token, started, seconds
        self.limit_s: float | None = None

    def now(self) -> float:
        if self._advancing is None:
            return self._elapsed_s
        _, started, seconds = self._advancing
        return self._elapsed_s + min(seconds, (time.monotonic() - started) * self._speed)

    async def advance(self, seconds: float) -> None:
        if self.limit_s is not None and self._elapsed_s + seconds >= self.limit_s:
            await self._advance(max(0.0, self.limit_s - self._elapsed_s))
            raise TimeLimitReached
        await self._advance(seconds)

    async def _advance(self, seconds: float) -> None:
        token = object()
        self._advancing = (token, time.monotonic(), seconds)
        try:
            await asyncio.sleep(seconds / self._speed)
        except asyncio.CancelledError:
            if self._advancing is not None and self._advancing[0] is token:
                self.interrupt()
            raise
        self._elapsed_s += seconds
        self._advancing = None

    def interrupt(self) -> None:
        self._elapsed_s = self.now()
        self._advancing = None


@dataclass(frozen=True)
class FetchInstructions:
    """TwiML to fetch from the application."""

    kind: WebhookKind
    url: str
    method: str
    extra_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InlineInstructions:
    """TwiML given in the API request itself."""

    twiml: str


Instructions = FetchInstructions | InlineInstructions


@dataclass(frozen=True)
class _Heard:
    text: str
    confidence: float


@dataclass(frozen=True)
class _Callback:
    kind: WebhookKind
    url: str
    method: str
    params: dict[str, str]
    at_s: float


class CallPlayer:
    """One placed call, from ``queued`` to its last callback."""

    def __init__(
        self,
        record: CallRecord,
        request: CallRequest,
        scenario: Scenario,
        sender: WebhookSender,
    ) -> None:
        self.record = record
        self.finished = asyncio.Event()
        self._request = request
        self._scenario = scenario
        self._sender = sender
        self._clock = CallClock(scenario.speed)
        self._steps = deque(scenario.steps)
        self._callbacks: asyncio.Queue[_Callback | None] = asyncio.Queue()
        self._sequence = 0
        self._answer: Instructions = (
            FetchInstructions("voice", request.url, request.method)
            if request.url
            else InlineInstructions(request.twiml or "")
        )
        self._answered_at_s: float | None = None
        self._amd_settled = asyncio.Event()
        self._ended = asyncio.Event()
        self._timeline: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def play(self) -> None:
        lane = asyncio.create_task(self._send_callbacks(), name=f"{self.record.sid}-callbacks")
        self._replace_timeline(self._ring_and_answer())
        try:
            await self._ended.wait()
            await self._cancel_all(self._tasks)
            self._queue_recording_callback()
            self._callbacks.put_nowait(None)
            await lane
        except asyncio.CancelledError:
            self._end("completed", "emulator_stopped")
            await self._cancel_all({*self._tasks, lane})
            raise
        finally:
            self.record.finished = True
            self.finished.set()
            self._summarise()

    def update(self, update: CallUpdate) -> None:
        """Apply ``calls(sid).update(...)``; raises Twilio's error when it cannot apply."""
        answered = self._answered_at_s is not None
        if update.status is not None:
            if self._ended.is_set():
                return
            if not answered:
                self._note("call canceled through the API before it was answered")
                self._end("canceled", "api_update")
            elif update.status == "completed":
                self._note("call hung up through the API")
                self._end("completed", "api_update")
            # Twilio ignores `canceled` for a call already in progress.
            return
        if self._ended.is_set():
            raise TwilioApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
        instructions: Instructions = (
            InlineInstructions(update.twiml)
            if update.twiml
            else FetchInstructions("voice", update.url or "", update.method)
        )
        if not answered:
            self._answer = instructions
            return
        self._note("instructions replaced through the API; the current verb is abandoned")
        self._clock.interrupt()
        self._replace_timeline(self._execute(instructions))

    # -- timeline -------------------------------------------------------------------------

    def _replace_timeline(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self._timeline is not None:
            self._timeline.cancel()
        self._timeline = asyncio.create_task(
            self._guarded(coroutine), name=f"{self.record.sid}-timeline"
        )
        self._track(self._timeline)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coroutine: Coroutine[Any, Any, None]) -> None:
        try:
            await coroutine
        except TimeLimitReached:
            self._note(f"TimeLimit of {self._request.time_limit_s} s reached: Twilio hangs up")
            self._end("completed", "time_limit")
        except Exception as exc:
            # A bug in the emulator must still end the call, or waiters hang forever.
            logger.exception("call %s: emulator failure; ending the call", self.record.sid)
            self._error(0, f"emulator failure: {type(exc).__name__}: {exc}", None)
            self._end("completed", "application_error")

    async def _ring_and_answer(self) -> None:
        scenario, request = self._scenario, self._request
        self._status_event("initiated", "initiated")
        self._set_status("ringing")
        self._status_event("ringing", "ringing")
        outcome, ring_s = scenario.outcome, scenario.ring_s
        if outcome == "no-answer" or (outcome == "answered" and ring_s >= request.timeout_s):
            outcome, ring_s = "no-answer", float(request.timeout_s)
        self._entry("system", "note", f"ringing {self.record.to}")
        await self._clock.advance(ring_s)
        if outcome in _NOT_ANSWERED:
            self._note(f"not answered: {outcome}")
            self._end(outcome, "not_answered")
            return
        self._answered_at_s = self._clock.now()
        self._clock.limit_s = self._answered_at_s + request.time_limit_s
        self.record.answered_at = self._at(self._answered_at_s)
        self._set_status("in-progress")
        self._status_event("answered", "in-progress")
        self._note("answered")
        answer = self._answer
        if request.machine_detection is None:
            self._amd_settled.set()
        else:
            answered_by = detected_answerer(request.machine_detection, scenario.answered_by)
            self.record.answered_by = answered_by
            if request.async_amd:
                amd = asyncio.create_task(
                    self._report_async_amd(answered_by), name=f"{self.record.sid}-amd"
                )
                self._track(amd)
            else:
                await self._clock.advance(scenario.amd_duration_ms / 1000)
                self._note(f"machine detection: {answered_by}")
                if isinstance(answer, FetchInstructions):
                    answer = replace(answer, extra_params={"AnsweredBy": answered_by})
                self._amd_settled.set()
        await self._execute(answer)

    async def _report_async_amd(self, answered_by: AnsweredBy) -> None:
        """Async AMD: the result reaches its own callback while the TwiML already plays."""
        try:
            await asyncio.sleep(self._scenario.amd_duration_ms / 1000 / self._scenario.speed)
            self._note(f"machine detection (async): {answered_by}")
            url = self._request.async_amd_status_callback
            if url is not None:
                params = {
                    "AccountSid": self.record.account_sid,
                    "CallSid": self.record.sid,
                    "AnsweredBy": answered_by,
                    "MachineDetectionDuration": str(self._scenario.amd_duration_ms),
                }
                method = self._request.async_amd_status_callback_method
                await self._deliver(_Callback("amd", url, method, params, self._clock.now()))
        finally:
            # The callee's first words wait for the result: a real machine greeting is
            # longer than detection takes, and the app may redirect the call meanwhile.
            self._amd_settled.set()

    async def _execute(self, instructions: Instructions) -> None:
        following: Instructions | None = instructions
        while following is not None:
            document = await self._fetch(following)
            if document is None:
                return
            verbs, document_url = document
            following = await self._perform(verbs, document_url)

    async def _fetch(self, instructions: Instructions) -> tuple[list[Verb], str | None] | None:
        """The verbs to execute next, or None after an application error ended the call."""
        if isinstance(instructions, InlineInstructions):
            body, document_url = instructions.twiml, None
        else:
            params = {**self._call_params("in-progress"), **instructions.extra_params}
            record, failure = await self._sender.send(
                self.record.webhooks,
                instructions.kind,
                instructions.url,
                instructions.method,
                params,
                at_s=self._clock.now(),
            )
            self._log_webhook(record)
            if failure is not None:
                await self._application_error(failure.code, failure.message, record.url)
                return None
            body, document_url = record.response_body or "", record.url
        try:
            return parse_twiml(body, document_url=document_url), document_url
        except TwimlError as exc:
            await self._application_error(exc.code, exc.message, document_url)
            return None

    async def _perform(self, verbs: list[Verb], document_url: str | None) -> Instructions | None:
        """Executes ``verbs``; returns where the call goes next, or None once it ended."""
        for verb in verbs:
            if isinstance(verb, Hangup):
                self._entry("agent", "hangup", "hangs up")
                self._end("completed", "agent_hangup")
                return None
            if isinstance(verb, Redirect):
                return FetchInstructions("redirect", verb.url, verb.method)
            if isinstance(verb, Gather):
                following = await self._gather(verb)
                if following is not None:
                    return following
            elif isinstance(verb, Relay):
                return await self._relay(verb)
            else:
                await self._prompt(verb)
            if self._ended.is_set():
                return None
        self._note("the TwiML has no more verbs: Twilio hangs up")
        self._end("completed", "twiml_end")
        return None

    async def _prompt(self, verb: Say | Play | Pause) -> None:
        if isinstance(verb, Say):
            seconds = speaking_seconds(verb.text)
            self._entry(
                "agent",
                "say",
                verb.text,
                voice=verb.voice,
                language=verb.language,
                duration_s=seconds,
            )
            await self._clock.advance(seconds)
        elif isinstance(verb, Play):
            await self._play(verb)
        else:
            self._entry("agent", "pause", duration_s=verb.length_s)
            await self._clock.advance(verb.length_s)

    async def _play(self, verb: Play) -> None:
        """Fetch the audio as Twilio does and play it for as long as it lasts; audio
        that cannot be fetched is an error (11200) and the call goes on without it."""
        fetched = await self._sender.fetch_media(verb.url)
        if isinstance(fetched, WebhookFailure):
            self._error(
                fetched.code, f"<Play> could not fetch its audio: {fetched.message}", verb.url
            )
            return
        seconds = wav_seconds(fetched.data) or _PLAY_SECONDS
        audio = PlayedAudio(
            size_bytes=len(fetched.data),
            sha256=hashlib.sha256(fetched.data).hexdigest(),
            content_type=fetched.content_type,
        )
        self._entry("agent", "play", verb.url, duration_s=seconds, audio=audio)
        await self._clock.advance(seconds)

    async def _relay(self, relay: Relay) -> Instructions | None:
        """A ConversationRelay session; then the `<Connect action>`, if any, says what next."""
        await self._amd_settled.wait()
        self._note(f"ConversationRelay session on {relay.url}")
        callee = RelayCallee(
            self.record,
            self._steps,
            self._sender.auth_token,
            advance=self._clock.advance,
            entry=self._entry,
        )
        try:
            outcome = await callee.play(relay)
        except (OSError, InvalidStatus, RelayStalled) as exc:
            await self._application_error(
                RELAY_ERROR, f"ConversationRelay: {type(exc).__name__}: {exc}", relay.url
            )
            return None
        if outcome.how == "callee_hangup":
            self._end("completed", "callee_hangup")
            return None
        if relay.action is None:
            self._note("the relay session ended and <Connect> has no action: Twilio hangs up")
            self._end("completed", "twiml_end")
            return None
        session = {
            "SessionId": outcome.session_id,
            "SessionStatus": "ended" if outcome.how == "end" else "failed",
        }
        if outcome.handoff_data is not None:
            session["HandoffData"] = outcome.handoff_data
        return FetchInstructions("action", relay.action, relay.method, session)

    async def _gather(self, gather: Gather) -> Instructions | None:
        for prompt in gather.prompts:
            await self._prompt(prompt)
        heard = await self._listen(gather)
        if self._ended.is_set() or gather.action is None:
            return None
        if heard is not None:
            speech = {"SpeechResult": heard.text, "Confidence": str(heard.confidence)}
            return FetchInstructions("action", gather.action, gather.method, speech)
        if gather.action_on_empty_result:
            return FetchInstructions("action", gather.action, gather.method)
        # Twilio goes on with the verb after <Gather> when nothing was heard.
        return None

    async def _listen(self, gather: Gather) -> _Heard | None:
        await self._amd_settled.wait()
        if not self._steps:
            self._entry("callee", "hangup", "hangs up (nothing left to say)")
            self._end("completed", "callee_hangup")
            return None
        step = self._steps.popleft()
        if isinstance(step, HangupStep):
            self._entry("callee", "hangup", "hangs up")
            self._end("completed", "callee_hangup")
            return None
        if isinstance(step, SilenceStep):
            seconds = step.silence.duration_s
            seconds = gather.timeout_s if seconds is None else seconds
            self._entry("callee", "silence", duration_s=seconds)
            await self._clock.advance(seconds)
            return None
        if not isinstance(step, SayStep):
            self._note(f"{type(step).__name__} at a <Gather>: nothing is heard")
            return None
        self._entry(
            "callee", "speech", step.say, confidence=step.confidence, duration_s=step.seconds
        )
        await self._clock.advance(step.seconds)
        if not gather.hears_speech:
            self._note("<Gather> listens for DTMF only: the speech was not captured")
            return None
        return _Heard(step.say, step.confidence)

    async def _application_error(self, code: int, message: str, url: str | None) -> None:
        self._error(code, message, url)
        seconds = speaking_seconds(APPLICATION_ERROR_SPEECH)
        self._entry("system", "say", APPLICATION_ERROR_SPEECH, duration_s=seconds)
        await self._clock.advance(seconds)
        self._end("completed", "application_error")

    def _end(self, status: str, ended_by: EndedBy) -> None:
        if self._ended.is_set():
            return
        self._clock.interrupt()
        now = self._clock.now()
        duration_s = 0 if self._answered_at_s is None else round(now - self._answered_at_s)
        self.record.ended_by = ended_by
        self.record.ended_at = self._at(now)
        self.record.duration_s = duration_s
        self._set_status(status)
        extra = {
            "CallDuration": str(duration_s),
            # Twilio's Duration is the billed figure: whole minutes, rounded up.
            "Duration": str(math.ceil(duration_s / 60)),
        }
        if self.record.answered_by is not None:
            extra["AnsweredBy"] = self.record.answered_by
        if status == "failed":
            extra["ErrorCode"] = str(self._scenario.error_code)
            extra["ErrorMessage"] = self._scenario.error_message
        self._status_event("completed", status, extra)
        self._ended.set()

    # -- callbacks ------------------------------------------------------------------------

    def _call_params(self, status: str) -> dict[str, str]:
        record = self.record
        return {
            "AccountSid": record.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": record.sid,
            "CallStatus": status,
            "Called": record.to,
            "Caller": record.from_,
            "Direction": "outbound-api",
            "From": record.from_,
            "To": record.to,
        }

    def _status_event(
        self, event: str, call_status: str, extra: Mapping[str, str] | None = None
    ) -> None:
        url = self._request.status_callback
        if url is None or event not in self._request.status_callback_events:
            return
        now = self._clock.now()
        params = {
            **self._call_params(call_status),
            "CallbackSource": "call-progress-events",
            "Timestamp": rfc2822(self._at(now)),
            "SequenceNumber": str(self._sequence),
            **(extra or {}),
        }
        self._sequence += 1
        method = self._request.status_callback_method
        self._callbacks.put_nowait(_Callback("status", url, method, params, now))

    def _queue_recording_callback(self) -> None:
        request, record = self._request, self.record
        if not request.record or record.answered_at is None:
            return
        record.recording_sid = new_sid("RE")
        url = request.recording_status_callback
        if url is None or "completed" not in request.recording_status_callback_events:
            return
        params = {
            "AccountSid": record.account_sid,
            "CallSid": record.sid,
            "RecordingSid": record.recording_sid,
            "RecordingUrl": (
                f"https://api.twilio.com/{API_VERSION}/Accounts/{record.account_sid}"
                f"/Recordings/{record.recording_sid}"
            ),
            "RecordingStatus": "completed",
            "RecordingDuration": str(record.duration_s or 0),
            "RecordingChannels": str(record.recording_channels),
            "RecordingSource": "OutboundAPI",
            "RecordingStartTime": rfc2822(record.answered_at),
        }
        method = request.recording_status_callback_method
        self._callbacks.put_nowait(_Callback("recording", url, method, params, self._clock.now()))

    async def _send_callbacks(self) -> None:
        while (callback := await self._callbacks.get()) is not None:
            await self._deliver(callback)

    async def _deliver(self, callback: _Callback) -> None:
        record, failure = await self._sender.send(
            self.record.webhooks,
            callback.kind,
            callback.url,
            callback.method,
            callback.params,
            at_s=callback.at_s,
        )
        self._log_webhook(record)
        if failure is not None:
            # Twilio logs a failed callback (15003); the call itself goes on unchanged.
            self._error(CALLBACK_ERROR, failure.message, record.url)

    # -- record and narration -------------------------------------------------------------

    def _at(self, at_s: float) -> datetime:
        return self.record.created_at + timedelta(seconds=at_s)

    def _set_status(self, status: str) -> None:
        self.record.status = status
        self.record.updated_at = self._at(self._clock.now())

    def _entry(
        self,
        speaker: Speaker,
        kind: EntryKind,
        text: str = "",
        *,
        voice: str | None = None,
        language: str | None = None,
        confidence: float | None = None,
        duration_s: float | None = None,
        audio: PlayedAudio | None = None,
    ) -> None:
        entry = ConversationEntry(
            at_s=round(self._clock.now(), 3),
            speaker=speaker,
            kind=kind,
            text=text,
            voice=voice,
            language=language,
            confidence=confidence,
            duration_s=duration_s,
            audio=audio,
        )
        self.record.conversation.append(entry)
        logger.info("%s %s", self._prefix(entry.at_s), _narration(entry))

    def _note(self, text: str) -> None:
        self._entry("system", "note", text)

    def _error(self, code: int, message: str, url: str | None) -> None:
        at_s = round(self._clock.now(), 3)
        self.record.errors.append(CallError(code=code, message=message, url=url, at_s=at_s))
        logger.warning("%s ERROR %s: %s", self._prefix(at_s), code, message)

    def _log_webhook(self, record: WebhookRecord) -> None:
        outcome = record.error or f"HTTP {record.status_code}"
        logger.info(
            "%s WEBHOOK %s %s %s -> %s in %.0f ms",
            self._prefix(record.at_s),
            record.kind,
            record.method,
            record.url,
            outcome,
            record.latency_ms,
        )

    def _prefix(self, at_s: float) -> str:
        return f"[{self.record.sid} +{at_s:6.1f}s]"

    def _summarise(self) -> None:
        record = self.record
        said = {speaker: len(record.lines(speaker)) for speaker in ("agent", "callee")}
        silences = sum(1 for entry in record.conversation if entry.kind == "silence")
        recording = f", recording {record.recording_sid}" if record.recording_sid else ""
        logger.info(
            # Twilio's view of the hang-up (e.g. agent_hangup: the TwiML said
            # <Hangup/>), not callbot's `ended_by` (why: system_complete, ...).
            "CALL %s to %s (scenario %s): %s, hang-up %s after %s s; %d agent lines, "
            "%d callee lines, %d silences, %d webhooks, %d errors%s",
            record.sid,
            record.to,
            record.scenario,
            record.status,
            record.ended_by,
            record.duration_s,
            said["agent"],
            said["callee"],
            silences,
            len(record.webhooks),
            len(record.errors),
            recording,
        )

    @staticmethod
    async def _cancel_all(tasks: set[asyncio.Task[None]]) -> None:
        pending = list(tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def wav_seconds(data: bytes) -> float | None:
    """How long a WAV file plays; None for anything else (MP3, ...)."""
    try:
        with wave.open(io.BytesIO(data)) as audio:
            return float(audio.getnframes() / audio.getframerate())
    except (wave.Error, EOFError):
        return None


def _narration(entry: ConversationEntry) -> str:
    if entry.kind == "say" and entry.speaker == "agent":
        how = ", ".join(filter(None, [entry.voice, entry.language]))
        return f"AGENT{f' ({how})' if how else ''}: {entry.text}"
    if entry.kind == "speech":
        return f"CALLEE: {entry.text} (confidence {entry.confidence})"
    if entry.kind == "silence":
        return f"CALLEE: ... silence for {entry.duration_s} s"
    if entry.kind == "pause":
        return f"AGENT: ... pause for {entry.duration_s} s"
    if entry.kind == "play":
        size = f" ({entry.audio.size_bytes} bytes)" if entry.audio else ""
        return f"AGENT: plays {entry.text.split('?')[0]}{size}"
    return f"{entry.speaker.upper()}: {entry.text}"
