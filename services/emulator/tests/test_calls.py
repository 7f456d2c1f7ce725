"""Whole calls through the emulator, driven by the real twilio client.

Each test runs the emulator in-process next to a tiny "app under test" (FastAPI on
uvicorn) that checks every webhook's ``X-Twilio-Signature`` with twilio's own
``RequestValidator`` and answers TwiML, the way gateway will.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from callbot.emulator import (
    AsyncEmulatorControl,
    TwilioEmulator,
    start_emulator_process,
)
from callbot.emulator.webhooks import DROPPED
from callbot.testkit.documents import silent_wav

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "emulator-test-auth-token"
FROM = "+15005550001"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "calls"
ALL_STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


# -- the app under test -------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One webhook the app received."""

    method: str
    path: str
    url: str
    params: dict[str, str]
    signature_valid: bool

    @property
    def query(self) -> dict[str, str]:
        return {name: values[-1] for name, values in parse_qs(urlsplit(self.url).query).items()}


Handler = Callable[[Hit], Awaitable[str | Response]]


class _QuietServer(uvicorn.Server):
    """Leaves signals to pytest, and says when it is serving."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.serving = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.serving.set()


class WebhookApp:
    """Answers webhooks per path; unknown paths get 204. Records every hit."""

    def __init__(self, auth_token: str) -> None:
        self.hits: list[Hit] = []
        self._validator = RequestValidator(auth_token)
        self._handlers: dict[str, Handler] = {}
        self._hit_arrived = asyncio.Condition()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.base_url = ""

    def on(self, path: str, handler: Handler) -> None:
        self._handlers[path] = handler

    def twiml(self, path: str, document: str) -> None:
        async def constant(_: Hit) -> str:
            return document

        self.on(path, constant)

    def hits_to(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    async def wait_for_hit(self, path: str, timeout_s: float = 10.0) -> Hit:
        async with asyncio.timeout(timeout_s), self._hit_arrived:
            await self._hit_arrived.wait_for(lambda: bool(self.hits_to(path)))
        return self.hits_to(path)[0]

    async def start(self) -> None:
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST"])
        async def webhook(request: Request) -> Response:
            params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            signature = request.headers.get("X-Twilio-Signature", "")
            hit = Hit(
                method=request.method,
                path=request.url.path,
                url=str(request.url),
                params=params,
                signature_valid=self._validator.validate(str(request.url), params, signature),
            )
            async with self._hit_arrived:
                self.hits.append(hit)
                self._hit_arrived.notify_all()
            handler = self._handlers.get(hit.path)
            if handler is None:
                return Response(status_code=204)
            answer = await handler(hit)
            if isinstance(answer, Response):
                return answer
            return Response(answer, media_type="application/xml")

        sock = socket.create_server(("127.0.0.1", 0))
        config = uvicorn.Config(
            app, lifespan="off", ws="none", log_config=None, log_level="warning"
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            await self._server.serving.wait()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        assert self._task is not None
        self._server.should_exit = True
        await self._task


def gather(action: str, prompt: str, *, empty: bool = True, timeout: int = 3) -> str:
    return (
        f'<Response><Gather input="speech" action="{action}" method="POST" '
        f'actionOnEmptyResult="{str(empty).lower()}" timeout="{timeout}">'
        f'<Say voice="Polly.Joanna" language="en-US">{prompt}</Say></Gather></Response>'
    )


SAY_AND_HANG_UP = "<Response><Say>Goodbye!</Say><Hangup/></Response>"


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
async def emulator() -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN) as twilio:
        yield twilio


@pytest.fixture
async def app() -> AsyncIterator[WebhookApp]:
    receiver = WebhookApp(AUTH_TOKEN)
    await receiver.start()
    yield receiver
    await receiver.stop()


def twilio_client(base_url: str, auth_token: str = AUTH_TOKEN) -> Client:
    """The real twilio client, pointed at the emulator instead of https://api.twilio.com."""
    client = Client(ACCOUNT_SID, auth_token)
    client.api.base_url = base_url
    return client


@pytest.fixture
def client(emulator: TwilioEmulator) -> Client:
    return twilio_client(emulator.base_url)


