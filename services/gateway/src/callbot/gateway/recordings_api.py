"""`GET /v1/calls/{call_id}/recording`: a call's archived recording, for API-key holders.

The audio comes from the recordings bucket (the media worker's copy, checked
when it was written), never from Twilio: Twilio's copy needs the account's
credentials and may be deleted after archiving. By default gateway serves the
bytes itself (object storage need not be reachable by the client);
`?redirect=true` answers 307 to a presigned URL valid `S3_PRESIGNED_URL_TTL_S`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from fastapi.responses import RedirectResponse

from callbot.common.logs import log_context
from callbot.common.object_storage import (
    ObjectLocation,
    ObjectNotFound,
    ObjectStorageUnavailable,
)
from callbot.gateway.deps import Resources, require_api_key
from callbot.gateway.resources import GatewayResources

router = APIRouter(prefix="/v1/calls", tags=["calls"], dependencies=[Depends(require_api_key)])


@router.get(
    "/{call_id}/recording",
    response_class=Response,
    responses={
        200: {"content": {"audio/wav": {}}, "description": "The archived recording."},
        307: {"description": "With `redirect=true`: a presigned URL of the recording."},
        404: {"description": "No such call, or its recording is not archived (yet)."},
        503: {"description": "Object storage is unreachable; retry later."},
    },
)
async def call_recording(
    call_id: Annotated[str, Path(min_length=1, max_length=64)],
    resources: Resources,
    redirect: Annotated[bool, Query(description="307 to a presigned URL instead")] = False,
) -> Response:
    return await archived_recording(call_id, resources, redirect=redirect)


async def archived_recording(
    call_id: str, resources: GatewayResources, *, redirect: bool = False
) -> Response:
    """The call's archived audio (or a 307 to it); the API and the console serve it alike."""
    with log_context(call_id=call_id):
        call = await resources.documents.call(call_id)
        if call is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"call {call_id!r} not found")
        archive = call.recording.archive if call.recording else None
        if archive is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"call {call_id!r} has no archived recording"
                + (" yet: the media worker archives it after the call" if call.recording else "")
                + "; call.recording_ready announces it when it is",
            )
        location = ObjectLocation(archive.bucket, archive.key)
        try:
            if redirect:
                url = await resources.objects.presigned_get_url(
                    location, expires_s=resources.settings.s3_presigned_url_ttl_s
                )
                return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
            audio = await resources.objects.get(location)
        except ObjectNotFound as exc:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"the archived recording {archive.uri} is gone from object storage",
            ) from exc
        except ObjectStorageUnavailable as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "object storage is unreachable; retry later",
                headers={"Retry-After": "5"},
            ) from exc
        return Response(
            audio,
            media_type=archive.content_type,
            headers={
                "Content-Disposition": f'inline; filename="{call_id}.wav"',
                "X-Checksum-Sha256": archive.sha256,
            },
        )
