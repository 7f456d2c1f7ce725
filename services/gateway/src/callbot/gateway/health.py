"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from callbot.common.messaging import is_connected
from callbot.common.startup import address_of
from callbot.gateway.deps import Resources
from callbot.gateway.resources import GatewayResources

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The broker connection is down."}})
async def readyz(resources: Resources, response: Response) -> dict[str, str]:
    """Ready to take webhooks: the broker connection is open. Says which
    dependency is missing: without MongoDB, webhooks are still served (the
    `/v1` API answers 503), so it is named but gateway stays ready."""
    settings = resources.settings
    answer = {"status": "ready"}
    if _mongodb_failed(resources):
        address = address_of(settings.mongodb_url.get_secret_value())
        answer["mongodb"] = f"unreachable at {address}: /v1 answers 503"
    if not is_connected(resources.connection):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        address = address_of(settings.rabbitmq_url.get_secret_value())
        answer["status"] = "not ready"
        answer["rabbitmq"] = f"not connected to {address}"
    return answer


def _mongodb_failed(resources: GatewayResources) -> bool:
    """The MongoDB client's last attempt failed (it connects on the first read)."""
    topology = resources.mongo.topology_description
    tried = [server.error for server in topology.server_descriptions().values()]
    return not topology.has_readable_server() and any(error is not None for error in tried)


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
