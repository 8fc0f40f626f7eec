"""Dense evidence about a passage's whole part (article body, author bio, one comment), not only the passage.

Ranking a long news article by its single best 160-token passage throws away what the rest of it says, while a news
question is often answered by the article as a whole and by its lead. Two part-level signals, computed from the
passage vectors the index already holds (no second vector store):

* **lead** — the cosine of the query to the first passage of the passage's *document* (the lead of an article:
  headline and first paragraphs, what a whole-document embedding truncated at the model's window sees). The
  document's, not the part's: a reader comment's own first passage is usually the comment itself, and counting its
  cosine twice ranked comments above the article passages that answer (seed questions, docs/retrieval.md);
* **part mean** — the cosine of the query to the normalised mean of the part's passage vectors (its first
  ``MAX_PART_PASSAGES``: a bounded cost per query, and the opening of a very long part says what it is about).

Both are the same for every passage of a part, so among one part's passages the passage-level signals still pick
the best one, while parts whose content as a whole matches the query rise. Measured in docs/retrieval.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAX_PART_PASSAGES = 64


@dataclass(frozen=True, slots=True)
class PartLayout:
    """Which keyword-index positions (passages, ascending id) belong to each part: a CSR over ``part_of``."""

    part_of: np.ndarray  # part ordinal of the passage at each position
    members: np.ndarray  # positions grouped by part, ascending within a part
    starts: np.ndarray  # members[starts[p]:starts[p + 1]] are part p's positions
    lead: np.ndarray  # position of the lead passage for each part: the first passage of its document

    @classmethod
    def of(cls, part_of: np.ndarray, doc_of: np.ndarray | None = None) -> PartLayout:
        """``doc_of`` (document ordinal per position) makes the lead the document's first passage; without it,
        each part's own first passage."""
        part_of = np.asarray(part_of, dtype=np.int64)
        members = np.argsort(part_of, kind="stable")
        parts = int(part_of.max()) + 1 if len(part_of) else 0
        starts = np.searchsorted(part_of[members], np.arange(parts + 1))
        lead = members[np.minimum(starts[:-1], max(len(members) - 1, 0))] if parts else np.zeros(0, np.int64)
        if doc_of is not None and parts:
            doc_of = np.asarray(doc_of, dtype=np.int64)
            first_of_doc = np.full(int(doc_of.max()) + 1, len(doc_of), dtype=np.int64)
            np.minimum.at(first_of_doc, doc_of, np.arange(len(doc_of)))
            lead = first_of_doc[doc_of[lead]]
        return cls(part_of, members, starts, lead)

    def first_members(self, parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``MAX_PART_PASSAGES`` leading positions of each part, and for each the index of its part in
        ``parts``."""
        lengths = np.minimum(self.starts[parts + 1] - self.starts[parts], MAX_PART_PASSAGES)
        owner = np.repeat(np.arange(len(parts)), lengths)
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return self.members[self.starts[parts][owner] + offsets], owner


@dataclass(frozen=True, slots=True)
class PartScores:
    """Per candidate passage: the lead and part-mean cosines of its part."""

    lead: np.ndarray
    mean: np.ndarray


CHUNK = 65536  # passages read back per step when the part vectors are built: bounded transient memory


@dataclass(frozen=True, slots=True)
class PartVectors:
    """Each part's normalised mean passage vector (of its first ``MAX_PART_PASSAGES``), computed once per index
    version: scoring a query is then one product per candidate part. Reading the member vectors back per query
    instead cost ~100 ms a query on news (1000 candidates, ~15 passages per article); the table costs
    parts x dim float32 in memory (2 MB for the 1265 news articles, ~150 MB at 100k parts)."""

    means: np.ndarray  # (parts, dim) float32, L2-normalised (zero for a part without vectors)

    @classmethod
    def build(cls, layout: PartLayout, vectors_at: Callable[[np.ndarray], np.ndarray], dim: int) -> PartVectors:
        parts = len(layout.starts) - 1
        sums = np.zeros((parts, dim), dtype=np.float64)
        rank = np.empty(len(layout.part_of), dtype=np.int64)  # place of each position within its part
        rank[layout.members] = np.arange(len(layout.members)) - np.repeat(layout.starts[:-1], np.diff(layout.starts))
        for begin in range(0, len(layout.part_of), CHUNK):
            positions = np.arange(begin, min(begin + CHUNK, len(layout.part_of)))
            positions = positions[rank[positions] < MAX_PART_PASSAGES]
            np.add.at(sums, layout.part_of[positions], np.asarray(vectors_at(positions), dtype=np.float64))
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        means = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 1e-12)
        return cls(means.astype(np.float32))


def part_scores(
    layout: PartLayout,
    part_vectors: PartVectors,
    positions: np.ndarray,
    vectors_at: Callable[[np.ndarray], np.ndarray],
    query_vector: np.ndarray,
) -> PartScores:
    """The part-level dense signals of the passages at ``positions``; ``vectors_at`` maps positions to vectors."""
    if len(positions) == 0:
        empty = np.zeros(0, dtype=np.float64)
        return PartScores(empty, empty)
    parts, inverse = np.unique(layout.part_of[positions], return_inverse=True)
    query = np.asarray(query_vector, dtype=np.float64).reshape(-1)
    mean = part_vectors.means[parts].astype(np.float64) @ query
    lead = np.asarray(vectors_at(layout.lead[parts]), dtype=np.float64) @ query
    return PartScores(lead[inverse], mean[inverse])
