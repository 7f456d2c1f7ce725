"""Knowledge retrieval: what indexing an agent's documents costs once, and what
searching them costs every turn, against corpus size.

For each size: documents of filler prose with planted facts ("The <item> costs
<n> euros."), as Markdown and as PDF; reported are the PDF text extraction
(pypdf), passage splitting and BM25 indexing (bm25s), then per-turn retrieval
(query tokenising, ranking, budget) p50/p95/p99 over questions phrased unlike
the facts ("how much is the <item>?"), with the share whose fact passage came
first and within the 5 kept. The floor is tokenising the query alone: what
any keyword search pays before it ranks anything.
Usage: .venv/bin/python bench/knowledge.py [--queries 300]
"""

from __future__ import annotations

import argparse
import random
import time

from _stats import print_row  # bench/ is on sys.path when a script here runs

from callbot.common.agent_documents import document_text
from callbot.common.object_locations import ObjectLocation
from callbot.dialog.domain.passages import split_passages, within_budget
from callbot.dialog.knowledge import TOP_K, KnowledgeIndex, _tokens
from callbot.testkit.documents import text_pdf

FILLER = [
    "our",
    "team",
    "works",
    "hard",
    "to",
    "serve",
    "every",
    "customer",
    "with",
    "care",
    "and",
    "attention",
    "the",
    "store",
    "keeps",
    "a",
    "wide",
    "range",
    "of",
    "tools",
    "paint",
    "garden",
    "supplies",
    "and",
    "hardware",
    "ask",
    "any",
    "member",
    "of",
    "staff",
    "for",
    "advice",
    "about",
    "your",
    "next",
    "project",
    "at",
    "home",
]
SIZES = ((2, 20), (10, 50), (20, 200))  # (documents, paragraphs per document)


def corpus(documents: int, paragraphs: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """Markdown documents, and the items whose prices were planted in them."""
    texts, items = [], []
    for number in range(documents):
        lines = [f"# Catalogue part {number}"]
        for paragraph in range(paragraphs):
            words = rng.choices(FILLER, k=60)
            if paragraph % 5 == 0:
                item = f"item{number}x{paragraph}"
                items.append(item)
                words.insert(rng.randrange(len(words)), f"The {item} costs {paragraph} euros.")
            lines.append(" ".join(words) + ".")
        texts.append("\n\n".join(lines))
    return texts, items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(17)
    for documents, paragraphs in SIZES:
        texts, items = corpus(documents, paragraphs, rng)
        size_kb = sum(map(len, texts)) / 1024
        pdf = text_pdf(
            [
                [line[i : i + 90] for i in range(0, len(line), 90)]
                for line in texts[0].split("\n\n")[:40]
            ]
        )
        started = time.perf_counter()
        pages = document_text(ObjectLocation("bench-files", "part.pdf"), pdf)
        pdf_s = time.perf_counter() - started
        started = time.perf_counter()
        passages = [
            passage
            for number, text in enumerate(texts)
            for passage in split_passages(f"s3://bench-files/part{number}.md", [("", text)])
        ]
        split_s = time.perf_counter() - started
        started = time.perf_counter()
        index = KnowledgeIndex(passages)
        index_s = time.perf_counter() - started
        print(
            f"\n{documents} documents, {size_kb:.0f} kB of text, {len(passages)} passages: "
            f"split {split_s * 1000:.1f} ms, BM25 index {index_s * 1000:.1f} ms; "
            f"pdf of {len(pages)} pages read in {pdf_s * 1000:.1f} ms"
        )
        asked = [rng.choice(items) for _ in range(args.queries)]
        floor, search, first, kept = [], [], 0, 0
        elapsed_started = time.perf_counter()
        for item in asked:
            query = f"Hello, how much is the {item} please?"
            started = time.perf_counter()
            _tokens([query])
            floor.append(time.perf_counter() - started)
            started = time.perf_counter()
            found = within_budget(index.search(query, TOP_K), 500)
            search.append(time.perf_counter() - started)
            texts_found = [passage.text for passage in found]
            first += bool(texts_found) and f"The {item} costs" in texts_found[0]
            kept += any(f"The {item} costs" in text for text in texts_found)
        elapsed = time.perf_counter() - elapsed_started
        print_row("floor: tokenise the query", floor, elapsed)
        print_row("retrieve: tokenise, rank, budget", search, elapsed)
        print(
            f"fact passage first: {first / len(asked):.0%}, among those kept: "
            f"{kept / len(asked):.0%}"
        )


if __name__ == "__main__":
    main()
