"""The JSON log lines and which loggers speak at a given LOG_LEVEL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from callbot.common.logs import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = ("aiormq", "aio_pika", "twilio.http_client", "callbot.common.lifecycle")
    levels = {name: logging.getLogger(name).level for name in loggers}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, named_level in levels.items():
        logging.getLogger(name).setLevel(named_level)


@pytest.mark.usefixtures("restored_logging")
def test_at_warning_only_the_lifecycle_lines_speak_below_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("dialog", "WARNING")
    logging.getLogger("callbot.common.lifecycle").info("service started")
    logging.getLogger("callbot.dialog.handlers").info("turn answered")
    logging.getLogger("twilio.http_client").warning("slow request")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["level"], line["msg"]) for line in lines] == [
        ("info", "service started"),
        ("warning", "slow request"),
    ]
    assert {line["service"] for line in lines} == {"dialog"}


@pytest.mark.usefixtures("restored_logging")
def test_uvicorns_coloured_copy_of_a_message_is_left_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("gateway", "INFO")
    # uvicorn's own loggers may be reconfigured by an in-process server of
    # another test; what matters is the formatter, so any logger does.
    logging.getLogger("callbot.test.uvicorn_like").info(
        "Started server process [%d]",
        42,
        extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]", "port": 8080},
    )
    [line] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert line["msg"] == "Started server process [42]"
    assert "color_message" not in line
    assert line["port"] == 8080
