"""The shapes of what the store writes, as protocols: the frozen dataclasses of indexer/ satisfy them, and the
store imports nothing from indexer/ (which imports the store)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

# Set (True) in a document's metadata when its title is a guess: plain text that states no headline gets one from
# its lines, its first sentence or its id, for display. A guess is never embedded or indexed with the passages: it
# is a line of the text already (a dateline such as "Washington CNN —", a standfirst, an advert) or an id, and put
# in front of every passage it pulled unrelated articles together (news dev nDCG@10 0.830 -> 0.843 at the best
# fusion weights of each, docs/retrieval.md).
TITLE_GUESSED_KEY = "title_guessed"


def searchable_title(title: str, metadata: dict[str, Any] | None) -> str:
    """The title that is embedded and indexed with a document's passages: its title unless that is a guess."""
    return "" if metadata and metadata.get(TITLE_GUESSED_KEY) else title


class TitledLike(Protocol):
    """A document or a stored passage: its (display) title and its document's metadata."""

    @property
    def title(self) -> str: ...
    @property
    def metadata(self) -> dict[str, Any] | None: ...


# Read-only members (properties), so that the frozen dataclasses of indexer/ satisfy them: a plain attribute in a
# Protocol means "settable", which a frozen dataclass is not.
class UnitLike(Protocol):
    @property
    def section(self) -> str: ...
    @property
    def char_start(self) -> int: ...
    @property
    def char_end(self) -> int: ...
    @property
    def comment_no(self) -> int | None: ...


class DocumentLike(Protocol):
    @property
    def doc_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def url(self) -> str | None: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def units(self) -> Sequence[UnitLike]: ...
    @property
    def content_hash(self) -> str: ...


class PassageLike(Protocol):
    @property
    def ordinal(self) -> int: ...
    @property
    def section(self) -> str: ...
    @property
    def comment_no(self) -> int | None: ...
    @property
    def char_start(self) -> int: ...
    @property
    def char_end(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def content_hash(self) -> str: ...
