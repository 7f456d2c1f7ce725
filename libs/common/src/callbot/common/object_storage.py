"""Object storage (S3 API): the port, the S3 adapter and an in-memory fake.

The adapter is aiobotocore: botocore's own request signing, endpoint and
credential resolution (environment variables, shared config, instance and
task roles), driven on the event loop through aiohttp, which callbot already
ships. Any S3-compatible server works: AWS S3, MinIO (docker-compose), moto's
server mode (the tests). Credentials never come from MongoDB or an agent: only
from the environment botocore reads (`AWS_ACCESS_KEY_ID`, ...).

Every object callbot writes carries its SHA-256 in the metadata (`sha256`),
and `put_verified` reads the object back and checks size and checksum before
it returns, so "stored" always means "stored and read back intact".
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

# Re-exported: callers name locations through this module too.
from callbot.common.object_locations import ObjectLocation as ObjectLocation

CHECKSUM_METADATA = "sha256"


class ObjectStorageError(Exception):
    """Object storage refused or failed an operation."""


class ObjectStorageUnavailable(ObjectStorageError):
    """Object storage could not be reached (connection refused, timeout, 5xx): retry later."""


class ObjectNotFound(ObjectStorageError):
    """No such bucket or key."""


class ObjectCorrupted(ObjectStorageError):
    """The object read back differs from what was written (size or checksum)."""


@dataclass(frozen=True)
class StoredObject:
    location: ObjectLocation
    size_bytes: int
    sha256: str
    content_type: str | None = None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ObjectStore(Protocol):
    async def put(
        self, location: ObjectLocation, data: bytes, *, content_type: str
    ) -> StoredObject:
        """Write (or overwrite) the object, with its SHA-256 in the metadata."""
        ...

    async def get(self, location: ObjectLocation) -> bytes:
        """The object's bytes; raises ObjectNotFound."""
        ...

    async def head(self, location: ObjectLocation) -> StoredObject | None:
        """Size, checksum (when callbot wrote it) and content type; None when absent."""
        ...

    async def presigned_get_url(self, location: ObjectLocation, *, expires_s: int) -> str:
        """A URL anyone may GET until it expires (Twilio's <Play>, a redirect)."""
        ...

    async def delete(self, location: ObjectLocation) -> None:
        """Remove the object; one already gone counts as removed."""

    async def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys under `prefix`, sorted (at most 1000: for checks, not listings)."""
        ...


async def put_verified(
    store: ObjectStore, location: ObjectLocation, data: bytes, *, content_type: str
) -> StoredObject:
    """Write the object, read it back, and check size and SHA-256; raises
    ObjectCorrupted when the copy differs (the caller may write again)."""
    expected = sha256_hex(data)
    await store.put(location, data, content_type=content_type)
    copy = await store.get(location)
    if len(copy) != len(data) or sha256_hex(copy) != expected:
        raise ObjectCorrupted(
            f"{location.uri}: read back {len(copy)} bytes with sha256 {sha256_hex(copy)}, "
            f"wrote {len(data)} bytes with sha256 {expected}"
        )
    return StoredObject(location, len(data), expected, content_type)


# --- S3 (aiobotocore) ------------------------------------------------------


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str | None = None  # None: AWS S3 itself
    region: str = "us-east-1"
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    max_attempts: int = 2


class S3ObjectStore:
    """The S3 adapter. `open()` inside the event loop that uses it, `close()` after."""

    def __init__(self, config: S3Config) -> None:
        self._config = config
        self._exits = AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        config = self._config
        self._client = await self._exits.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=config.endpoint_url,
                region_name=config.region,
                config=AioConfig(
                    signature_version="s3v4",
                    connect_timeout=config.connect_timeout_s,
                    read_timeout=config.read_timeout_s,
                    retries={"max_attempts": config.max_attempts, "mode": "standard"},
                    # Path-style URLs work against every S3-compatible server.
                    s3={"addressing_style": "path"},
                ),
            )
        )

    async def close(self) -> None:
        await self._exits.aclose()
        self._client = None

    @property
    def _s3(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3ObjectStore is not open: call open() first")
        return self._client

    async def put(
        self, location: ObjectLocation, data: bytes, *, content_type: str
    ) -> StoredObject:
        checksum = sha256_hex(data)
        async with _translated_errors(location):
            await self._s3.put_object(
                Bucket=location.bucket,
                Key=location.key,
                Body=data,
                ContentType=content_type,
                Metadata={CHECKSUM_METADATA: checksum},
            )
        return StoredObject(location, len(data), checksum, content_type)

    async def get(self, location: ObjectLocation) -> bytes:
        async with _translated_errors(location):
            response = await self._s3.get_object(Bucket=location.bucket, Key=location.key)
            async with response["Body"] as body:
                data: bytes = await body.read()
        return data

    async def head(self, location: ObjectLocation) -> StoredObject | None:
        try:
            async with _translated_errors(location):
                response = await self._s3.head_object(Bucket=location.bucket, Key=location.key)
        except ObjectNotFound:
            return None
        metadata = response.get("Metadata") or {}
        return StoredObject(
            location,
            int(response["ContentLength"]),
            str(metadata.get(CHECKSUM_METADATA, "")),
            response.get("ContentType"),
        )

    async def presigned_get_url(self, location: ObjectLocation, *, expires_s: int) -> str:
        url: str = await self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": location.bucket, "Key": location.key},
            ExpiresIn=expires_s,
        )
        return url

    async def delete(self, location: ObjectLocation) -> None:
        async with _translated_errors(location):
            await self._s3.delete_object(Bucket=location.bucket, Key=location.key)

    async def set_expiration_rule(self, bucket: str, rule_id: str, prefix: str, days: int) -> None:
        """Have the bucket itself expire objects under `prefix` after `days`: the
        lifecycle rule `rule_id` is created or replaced, other rules are kept."""
        async with _translated_errors(ObjectLocation(bucket, "")):
            rules = [rule for rule in await self.lifecycle_rules(bucket) if rule["ID"] != rule_id]
            rules.append(
                {
                    "ID": rule_id,
                    "Filter": {"Prefix": prefix},
                    "Status": "Enabled",
                    "Expiration": {"Days": days},
                }
            )
            await self._s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": rules}
            )

    async def lifecycle_rules(self, bucket: str) -> list[dict[str, Any]]:
        async with _translated_errors(ObjectLocation(bucket, "")):
            try:
                response = await self._s3.get_bucket_lifecycle_configuration(Bucket=bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
                    return []
                raise
        return list(response.get("Rules", []))

    async def keys(self, bucket: str, prefix: str = "") -> list[str]:
        async with _translated_errors(ObjectLocation(bucket, prefix)):
            response = await self._s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(str(item["Key"]) for item in response.get("Contents", []))

    async def create_bucket(self, bucket: str) -> None:
        """Create the bucket unless it exists (tests, and `make demo`)."""
        async with _translated_errors(ObjectLocation(bucket, "")):
            try:
                await self._s3.create_bucket(Bucket=bucket)
            except self._s3.exceptions.BucketAlreadyOwnedByYou:
                return
            except self._s3.exceptions.BucketAlreadyExists:
                return


@asynccontextmanager
async def _translated_errors(location: ObjectLocation) -> AsyncIterator[None]:
    """botocore's exceptions → ObjectNotFound / ObjectStorageUnavailable / ObjectStorageError."""
    where = location.uri
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in {"NoSuchKey", "NoSuchBucket", "404", "NotFound"} or status == 404:
            raise ObjectNotFound(f"{where}: not found ({code or status})") from exc
        if status >= 500:
            raise ObjectStorageUnavailable(f"{where}: server error {code} ({status})") from exc
        raise ObjectStorageError(f"{where}: {code} ({status}): {error.get('Message')}") from exc
    except (BotoCoreError, OSError, TimeoutError) as exc:
        raise ObjectStorageUnavailable(f"{where}: unreachable: {exc}") from exc


