"""The console's session cookie and CSRF token (pure)."""

from __future__ import annotations

from callbot.gateway.console.sessions import ConsoleSessions, key_fingerprint

KEYS = frozenset({"key-one", "key-two"})


def test_a_known_key_opens_a_session_whose_cookie_reads_back_and_holds_no_key() -> None:
    sessions = ConsoleSessions("secret", ttl_s=3600)
    opened = sessions.sign_in("key-one", KEYS)
    assert opened is not None
    session, cookie = opened
    assert "key-one" not in cookie
    assert session.key_fingerprint == key_fingerprint("key-one")
    assert sessions.read(cookie, KEYS) == session


def test_unknown_or_empty_keys_open_nothing() -> None:
    sessions = ConsoleSessions("secret", ttl_s=3600)
    assert sessions.sign_in("key-three", KEYS) is None
    assert sessions.sign_in("", KEYS) is None


def test_a_cookie_is_refused_when_forged_expired_signed_elsewhere_or_its_key_removed() -> None:
    sessions = ConsoleSessions("secret", ttl_s=3600)
    opened = sessions.sign_in("key-two", KEYS)
    assert opened is not None
    _session, cookie = opened
    assert sessions.read(cookie[:-2] + "xx", KEYS) is None
    assert sessions.read("", KEYS) is None
    assert sessions.read(None, KEYS) is None
    assert ConsoleSessions("another secret", ttl_s=3600).read(cookie, KEYS) is None
    assert sessions.read(cookie, KEYS - {"key-two"}) is None
    assert ConsoleSessions("secret", ttl_s=-1).read(cookie, KEYS) is None


def test_the_csrf_token_belongs_to_its_session() -> None:
    sessions = ConsoleSessions("secret", ttl_s=3600)
    first = sessions.sign_in("key-one", KEYS)
    second = sessions.sign_in("key-one", KEYS)
    assert first is not None
    assert second is not None
    token = sessions.csrf_token(first[0])
    assert sessions.csrf_valid(first[0], token)
    assert not sessions.csrf_valid(second[0], token)
    assert not sessions.csrf_valid(first[0], None)
    assert not sessions.csrf_valid(first[0], "")
