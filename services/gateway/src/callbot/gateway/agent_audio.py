"""The URL Twilio fetches to `<Play>` one of an agent's recorded lines.

A presigned GET of the object in the agent files bucket, valid
`S3_PRESIGNED_URL_TTL_S`: Twilio fetches it within the second, and the URL
grants nothing else. Signing is local (no request to object storage), so it
adds no wait to a webhook. A line whose URL cannot be made is spoken from its
text instead: the call goes on.
"""

from __future__ import annotations

import logging

from callbot.common.object_storage import ObjectLocation, ObjectStorageError, ObjectStore

log = logging.getLogger(__name__)


class AgentAudioUrls:
    def __init__(self, store: ObjectStore, *, expires_s: int) -> None:
        self._store = store
        self._expires_s = expires_s

    async def url(self, uri: str | None) -> str | None:
        """A URL Twilio can fetch `uri` at; None (speak the text) when there is none."""
        if uri is None:
            return None
        try:
            location = ObjectLocation.parse(uri)
            return await self._store.presigned_get_url(location, expires_s=self._expires_s)
        except (ValueError, ObjectStorageError) as exc:
            log.warning(
                "cannot make a URL for the agent's recording; its text is spoken instead",
                extra={"audio": uri, "error": str(exc)},
            )
            return None
