"""The data model shared by every stage: documents, their units, and passages.

A ``Document`` holds the exact text that is stored and cited. Everything finer grained, a ``Unit`` (article body,
author bio, one reader comment) or a ``Passage`` (what is embedded and returned), is a character span into that
text, so ``document.text[start:end]`` is always exactly the quoted text. That invariant is what makes a citation
verifiable, and every stage keeps it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Section = Literal["article", "author", "comment"]
SECTIONS: tuple[str, ...] = get_args(Section)


@dataclass(frozen=True, slots=True)
class Unit:
    """One structural part of a document: the article body, the author bio, or one reader comment."""

    section: Section
    char_start: int
    char_end: int
    comment_no: int | None = None  # 1-based, in page order; only for section == "comment"


@dataclass(frozen=True, slots=True)
class Document:
    """A source document as stored: its exact text and the units that partition the useful parts of it."""

    doc_id: str
    title: str
    text: str
    source: str  # where it came from: a path relative to the indexed root, or "file.jsonl:LINE"
    units: tuple[Unit, ...]
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def unit_text(self, unit: Unit) -> str:
        return self.text[unit.char_start : unit.char_end]

    @property
    def content_hash(self) -> str:
        """Hash of everything that affects passages; equal hashes mean the document need not be re-chunked."""
        payload = json.dumps(
            {
                "title": self.title,
                "text": self.text,
                "units": [(u.section, u.char_start, u.char_end, u.comment_no) for u in self.units],
                "url": self.url,
                "metadata": self.metadata,
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrievable span of one unit of one document.

    ``text == document.text[char_start:char_end]`` always holds. ``embed_text`` is what the model sees (the passage
    with its document title in front, whitespace folded); it is never shown as a quote.
    """

    doc_id: str
    ordinal: int  # position of the passage within its document, 0-based
    section: Section
    comment_no: int | None
    char_start: int
    char_end: int
    text: str
    embed_text: str

    @property
    def content_hash(self) -> str:
        """Key for the embedding cache: the same embed text under the same model gives the same vector."""
        return hashlib.sha256(self.embed_text.encode("utf-8")).hexdigest()
