"""Twilio's Recordings API: download a recording's audio, delete it.

The one exception to "gateway alone talks to Twilio", and a narrow one: this
adapter calls only `GET` and `DELETE` on `/Recordings/{RecordingSid}`, with
the account's credentials, and the URL is built from `TWILIO_API_BASE_URL`
and the recording sid, never taken from a webhook body, so the credentials
go nowhere but to Twilio (or the emulator).
"""

from __future__ import annotations

import httpx

from callbot.media.domain.archive import fetch_is_retryable

API_VERSION = "2010-04-01"


class RecordingFetchFailed(Exception):
    def __init__(self, message: str, *, status_code: int | None) -> None:
        super().__init__(message)
        self.status_code = status_code

    @property
    def retryable(self) -> bool:
        return fetch_is_retryable(self.status_code)


class TwilioRecordings:
    def __init__(
        self, client: httpx.AsyncClient, *, base_url: str, account_sid: str, auth_token: str
    ) -> None:
        self._client = client
        self._base = f"{base_url}/{API_VERSION}/Accounts/{account_sid}/Recordings"
        self._auth = httpx.BasicAuth(account_sid, auth_token)

    async def download(self, recording_sid: str) -> bytes:
        """The recording as WAV; raises RecordingFetchFailed saying what Twilio answered."""
        url = f"{self._base}/{recording_sid}.wav"
        response = await self._request("GET", url)
        if response.status_code != 200:
            raise RecordingFetchFailed(
                f"GET {url} answered {response.status_code}: {response.text[:200]}",
                status_code=response.status_code,
            )
        return response.content

    async def delete(self, recording_sid: str) -> None:
        """Delete at Twilio; a recording already gone counts as deleted."""
        url = f"{self._base}/{recording_sid}.json"
        response = await self._request("DELETE", url)
        if response.status_code not in (204, 404):
            raise RecordingFetchFailed(
                f"DELETE {url} answered {response.status_code}: {response.text[:200]}",
                status_code=response.status_code,
            )

    async def _request(self, method: str, url: str) -> httpx.Response:
        try:
            return await self._client.request(method, url, auth=self._auth)
        except httpx.HTTPError as exc:
            raise RecordingFetchFailed(
                f"{method} {url} got no answer: {exc!r}", status_code=None
            ) from exc
