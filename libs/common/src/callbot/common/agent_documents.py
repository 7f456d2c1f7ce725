"""An agent's knowledge documents: read from object storage, turned into text.

Text (`.txt`), Markdown (`.md`) and PDF (`.pdf`, through pypdf: pure Python,
maintained, no system libraries). gateway reads each document when an agent
is saved (a document that cannot be read or yields no text is a 422 naming
it); dialog reads them again to index them. `document_text` is CPU work
(pypdf parses in Python): callers on an event loop run it in a thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePosixPath

from pypdf import PdfReader

from callbot.common.object_storage import ObjectLocation, ObjectStore

# Larger documents are refused: they would cost seconds to parse and hold
# megabytes per agent version in every dialog replica.
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024

_FORMATS = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".pdf": "pdf",
}
_CONTENT_TYPES = {"text/plain": "text", "text/markdown": "markdown", "application/pdf": "pdf"}


class DocumentUnreadable(ValueError):
    """The document cannot be used as knowledge; the message says why and what would do."""


@dataclass(frozen=True)
class DocumentSection:
    label: str  # "page 3" for a PDF page; empty for a text or Markdown file
    text: str


async def read_document(store: ObjectStore, location: ObjectLocation) -> bytes:
    """The document's bytes; raises ObjectNotFound, ObjectStorageUnavailable,
    or DocumentUnreadable when it is larger than MAX_DOCUMENT_BYTES."""
    head = await store.head(location)
    if head is not None and head.size_bytes > MAX_DOCUMENT_BYTES:
        raise DocumentUnreadable(
            f"{location.uri} is {head.size_bytes} bytes; documents may be at most "
            f"{MAX_DOCUMENT_BYTES} bytes: split it"
        )
    return await store.get(location)


def document_text(
    location: ObjectLocation, data: bytes, content_type: str | None = None
) -> list[DocumentSection]:
    """The text of a document, in sections; raises DocumentUnreadable."""
    kind = _FORMATS.get(PurePosixPath(location.key).suffix.lower())
    if kind is None and content_type:
        kind = _CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
    if kind is None:
        raise DocumentUnreadable(
            f"{location.uri}: unsupported format; name the file .txt, .md or .pdf"
        )
    sections = _pdf_text(location, data) if kind == "pdf" else [_plain_text(location, data)]
    sections = [section for section in sections if section.text.strip()]
    if not sections:
        raise DocumentUnreadable(
            f"{location.uri}: no text found"
            + (" (a scanned PDF needs a text layer: run OCR on it first)" if kind == "pdf" else "")
        )
    return sections


def _plain_text(location: ObjectLocation, data: bytes) -> DocumentSection:
    try:
        return DocumentSection("", data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DocumentUnreadable(
            f"{location.uri}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None


def _pdf_text(location: ObjectLocation, data: bytes) -> list[DocumentSection]:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentUnreadable(f"{location.uri}: the PDF is password-protected")
        return [
            DocumentSection(f"page {number}", page.extract_text() or "")
            for number, page in enumerate(reader.pages, start=1)
        ]
    except DocumentUnreadable:
        raise
    except Exception as exc:
        # pypdf raises many exception types on damaged files (its own, and
        # KeyError, ValueError, ... from inside the parser): all mean unreadable.
        raise DocumentUnreadable(
            f"{location.uri}: not a readable PDF ({type(exc).__name__}: {exc})"
        ) from None
