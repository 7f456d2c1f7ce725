"""One contract for every object store: the in-memory fake and a real
S3-compatible server process (moto's server mode) through the S3 adapter."""

from __future__ import annotations

import httpx
import pytest

from callbot.common.object_storage import (
    InMemoryObjectStore,
    ObjectCorrupted,
    ObjectLocation,
    ObjectNotFound,
    ObjectStorageUnavailable,
    ObjectStore,
    S3Config,
    S3ObjectStore,
    put_verified,
    sha256_hex,
)
from callbot.common.settings import Settings

AUDIO = b"RIFF" + bytes(range(256)) * 40


class ObjectStoreContract:
    @pytest.fixture
    def store(self) -> ObjectStore:
        raise NotImplementedError("each store's test class provides it")

    @pytest.fixture
    def bucket(self) -> str:
        raise NotImplementedError

    async def test_put_then_get_and_head(self, store: ObjectStore, bucket: str) -> None:
        location = ObjectLocation(bucket, "calls/c1/RE1.wav")
        stored = await store.put(location, AUDIO, content_type="audio/wav")
        assert (stored.size_bytes, stored.sha256) == (len(AUDIO), sha256_hex(AUDIO))
        assert await store.get(location) == AUDIO
        head = await store.head(location)
        assert head is not None
        assert (head.size_bytes, head.sha256, head.content_type) == (
            len(AUDIO),
            sha256_hex(AUDIO),
            "audio/wav",
        )

    async def test_a_second_put_overwrites_the_same_key(
        self, store: ObjectStore, bucket: str
    ) -> None:
        location = ObjectLocation(bucket, "calls/c2/RE2.wav")
        await store.put(location, b"first", content_type="audio/wav")
        await store.put(location, AUDIO, content_type="audio/wav")
        assert await store.get(location) == AUDIO

    async def test_keys_lists_what_is_under_a_prefix(self, store: ObjectStore, bucket: str) -> None:
        for key in ("calls/c9/RE1.wav", "calls/c9/RE2.wav", "calls/c8/RE3.wav"):
            await store.put(ObjectLocation(bucket, key), b"x", content_type="audio/wav")
        assert await store.keys(bucket, "calls/c9/") == ["calls/c9/RE1.wav", "calls/c9/RE2.wav"]

    async def test_a_missing_object(self, store: ObjectStore, bucket: str) -> None:
        location = ObjectLocation(bucket, "nothing/here.txt")
        assert await store.head(location) is None
        with pytest.raises(ObjectNotFound, match=r"nothing/here\.txt"):
            await store.get(location)

    async def test_put_verified_reads_the_copy_back(self, store: ObjectStore, bucket: str) -> None:
        location = ObjectLocation(bucket, "calls/c3/RE3.wav")
        stored = await put_verified(store, location, AUDIO, content_type="audio/wav")
        assert stored.sha256 == sha256_hex(AUDIO)

    async def test_a_presigned_url_is_made(self, store: ObjectStore, bucket: str) -> None:
        location = ObjectLocation(bucket, "agents/a/voicemail.wav")
        await store.put(location, AUDIO, content_type="audio/wav")
        url = await store.presigned_get_url(location, expires_s=300)
        assert "voicemail.wav" in url


class TestInMemoryObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self) -> ObjectStore:
        return InMemoryObjectStore()

    @pytest.fixture
    def bucket(self) -> str:
        return "callbot-recordings"

    async def test_an_outage_raises_unavailable(self) -> None:
        store = InMemoryObjectStore(unavailable=True)
        with pytest.raises(ObjectStorageUnavailable):
            await store.head(ObjectLocation("callbot-recordings", "k"))


class TestS3ObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self, object_store: S3ObjectStore) -> ObjectStore:
        return object_store

    @pytest.fixture
    def bucket(self, settings: Settings) -> str:
        return settings.s3_recordings_bucket

    async def test_the_presigned_url_serves_the_object(
        self, object_store: S3ObjectStore, bucket: str
    ) -> None:
        location = ObjectLocation(bucket, "agents/a/greeting.wav")
        await object_store.put(location, AUDIO, content_type="audio/wav")
        url = await object_store.presigned_get_url(location, expires_s=300)
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
        assert (response.status_code, response.content) == (200, AUDIO)

    async def test_a_missing_bucket_is_not_found(self, object_store: S3ObjectStore) -> None:
        with pytest.raises(ObjectNotFound):
            await object_store.get(ObjectLocation("no-such-bucket-here", "k"))

    async def test_an_unreachable_server_is_unavailable(self) -> None:
        store = S3ObjectStore(
            S3Config(endpoint_url="http://127.0.0.1:9", connect_timeout_s=0.5, max_attempts=1)
        )
        await store.open()
        try:
            with pytest.raises(ObjectStorageUnavailable, match="unreachable"):
                await store.get(ObjectLocation("callbot-recordings", "k"))
        finally:
            await store.close()


class _CorruptingStore(InMemoryObjectStore):
    async def get(self, location: ObjectLocation) -> bytes:
        return (await super().get(location))[:-1]


async def test_put_verified_refuses_a_copy_that_differs() -> None:
    with pytest.raises(ObjectCorrupted, match="read back"):
        await put_verified(
            _CorruptingStore(), ObjectLocation("b-b-b", "k"), AUDIO, content_type="audio/wav"
        )


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [("s3://callbot-agent-files/acme/hours.md", "callbot-agent-files", "acme/hours.md")],
)
def test_an_object_location_parses(uri: str, bucket: str, key: str) -> None:
    location = ObjectLocation.parse(uri)
    assert (location.bucket, location.key, location.uri) == (bucket, key, uri)


@pytest.mark.parametrize("uri", ["https://x/y", "s3://B/k", "s3://bucket", "s3://bucket/"])
def test_a_bad_object_location_says_what_is_expected(uri: str) -> None:
    with pytest.raises(ValueError, match=r"s3://<bucket>/<key>"):
        ObjectLocation.parse(uri)
