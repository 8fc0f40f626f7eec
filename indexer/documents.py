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
    # What the page shows about a reader comment (all optional; only for section == "comment"):
    comment_author: str | None = None
    comment_date: str | None = None  # as shown on the page ("14. 01. 2020, 13:47", "vor 8 Stunden")
    comment_date_iso: str | None = None  # ISO 8601 when the shown date parses
    parent: int | None = None  # comment_no of the comment this one replies to
    depth: int = 0  # 0 for a top-level comment, 1 for a reply to it, …

    def fields(self) -> tuple[Any, ...]:
        """Everything stored about the unit, in the order of the store's units JSON."""
        return (
            self.section,
            self.char_start,
            self.char_end,
            self.comment_no,
            self.comment_author,
            self.comment_date,
            self.comment_date_iso,
            self.parent,
            self.depth,
        )


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
    def chrome_chars(self) -> int:
        """Characters (whitespace not counted) of the stored text that are in no unit: page chrome left out of the
        index (menus, buttons, forms, comment furniture). Never article text: unclear pages stay one article."""
        outside, pos = 0, 0
        for unit_start, unit_end in sorted((u.char_start, u.char_end) for u in self.units):
            # Clamped: units may overlap or (in a damaged record) reach past the text.
            start, end = min(max(unit_start, pos), len(self.text)), min(unit_end, len(self.text))
            outside += sum(1 for ch in self.text[pos:start] if not ch.isspace())
            pos = max(pos, end)
        return outside + sum(1 for ch in self.text[pos:] if not ch.isspace())

    @property
    def content_hash(self) -> str:
        """Hash of everything that affects passages; equal hashes mean the document need not be re-chunked."""
        payload = json.dumps(
            {
                "title": self.title,
                "text": self.text,
                # Units without comment details hash as before, so an index built earlier is not re-chunked for nothing.
                "units": [
                    u.fields() if u.fields()[4:] != (None, None, None, None, 0) else u.fields()[:4] for u in self.units
                ],
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
