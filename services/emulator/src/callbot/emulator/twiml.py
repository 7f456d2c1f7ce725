"""TwiML documents read into verbs, the way Twilio's voice engine reads them.

Pure: no I/O. The player fetches documents and executes the verbs.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

# Twilio's error codes for documents it cannot use.
DOCUMENT_PARSE_FAILURE = 12100
INVALID_URL = 11100

_GATHER_INPUTS = frozenset({"dtmf", "speech"})
_HTTP_METHODS = frozenset({"GET", "POST"})


class TwimlError(ValueError):
    """A document Twilio would refuse; ``code`` is Twilio's error code for it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Say:
    text: str
    voice: str | None
    language: str | None


@dataclass(frozen=True)
class Play:
    url: str


@dataclass(frozen=True)
class Pause:
    length_s: float


@dataclass(frozen=True)
class Gather:
    inputs: frozenset[str]
    # None: no action and no document URL to fall back to (inline TwiML).
    action: str | None
    method: str
    timeout_s: float
    action_on_empty_result: bool
    language: str | None
    prompts: tuple[Say | Play | Pause, ...]

    @property
    def hears_speech(self) -> bool:
        return "speech" in self.inputs


@dataclass(frozen=True)
class Redirect:
    url: str
    method: str


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class Relay:
    """``<Connect action><ConversationRelay url ...><Parameter/></ConversationRelay></Connect>``:
    the call talks over a WebSocket until the session ends, then Twilio asks
    ``action`` (if any) what next."""

    url: str
    action: str | None
    method: str
    welcome_greeting: str | None
    parameters: tuple[tuple[str, str], ...]
    dtmf_detection: bool
    interruptible: str


Verb = Say | Play | Pause | Gather | Redirect | Hangup | Relay

_SOCKET_SCHEMES = frozenset({"ws", "wss"})


def parse_twiml(document: str, *, document_url: str | None) -> list[Verb]:
    """The verbs of ``document``; relative URLs resolve against ``document_url``.

    ``document_url`` is None for TwiML given inline (``Twiml=`` on create or update).
    """
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise TwimlError(DOCUMENT_PARSE_FAILURE, f"document is not well-formed XML: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(
            DOCUMENT_PARSE_FAILURE, f"the root element must be <Response>, got <{root.tag}>"
        )
    return [_verb(element, document_url) for element in root]


def _verb(element: ET.Element, document_url: str | None) -> Verb:
    if element.tag == "Gather":
        return _gather(element, document_url)
    if element.tag == "Redirect":
        target = (element.text or "").strip()
        if not target:
            raise TwimlError(DOCUMENT_PARSE_FAILURE, "<Redirect> needs a URL as its text")
        return Redirect(
            url=_resolve(target, document_url, "<Redirect>"),
            method=_method(element, "<Redirect>"),
        )
    if element.tag == "Hangup":
        return Hangup()
    if element.tag == "Connect":
        return _connect(element, document_url)
    return _prompt(element, context="<Response>")


def _prompt(element: ET.Element, *, context: str) -> Say | Play | Pause:
    if element.tag == "Say":
        return Say(
            text=" ".join("".join(element.itertext()).split()),
            voice=element.get("voice"),
            language=element.get("language"),
        )
    if element.tag == "Play":
        return Play(url=(element.text or "").strip())
    if element.tag == "Pause":
        return Pause(length_s=_number(element, "length", default=1.0))
    raise TwimlError(
        DOCUMENT_PARSE_FAILURE,
        f"<{element.tag}> is not supported inside {context} by the emulator "
        "(it plays Say, Play, Pause, Gather, Redirect, Hangup)",
    )


def _gather(element: ET.Element, document_url: str | None) -> Gather:
    inputs = frozenset(element.get("input", "dtmf").split())
    if not inputs or not inputs <= _GATHER_INPUTS:
        raise TwimlError(
            DOCUMENT_PARSE_FAILURE,
            f"<Gather input={element.get('input')!r}>: expected 'dtmf', 'speech' or both",
        )
    action = element.get("action")
    return Gather(
        inputs=inputs,
        # Without an action Twilio posts the result to the document's own URL.
        action=_resolve(action, document_url, "<Gather action>") if action else document_url,
        method=_method(element, "<Gather>"),
        timeout_s=_number(element, "timeout", default=5.0),
        action_on_empty_result=element.get("actionOnEmptyResult", "false").lower() == "true",
        language=element.get("language"),
        prompts=tuple(_prompt(child, context="<Gather>") for child in element),
    )


def _connect(element: ET.Element, document_url: str | None) -> Relay:
    relays = [child for child in element if child.tag == "ConversationRelay"]
    if len(relays) != 1 or len(element) != 1:
        raise TwimlError(
            DOCUMENT_PARSE_FAILURE,
            "<Connect> is supported by the emulator with one <ConversationRelay> inside",
        )
    relay = relays[0]
    url = relay.get("url", "")
    if urlsplit(url).scheme not in _SOCKET_SCHEMES:
        raise TwimlError(
            DOCUMENT_PARSE_FAILURE,
            f"<ConversationRelay url={url!r}>: expected a ws:// or wss:// URL",
        )
    action = element.get("action")
    return Relay(
        url=url,
        action=_resolve(action, document_url, "<Connect action>") if action else None,
        method=_method(element, "<Connect>"),
        welcome_greeting=relay.get("welcomeGreeting"),
        parameters=tuple(
            (child.get("name", ""), child.get("value", ""))
            for child in relay
            if child.tag == "Parameter"
        ),
        dtmf_detection=relay.get("dtmfDetection", "true").lower() == "true",
        interruptible=relay.get("interruptible", "any"),
    )


def _method(element: ET.Element, context: str) -> str:
    method = element.get("method", "POST").upper()
    if method not in _HTTP_METHODS:
        raise TwimlError(
            DOCUMENT_PARSE_FAILURE, f"{context} method={method!r}: expected GET or POST"
        )
    return method


def _number(element: ET.Element, attribute: str, *, default: float) -> float:
    raw = element.get(attribute)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise TwimlError(
            DOCUMENT_PARSE_FAILURE,
            f"<{element.tag} {attribute}={raw!r}>: expected a number of seconds",
        ) from None


def _resolve(url: str, document_url: str | None, context: str) -> str:
    if urlsplit(url).scheme in {"http", "https"}:
        return url
    if document_url is None:
        raise TwimlError(
            INVALID_URL,
            f"{context} {url!r} is relative, but inline TwiML has no URL to resolve it against",
        )
    return urljoin(document_url, url)
