"""Errors the user can act on, and the record of input that was skipped.

``Skipped`` lives here rather than in ``indexer.loaders`` so that ``IngestError`` can carry the skip list without a
circular import; ``indexer.loaders`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Skipped:
    """One input that was not loaded: where it came from (a path or "file.jsonl:LINE") and why, in one line."""

    source: str
    reason: str


class IngestError(Exception):
    """Input that cannot be indexed at all: a path that does not exist, or nothing indexable left.

    The message is one line, meant to be shown as is. ``skipped`` lists what was skipped on the way, so that the
    caller can show why nothing remained.
    """

    def __init__(self, message: str, skipped: Iterable[Skipped] = ()) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the path names contain
        self.skipped: list[Skipped] = list(skipped)
