"""An agent document's text: Markdown, text and PDF (pypdf), and every way a
file can be refused, each saying why. Pure: bytes in, text out."""

from __future__ import annotations

import pytest

from callbot.common.agent_documents import (
    MAX_DOCUMENT_BYTES,
    DocumentSection,
    DocumentUnreadable,
    document_text,
    read_document,
)
from callbot.common.object_storage import InMemoryObjectStore, ObjectLocation
from callbot.testkit.documents import text_pdf


def at(key: str) -> ObjectLocation:
    return ObjectLocation("acme-files", key)


def test_text_and_markdown_are_read_as_utf8() -> None:
    assert document_text(at("hours.md"), "# Hours\nOpen at 9 \u2013 caf\u00e9".encode()) == [
        DocumentSection("", "# Hours\nOpen at 9 \u2013 caf\u00e9")
    ]
    bom = b"\xef\xbb\xbfplain"
    assert document_text(at("notes"), bom, "text/plain; charset=utf-8")[0].text == "plain"


def test_a_pdf_is_read_page_by_page() -> None:
    pdf = text_pdf([["Delivery", "Within two days (mainland)."], [], ["Returns: 30 days."]])
    sections = document_text(at("policy.pdf"), pdf)
    assert [(section.label, section.text.split()) for section in sections] == [
        ("page 1", ["Delivery", "Within", "two", "days", "(mainland)."]),
        ("page 3", ["Returns:", "30", "days."]),
    ]


@pytest.mark.parametrize(
    ("key", "data", "why"),
    [
        ("hours.docx", b"PK...", r"unsupported format; name the file \.txt, \.md or \.pdf"),
        ("hours.md", b"caf\xe9", r"not UTF-8 text \(byte 3\); save it as UTF-8"),
        ("hours.md", b"  \n\n ", r"no text found$"),
        ("scan.pdf", text_pdf([[]]), r"no text found \(a scanned PDF needs a text layer"),
        ("broken.pdf", b"%PDF-1.4 garbage", r"not a readable PDF"),
    ],
)
def test_unusable_documents_are_refused_saying_why(key: str, data: bytes, why: str) -> None:
    with pytest.raises(DocumentUnreadable, match=why):
        document_text(at(key), data)


async def test_documents_over_the_size_limit_are_refused_before_they_are_read() -> None:
    store = InMemoryObjectStore()
    store.objects[at("big.txt")] = (b"x" * (MAX_DOCUMENT_BYTES + 1), "text/plain")
    with pytest.raises(DocumentUnreadable, match=r"documents may be at most"):
        await read_document(store, at("big.txt"))
