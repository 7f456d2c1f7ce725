"""Console sessions: a signed cookie after sign-in with an API key, and the
CSRF token every form carries. Pure: no I/O.

The cookie holds a random session id, a fingerprint of the API key used to
sign in (never the key) and the time it was issued, signed with
`CONSOLE_SECRET_KEY`. A session is valid while its signature holds, it is
younger than `CONSOLE_SESSION_TTL_S`, and its key is still one of
`CALLBOT_API_KEYS`: removing a key signs out every session opened with it.
The CSRF token is an HMAC of the session id, so it needs no storage and a
token from one session is worthless in another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "callbot_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class ConsoleSession:
    session_id: str
    key_fingerprint: str

    @property
    def actor(self) -> str:
        """Who acts, as the logs and idempotency claims name it (never the key)."""
        return f"console:{self.key_fingerprint}"


def key_fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class ConsoleSessions:
    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret.encode()
        self._ttl_s = ttl_s
        self._serializer = URLSafeTimedSerializer(secret, salt="callbot-console-session")

    def sign_in(self, presented: str, api_keys: Iterable[str]) -> tuple[ConsoleSession, str] | None:
        """A new session and its cookie value, if `presented` is one of `api_keys`."""
        # Compare against every key in constant time: no early exit that times a guess.
        matches = [secrets.compare_digest(presented, key) for key in api_keys]
        if not presented or not any(matches):
            return None
        session = ConsoleSession(secrets.token_urlsafe(16), key_fingerprint(presented))
        cookie = self._serializer.dumps([session.session_id, session.key_fingerprint])
        return session, cookie

    def read(self, cookie: str | None, api_keys: Iterable[str]) -> ConsoleSession | None:
        """The session a cookie holds, if it is genuine, fresh and its key still valid."""
        if not cookie:
            return None
        try:
            session_id, fingerprint = self._serializer.loads(cookie, max_age=self._ttl_s)
        except (BadSignature, ValueError, TypeError):
            return None
        if fingerprint not in {key_fingerprint(key) for key in api_keys}:
            return None
        return ConsoleSession(str(session_id), str(fingerprint))

    def csrf_token(self, session: ConsoleSession) -> str:
        return hmac.new(self._secret, f"csrf:{session.session_id}".encode(), "sha256").hexdigest()

    def csrf_valid(self, session: ConsoleSession, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session), str(token))

    @property
    def ttl_s(self) -> int:
        return self._ttl_s