# --- In memory --------------------------------------------------------------


@dataclass
class InMemoryObjectStore:
    """The fake: objects in a dict. `unavailable = True` makes every call
    raise ObjectStorageUnavailable (an outage in unit tests)."""

    objects: dict[ObjectLocation, tuple[bytes, str]] = field(default_factory=dict)
    unavailable: bool = False
    puts: int = 0

    def _check(self, location: ObjectLocation) -> None:
        if self.unavailable:
            raise ObjectStorageUnavailable(f"{location.uri}: unreachable (fake outage)")

    async def put(
        self, location: ObjectLocation, data: bytes, *, content_type: str
    ) -> StoredObject:
        self._check(location)
        self.objects[location] = (bytes(data), content_type)
        self.puts += 1
        return StoredObject(location, len(data), sha256_hex(data), content_type)

    async def get(self, location: ObjectLocation) -> bytes:
        self._check(location)
        try:
            return self.objects[location][0]
        except KeyError:
            raise ObjectNotFound(f"{location.uri}: not found") from None

    async def head(self, location: ObjectLocation) -> StoredObject | None:
        self._check(location)
        stored = self.objects.get(location)
        if stored is None:
            return None
        data, content_type = stored
        return StoredObject(location, len(data), sha256_hex(data), content_type)

    async def presigned_get_url(self, location: ObjectLocation, *, expires_s: int) -> str:
        self._check(location)
        return f"memory://{location.bucket}/{location.key}?expires={expires_s}"

    async def delete(self, location: ObjectLocation) -> None:
        self._check(location)
        self.objects.pop(location, None)

    async def keys(self, bucket: str, prefix: str = "") -> list[str]:
        self._check(ObjectLocation(bucket, prefix))
        return sorted(
            location.key
            for location in self.objects
            if location.bucket == bucket and location.key.startswith(prefix)
        )
