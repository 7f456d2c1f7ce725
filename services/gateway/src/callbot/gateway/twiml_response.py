"""The HTTP response carrying TwiML."""

from __future__ import annotations

from fastapi import Response


class TwimlResponse(Response):
    media_type = "application/xml"
