"""Reading a Twilio webhook body: `application/x-www-form-urlencoded`, UTF-8.

`urllib.parse.parse_qsl` on the raw body costs about 70 us less per request
than Starlette's `request.form()` (STYLE.md, measured pitfalls).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


class MalformedWebhook(ValueError):
    """The webhook cannot be read; the message says what was expected."""


def parse_webhook_form(body: bytes, content_type: str | None) -> dict[str, str]:
    """Twilio's form fields. A repeated field keeps its last value (Twilio never
    repeats one in the webhooks gateway serves)."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise MalformedWebhook(
            f"expected a {FORM_MEDIA_TYPE} body, got {media_type or 'no Content-Type'}"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedWebhook(f"the form body is not UTF-8: {exc}") from exc
    try:
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
    except ValueError as exc:
        raise MalformedWebhook(f"the form body is not URL-encoded fields: {exc}") from exc


def required_field(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not value:
        raise MalformedWebhook(f"the webhook has no {name}")
    return value


# Twilio's counts and durations are never negative; MongoDB stores 8-byte integers.
MAX_INT = 2**63 - 1


def optional_int(fields: Mapping[str, str], name: str) -> int | None:
    value = fields.get(name, "")
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number <= MAX_INT:
        raise MalformedWebhook(f"{name} must be an integer from 0 to {MAX_INT}, got {value!r}")
    return number


def optional_float(fields: Mapping[str, str], name: str) -> float | None:
    value = fields.get(name, "")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise MalformedWebhook(f"{name} must be a number, got {value!r}") from None
