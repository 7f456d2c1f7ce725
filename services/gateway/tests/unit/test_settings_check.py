"""The gateway refuses to start without Twilio credentials or API keys."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from callbot.common.settings import Settings
from callbot.gateway.app import create_app
from callbot.gateway.resources import GatewayMisconfigured, check_settings


def test_missing_secrets_are_named() -> None:
    with pytest.raises(GatewayMisconfigured) as raised:
        create_app(Settings(twilio_account_sid="AC1", callbot_api_keys=SecretStr(" , ")))
    assert "TWILIO_AUTH_TOKEN, CALLBOT_API_KEYS" in str(raised.value)
    assert "TWILIO_ACCOUNT_SID" not in str(raised.value)


def test_complete_settings_pass() -> None:
    check_settings(
        Settings(
            twilio_account_sid="AC1",
            twilio_auth_token=SecretStr("t"),
            callbot_api_keys=SecretStr("k1,k2"),
        )
    )
