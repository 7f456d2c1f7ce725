"""Recipients per agent: merged data, calls, opt-out state; CSV export
through the read API's own export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from callbot.common.recipients import RecipientDocument
from callbot.gateway import results_api
from callbot.gateway.console.presenting import filter_link
from callbot.gateway.console.web import PREFIX, Session, SignedPage
from callbot.gateway.deps import Resources
from callbot.gateway.domain.result_queries import encode_cursor, recipients_condition

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZE = 50


@router.get("/recipients")
async def recipients_list(
    page: SignedPage,
    agent_id: str = "",
    opted_out: Annotated[str, Query(pattern="^(|true|false)$")] = "",
    cursor: str | None = None,
) -> Response:
    agents = await page.resources.results.agents(500)
    agent_id = agent_id or (str(agents[0]["_id"]) if agents else "")
    recipients: list[RecipientDocument] = []
    next_link = None
    if agent_id:
        condition = recipients_condition(
            agent_id=agent_id,
            opted_out=None if not opted_out else opted_out == "true",
            data_complete=None,
            missing=None,
            cursor=cursor,
        )
        documents = [d async for d in page.resources.results.recipients(condition, PAGE_SIZE)]
        recipients = [RecipientDocument.model_validate(document) for document in documents]
        if len(documents) == PAGE_SIZE:
            last = documents[-1]
            next_link = filter_link(
                f"{PREFIX}/recipients",
                {"agent_id": agent_id, "opted_out": opted_out},
                cursor=encode_cursor(last["last_call_at"], str(last["_id"])),
            )
    return page.render(
        "recipients.html",
        agents=agents,
        agent_id=agent_id,
        opted_out=opted_out,
        recipients=recipients,
        next_link=next_link,
    )


@router.get("/recipients.csv")
async def recipients_csv(
    request: Request, resources: Resources, _session: Session, agent_id: str
) -> Response:
    response: Response = await results_api.list_recipients(
        request, resources, agent_id=agent_id, opted_out=None, data_complete=None, missing=None
    )
    return response
