"""The gateway refuses to start without Twilio credentials or API keys."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from callbot.common.settings import Settings
from callbot.gateway.__main__ import uvicorn_options
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
            twilio_from_number="+14155550100",
        )
    )


@pytest.mark.parametrize(
    ("number", "said"),
    [
        ("", "set TWILIO_FROM_NUMBER, the default caller ID"),
        ("4155550100", "TWILIO_FROM_NUMBER '4155550100' is not a phone number in E.164 form"),
    ],
)
def test_gateway_refuses_to_start_without_a_valid_from_number(number: str, said: str) -> None:
    settings = Settings(
        twilio_account_sid="AC1",
        twilio_auth_token=SecretStr("t"),
        callbot_api_keys=SecretStr("k1"),
        twilio_from_number=number,
    )
    with pytest.raises(GatewayMisconfigured) as raised:
        check_settings(settings)
    assert said in str(raised.value)
    assert "a call may still give its own `from`" in str(raised.value) or number


def test_gateway_outlasts_the_proxy_keepalive_by_default() -> None:
    # uvicorn's own default (5 s) is shorter than a load balancer's idle
    # timeout (AWS ALB: 60 s): the balancer would reuse connections gateway closes.
    assert uvicorn_options(Settings())["timeout_keep_alive"] == 75
    assert uvicorn_options(Settings(gateway_keepalive_s=120))["timeout_keep_alive"] == 120


def test_shutdown_waits_for_a_webhook_as_long_as_dialog_may_take() -> None:
    assert uvicorn_options(Settings())["timeout_graceful_shutdown"] == 10
    assert uvicorn_options(Settings(dialog_deadline_ms=14000))["timeout_graceful_shutdown"] == 16


def test_a_keepalive_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="gateway_keepalive_s"):
        Settings(gateway_keepalive_s=0)
