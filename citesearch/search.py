"""The one search path shared by the CLI, the HTTP service and the evaluation harness.

A ``Searcher`` wraps an opened index version and an embedder. It turns a ``SearchRequest`` into ranked ``Hit``s
with exact citations: each hit's text is the stored document text at the cited span.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import numpy as np

from index_store import IndexIncompatibleError, IndexReader, StoredPassage
from indexer.documents import SECTIONS
from indexer.embedder import Embedder

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[str, ...] = get_args(Mode)


class InvalidSearchRequest(ValueError):
    """A request field is out of range or names something that does not exist."""

    def __init__(self, field_name: str, message: str, *, not_found: bool = False) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message
        self.not_found = not_found


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    k: int = 10
    offset: int = 0
    section: str | None = None
    doc_id: str | None = None
    mode: Mode = "dense"
    explain: bool = False
    per_doc_cap: int | None = None  # at most this many passages of one document in the returned ranking


@dataclass(frozen=True, slots=True)
class Citation:
    doc_id: str
    title: str
    source: str
    section: str
    comment_no: int | None
    char_start: int
    char_end: int


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a hit ranks where it does: its place and score in each ranking that was fused."""

    dense_rank: int | None = None
    dense_score: float | None = None
    bm25_rank: int | None = None
    bm25_score: float | None = None
    fused_score: float | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    rank: int
    score: float
    passage_id: int
    text: str
    citation: Citation
    explain: Explanation | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: str
    index_version: str
    mode: str
    hits: list[Hit] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The documented JSON shape of ``citesearch search --json`` (and the core of ``GET /search``)."""
        results = []
        for hit in self.hits:
            item: dict[str, object] = {
                "rank": hit.rank,
                "score": round(hit.score, 6),
                "text": hit.text,
                "citation": asdict(hit.citation),
            }
            if hit.explain is not None:
                item["explain"] = asdict(hit.explain)
            results.append(item)
        return {"query": self.query, "index_version": self.index_version, "mode": self.mode, "results": results}


@dataclass(frozen=True, slots=True)
class ScoredCandidate:
    passage_id: int
    score: float


class Searcher:
    """Search one opened index version with one embedder. Thread-safe for concurrent searches."""

    def __init__(self, reader: IndexReader, embedder: Embedder) -> None:
        self.reader = reader
        self.embedder = embedder

    @property
    def index_version(self) -> str:
        return self.reader.version

    def validate(self, request: SearchRequest) -> None:
        if not request.query.strip():
            raise InvalidSearchRequest("query", "must not be empty or blank")
        if request.k < 1:
            raise InvalidSearchRequest("k", f"must be at least 1, got {request.k}")
        if request.offset < 0:
            raise InvalidSearchRequest("offset", f"must be 0 or more, got {request.offset}")
        if request.mode not in MODES:
            raise InvalidSearchRequest("mode", f"must be one of {', '.join(MODES)}, got {request.mode!r}")
        if request.section is not None and request.section not in SECTIONS:
            raise InvalidSearchRequest(
                "section", f"must be one of {', '.join(SECTIONS)}, got {request.section!r}"
            )
        if request.doc_id is not None and self.reader.document(request.doc_id) is None:
            raise InvalidSearchRequest("doc_id", f"no document {request.doc_id!r} in the index", not_found=True)
        if request.mode != "dense":
            raise InvalidSearchRequest("mode", f"{request.mode!r} is not available in this index; use 'dense'")

    def embed_query(self, query: str) -> np.ndarray:
        return self.embedder.encode([query])

    def search(self, request: SearchRequest) -> SearchResult:
        self.validate(request)
        timings: dict[str, float] = {}
        allowed = self._allowed_ids(request)
        wanted = request.offset + request.k
        t0 = time.perf_counter()
        query_vector = self.embed_query(request.query)
        timings["encode"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        depth = max(wanted * 4, 100)
        while True:
            candidates = self._dense_candidates(query_vector, depth, allowed)
            ranked = _cap_per_document(self.reader, candidates, request.per_doc_cap)
            exhausted = len(candidates) < depth
            if len(ranked) >= wanted or exhausted:
                break
            depth *= 4  # the per-document cap threw too many away; look deeper
        timings["vector_search"] = (time.perf_counter() - t0) * 1000
        page = ranked[request.offset : wanted]
        t0 = time.perf_counter()
        hits = self._hits(page, request)
        timings["store_lookup"] = (time.perf_counter() - t0) * 1000
        return SearchResult(
            query=request.query, index_version=self.reader.version, mode=request.mode, hits=hits, timings_ms=timings
        )

    def _allowed_ids(self, request: SearchRequest) -> np.ndarray | None:
        if request.section is None and request.doc_id is None:
            return None
        return self.reader.passage_ids(section=request.section, doc_id=request.doc_id)

    def _dense_candidates(
        self, query_vector: np.ndarray, depth: int, allowed: np.ndarray | None
    ) -> list[ScoredCandidate]:
        if allowed is not None and len(allowed) == 0:
            return []
        found = self.reader.search_vectors(query_vector, depth, allowed_ids=allowed)
        return [
            ScoredCandidate(int(pid), float(score)) for score, pid in zip(found.scores[0], found.ids[0], strict=True)
        ]

    def _hits(self, page: list[tuple[ScoredCandidate, StoredPassage]], request: SearchRequest) -> list[Hit]:
        hits = []
        for rank, (candidate, stored) in enumerate(page, start=request.offset + 1):
            explain = (
                Explanation(dense_rank=rank, dense_score=candidate.score, fused_score=candidate.score)
                if request.explain
                else None
            )
            hits.append(
                Hit(
                    rank=rank,
                    score=candidate.score,
                    passage_id=stored.passage_id,
                    text=stored.text,
                    citation=citation_for(stored),
                    explain=explain,
                )
            )
        return hits


def check_model_matches(reader: IndexReader, embedder: Embedder) -> None:
    """Queries must be embedded by the model that embedded the passages, or scores are meaningless."""
    model = reader.manifest.model
    if (model.name, model.dim) != (embedder.name, embedder.dim):
        raise IndexIncompatibleError(
            f"index {reader.version} was built with model {model.name!r} (dim {model.dim}) but the configured "
            f"model is {embedder.name!r} (dim {embedder.dim}); set CITESEARCH_MODEL={model.name} or re-index"
        )


def citation_for(stored: StoredPassage) -> Citation:
    return Citation(
        doc_id=stored.doc_id,
        title=stored.title,
        source=stored.source,
        section=stored.section,
        comment_no=stored.comment_no,
        char_start=stored.char_start,
        char_end=stored.char_end,
    )


def _cap_per_document(
    reader: IndexReader, candidates: list[ScoredCandidate], cap: int | None
) -> list[tuple[ScoredCandidate, StoredPassage]]:
    """Pair candidates with their stored passages, keeping at most ``cap`` per document, in rank order."""
    stored = reader.passages([c.passage_id for c in candidates])
    if cap is None:
        return list(zip(candidates, stored, strict=True))
    per_doc: dict[str, int] = {}
    kept = []
    for candidate, passage in zip(candidates, stored, strict=True):
        if per_doc.get(passage.doc_id, 0) < cap:
            per_doc[passage.doc_id] = per_doc.get(passage.doc_id, 0) + 1
            kept.append((candidate, passage))
    return kept
