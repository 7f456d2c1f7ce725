"""OpenAI's audio transcription endpoint, scripted: part of the fake OpenAI server.

``POST /v1/audio/transcriptions`` takes the multipart form the ``openai``
client sends (``file``, ``model``, ``response_format``, ...) and answers the
first rule that fits the upload, else a default transcript that names the
audio's length. ``verbose_json`` answers carry ``segments`` (start, end, text);
``json`` answers the text alone.

Rule JSON (``POST /_control/transcriptions/rules``)::

    {"match": {"filename_regex": "callee"},
     "response": {"text": "...", "segments": [{"start": 0.0, "end": 1.5, "text": "..."}],
                  "language": "english",
                  "error": {"status": 503}, "hold": false},
     "times": 1}

``hold: true`` keeps the answer until ``POST /_control/transcriptions/release``
(a transcription still running while the test looks elsewhere).
``GET /_control/transcriptions`` lists every upload (file name, model, size,
SHA-256, channels) with what it was answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import time
import wave
from typing import Any, Self

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callbot.testkit.fake_openai_errors import ScriptedError, error_response


class SegmentSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: float = Field(ge=0)
    end: float = Field(ge=0)
    text: str


class TranscriptionMatch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    filename_regex: str | None = None
    model: str | None = None

    @field_validator("filename_regex")
    @classmethod
    def _must_compile(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            re.compile(pattern)
        return pattern

    def fits(self, filename: str, model: str) -> bool:
        return (
            self.filename_regex is None or re.search(self.filename_regex, filename) is not None
        ) and (self.model is None or self.model == model)


class TranscriptionResponse(BaseModel):
    """A transcript (``text``, optional ``segments``) or an ``error``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str | None = None
    segments: list[SegmentSpec] = Field(default_factory=list)
    language: str = "english"
    error: ScriptedError | None = None
    hold: bool = False

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Self:
        if (self.error is None) == (self.text is None):
            raise ValueError("a transcription response needs exactly one of 'text' and 'error'")
        return self


class TranscriptionRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    match: TranscriptionMatch = Field(default_factory=TranscriptionMatch)
    response: TranscriptionResponse
    times: int | None = Field(default=1, ge=1)


class TranscriptionRequest(BaseModel):
    """One upload, as received, and the status it was answered with."""

    index: int
    received_at: float
    filename: str
    model: str
    response_format: str
    size_bytes: int
    sha256: str
    channels: int | None  # None: not a WAV file
    duration_s: float | None
    status: int = 200


class TranscriptionScript:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.rules: list[tuple[TranscriptionRule, list[int | None]]] = []
        self.requests: list[TranscriptionRequest] = []
        self.released = asyncio.Event()

    def add(self, rules: list[TranscriptionRule]) -> None:
        self.rules += [(rule, [rule.times]) for rule in rules]

    def choose(self, filename: str, model: str) -> TranscriptionResponse | None:
        for rule, remaining in self.rules:
            if remaining[0] != 0 and rule.match.fits(filename, model):
                if remaining[0] is not None:
                    remaining[0] -= 1
                return rule.response
        return None


def _wav_shape(audio: bytes) -> tuple[int | None, float | None]:
    try:
        with wave.open(io.BytesIO(audio)) as wav:
            return wav.getnchannels(), wav.getnframes() / wav.getframerate()
    except (wave.Error, EOFError):
        return None, None


def _default_response(duration_s: float | None) -> TranscriptionResponse:
    length = duration_s or 0.0
    text = f"[{length:.1f} seconds of audio]"
    return TranscriptionResponse(text=text, segments=[SegmentSpec(start=0, end=length, text=text)])


def _transcript_body(
    scripted: TranscriptionResponse, response_format: str, duration_s: float | None
) -> Response:
    text = scripted.text or ""
    if response_format == "text":
        return Response(text, media_type="text/plain")
    if response_format != "verbose_json":
        return JSONResponse({"text": text})
    segments = [
        {
            "id": index,
            "seek": 0,
            "start": segment.start,
            "end": segment.end,
            "text": segment.text,
            "tokens": [],
            "temperature": 0.0,
            "avg_logprob": -0.1,
            "compression_ratio": 1.0,
            "no_speech_prob": 0.0,
        }
        for index, segment in enumerate(scripted.segments)
    ]
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": scripted.language,
        "duration": duration_s or 0.0,
        "text": text,
        "segments": segments,
    }
    return JSONResponse(body)


def transcriptions_router(script: TranscriptionScript) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/audio/transcriptions")
    @router.post("/audio/transcriptions")
    async def transcribe(request: Request) -> Response:
        # As a context manager, so the upload's spooled file is closed.
        async with request.form() as form:
            upload, model = form.get("file"), form.get("model")
            if upload is None or isinstance(upload, str) or not isinstance(model, str):
                return error_response(
                    ScriptedError(status=400, message="the form needs 'file' (a file) and 'model'")
                )
            audio = await upload.read()
            filename = upload.filename or ""
            response_format = str(form.get("response_format") or "json")
        channels, duration_s = _wav_shape(audio)
        recorded = TranscriptionRequest(
            index=len(script.requests),
            received_at=time.time(),
            filename=filename,
            model=model,
            response_format=response_format,
            size_bytes=len(audio),
            sha256=hashlib.sha256(audio).hexdigest(),
            channels=channels,
            duration_s=duration_s,
        )
        script.requests.append(recorded)
        scripted = script.choose(filename, model) or _default_response(duration_s)
        if scripted.hold:
            await script.released.wait()
        if scripted.error is not None:
            recorded.status = scripted.error.status
            return error_response(scripted.error)
        return _transcript_body(scripted, response_format, duration_s)

    @router.post("/_control/transcriptions/rules", status_code=204)
    async def add_rules(rules: list[TranscriptionRule]) -> None:
        script.add(rules)

    @router.post("/_control/transcriptions/release", status_code=204)
    async def release() -> None:
        script.released.set()

    @router.get("/_control/transcriptions")
    async def uploads() -> list[TranscriptionRequest]:
        return script.requests

    return router
