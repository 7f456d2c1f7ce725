"""Campaigns: the list, creating one from a CSV upload (the API's own
creation path), a campaign's progress (counters, progress bar, outcomes as a
chart; polled by htmx while it runs) and pause, resume, cancel."""

from __future__ import annotations

import io
import json
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Path, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from callbot.common.campaigns import CampaignSettings
from callbot.gateway.campaigns_api import (
    control_campaign,
    create_from_rows,
    get_campaign,
    list_attempts,
)
from callbot.gateway.console.agents_pages import field_errors
from callbot.gateway.console.presenting import campaign_progress
from callbot.gateway.console.web import PREFIX, Changing, Page, Session, SignedPage, redirect
from callbot.gateway.deps import Resources
from callbot.gateway.domain.recipient_rows import csv_rows

log = logging.getLogger(__name__)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

CampaignId = Annotated[str, Path(min_length=1, max_length=64)]
CAMPAIGNS_SHOWN = 100
FINAL_STATES = frozenset({"completed", "canceled"})
DEFAULT_SETTINGS = {
    "schedule": {"days": ["mon", "tue", "wed", "thu", "fri", "sat"]},
    "pacing": {"calls_per_second": 1, "max_concurrent": 5},
}


async def _list_page(
    page: Page, *, errors: list[str], form: dict[str, str], status_code: int
) -> Response:
    return page.render(
        "campaigns.html",
        status_code=status_code,
        campaigns=await page.resources.campaigns.campaigns(CAMPAIGNS_SHOWN),
        agents=await page.resources.results.agents(500),
        errors=errors,
        form=form,
    )


@router.get("/campaigns")
async def campaigns_list(page: SignedPage) -> Response:
    form = {"name": "", "agent_id": "", "settings": json.dumps(DEFAULT_SETTINGS, indent=2)}
    return await _list_page(page, errors=[], form=form, status_code=200)


@router.post("/campaigns")
async def create_campaign(
    page: SignedPage,
    session: Changing,
    agent_id: Annotated[str, Form(max_length=64)],
    recipients: Annotated[UploadFile, File()],
    name: Annotated[str, Form(max_length=200)] = "",
    settings: Annotated[str, Form(max_length=20_000)] = "{}",
) -> Response:
    form = {"name": name, "agent_id": agent_id, "settings": settings}
    try:
        extra: Any = json.loads(settings or "{}")
        if not isinstance(extra, dict):
            raise ValueError("settings: a JSON object")
        parsed = CampaignSettings.model_validate({**extra, "name": name, "agent_id": agent_id})
        lines = io.TextIOWrapper(recipients.file, encoding="utf-8", newline="")
        created = await create_from_rows(parsed, csv_rows(lines), page.resources)
    except ValidationError as exc:
        errors = field_errors(exc.errors(include_url=False, include_input=False))
    except RequestValidationError as exc:
        errors = field_errors(exc.errors())
    except HTTPException as exc:
        errors = field_errors(exc.detail)
    except ValueError as exc:  # json.JSONDecodeError is one
        errors = [f"settings: {exc}"]
    else:
        log.info(
            "campaign created from the console",
            extra={"campaign_id": created.campaign_id, "actor": session.actor},
        )
        return redirect(f"{PREFIX}/campaigns/{created.campaign_id}")
    return await _list_page(page, errors=errors, form=form, status_code=422)


async def _progress_context(page: Page, campaign_id: str) -> dict[str, Any]:
    view = await get_campaign(campaign_id, page.resources)
    return {
        "campaign": view,
        "progress": campaign_progress(view.counters),
        "running": view.state not in FINAL_STATES,
    }


@router.get("/campaigns/{campaign_id}")
async def campaign_page(campaign_id: CampaignId, page: SignedPage) -> Response:
    return page.render("campaign.html", **await _progress_context(page, campaign_id))


@router.get("/campaigns/{campaign_id}/progress")
async def campaign_progress_fragment(campaign_id: CampaignId, page: SignedPage) -> Response:
    return page.render("_campaign_progress.html", **await _progress_context(page, campaign_id))


@router.get("/campaigns/{campaign_id}/attempts.csv")
async def campaign_attempts_csv(
    campaign_id: CampaignId, resources: Resources, _session: Session
) -> Response:
    """Every recipient's attempt, as the API's own CSV export."""
    response: Response = await list_attempts(campaign_id, resources, format="csv")
    return response


@router.post("/campaigns/{campaign_id}/{action}")
async def steer_campaign(
    campaign_id: CampaignId,
    action: Literal["pause", "resume", "cancel"],
    page: SignedPage,
    session: Changing,
) -> Response:
    await control_campaign(campaign_id, action, page.resources)
    log.info(
        "campaign steered from the console",
        extra={"campaign_id": campaign_id, "action": action, "actor": session.actor},
    )
    return redirect(f"{PREFIX}/campaigns/{campaign_id}")
