"""`DialogReply` → TwiML.

The `<Say>` goes inside the `<Gather>` so the callee can barge in: Twilio
stops speaking as soon as it hears speech. `actionOnEmptyResult` makes Twilio
post to the action URL even when the callee said nothing, so dialog sees every
silence (it counts them towards `max_no_input`) and the call never falls off
the end of the document.
"""

from __future__ import annotations

from twilio.twiml.voice_response import Gather, VoiceResponse

from callbot.common.contracts import DialogReply


def render_reply_twiml(reply: DialogReply, gather_action_url: str) -> str:
    """The TwiML for a dialog reply: speak, then listen at `gather_action_url`
    or hang up. `gather_action_url` is ignored for a hang-up."""
    if reply.action == "hangup":
        return render_hangup_twiml(reply)
    response = VoiceResponse()
    spec = reply.gather
    gather = Gather(
        input="speech",
        action=gather_action_url,
        method="POST",
        action_on_empty_result=True,
        speech_timeout=spec.speech_timeout,
        timeout=spec.timeout_s,
        language=reply.language,
        hints=",".join(spec.hints) or None,
        speech_model=spec.speech_model,
    )
    if reply.say:
        gather.say(reply.say, voice=reply.voice, language=reply.language)
    response.append(gather)
    return _to_xml(response)


def render_hangup_twiml(reply: DialogReply) -> str:
    """Speak the reply (if any), then hang up."""
    response = VoiceResponse()
    if reply.say:
        response.say(reply.say, voice=reply.voice, language=reply.language)
    response.hangup()
    return _to_xml(response)


def _to_xml(response: VoiceResponse) -> str:
    xml: str = response.to_xml()
    return xml
