"""Where an object is: `s3://<bucket>/<key>`. Pure: no I/O, so agent
definitions can name objects without importing the S3 adapter."""

from __future__ import annotations

import re
from dataclasses import dataclass

_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$")


@dataclass(frozen=True)
class ObjectLocation:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> ObjectLocation:
        """`s3://bucket/key`; raises ValueError saying what a valid one looks like."""
        match = _S3_URI.match(uri)
        if match is None:
            raise ValueError(
                f"{uri!r} is not an object location; expected s3://<bucket>/<key> "
                "(bucket: 3-63 lower-case letters, digits, dots or dashes)"
            )
        return cls(match["bucket"], match["key"])

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"
