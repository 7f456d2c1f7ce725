"""The console's calls list with 10,000 stored calls: page weight and time to
first render in headless Chromium (Debian's, driven by playwright), against
the sign-in page (a template, no MongoDB read) as the floor of the same run.

Starts the stack (bench/_harness.py), writes 10,000 call documents straight
into its database (5 agents, 2,000 numbers, 10 days, 8 turns each), signs in,
then loads each page `--rounds` times, each in a fresh browser context (cold
cache, as a first visit): the first page of the list, the list filtered by
ending, by agent and number, and the 21st page (1,000 calls in, through the
keyset cursor). Prints p50/p95/p99 of the server's answer (request start to
first byte), of first contentful paint (from navigation start), and what the
page weighs (bytes of every response, uncompressed: gateway does not gzip).

    .venv/bin/python bench/console.py [--calls 10000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

from _harness import DEFAULT_RABBITMQ_URL, STANDIN_NOTE, machine_line, running_stack
from _stats import percentile, print_row
from playwright.sync_api import Browser, BrowserContext, sync_playwright
from pymongo import MongoClient

from callbot.gateway.console.calls_pages import ENDINGS as CALL_ENDINGS
from callbot.gateway.console.calls_pages import STATUSES
from callbot.gateway.console.presenting import CALL_FILTERS
from callbot.gateway.console.web import templates
from callbot.gateway.result_documents import CALL_ORDER
from callbot.testkit.mongo_standin import start_standin_process
from callbot.testkit.stack import API_KEY

DATABASE = "callbot_console_bench"
AGENT_AND_NUMBER = "agent_id=agent-2&to=%2B14155550002"
ENDINGS = ["system_complete", "user_goodbye", "callee_hangup", "voicemail", "busy", "no-answer"]
LINES = [
    "Hi Ada, this is Ava from Acme Support. Could you tell me your full name?",
    "Yes, this is Ada Lovelace.",
    "Thank you. Could you tell me your email address?",
    "Sure, my email is ada@example.com.",
    "Thank you. Could you tell me your callback phone number?",
    "You can call me back at +1 415 555 0134.",
    "Thank you, Ada, I have everything I need. Goodbye!",
    "Goodbye!",
]
MEASURE = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = performance.getEntriesByType("paint")
    .find((p) => p.name === "first-contentful-paint");
  const resources = performance.getEntriesByType("resource");
  return {
    server_ms: nav.responseStart - nav.requestStart,
    fcp_ms: paint ? paint.startTime : null,
    html_bytes: nav.decodedBodySize,
    resource_bytes: resources.reduce((sum, r) => sum + r.decodedBodySize, 0),
    requests: 1 + resources.length,
    rows: document.querySelectorAll("#calls tbody tr").length,
  };
}"""


def call_document(index: int, start: datetime) -> dict[str, Any]:
    created = start + timedelta(seconds=index * 86.4)  # 10,000 calls over 10 days
    ended_by = ENDINGS[index % len(ENDINGS)]
    answered = ended_by not in ("busy", "no-answer")
    turns = [
        {
            "seq": seq,
            "role": "assistant" if seq % 2 == 0 else "user",
            "content": line,
            "at": created + timedelta(seconds=5 * seq),
        }
        for seq, line in enumerate(LINES if answered else [])
    ]
    return {
        "_id": f"bench{index:06d}",
        "call_sid": f"CA{index:032d}",
        "agent_id": f"agent-{index % 5}",
        "agent_version": 1,
        "to": f"+1415555{index % 2000:04d}",
        "from": "+15005550001",
        "status": "completed" if answered else ended_by,
        "ended_by": ended_by,
        "ending_reason": "bench",
        "created_at": created,
        "answered_at": created + timedelta(seconds=3) if answered else None,
        "ended_at": created + timedelta(seconds=45),
        "duration_s": 42 if answered else 0,
        "turns": turns,
        "data_collected": {"full_name": "Ada Lovelace"} if answered else {},
        "data_complete": ended_by == "system_complete",
        "summary": "Call of 3 callee answers; every requested detail was collected.",
        "updated_at": created + timedelta(seconds=50),
        "completed_published_at": created + timedelta(seconds=52),
    }


def seed(mongodb_url: str, database: str, calls: int) -> None:
    start = datetime.now(UTC) - timedelta(days=10)
    with MongoClient(mongodb_url, tz_aware=True) as client:
        collection = client[database]["calls"]
        for first in range(0, calls, 1000):
            batch = [call_document(i, start) for i in range(first, min(first + 1000, calls))]
            collection.insert_many(batch)
        stored = collection.count_documents({})
    print(f"stored calls: {stored}")


def signed_in_context(browser: Browser, console_url: str) -> list[Any]:
    """The session cookie, signed in once through the form."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{console_url}/sign-in")
    page.fill("input[name=api_key]", API_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{console_url}/live")
    cookies = context.cookies()
    context.close()
    return list(cookies)


def deep_page(browser: Browser, cookies: list[Any], url: str, pages: int) -> str:
    """The URL of the list's page number `pages` + 1, reached through its next links."""
    context = browser.new_context()
    context.add_cookies(cookies)
    page = context.new_page()
    page.goto(url)
    for _ in range(pages):
        page.click("a[rel=next]")
        page.wait_for_load_state()
    found = page.url
    context.close()
    return found


