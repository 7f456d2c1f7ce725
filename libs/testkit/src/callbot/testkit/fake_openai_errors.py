"""The errors the fake OpenAI server answers with, in OpenAI's error body.

Shared by its chat completions and its audio transcriptions."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field


class ScriptedError(BaseModel):
    """An HTTP error answered with OpenAI's error body; unset fields get OpenAI-like defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: int = Field(ge=400, le=599)
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None

    def body(self) -> dict[str, Any]:
        if self.status == 429:
            default_type, default_code = "requests", "rate_limit_exceeded"
        elif self.status >= 500:
            default_type, default_code = "server_error", None
        else:
            default_type, default_code = "invalid_request_error", None
        return {
            "error": {
                "message": self.message or f"Scripted HTTP {self.status} from fake-openai",
                "type": self.type or default_type,
                "param": self.param,
                "code": self.code or default_code,
            }
        }


def error_response(error: ScriptedError) -> JSONResponse:
    # Tests should not wait out rate limits. The openai client ignores a zero retry-after
    # and backs off ~0.5 s instead, so retry-after-ms (which it prefers) says 1 ms.
    headers = {"retry-after": "0", "retry-after-ms": "1"} if error.status == 429 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)
