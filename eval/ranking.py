"""From passage hits to a document ranking, the unit BEIR judges.

The index returns passages; BEIR's qrels judge documents. The rule used here: **a document ranks at the place of
its best passage**, i.e. its first occurrence in the passage ranking, and later passages of the same document are
dropped. ``search_documents`` asks the shared ``Searcher`` for ``per_doc_cap=1``, so the searcher itself keeps one
passage per document and looks deeper until it has ``depth`` distinct documents (or the index runs out); the rule
is still applied here, explicitly, so a different aggregation (say, the sum of a document's top passages) can be
swapped in as another ``Aggregation`` without touching the harness.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from citesearch.search import Hit, Searcher, SearchRequest

BEST_PASSAGE_RULE = (
    "a document ranks at the place of its best passage (its first occurrence in the passage ranking); "
    "the searcher is asked for one passage per document (per_doc_cap=1) until the depth is filled"
)


@dataclass(frozen=True, slots=True)
class RankedDocument:
    doc_id: str
    rank: int  # 1-based
    score: float  # the score of the passage that placed it (cosine, BM25 or fused, by mode)
    passage_id: int


@dataclass(frozen=True, slots=True)
class DocumentSearch:
    """One query's document ranking, with what it cost."""

    documents: list[RankedDocument]
    mode: str
    index_version: str
    latency_ms: float  # wall clock of the whole Searcher.search call (encode, retrieval, store lookups)


Aggregation = Callable[[Sequence[Hit], int], list[RankedDocument]]


def best_passage_ranking(hits: Sequence[Hit], depth: int) -> list[RankedDocument]:
    """The first ``depth`` distinct documents of a passage ranking, each at the place of its best passage."""
    seen: set[str] = set()
    ranking: list[RankedDocument] = []
    for hit in hits:  # hits are in rank order, so the first passage of a document is its best
        doc_id = hit.citation.doc_id
        if doc_id in seen:
            continue
        seen.add(doc_id)
        ranking.append(RankedDocument(doc_id, len(ranking) + 1, hit.score, hit.passage_id))
        if len(ranking) == depth:
            break
    return ranking


def search_documents(
    searcher: Searcher,
    query: str,
    *,
    depth: int = 100,
    mode: str | None = None,
    aggregate: Aggregation = best_passage_ranking,
    request_options: dict[str, object] | None = None,
) -> DocumentSearch:
    """Rank documents for ``query`` through the same ``Searcher.search`` the CLI and the service use.

    ``mode=None`` leaves the request's default mode (what a plain API call gets).
    """
    options: dict[str, object] = {"mode": mode} if mode is not None else {}
    options.update(request_options or {})  # more SearchRequest fields (recency, as_of, collapse_duplicates)
    request = SearchRequest(query=query, k=depth, per_doc_cap=1, **options)  # type: ignore[arg-type]
    started = time.perf_counter()
    result = searcher.search(request)
    latency_ms = (time.perf_counter() - started) * 1000
    return DocumentSearch(aggregate(result.hits, depth), result.mode, result.index_version, latency_ms)
