"""What ``citesearch parse`` shows: how each page was split, before anything is indexed.

The same loaders as ``citesearch index`` produce the documents, so what this prints is exactly what would be stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from indexer.documents import Document

FIRST_WORDS = 12


@dataclass(frozen=True, slots=True)
class PartSummary:
    section: str
    comment_no: int | None
    parent: int | None
    depth: int
    author: str | None
    date: str | None
    date_iso: str | None
    char_start: int
    char_end: int
    first_words: str


@dataclass(frozen=True, slots=True)
class PageSummary:
    doc_id: str
    source: str
    title: str
    metadata: dict[str, Any]
    chrome_chars: int
    parts: tuple[PartSummary, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(document: Document) -> PageSummary:
    parts = []
    for unit in document.units:
        words = document.unit_text(unit).split()
        first = " ".join(words[:FIRST_WORDS]) + (" …" if len(words) > FIRST_WORDS else "")
        parts.append(
            PartSummary(
                unit.section,
                unit.comment_no,
                unit.parent,
                unit.depth,
                unit.comment_author,
                unit.comment_date,
                unit.comment_date_iso,
                unit.char_start,
                unit.char_end,
                first,
            )
        )
    return PageSummary(
        document.doc_id, document.source, document.title, dict(document.metadata), document.chrome_chars, tuple(parts)
    )


def format_summary(page: PageSummary) -> str:
    counts: dict[str, int] = {}
    for part in page.parts:
        counts[part.section] = counts.get(part.section, 0) + 1
    meta = ", ".join(f"{k} {v}" for k, v in page.metadata.items() if k in {"author", "published", "site_name"})
    lines = [
        f"{page.source}: {page.title!r}",
        f"  {', '.join(f'{n} {s}' for s, n in counts.items())}; {page.chrome_chars} characters dropped as chrome"
        + (f"; {meta}" if meta else ""),
    ]
    for part in page.parts:
        if part.section == "comment":
            name = f"comment {part.comment_no}"
            if part.parent is not None:
                name += f" (reply to {part.parent})"
            who = ", ".join(x for x in (part.author, part.date) if x)
            lines.append(f"  {name:<24} {who[:48]:<48} {part.first_words}")
        else:
            lines.append(f"  {part.section:<24} {part.char_end - part.char_start:>6} chars{'':<37} {part.first_words}")
    return "\n".join(lines)
