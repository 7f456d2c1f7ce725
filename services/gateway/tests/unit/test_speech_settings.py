"""An agent's speech settings are valid for Twilio by construction: every
`SpeechOptions` that validates renders a `<Gather>` Twilio accepts, and the
combination Twilio refuses (`speechTimeout="auto"` with a `speechModel`,
warning 13335) is refused when the agent is built, with what to do instead."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from callbot.common.agents import SpeechOptions
from callbot.common.contracts import DialogReply, GatherSpec
from callbot.gateway.domain.twiml import render_reply_twiml

ACTION = "https://gw.test/voice/process-speech?call_id=c1&seq=1"


def _rendered_gather(options: SpeechOptions) -> ET.Element:
    """The `<Gather>` gateway renders for a reply built from these options,
    the way dialog builds it."""
    reply = DialogReply(
        call_id="c1",
        say="Hello",
        voice="Polly.Amy",
        language="en-GB",
        action="gather",
        next_seq=1,
        gather=GatherSpec(
            speech_timeout=options.timeout,
            timeout_s=options.gather_timeout_s,
            hints=options.hints,
            speech_model=options.model,
        ),
    )
    [gather] = list(ET.fromstring(render_reply_twiml(reply, ACTION)))
    return gather


def _twilio_accepts(gather: ET.Element) -> bool:
    timeout = gather.attrib.get("speechTimeout", "auto")
    if timeout == "auto":
        return "speechModel" not in gather.attrib
    return timeout.isdigit() and int(timeout) >= 1


@given(
    model=st.sampled_from([None, "phone_call", "experimental_conversations", "googlev2_short"]),
    timeout=st.one_of(st.just("auto"), st.integers(-5, 90).map(str), st.text(max_size=4)),
)
def test_every_valid_speech_setting_renders_a_gather_twilio_accepts(
    model: str | None, timeout: str
) -> None:
    try:
        options = SpeechOptions(model=model, timeout=timeout)
    except ValidationError:
        return
    assert _twilio_accepts(_rendered_gather(options))


def test_auto_timeout_with_a_speech_model_is_refused_saying_what_to_do() -> None:
    with pytest.raises(ValidationError) as refused:
        SpeechOptions(model="phone_call")
    message = str(refused.value)
    assert "speech.timeout \"auto\" cannot be used with speech.model 'phone_call'" in message
    assert "13335" in message
    assert 'e.g. "2"' in message


@pytest.mark.parametrize("timeout", ["0", "-1", "1.5", "soon", "61", ""])
def test_a_timeout_that_is_neither_auto_nor_whole_seconds_is_refused(timeout: str) -> None:
    with pytest.raises(ValidationError, match='must be "auto" or whole seconds from 1 to 60'):
        SpeechOptions(timeout=timeout)


@pytest.mark.parametrize(
    ("options", "attributes"),
    [
        (SpeechOptions(), {"speechTimeout": "auto"}),
        (
            SpeechOptions(model="phone_call", timeout="2"),
            {"speechTimeout": "2", "speechModel": "phone_call"},
        ),
        (SpeechOptions(timeout="3"), {"speechTimeout": "3"}),
    ],
)
def test_accepted_settings_reach_the_gather_unchanged(
    options: SpeechOptions, attributes: dict[str, str]
) -> None:
    gather = _rendered_gather(options)
    rendered = {
        name: gather.attrib[name]
        for name in ("speechTimeout", "speechModel")
        if name in gather.attrib
    }
    assert rendered == attributes
