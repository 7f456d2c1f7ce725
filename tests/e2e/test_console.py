"""The console (issue 21) in real headless Chromium (Debian's, driven by
Playwright) against the real services and the Twilio emulator: sign in,
place a demo call and watch it live, read it back with its recording; filter
and page the calls list; run a campaign from a CSV upload with a pause; and
what the console refuses (injected markup, no session, a wrong CSRF token).
Every page visited is saved as a screenshot under test-artifacts/console/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from campaigns_harness import AGENT as CAMPAIGN_AGENT
from campaigns_harness import SCENARIOS, SPEED, afternoon_zone, number
from console_harness import ARTIFACTS, ROOT, ConsoleStack, chromium_path, running_console_stack
from e2e_harness import wait_until
from playwright.sync_api import Browser, Page, sync_playwright

from callbot.testkit.s3_server import S3ServerProcess
from callbot.testkit.stack import API_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DEMO_AGENT = json.loads((ROOT / "examples" / "agents" / "demo.json").read_text())
DEMO_AGENT.pop("agent_id")
DEMO_NUMBER = "+15005550006"  # examples/calls/demo.yaml


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory,
    rabbitmq_url: str,
    mongodb_url: str,
    s3_server: S3ServerProcess,
) -> Iterator[ConsoleStack]:
    log_dir = tmp_path_factory.mktemp("e2e-console")
    with running_console_stack(log_dir, rabbitmq_url, mongodb_url, s3_server) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path())
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()
    assert dialogs == [], f"a page opened a dialog: {dialogs}"


def shot(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, console: ConsoleStack, target: str) -> None:
    """Open `target`; the console asks for an API key first, then goes there."""
    page.goto(f"{console.url}{target}")
    assert "/console/sign-in" in page.url
    shot(page, "sign-in")
    page.fill("input[name=api_key]", API_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(f"{console.url}{target}")))


# Records, from the first moment of each page, how the live page's cards grow:
# one entry per change, with the lines a card holds and whether it has ended.
WATCH_LIVE = """
window.__live = [];
new MutationObserver(() => {
  for (const card of document.querySelectorAll("article.card")) {
    const lines = card.querySelectorAll("li.line").length;
    const ended = card.classList.contains("ended");
    const last = window.__live.filter((s) => s.call === card.dataset.call).pop();
    if (!last || last.lines !== lines || last.ended !== ended) {
      window.__live.push({call: card.dataset.call, lines, ended});
    }
  }
}).observe(document, {childList: true, subtree: true, attributes: true});
"""


def test_sign_in_place_a_demo_call_watch_it_live_and_open_it(
    console: ConsoleStack, page: Page
) -> None:
    console.put_agent("demo", DEMO_AGENT)
    page.add_init_script(WATCH_LIVE)
    sign_in(page, console, "/agents/demo")
    shot(page, "agent")
    # The emulator's demo callee is the default number of the test call.
    assert page.input_value("#test-call input[name=to]") == DEMO_NUMBER
    page.click("#test-call button[type=submit]")
    page.wait_for_url(re.compile(r"/console/live#call-"))
    call_id = page.url.rpartition("#call-")[2]
    card = page.locator(f"#call-{call_id}")
    card.locator("li.line").first.wait_for()
    shot(page, "live")
    page.wait_for_selector(f"#call-{call_id}.completed", timeout=60_000)
    stored = console.wait_completed(call_id)

    # Line by line: the card grew one exchange at a time while the call was on.
    seen = page.evaluate("(id) => window.__live.filter((s) => s.call === id)", call_id)
    while_live = [state["lines"] for state in seen if not state["ended"]]
    growth = sorted({count for count in while_live if count > 0})
    assert len(growth) >= 3, seen
    assert growth == sorted(growth)
    assert card.locator("li.line").count() == len(stored["turns"])

    # Its page: the conversation, the data, the ending, and the recording, which plays.
    card.locator("header a").click()
    page.wait_for_url(f"{console.url}/calls/{call_id}")
    transcript = page.locator("#transcript li.line")
    assert transcript.count() == len(stored["turns"])
    assert transcript.first.inner_text().startswith("Agent")
    assert "Ada Lovelace" in page.inner_text("#transcript")
    for name, value in stored["data_collected"].items():
        assert page.locator("#data tr", has_text=name).inner_text().count(str(value)) == 1
    assert stored["ended_by"] in page.inner_text("#ending")

    def recording_shown() -> bool:
        page.reload()
        return page.locator("#recording audio").count() == 1

    wait_until(recording_shown, "the archived recording on the call page", 60, console.explain)
    duration = page.evaluate(
        """async () => {
          const audio = document.querySelector("#recording audio");
          if (audio.readyState < 1) {
            await new Promise((loaded, failed) => {
              audio.addEventListener("loadedmetadata", loaded, {once: true});
              audio.addEventListener("error", () => failed(new Error(audio.error.message)));
              audio.load();
            });
          }
          return audio.duration;
        }"""
    )
    assert duration > 0
    shot(page, "call")


def test_a_callee_s_markup_shows_as_text_and_changes_need_a_session_and_its_csrf_token(
    console: ConsoleStack, page: Page
) -> None:
    agent = {**DEMO_AGENT, "record": False}
    console.put_agent("console-injection", agent)
    to = "+15005550160"
    said = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    console.emulator.add_scenario(
        {"name": "injection", "to": to, "speed": 20, "steps": [{"say": said}, {"hangup": {}}]}
    )
    call_id = console.place_call("console-injection", to, name='<b onmouseover="alert(3)">Eve</b>')
    console.wait_completed(call_id)
    sign_in(page, console, f"/calls/{call_id}")
    transcript = page.locator("#transcript")
    assert said in transcript.inner_text()
    assert transcript.locator("script, img, b").count() == 0
    assert '<b onmouseover="alert(3)">Eve</b>' in transcript.inner_text()  # the greeting
    shot(page, "call-injection")

    # Without a session: pages send to the sign-in form, anything else is refused.
    anonymous = httpx.Client(base_url=console.url, follow_redirects=False, timeout=10)
    with anonymous:
        for path in ("/calls", f"/calls/{call_id}", "/live", "/campaigns"):
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/console/sign-in?next=")
        assert anonymous.get(f"/calls/{call_id}/recording").status_code == 303
        stream = anonymous.get("/live/stream", headers={"Accept": "text/event-stream"})
        assert stream.status_code == 401
        placed = anonymous.post(
            "/agents/console-injection/test-call", data={"to": to, "csrf_token": "x"}
        )
        assert placed.status_code == 401

    forged = httpx.Client(
        base_url=console.url, cookies={"callbot_console": "forged.value"}, timeout=10
    )
    with forged:
        assert forged.get("/calls", follow_redirects=False).status_code == 303

    # With the browser's session but a wrong or missing CSRF token: 403, no call placed.
    cookies = {
        cookie["name"]: cookie["value"]
        for cookie in page.context.cookies()
        if cookie["name"] == "callbot_console"
    }
    assert cookies
    calls_before = len(console.emulator.calls())
    signed = httpx.Client(base_url=console.url, cookies=cookies, follow_redirects=False, timeout=10)
    with signed:
        assert signed.get("/calls").status_code == 200
        for token in ("wrong", None):
            form = {"to": to, "name": "Mallory"} | ({"csrf_token": token} if token else {})
            assert signed.post("/agents/console-injection/test-call", data=form).status_code == 403
        assert signed.post("/sign-out", data={"csrf_token": "wrong"}).status_code == 403
    assert len(console.emulator.calls()) == calls_before

    # The page's own forms carry the token: signing out works, and ends the session there.
    page.click("form.sign-out button")
    page.wait_for_url(re.compile(r"/console/sign-in$"))
    page.goto(f"{console.url}/calls")
    assert "/console/sign-in" in page.url


def test_the_calls_list_filters_by_ending_and_number_keeps_them_in_the_url_and_pages(
    console: ConsoleStack, page: Page
) -> None:
    agent_id = "console-list"
    console.put_agent(agent_id, {**DEMO_AGENT, "record": False})
    mine, other = "+15005550170", "+15005550171"
    for to, outcome in ((mine, "busy"), (other, "busy")):
        console.emulator.add_scenario({"name": f"{outcome}-{to}", "to": to, "outcome": outcome})
    # Three busy calls to my number, one to another; then one my number answers.
    placed = [console.place_call(agent_id, to) for to in (mine, other, mine, mine)]
    console.emulator.add_scenario(
        {"name": f"hangs-up-{mine}", "to": mine, "speed": 50, "steps": [{"hangup": {}}]}
    )
    placed.append(console.place_call(agent_id, mine))
    for call_id in placed:
        console.wait_completed(call_id)
    busy_mine = [placed[0], placed[2], placed[3]]

    sign_in(page, console, "/calls?limit=2")
    page.fill("#call-filters input[name=agent_id]", agent_id)
    page.fill("#call-filters input[name=to]", mine)
    page.select_option("#call-filters select[name=ended_by]", "busy")
    page.click("#call-filters button[type=submit]")
    page.wait_for_load_state()
    query = page.url.partition("?")[2]
    for kept in (f"agent_id={agent_id}", "to=%2B15005550170", "ended_by=busy", "limit=2"):
        assert kept in query, page.url
    shot(page, "calls")

    def rows() -> list[tuple[str, str, str]]:
        cells = page.locator("#calls tbody tr").evaluate_all(
            "(rows) => rows.map((row) => Array.from(row.cells, (cell) => cell.innerText.trim()))"
        )
        return [(cells_[1], cells_[2], cells_[4]) for cells_ in cells]

    def call_ids() -> list[str]:
        hrefs: list[str] = page.locator("#calls tbody a").evaluate_all(
            "(links) => links.map((link) => link.href)"
        )
        return [href.rpartition("/")[2] for href in hrefs]

    assert rows() == [(mine, agent_id, "busy")] * 2
    first_page = call_ids()
    page.click("a[rel=next]")
    page.wait_for_load_state()
    assert "cursor=" in page.url
    for kept in (f"agent_id={agent_id}", "to=%2B15005550170", "ended_by=busy", "limit=2"):
        assert kept in page.url
    assert rows() == [(mine, agent_id, "busy")]
    assert page.locator("a[rel=next]").count() == 0
    # Both pages together: each of my busy calls once, newest first.
    assert [*first_page, *call_ids()] == busy_mine[::-1]
    # The filters survive a reload of the URL, and the form shows them.
    page.reload()
    assert page.input_value("#call-filters input[name=to]") == mine
    assert page.input_value("#call-filters select[name=ended_by]") == "busy"
    page.click("a[rel=first]")
    page.wait_for_load_state()
    assert "cursor=" not in page.url
    assert len(rows()) == 2


def test_a_campaign_from_a_csv_upload_runs_to_the_end_with_a_pause_and_a_resume(
    console: ConsoleStack, page: Page
) -> None:
    console.put_agent("console-campaign", CAMPAIGN_AGENT)
    numbers = [number(90, index) for index in range(20)]
    for to in numbers:
        console.emulator.add_scenario(
            {"name": f"answers-{to}", "to": to, "speed": SPEED, "ring_s": 2, **SCENARIOS["answers"]}
        )
    zone = afternoon_zone()
    csv_text = "to,timezone,name\n" + "".join(f"{to},{zone},Ada\n" for to in numbers)
    settings = {
        "schedule": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
        "pacing": {"calls_per_second": 4, "max_concurrent": 3},
    }

    sign_in(page, console, "/campaigns")
    page.fill("#campaign-form input[name=name]", "Spring check")
    page.select_option("#campaign-form select[name=agent_id]", "console-campaign")
    page.set_input_files(
        "#campaign-form input[name=recipients]",
        files=[{"name": "list.csv", "mimeType": "text/csv", "buffer": csv_text.encode()}],
    )
    page.fill("#campaign-form textarea[name=settings]", json.dumps(settings))
    page.click("#campaign-form button[type=submit]")
    page.wait_for_url(re.compile(r"/console/campaigns/\w+$"))
    assert page.inner_text("#total") == "20"

    def counter(name: str) -> int:
        return int(page.inner_text(f"#counter-{name} strong"))

    # The counters move by themselves (htmx polls the progress); pause part way.
    page.wait_for_function("() => Number(document.querySelector('#finished').textContent) >= 3")
    page.click("#pause")
    page.wait_for_selector("#campaign-state:text('paused')")
    paused_at = datetime.now(UTC)
    page.wait_for_function(
        "() => document.querySelector('#counter-in-progress strong').textContent === '0'",
        timeout=60_000,
    )
    finished_while_paused = int(page.inner_text("#finished"))
    assert finished_while_paused < 20
    shot(page, "campaign-paused")
    resumed_at = datetime.now(UTC)
    placed_while_paused = [
        call
        for call in console.emulator.calls()
        if call.to in numbers and paused_at < call.created_at < resumed_at
    ]
    assert placed_while_paused == []
    page.click("#resume")
    page.wait_for_selector("#campaign-state:text('running')")
    page.wait_for_selector("#campaign-state:text('completed')", timeout=120_000)
    assert page.inner_text("#finished") == "20"
    assert counter("completed") == 20
    assert page.locator("#resume, #pause").count() == 0
    shot(page, "campaign")
    page.goto(f"{console.url}/campaigns")
    assert "Spring check" in page.inner_text("#campaigns")
    shot(page, "campaigns")

    # The campaign's calls in the other views: its recipients, the overview, the agents.
    page.goto(f"{console.url}/recipients?agent_id=console-campaign")
    assert page.locator("#recipients tbody tr").count() == 20
    assert page.locator("#recipients tbody tr", has_text="Ada Lovelace").count() == 20
    shot(page, "recipients")
    page.goto(f"{console.url}/overview?agent_id=console-campaign&days=1")
    assert page.inner_text("#calls-total") == "20"
    assert page.inner_text("#data-complete-rate") == "100 %"
    shot(page, "overview")
    page.goto(f"{console.url}/agents")
    assert page.locator("#agents a", has_text="console-campaign").count() == 1
    shot(page, "agents")