def measure(browser: Browser, cookies: list[Any], url: str, rounds: int) -> list[dict[str, Any]]:
    samples = []
    for _ in range(rounds):
        context: BrowserContext = browser.new_context()
        context.add_cookies(cookies)
        page = context.new_page()
        page.goto(url, wait_until="load")
        samples.append(page.evaluate(MEASURE))
        context.close()
    return samples


def report(label: str, samples: list[dict[str, Any]]) -> None:
    server = [s["server_ms"] for s in samples]
    fcp = [s["fcp_ms"] for s in samples if s["fcp_ms"] is not None]
    last = samples[-1]
    weight = last["html_bytes"] + last["resource_bytes"]
    print(
        f"{label:<34} rows={last['rows']:<3} "
        f"weight={weight / 1024:5.1f} KiB (html {last['html_bytes'] / 1024:5.1f}, "
        f"{last['requests']} requests)  "
        f"server p50/p95/p99={percentile(server, 0.5):5.1f}/{percentile(server, 0.95):5.1f}/"
        f"{percentile(server, 0.99):5.1f} ms  "
        f"first render p50/p95/p99={percentile(fcp, 0.5):5.0f}/{percentile(fcp, 0.95):5.0f}/"
        f"{percentile(fcp, 0.99):5.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    arguments = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's chromium is missing: run scripts/ensure-tools.sh")
    with ExitStack() as cleanup:
        mongodb_url = os.environ.get("MONGODB_URL")
        if mongodb_url is None:
            # Seeded before persistence starts, which then builds its indexes over the calls.
            standin = start_standin_process()
            cleanup.callback(standin.stop)
            mongodb_url = os.environ["MONGODB_URL"] = standin.url
            mongo_kind = STANDIN_NOTE
        else:
            mongo_kind = "MongoDB: the server at MONGODB_URL"
        cleanup.callback(drop_database, mongodb_url)
        seed(mongodb_url, DATABASE, arguments.calls)
        stack = running_stack(DEFAULT_RABBITMQ_URL, "WARNING", extra_env={"MONGODB_DB": DATABASE})
        bench = cleanup.enter_context(stack)
        print(machine_line())
        print(mongo_kind)
        explain(mongodb_url, is_standin=mongo_kind == STANDIN_NOTE)
        console = f"{bench.gateway_url}/console"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            print(f"chromium {browser.version}")
            cookies = signed_in_context(browser, console)
            started = time.monotonic()
            pages = {
                "floor: sign-in page (no read)": f"{console}/sign-in",
                "calls list, first page": f"{console}/calls",
                "calls list, ended_by=voicemail": f"{console}/calls?ended_by=voicemail",
                "calls list, agent + number": f"{console}/calls?{AGENT_AND_NUMBER}",
                "calls list, page 21 (cursor)": deep_page(browser, cookies, f"{console}/calls", 20),
            }
            for label, url in pages.items():
                report(label, measure(browser, cookies, url, arguments.rounds))
            browser.close()
        print(f"measured in {time.monotonic() - started:.0f} s")
        render_only(mongodb_url, arguments.rounds * 10)


def render_only(mongodb_url: str, rounds: int) -> None:
    """The console's own share of a list page: the template over 50 stored calls, in process."""
    with MongoClient(mongodb_url, tz_aware=True) as client:
        projection = dict.fromkeys(["agent_id", "to", "status", "ended_by", "duration_s"], 1)
        calls = list(
            client[DATABASE]["calls"]
            .find({}, projection | {"data_complete": 1, "created_at": 1})
            .sort(CALL_ORDER)
            .limit(50)
        )
    template = templates.get_template("calls.html")
    context: dict[str, Any] = {
        "prefix": "/console",
        "path": "/console/calls",
        "csrf": "x" * 64,
        "calls": calls,
        "filters": dict.fromkeys(CALL_FILTERS, ""),
        "error": None,
        "statuses": STATUSES,
        "endings": CALL_ENDINGS,
        "limit": 50,
        "first_link": None,
        "next_link": "/console/calls?cursor=x",
    }
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        template.render(**context)
        samples.append(time.perf_counter() - started)
    print_row("calls.html render alone, 50 rows", samples, sum(samples))


def explain(mongodb_url: str, *, is_standin: bool) -> None:
    """The plan of each list query (a real server only: the stand-in has no planner)."""
    if is_standin:
        print("query plans: not shown (the stand-in has no query planner; see docs/data-model.md)")
        return
    queries = {
        "first page": {},
        "ended_by": {"ended_by": "voicemail"},
        "agent + number": {"agent_id": "agent-2", "to": "+14155550002"},
    }
    with MongoClient(mongodb_url) as client:
        for label, condition in queries.items():
            plan = client[DATABASE].command(
                "explain",
                {"find": "calls", "filter": condition, "sort": dict(CALL_ORDER), "limit": 50},
                verbosity="queryPlanner",
            )
            print(f"plan, {label}: {json.dumps(plan['queryPlanner']['winningPlan'])[:300]}")


def drop_database(mongodb_url: str) -> None:
    with MongoClient(mongodb_url, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(DATABASE)


if __name__ == "__main__":
    main()
