"""TwiML documents read into verbs (pure, no I/O)."""

from __future__ import annotations

import pytest

from callbot.emulator.twiml import (
    DOCUMENT_PARSE_FAILURE,
    INVALID_URL,
    Gather,
    Hangup,
    Pause,
    Play,
    Redirect,
    Say,
    TwimlError,
    parse_twiml,
)

DOCUMENT_URL = "https://app.example/voice/outbound?call_id=c-1&agent_id=demo"


def test_reads_every_supported_verb_in_order() -> None:
    verbs = parse_twiml(
        """<?xml version="1.0" encoding="UTF-8"?>
        <Response>
          <Say voice="Polly.Joanna" language="en-US">Hello
             there</Say>
          <Play>https://cdn.example/beep.mp3</Play>
          <Pause length="2"/>
          <Gather input="speech" action="/voice/process-speech?call_id=c-1&amp;seq=1"
                  method="POST" timeout="4" actionOnEmptyResult="true" language="en-US">
            <Say>What is your name?</Say>
            <Pause/>
          </Gather>
          <Redirect method="GET">next</Redirect>
          <Hangup/>
        </Response>""",
        document_url=DOCUMENT_URL,
    )

    assert verbs == [
        Say("Hello there", "Polly.Joanna", "en-US"),
        Play("https://cdn.example/beep.mp3"),
        Pause(2.0),
        Gather(
            inputs=frozenset({"speech"}),
            action="https://app.example/voice/process-speech?call_id=c-1&seq=1",
            method="POST",
            timeout_s=4.0,
            action_on_empty_result=True,
            language="en-US",
            prompts=(Say("What is your name?", None, None), Pause(1.0)),
        ),
        Redirect("https://app.example/voice/next", "GET"),
        Hangup(),
    ]


def test_gather_defaults_follow_twilio() -> None:
    [gather] = parse_twiml("<Response><Gather/></Response>", document_url=DOCUMENT_URL)

    assert isinstance(gather, Gather)
    # No action: the result goes to the document's own URL. Default input is DTMF only.
    assert (gather.action, gather.method) == (DOCUMENT_URL, "POST")
    assert (gather.inputs, gather.hears_speech) == (frozenset({"dtmf"}), False)
    assert (gather.timeout_s, gather.action_on_empty_result) == (5.0, False)


def test_inline_twiml_keeps_absolute_urls_and_has_no_default_action() -> None:
    verbs = parse_twiml(
        '<Response><Gather input="dtmf speech"/><Redirect>https://a.example/x</Redirect></Response>',
        document_url=None,
    )

    assert verbs == [
        Gather(frozenset({"dtmf", "speech"}), None, "POST", 5.0, False, None, ()),
        Redirect("https://a.example/x", "POST"),
    ]


@pytest.mark.parametrize(
    ("document", "code", "message"),
    [
        ("<Response><Say>unclosed</Response>", DOCUMENT_PARSE_FAILURE, "not well-formed"),
        ("", DOCUMENT_PARSE_FAILURE, "not well-formed"),
        ('{"say": "json"}', DOCUMENT_PARSE_FAILURE, "not well-formed"),
        ("<Reply><Say>Hi</Say></Reply>", DOCUMENT_PARSE_FAILURE, "must be <Response>"),
        ("<Response><Dial>+1555</Dial></Response>", DOCUMENT_PARSE_FAILURE, "<Dial>"),
        (
            "<Response><Gather><Hangup/></Gather></Response>",
            DOCUMENT_PARSE_FAILURE,
            "inside <Gather>",
        ),
        ('<Response><Gather input="voice"/></Response>', DOCUMENT_PARSE_FAILURE, "input"),
        ('<Response><Pause length="soon"/></Response>', DOCUMENT_PARSE_FAILURE, "number"),
        ('<Response><Redirect method="PUT">x</Redirect></Response>', DOCUMENT_PARSE_FAILURE, "GET"),
        ("<Response><Redirect/></Response>", DOCUMENT_PARSE_FAILURE, "needs a URL"),
        ("<Response><Redirect>/relative</Redirect></Response>", INVALID_URL, "inline TwiML"),
    ],
)
def test_documents_twilio_would_refuse(document: str, code: int, message: str) -> None:
    url = None if "/relative" in document else DOCUMENT_URL

    with pytest.raises(TwimlError) as raised:
        parse_twiml(document, document_url=url)

    assert raised.value.code == code
    assert message in raised.value.message
