"""The URLs gateway gives Twilio. Each carries the `call_id` in its query, and
Twilio signs the query, so a callback cannot be re-aimed at another call."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

ANSWER_PATH = "/voice/outbound"
PROCESS_SPEECH_PATH = "/voice/process-speech"
AMD_STATUS_PATH = "/voice/amd-status"
RELAY_ENDED_PATH = "/voice/relay-ended"
CALL_STATUS_PATH = "/call-status"
RECORDING_STATUS_PATH = "/recording-status"


@dataclass(frozen=True)
class CallbackUrls:
    """Builds callback URLs under `public_base` (`PUBLIC_URL`, no trailing slash)."""

    public_base: str

    def answer(self, call_id: str, agent_id: str) -> str:
        return self._url(ANSWER_PATH, call_id=call_id, agent_id=agent_id)

    def process_speech(self, call_id: str, seq: int, *, after_fallback: bool = False) -> str:
        """Where the utterance at `seq` goes; `after_fallback`: the callee heard
        gateway's fallback line just before it (`dialog.turn`'s `after_fallback`)."""
        if after_fallback:
            return self._url(PROCESS_SPEECH_PATH, call_id=call_id, seq=str(seq), after="fallback")
        return self._url(PROCESS_SPEECH_PATH, call_id=call_id, seq=str(seq))

    def amd_status(self, call_id: str, agent_id: str) -> str:
        return self._url(AMD_STATUS_PATH, call_id=call_id, agent_id=agent_id)

    def relay_ended(self, call_id: str) -> str:
        """A relay call's `<Connect action>`: Twilio asks it what next once the session ended."""
        return self._url(RELAY_ENDED_PATH, call_id=call_id)

    def call_status(self, call_id: str) -> str:
        return self._url(CALL_STATUS_PATH, call_id=call_id)

    def recording_status(self, call_id: str) -> str:
        return self._url(RECORDING_STATUS_PATH, call_id=call_id)

    def signed_url(self, path: str, raw_query: str) -> str:
        """The URL Twilio signed for a request that reached `path?raw_query`:
        the public one, never the internal one a proxy forwarded to."""
        return f"{self.public_base}{path}?{raw_query}" if raw_query else self.public_base + path

    def _url(self, path: str, **query: str) -> str:
        return f"{self.public_base}{path}?{urlencode(query)}"