async def place_call(client: Client, app: WebhookApp, to: str, **options: Any) -> str:
    """``calls.create`` as gateway would call it; the blocking client runs in a thread."""
    arguments: dict[str, Any] = {
        "to": to,
        "from_": FROM,
        "url": f"{app.base_url}/voice?call_id=c-1",
        "status_callback": f"{app.base_url}/status?call_id=c-1",
        "status_callback_event": ALL_STATUS_EVENTS,
        **options,
    }
    call = await asyncio.to_thread(client.calls.create, **arguments)
    assert isinstance(call.sid, str)
    return call.sid


def statuses(app: WebhookApp) -> list[tuple[str, str]]:
    return [
        (hit.params["SequenceNumber"], hit.params["CallStatus"]) for hit in app.hits_to("/status")
    ]


def assert_all_signed(app: WebhookApp) -> None:
    unsigned = [hit.url for hit in app.hits if not hit.signature_valid]
    assert unsigned == [], f"webhooks with an invalid X-Twilio-Signature: {unsigned}"


# -- creating calls -----------------------------------------------------------------------


async def test_create_answers_a_queued_call_in_twilios_shape(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006", "outcome": "busy"})

    call = await asyncio.to_thread(
        client.calls.create,
        to="+15005550006",
        from_=FROM,
        url=f"{app.base_url}/voice",
        status_callback=f"{app.base_url}/status",
        status_callback_event=ALL_STATUS_EVENTS,
        machine_detection="Enable",
        async_amd="true",
        async_amd_status_callback=f"{app.base_url}/amd",
        record=True,
        recording_status_callback=f"{app.base_url}/recording",
        timeout=20,
    )

    assert re.fullmatch(r"CA[0-9a-f]{32}", call.sid)
    # twilio 9 keeps "from" as CallInstance._from (from is a keyword).
    assert (call.account_sid, call.to, call._from) == (ACCOUNT_SID, "+15005550006", FROM)
    assert (call.status, call.direction, call.api_version) == (
        "queued",
        "outbound-api",
        "2010-04-01",
    )
    assert call.date_created is not None
    assert call.date_created.tzinfo is not None
    assert call.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call.sid}.json"
    assert call.subresource_uris is not None
    assert "recordings" in call.subresource_uris

    [request] = emulator.requests
    assert (request.method, request.auth_user, request.status) == ("POST", ACCOUNT_SID, 201)
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    # How twilio 9 encodes it: one form field per event, booleans as "true".
    assert request.form["StatusCallbackEvent"] == ALL_STATUS_EVENTS
    assert request.form["Record"] == ["true"]
    assert request.form["AsyncAmd"] == ["true"]
    assert request.form["Timeout"] == ["20"]

    fetched = await asyncio.to_thread(client.calls(call.sid).fetch)
    assert fetched.sid == call.sid


# twilio 9.13's AsyncTwilioHttpClient passes aiohttp.BasicAuth as `auth`; aiohttp 3.14
# deprecates both.
@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")
async def test_async_twilio_client_works_the_same_way(
    emulator: TwilioEmulator, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006", "outcome": "busy"})
    http_client = AsyncTwilioHttpClient()
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http_client)
    client.api.base_url = emulator.base_url
    try:
        call = await client.calls.create_async(
            to="+15005550006", from_=FROM, url=f"{app.base_url}/voice"
        )
    finally:
        await http_client.close()

    finished = await emulator.wait_for_call(call.sid)
    assert finished.status == "busy"


class RewritingHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio is untyped
    """The other way to reach the emulator: rewrite the URL of every request."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        url = url.replace("https://api.twilio.com", self.base_url, 1)
        return super().request(method, url, *args, **kwargs)


async def test_a_url_rewriting_http_client_works_too(
    emulator: TwilioEmulator, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006", "outcome": "busy"})
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=RewritingHttpClient(emulator.base_url))

    sid = await place_call(client, app, "+15005550006")

    assert (await emulator.wait_for_call(sid)).status == "busy"


async def test_wrong_credentials_get_twilios_401(emulator: TwilioEmulator) -> None:
    client = twilio_client(emulator.base_url, auth_token="not-the-token")

    with pytest.raises(TwilioRestException) as raised:
        await asyncio.to_thread(
            client.calls.create, to="+15005550006", from_=FROM, url="https://a.example/v"
        )

    assert (raised.value.status, raised.value.code) == (401, 20003)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{emulator.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
        )
        other = await http.get(
            f"{emulator.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            auth=(ACCOUNT_SID, AUTH_TOKEN),
        )
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert (other.status_code, other.json()["code"]) == (404, 20404)
    assert emulator.calls == {}
    assert [request.auth_user for request in emulator.requests] == [ACCOUNT_SID, None, ACCOUNT_SID]


async def test_invalid_to_number_gets_21211(emulator: TwilioEmulator, client: Client) -> None:
    with pytest.raises(TwilioRestException) as raised:
        await asyncio.to_thread(
            client.calls.create, to="12345", from_=FROM, url="https://a.example/v"
        )

    assert (raised.value.status, raised.value.code) == (400, 21211)
    assert "The 'To' number 12345 is not a valid phone number." in raised.value.msg
    assert emulator.requests[0].status == 400


async def test_injected_faults_answer_the_next_creates_in_order(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006", "outcome": "busy"})
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{emulator.base_url}/_control/faults",
            json={
                "calls_create": [
                    {"status": 503, "code": 20503, "message": "Service unavailable"},
                    {"status": 429, "code": 20429, "message": "Too many requests"},
                ]
            },
        )
    assert response.status_code == 204

    codes = []
    for _ in range(2):
        with pytest.raises(TwilioRestException) as raised:
            await place_call(client, app, "+15005550006")
        codes.append((raised.value.status, raised.value.code))
    sid = await place_call(client, app, "+15005550006")

    assert codes == [(503, 20503), (429, 20429)]
    assert list(emulator.calls) == [sid]
    assert [request.status for request in emulator.requests] == [503, 429, 201]


# -- conversations ------------------------------------------------------------------------


async def test_gather_loop_with_speech_and_silence_then_hangup(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario(
        {
            "name": "ada",
            "to": "+15005550006",
            "ring_s": 1,
            "steps": [
                {"say": "Hi, this is Ada."},
                {"silence": {}},
                {"say": "It is ada@example.com", "confidence": 0.87, "duration_s": 4},
                {"say": "never heard: the agent hangs up first"},
            ],
        }
    )
    app.twiml("/voice", gather("speech?turn=1", "Hello, who am I speaking with?"))
    replies = {
        "1": gather("speech?turn=2", "Thanks. What is your email?"),
        "2": gather("speech?turn=3", "Sorry, I did not catch that."),
        "3": SAY_AND_HANG_UP,
    }

    async def speech(hit: Hit) -> str:
        return replies[hit.query["turn"]]

    app.on("/speech", speech)

    sid = await place_call(client, app, "+15005550006")
    call = await emulator.wait_for_call(sid)

    assert_all_signed(app)
    turns = app.hits_to("/speech")
    assert [hit.query["turn"] for hit in turns] == ["1", "2", "3"]
    assert (turns[0].params["SpeechResult"], turns[0].params["Confidence"]) == (
        "Hi, this is Ada.",
        "0.92",
    )
    assert "SpeechResult" not in turns[1].params  # silence, with actionOnEmptyResult
    assert (turns[2].params["SpeechResult"], turns[2].params["Confidence"]) == (
        "It is ada@example.com",
        "0.87",
    )
    voice = app.hits_to("/voice")[0]
    assert voice.params["CallStatus"] == "in-progress"
    assert voice.query == {"call_id": "c-1"}
    assert "AnsweredBy" not in voice.params  # no machine detection asked

    assert call.lines("agent") == [
        "Hello, who am I speaking with?",
        "Thanks. What is your email?",
        "Sorry, I did not catch that.",
        "Goodbye!",
    ]
    assert call.lines("callee") == ["Hi, this is Ada.", "It is ada@example.com"]
    assert [entry.kind for entry in call.conversation if entry.speaker == "callee"] == [
        "speech",
        "silence",
        "speech",
    ]
    greeting = next(entry for entry in call.conversation if entry.kind == "say")
    assert (greeting.voice, greeting.language) == ("Polly.Joanna", "en-US")
    assert (call.status, call.ended_by, call.errors) == ("completed", "agent_hangup", [])
    # Say 3 s + Ada 2 s + say 2 s + silence 3 s (the Gather timeout) + say 3 s + Ada 4 s
    # + "Goodbye!" 1 s: emulated seconds, whatever the machine's speed.
    assert call.duration_s == 18

    assert statuses(app) == [
        ("0", "initiated"),
        ("1", "ringing"),
        ("2", "in-progress"),
        ("3", "completed"),
    ]
    completed = app.hits_to("/status")[-1].params
    assert (completed["CallDuration"], completed["Duration"]) == ("18", "1")
    for hit in app.hits_to("/status"):
        assert hit.params["CallbackSource"] == "call-progress-events"
        assert hit.params["Direction"] == "outbound-api"
        assert (hit.params["Called"], hit.params["Caller"]) == ("+15005550006", FROM)
        assert hit.params["AccountSid"] == ACCOUNT_SID
        assert hit.params["ApiVersion"] == "2010-04-01"
    answered_at = parsedate_to_datetime(app.hits_to("/status")[2].params["Timestamp"])
    ended_at = parsedate_to_datetime(completed["Timestamp"])
    assert (ended_at - answered_at).total_seconds() == 18


async def test_silence_without_action_on_empty_result_falls_through_to_the_next_verb(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario(
        {"to": "+15005550006", "steps": [{"silence": {"duration_s": 2}}, {"silence": {}}]}
    )
    app.twiml(
        "/voice",
        gather("/speech", "Are you there?", empty=False).replace(
            "</Response>", "<Say>Let me try again.</Say><Redirect>/again</Redirect></Response>"
        ),
    )
    app.twiml("/again", gather("/speech", "Hello?", empty=False))

    sid = await place_call(client, app, "+15005550006")
    call = await emulator.wait_for_call(sid)

    assert app.hits_to("/speech") == []
    assert [hit.path for hit in app.hits if hit.path != "/status"] == ["/voice", "/again"]
    assert call.lines("agent") == ["Are you there?", "Let me try again.", "Hello?"]
    # The second Gather hears nothing and has no verb after it: Twilio hangs up.
    assert (call.status, call.ended_by) == ("completed", "twiml_end")
    assert [hit.kind for hit in call.webhooks if hit.kind != "status"] == ["voice", "redirect"]


async def test_inline_twiml_on_create_plays_without_a_url(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006"})
    chime = silent_wav(4)

    async def serve_chime(_: Hit) -> Response:
        return Response(chime, media_type="audio/wav")

    async def not_found(_: Hit) -> Response:
        return Response(status_code=404)

    app.on("/chime.wav", serve_chime)
    app.on("/missing.wav", not_found)
    twiml = (
        '<Response><Say>This is an automated reminder.</Say><Pause length="2"/>'
        f"<Play>{app.base_url}/chime.wav</Play><Play>{app.base_url}/missing.wav</Play></Response>"
    )

    sid = await place_call(client, app, "+15005550006", url=None, twiml=twiml)
    call = await emulator.wait_for_call(sid)

    assert app.hits_to("/voice") == []
    assert [
        (entry.kind, entry.text) for entry in call.conversation if entry.speaker == "agent"
    ] == [
        ("say", "This is an automated reminder."),
        ("pause", ""),
        ("play", f"{app.base_url}/chime.wav"),
    ]
    # The audio was fetched as Twilio fetches it: what the callee heard, byte for byte.
    [played] = [entry for entry in call.conversation if entry.kind == "play"]
    assert played.audio is not None
    assert (played.audio.size_bytes, played.audio.sha256, played.audio.content_type) == (
        len(chime),
        hashlib.sha256(chime).hexdigest(),
        "audio/wav",
    )
    # Audio that cannot be fetched (a 404) is Twilio's 11200; the call goes on without it.
    assert [(error.code, error.url) for error in call.errors] == [
        (11200, f"{app.base_url}/missing.wav")
    ]
    # Say 2 s + Pause 2 s + the chime's 4 s.
    assert (call.ended_by, call.duration_s) == ("twiml_end", 8)


async def test_time_limit_cuts_the_call(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    # 600 s of silence would take 6 real seconds; the 30 s limit cuts it at 0.3 s.
    emulator.add_scenario({"to": "+15005550006", "steps": [{"silence": {"duration_s": 600}}]})
    app.twiml("/voice", gather("/speech", "Hello?"))

    call = await emulator.wait_for_call(
        await place_call(client, app, "+15005550006", time_limit=30), timeout_s=5
    )

    assert (call.status, call.ended_by, call.duration_s) == ("completed", "time_limit", 30)
    assert app.hits_to("/status")[-1].params["CallDuration"] == "30"


async def test_callee_hangs_up_mid_call(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario(
        {"to": "+15005550006", "steps": [{"say": "Yes, it's Grace."}, {"hangup": {}}]}
    )
    app.twiml("/voice", gather("/speech", "Who is this?"))
    app.twiml("/speech", gather("/speech", "And your email?"))

    sid = await place_call(client, app, "+15005550006")
    call = await emulator.wait_for_call(sid)

    assert len(app.hits_to("/speech")) == 1
    assert (call.status, call.ended_by) == ("completed", "callee_hangup")
    hangup = call.conversation[-1]
    assert (hangup.speaker, hangup.kind) == ("callee", "hangup")
    assert statuses(app)[-1] == ("3", "completed")


async def test_callee_with_nothing_left_to_say_hangs_up(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006", "steps": [{"say": "Hello?"}]})
    app.twiml("/voice", gather("/speech", "Hi!"))
    app.twiml("/speech", gather("/speech", "Anything else?"))

    call = await emulator.wait_for_call(await place_call(client, app, "+15005550006"))

    assert (call.status, call.ended_by) == ("completed", "callee_hangup")
    assert call.lines("agent") == ["Hi!", "Anything else?"]


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed"])
async def test_unanswered_outcomes_never_fetch_the_twiml(
    emulator: TwilioEmulator, client: Client, app: WebhookApp, outcome: str
) -> None:
    emulator.add_scenario({"to": "+15005550006", "outcome": outcome, "ring_s": 1})

    sid = await place_call(client, app, "+15005550006", timeout=5, record=True)
    call = await emulator.wait_for_call(sid)

    assert app.hits_to("/voice") == []
    assert statuses(app) == [("0", "initiated"), ("1", "ringing"), ("2", outcome)]
    final = app.hits_to("/status")[-1].params
    assert final["CallDuration"] == "0"
    assert ("ErrorCode" in final) == (outcome == "failed")
    assert (call.status, call.ended_by, call.recording_sid) == (outcome, "not_answered", None)
    fetched = await asyncio.to_thread(client.calls(sid).fetch)
    assert fetched.status == outcome


async def test_ringing_past_the_timeout_is_no_answer(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006", "ring_s": 30})

    call = await emulator.wait_for_call(await place_call(client, app, "+15005550006", timeout=10))

    assert call.status == "no-answer"
    assert call.ended_at is not None
    assert (call.ended_at - call.created_at).total_seconds() == pytest.approx(10, abs=0.01)


async def test_recording_callback_comes_after_completed(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006", "steps": [{"say": "Hi."}]})
    app.twiml("/voice", "<Response><Say>Hello there, just checking in.</Say><Hangup/></Response>")

    sid = await place_call(
        client,
        app,
        "+15005550006",
        record=True,
        recording_status_callback=f"{app.base_url}/recording?call_id=c-1",
        recording_status_callback_event=["completed"],
    )
    call = await emulator.wait_for_call(sid)

    assert [hit.path for hit in app.hits][-2:] == ["/status", "/recording"]
    recording = app.hits_to("/recording")[0].params
    assert re.fullmatch(r"RE[0-9a-f]{32}", recording["RecordingSid"])
    assert recording == {
        "AccountSid": ACCOUNT_SID,
        "CallSid": sid,
        "RecordingSid": call.recording_sid,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}"
        f"/Recordings/{call.recording_sid}",
        "RecordingStatus": "completed",
        "RecordingDuration": str(call.duration_s),
        "RecordingChannels": "1",
        "RecordingSource": "OutboundAPI",
        "RecordingStartTime": recording["RecordingStartTime"],
    }
    assert parsedate_to_datetime(recording["RecordingStartTime"]) is not None
    assert (call.finished, call.duration_s) == (True, 2)  # five words take two seconds
    assert_all_signed(app)


# -- machine detection and live updates ---------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reported"), [("Enable", "machine_start"), ("DetectMessageEnd", "machine_end_beep")]
)
async def test_sync_machine_detection_reports_answered_by_on_the_answer(
    emulator: TwilioEmulator, client: Client, app: WebhookApp, mode: str, reported: str
) -> None:
    emulator.add_scenario(
        {"to": "+15005550102", "answered_by": "machine_end_beep", "amd_duration_ms": 4000}
    )
    app.twiml("/voice", "<Response><Say>Please call us back.</Say><Hangup/></Response>")

    call = await emulator.wait_for_call(
        await place_call(client, app, "+15005550102", machine_detection=mode)
    )

    assert app.hits_to("/voice")[0].params["AnsweredBy"] == reported
    assert app.hits_to("/status")[-1].params["AnsweredBy"] == reported
    assert (call.answered_by, call.ended_by) == (reported, "agent_hangup")
    # Detection time counts in the call: 4 s, plus 2 s of speech.
    assert call.duration_s == 6


async def test_async_amd_result_then_redirect_to_voicemail_by_update(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario(
        {"to": "+15005550102", "answered_by": "machine_end_beep", "amd_duration_ms": 3000}
    )
    voicemail = "<Response><Say>Hi, this is Ava. We will call back.</Say><Hangup/></Response>"
    app.twiml("/voice", gather("/speech", "Hi, this is Ava from Acme. Who am I speaking with?"))

    async def amd(hit: Hit) -> Response:
        if hit.params["AnsweredBy"].startswith("machine"):
            update = client.calls(hit.params["CallSid"]).update
            await asyncio.to_thread(update, twiml=voicemail)
        return Response(status_code=204)

    app.on("/amd", amd)

    sid = await place_call(
        client,
        app,
        "+15005550102",
        machine_detection="DetectMessageEnd",
        async_amd="true",
        async_amd_status_callback=f"{app.base_url}/amd?call_id=c-1",
    )
    call = await emulator.wait_for_call(sid)

    assert "AnsweredBy" not in app.hits_to("/voice")[0].params
    amd_params = app.hits_to("/amd")[0].params
    assert amd_params == {
        "AccountSid": ACCOUNT_SID,
        "CallSid": sid,
        "AnsweredBy": "machine_end_beep",
        "MachineDetectionDuration": "3000",
    }
    assert app.hits_to("/speech") == []
    assert call.lines("agent")[-1] == "Hi, this is Ava. We will call back."
    assert (call.status, call.ended_by, call.answered_by) == (
        "completed",
        "agent_hangup",
        "machine_end_beep",
    )
    assert app.hits_to("/status")[-1].params["AnsweredBy"] == "machine_end_beep"
    assert_all_signed(app)


async def test_update_status_completed_hangs_up_a_live_call(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    # 600 emulated seconds of silence would take 6 real seconds at speed 100.
    emulator.add_scenario({"to": "+15005550006", "steps": [{"silence": {"duration_s": 600}}]})
    app.twiml("/voice", gather("/speech", "Hello?"))

    sid = await place_call(client, app, "+15005550006")
    await app.wait_for_hit("/voice")
    updated = await asyncio.to_thread(client.calls(sid).update, status="completed")
    call = await emulator.wait_for_call(sid, timeout_s=5)

    assert updated.sid == sid
    assert (call.status, call.ended_by) == ("completed", "api_update")
    assert call.duration_s is not None
    assert call.duration_s < 600
    assert statuses(app)[-1][1] == "completed"


async def test_update_with_url_fetches_new_instructions(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006", "steps": [{"silence": {"duration_s": 600}}]})
    app.twiml("/voice", gather("/speech", "Hello?"))
    app.twiml("/moved", "<Response><Say>Transferring you now.</Say></Response>")

    sid = await place_call(client, app, "+15005550006")
    await app.wait_for_hit("/voice")
    await asyncio.to_thread(client.calls(sid).update, url=f"{app.base_url}/moved", method="POST")
    call = await emulator.wait_for_call(sid, timeout_s=5)

    assert app.hits_to("/moved")[0].params["CallStatus"] == "in-progress"
    assert call.lines("agent")[-1] == "Transferring you now."
    assert call.ended_by == "twiml_end"


async def test_redirecting_a_finished_call_is_refused_with_21220(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006", "outcome": "busy"})
    sid = await place_call(client, app, "+15005550006")
    await emulator.wait_for_call(sid)

    with pytest.raises(TwilioRestException) as raised:
        await asyncio.to_thread(client.calls(sid).update, twiml="<Response/>")

    assert (raised.value.status, raised.value.code) == (400, 21220)


# -- application errors -------------------------------------------------------------------


async def _http_500(_: Hit) -> Response:
    return Response("boom", status_code=500)


async def _malformed(_: Hit) -> str:
    return "<Response><Say>unclosed</Response>"


@pytest.mark.parametrize(("handler", "code"), [(_http_500, 11200), (_malformed, 12100)])
async def test_unusable_answer_ends_the_call_with_an_application_error(
    emulator: TwilioEmulator,
    client: Client,
    app: WebhookApp,
    handler: Callable[[Hit], Awaitable[str | Response]],
    code: int,
) -> None:
    emulator.add_scenario({"to": "+15005550006", "steps": [{"say": "Hello?"}]})
    app.on("/voice", handler)

    call = await emulator.wait_for_call(await place_call(client, app, "+15005550006"))

    assert [error.code for error in call.errors] == [code]
    assert call.errors[0].url == f"{app.base_url}/voice?call_id=c-1"
    assert call.conversation[-1].text == "We are sorry, an application error has occurred. Goodbye."
    assert (call.status, call.ended_by) == ("completed", "application_error")
    assert statuses(app)[-1][1] == "completed"


async def test_webhook_timeout_is_an_application_error(app: WebhookApp) -> None:
    async def slow(_: Hit) -> str:
        await asyncio.sleep(1)
        return SAY_AND_HANG_UP

    app.on("/voice", slow)
    async with TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN, webhook_timeout_s=0.1) as emulator:
        client = twilio_client(emulator.base_url)
        call = await emulator.wait_for_call(await place_call(client, app, "+15005550006"))

    assert [error.code for error in call.errors] == [11205]
    assert call.webhooks_of("voice")[0].status_code is None
    assert call.ended_by == "application_error"


async def test_failed_status_callback_is_recorded_and_the_call_goes_on(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006"})
    app.on("/status", _http_500)
    app.twiml("/voice", SAY_AND_HANG_UP)

    call = await emulator.wait_for_call(await place_call(client, app, "+15005550006"))

    assert {error.code for error in call.errors} == {15003}
    assert (call.status, call.ended_by) == ("completed", "agent_hangup")


async def test_get_webhooks_are_signed_over_their_query_string(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006"})
    app.twiml("/voice", SAY_AND_HANG_UP)

    await emulator.wait_for_call(
        await place_call(client, app, "+15005550006", method="GET", status_callback_method="GET")
    )

    voice = app.hits_to("/voice")[0]
    assert voice.method == "GET"
    assert (voice.query["call_id"], voice.query["CallStatus"]) == ("c-1", "in-progress")
    assert {hit.method for hit in app.hits_to("/status")} == {"GET"}
    assert_all_signed(app)


# -- control API and the separate process -------------------------------------------------


async def test_control_api_registers_scenarios_and_shows_calls(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    control = AsyncEmulatorControl(emulator.base_url)
    await control.add_scenario(
        {"name": "http-registered", "to": "+15005550199", "steps": [{"hangup": {}}]}
    )
    app.twiml("/voice", gather("/speech", "Hello?"))

    sid = await place_call(client, app, "+15005550199")
    waited = await control.wait_for_call(sid, timeout_s=10)
    listed = await control.calls()
    requests = await control.requests()

    assert (waited.scenario, waited.ended_by, waited.finished) == (
        "http-registered",
        "callee_hangup",
        True,
    )
    assert [call.sid for call in listed] == [sid]
    assert waited.from_ == FROM
    assert requests[0].form["To"] == ["+15005550199"]
    async with httpx.AsyncClient() as http:
        bad = await http.post(f"{emulator.base_url}/_control/scenarios", json={"steps": [{}]})
        unknown = await http.get(f"{emulator.base_url}/_control/calls/CAnope/wait")
    assert bad.status_code == 422
    assert "exactly one of the keys 'say', 'silence', 'hangup'" in bad.json()["message"]
    assert unknown.status_code == 404


async def test_wait_times_out_with_408_while_the_call_plays(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550006", "steps": [{"silence": {"duration_s": 600}}]})
    app.twiml("/voice", gather("/speech", "Hello?"))
    sid = await place_call(client, app, "+15005550006")

    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{emulator.base_url}/_control/calls/{sid}/wait", params={"timeout": 0.05}
        )

    assert response.status_code == 408
    assert response.json()["call"]["sid"] == sid
    await asyncio.to_thread(client.calls(sid).update, status="completed")
    assert (await emulator.wait_for_call(sid)).ended_by == "api_update"


async def test_emulator_process_plays_the_example_scenarios(app: WebhookApp) -> None:
    process = await asyncio.to_thread(
        start_emulator_process, ACCOUNT_SID, AUTH_TOKEN, scenarios_dir=EXAMPLES
    )
    try:
        client = twilio_client(process.base_url)
        app.twiml("/voice", gather("/speech", "Hello, who is this?"))
        app.twiml("/speech", SAY_AND_HANG_UP)
        busy = await place_call(client, app, "+15005550103")
        midway = await place_call(client, app, "+15005550104")
        control = AsyncEmulatorControl(process.base_url)
        busy_call = await control.wait_for_call(busy)
        midway_call = await control.wait_for_call(midway)
    finally:
        exit_code = await asyncio.to_thread(process.stop)

    assert (busy_call.scenario, busy_call.status) == ("busy", "busy")
    assert (midway_call.scenario, midway_call.ended_by) == ("hangup_midway", "agent_hangup")
    assert exit_code == 0
    output = "\n".join(process.output())
    assert "CALLEE: Hello? Yes, this is Grace Hopper." in output
    assert f"CALL {busy} to +15005550103 (scenario busy): busy" in output
    assert_all_signed(app)


def test_examples_load_into_one_book() -> None:
    from callbot.emulator.scenario import ScenarioBook, load_scenario_dir

    book = ScenarioBook(load_scenario_dir(EXAMPLES))
    by_name: Mapping[str, str | None] = {s.name: s.to for s in book.all()}
    assert {"demo", "silent", "voicemail", "busy", "hangup_midway"} <= set(by_name)
    assert book.for_number("+15005550006").name == "demo"
    assert book.for_number("+19999999999").name == "default"


# -- what a reconciler reads when callbacks are lost --------------------------------------


async def test_dropped_callbacks_are_not_sent_and_the_rest_api_still_tells_the_truth(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    await AsyncEmulatorControl(emulator.base_url).drop_callbacks("status", "recording")
    emulator.add_scenario({"to": "+15005550006", "steps": [{"say": "Hi."}]})
    app.twiml("/voice", "<Response><Say>Hello there, just checking in.</Say><Hangup/></Response>")

    sid = await place_call(
        client,
        app,
        "+15005550006",
        record=True,
        recording_status_callback=f"{app.base_url}/recording?call_id=c-1",
    )
    call = await emulator.wait_for_call(sid)

    assert [hit.path for hit in app.hits] == ["/voice"]
    dropped = call.webhooks_of("status") + call.webhooks_of("recording")
    assert [hook.params.get("CallStatus") for hook in call.webhooks_of("status")][-1] == "completed"
    assert {(hook.status_code, hook.error) for hook in dropped} == {(None, DROPPED)}
    fetched = await asyncio.to_thread(client.calls(sid).fetch)
    assert (fetched.status, fetched.duration) == ("completed", str(call.duration_s))
    assert fetched.start_time is not None
    assert fetched.end_time is not None
    [recording] = await asyncio.to_thread(client.calls(sid).recordings.list)
    assert (recording.sid, recording.call_sid, recording.status) == (
        call.recording_sid,
        sid,
        "completed",
    )
    assert recording.duration == str(call.duration_s)
    recordings_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings"
    assert recording.uri == f"{recordings_path}/{call.recording_sid}.json"

    await AsyncEmulatorControl(emulator.base_url).drop_callbacks()
    emulator.add_scenario({"to": "+15005550007", "steps": [{"say": "Hi."}]})
    second = await emulator.wait_for_call(await place_call(client, app, "+15005550007"))
    assert [hook.status_code for hook in second.webhooks_of("status")] == [204] * 4


async def test_a_call_not_answered_has_no_recordings(
    emulator: TwilioEmulator, client: Client, app: WebhookApp
) -> None:
    emulator.add_scenario({"to": "+15005550008", "outcome": "busy"})
    sid = await place_call(client, app, "+15005550008", record=True)
    await emulator.wait_for_call(sid)
    assert await asyncio.to_thread(client.calls(sid).recordings.list) == []
    unknown = await AsyncEmulatorControl(emulator.base_url).call(sid)
    assert unknown.recording_sid is None
    async with httpx.AsyncClient(auth=(ACCOUNT_SID, AUTH_TOKEN)) as http:
        response = await http.get(
            f"{emulator.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/CA{'0' * 32}"
            "/Recordings.json"
        )
    assert (response.status_code, response.json()["code"]) == (404, 20404)
