"""The one search path shared by the CLI, the HTTP service and the evaluation harness.

A ``Searcher`` wraps an opened index version and an embedder. It turns a ``SearchRequest`` into ranked ``Hit``s
with exact citations: each hit's text is the stored document text at the cited span.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import numpy as np

from citesearch.fusion import FusionSettings, fuse, keyword_score, ranks_of, z_score
from citesearch.part_evidence import PartLayout, PartScores, PartVectors, part_scores
from index_store import IndexIncompatibleError, IndexReader, StoredPassage
from index_store.keyword import DocumentTable
from indexer.dates import parse_bound
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
    mode: Mode = "hybrid"
    explain: bool = False
    per_doc_cap: int | None = None  # at most this many passages of one document in the returned ranking
    # Only documents published within these bounds (ISO 8601 dates; inclusive). A document without a published
    # date is left out whenever a bound is given: it cannot be shown to fall inside.
    published_after: str | None = None
    published_before: str | None = None
    # Recency prior (hybrid mode): favour documents published shortly before ``as_of`` (default: now).
    recency: bool = False
    as_of: str | None = None
    # Syndicated copies of one story (index_store.duplicates) show as one hit, the others in ``Hit.also_in``;
    # False lists every copy as its own hit.
    collapse_duplicates: bool = True


@dataclass(frozen=True, slots=True)
class Citation:
    doc_id: str
    title: str
    source: str
    section: str
    comment_no: int | None
    char_start: int
    char_end: int
    url: str | None = None  # the document's, when it has one (jsonl "url", an HTML page's canonical address)
    # Optional, where the page shows them: the reader comment's author, date and the comment it replies to, and the
    # article's byline, published date (ISO 8601) and site.
    comment_author: str | None = None
    comment_date: str | None = None
    comment_date_iso: str | None = None
    parent: int | None = None
    depth: int | None = None
    author: str | None = None
    published: str | None = None
    site_name: str | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a hit ranks where it does: its place and score in each ranking that was fused."""

    dense_rank: int | None = None
    dense_score: float | None = None
    bm25_rank: int | None = None
    bm25_score: float | None = None
    context_score: float | None = None  # BM25 of the passage's whole part (article body, bio, comment)
    fused_score: float | None = None
    lead_score: float | None = None  # cosine of the first passage of the passage's part
    part_mean_score: float | None = None  # cosine of the mean passage vector of the passage's part
    recency_score: float | None = None  # the recency prior of the passage's document (0..1), when asked for


@dataclass(frozen=True, slots=True)
class Hit:
    rank: int
    score: float
    passage_id: int
    text: str
    citation: Citation
    explain: Explanation | None = None
    # Other documents of this hit's duplicate cluster (copies of the same story), collapsed into this hit
    also_in: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: str
    index_version: str
    mode: str
    hits: list[Hit] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The embedded query (1 x dim, L2-normalised), so callers can score sentences without encoding it again.
    query_vector: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        """The documented JSON shape of ``citesearch search --json`` (and the core of ``GET /search``)."""
        results = []
        for hit in self.hits:
            item: dict[str, object] = {
                "rank": hit.rank,
                "score": round(hit.score, 6),
                "text": hit.text,
                "citation": asdict(hit.citation),
                "also_in": list(hit.also_in),
            }
            if hit.explain is not None:
                item["explain"] = asdict(hit.explain)
            results.append(item)
        return {"query": self.query, "index_version": self.index_version, "mode": self.mode, "results": results}


@dataclass(frozen=True, slots=True)
class ScoredCandidate:
    """A passage in the ranking of one mode, with what each retriever thought of it (for ``explain``)."""

    passage_id: int
    score: float
    dense_rank: int | None = None
    dense_score: float | None = None
    bm25_rank: int | None = None
    bm25_score: float | None = None
    context_score: float | None = None
    lead_score: float | None = None
    part_mean_score: float | None = None
    recency_score: float | None = None


@dataclass(frozen=True, slots=True)
class DateBounds:
    """A request's date fields in epoch seconds (None: not given)."""

    after: float | None
    before: float | None
    as_of: float | None


@dataclass(frozen=True, slots=True)
class _KeywordScores:
    """BM25 of every passage for one query, and of every passage's part (None without a context index)."""

    bm25: np.ndarray
    context: np.ndarray | None


@dataclass(frozen=True, slots=True)
class _Ranking:
    candidates: list[ScoredCandidate]
    exhausted: bool  # every retriever returned fewer than asked: looking deeper finds nothing new


class Searcher:
    """Search one opened index version with one embedder. Thread-safe for concurrent searches.

    ``fusion`` defaults to what the index's manifest records (``extra.fusion``), else ``FusionSettings()``.
    """

    def __init__(
        self,
        reader: IndexReader,
        embedder: Embedder,
        fusion: FusionSettings | None = None,
        *,
        query_cache_size: int = 1024,
    ) -> None:
        self.reader = reader
        self.embedder = embedder
        self.query_cache_size = query_cache_size
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        recorded = reader.manifest.extra.get("fusion")
        self.fusion = fusion or (FusionSettings.from_dict(recorded) if isinstance(recorded, dict) else FusionSettings())
        self._part_layout: PartLayout | None = None  # built on first use from the keyword index's part map
        self._part_vectors: PartVectors | None = None

    def part_layout(self) -> PartLayout | None:
        """Which passages form each part (None without a part-level index). Derived once per searcher: the index
        version it reads never changes."""
        keyword = self.reader.keyword
        if keyword is None or keyword.context is None:
            return None
        with self._cache_lock:
            if self._part_layout is None:
                stored = getattr(self.reader, "part_layout", None)  # a segmented reader composes the stored ones
                if callable(stored):
                    self._part_layout = stored()
                else:
                    documents = keyword.documents
                    self._part_layout = PartLayout.of(
                        keyword.context.part_of, None if documents is None else documents.doc_of
                    )
            return self._part_layout

    def part_scores(self, ids: np.ndarray, query_vector: np.ndarray) -> PartScores | None:
        """The lead and part-mean cosines of these passages' parts (``citesearch.part_evidence``)."""
        layout = self.part_layout()
        keyword = self.reader.keyword
        if layout is None or keyword is None:
            return None

        def vectors_at(positions: np.ndarray) -> np.ndarray:
            return self.reader.vectors.vectors_for(keyword.passage_ids[positions])

        with self._cache_lock:
            if self._part_vectors is None:
                stored = getattr(self.reader, "part_vectors", None)  # segments store their parts' mean vectors
                self._part_vectors = (
                    stored() if callable(stored) else PartVectors.build(layout, vectors_at, self.reader.vectors.dim)
                )
            part_vectors = self._part_vectors
        return part_scores(layout, part_vectors, keyword.positions(ids), vectors_at, query_vector)

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
        if request.per_doc_cap is not None and request.per_doc_cap < 1:
            raise InvalidSearchRequest("per_doc_cap", f"must be at least 1, got {request.per_doc_cap}")
        if request.section is not None and request.section not in SECTIONS:
            raise InvalidSearchRequest("section", f"must be one of {', '.join(SECTIONS)}, got {request.section!r}")
        if request.doc_id is not None and self.reader.document(request.doc_id) is None:
            raise InvalidSearchRequest("doc_id", f"no document {request.doc_id!r} in the index", not_found=True)
        bounds = self.date_bounds(request)
        if (bounds.after is not None or bounds.before is not None or request.recency) and self.documents() is None:
            field_name = "recency" if request.recency else "published_after"
            raise InvalidSearchRequest(
                field_name, f"index {self.reader.version} records no published dates; re-index to use date filters"
            )
        if request.recency and request.mode != "hybrid":
            raise InvalidSearchRequest("recency", f"the recency prior applies to mode hybrid, not {request.mode!r}")
        if request.mode != "dense" and self.reader.keyword is None:
            raise InvalidSearchRequest(
                "mode", f"index {self.reader.version} has no keyword index; use mode 'dense' or re-index"
            )

    def documents(self) -> DocumentTable | None:
        """Published dates and duplicate clusters of the index's documents (None for older indexes)."""
        keyword = self.reader.keyword
        return None if keyword is None else keyword.documents

    @staticmethod
    def date_bounds(request: SearchRequest) -> DateBounds:
        """The request's date fields as epoch seconds; ``InvalidSearchRequest`` naming a field that is no date."""
        values: dict[str, float | None] = {}
        for name in ("published_after", "published_before", "as_of"):
            text = getattr(request, name)
            try:
                values[name] = None if text is None else parse_bound(text, name)
            except ValueError:
                raise InvalidSearchRequest(
                    name, f"{text!r} is not a date (use ISO 8601, such as 2022-06-16 or 2022-06-16T09:00:00Z)"
                ) from None
        after, before = values["published_after"], values["published_before"]
        if after is not None and before is not None and after > before:
            raise InvalidSearchRequest("published_before", "must not be earlier than published_after")
        if before is not None and request.published_before is not None and len(request.published_before.strip()) <= 10:
            before += 86400 - 1e-3  # a day-only upper bound includes that whole day
        return DateBounds(after, before, values["as_of"])

    def embed_query(self, query: str) -> np.ndarray:
        """The query's embedding (1 x dim). Repeated queries (paging, the page's ask-then-search) hit a small LRU."""
        with self._cache_lock:
            cached = self._query_cache.get(query)
            if cached is not None:
                self._query_cache.move_to_end(query)
                return cached
        vector = self.embedder.encode([query])
        vector.setflags(write=False)  # shared between requests
        with self._cache_lock:
            self._query_cache[query] = vector
            while len(self._query_cache) > self.query_cache_size:
                self._query_cache.popitem(last=False)
        return vector

    def search(self, request: SearchRequest) -> SearchResult:
        self.validate(request)
        timings: dict[str, float] = {}
        allowed = self._allowed_ids(request)
        wanted = request.offset + request.k
        query_vector = None
        if request.mode != "bm25" or request.explain:  # explain shows the dense score in bm25 mode too
            t0 = time.perf_counter()
            query_vector = self.embed_query(request.query)
            timings["encode"] = (time.perf_counter() - t0) * 1000
        depth = max(wanted, self.fusion.candidates)
        documents = self.documents()
        while True:
            ranking = self._rank(request, query_vector, depth, allowed, timings)
            t0 = time.perf_counter()
            ranked = _cap_per_document(self.reader, ranking.candidates, request.per_doc_cap)
            if request.collapse_duplicates and documents is not None and documents.duplicate_documents:
                ranked = self._collapsed(ranked, documents)
            timings["store_lookup"] = timings.get("store_lookup", 0.0) + (time.perf_counter() - t0) * 1000
            if len(ranked) >= wanted or ranking.exhausted:
                break
            depth *= 4  # the per-document cap threw too many away; look deeper
        t0 = time.perf_counter()
        page = ranked[request.offset : wanted]
        # Rows are fetched for the page only: the hundreds of fused candidates above it never leave the arrays.
        stored = self.reader.passages([c.passage_id for c in page])
        timings["store_lookup"] += (time.perf_counter() - t0) * 1000
        hits = self._hits(list(zip(page, stored, strict=True)), request, documents)
        return SearchResult(
            query=request.query,
            index_version=self.reader.version,
            mode=request.mode,
            hits=hits,
            timings_ms=timings,
            query_vector=query_vector,
        )

    def _allowed_ids(self, request: SearchRequest) -> np.ndarray | None:
        allowed = None
        if request.section is not None or request.doc_id is not None:
            allowed = self.reader.passage_ids(section=request.section, doc_id=request.doc_id)
        bounds = self.date_bounds(request)
        keyword, documents = self.reader.keyword, self.documents()
        if (bounds.after is None and bounds.before is None) or keyword is None or documents is None:
            return allowed
        stamps = documents.timestamps[documents.doc_of]  # per passage; NaN (no date) fails every comparison
        inside = ~np.isnan(stamps)
        if bounds.after is not None:
            inside &= stamps >= bounds.after
        if bounds.before is not None:
            inside &= stamps <= bounds.before
        dated = keyword.passage_ids[inside]
        return dated if allowed is None else np.intersect1d(allowed, dated, assume_unique=True)

    def _collapsed(self, candidates: list[ScoredCandidate], documents: DocumentTable) -> list[ScoredCandidate]:
        """Candidates in rank order with the passages of a duplicate cluster's later documents dropped: the first
        document of a cluster to rank stands for the cluster (its own passages all stay)."""
        keyword = self.reader.keyword
        assert keyword is not None
        ids = np.fromiter((c.passage_id for c in candidates), dtype=np.int64, count=len(candidates))
        ordinals = documents.doc_of[keyword.positions(ids)]
        standing: dict[int, int] = {}  # cluster -> the document ordinal that stands for it
        kept = []
        for candidate, ordinal in zip(candidates, ordinals.tolist(), strict=True):
            cluster = int(documents.cluster[ordinal])
            if standing.setdefault(cluster, ordinal) == ordinal:
                kept.append(candidate)
        return kept

    def _rank(
        self,
        request: SearchRequest,
        query_vector: np.ndarray | None,
        depth: int,
        allowed: np.ndarray | None,
        timings: dict[str, float],
    ) -> _Ranking:
        if allowed is not None and len(allowed) == 0:
            return _Ranking([], exhausted=True)
        dense_ids = dense_scores = bm25_ids = bm25_scores = np.zeros(0)
        if request.mode != "bm25" and query_vector is not None:
            t0 = time.perf_counter()
            found = self.reader.search_vectors(query_vector, depth, allowed_ids=allowed)
            keep = found.ids[0] >= 0  # padding when fewer passages than asked for pass the filter
            dense_ids, dense_scores = found.ids[0][keep], found.scores[0][keep]
            timings["vector_search"] = timings.get("vector_search", 0.0) + (time.perf_counter() - t0) * 1000
        keyword_scores: _KeywordScores | None = None
        if request.mode != "dense" or (request.explain and self.reader.keyword is not None):
            t0 = time.perf_counter()
            keyword = self.reader.keyword
            assert keyword is not None  # validate() rejected modes that need it
            with_context = request.explain or (request.mode == "hybrid" and self.fusion.context_weight > 0)
            keyword_scores = _KeywordScores(
                keyword.scores(request.query), keyword.context_scores(request.query) if with_context else None
            )
            # bm25 mode is plain passage BM25; hybrid takes its keyword candidates by BM25 plus context.
            ranked_by = keyword_scores.bm25
            if request.mode == "hybrid" and keyword_scores.context is not None:
                ranked_by = keyword_score(keyword_scores.bm25, keyword_scores.context, self.fusion)
            found = keyword.top(ranked_by, depth, allowed_ids=allowed)
            bm25_ids, bm25_scores = found.ids[0], found.scores[0]
            timings["bm25"] = timings.get("bm25", 0.0) + (time.perf_counter() - t0) * 1000
        exhausted = len(dense_ids) < depth and len(bm25_ids) < depth
        if request.mode == "dense":
            return _Ranking(self._explained(dense_ids, dense_scores, query_vector, keyword_scores, request), exhausted)
        if request.mode == "bm25":
            return _Ranking(self._explained(bm25_ids, bm25_scores, query_vector, keyword_scores, request), exhausted)
        t0 = time.perf_counter()
        candidates = self._fused(dense_ids, bm25_ids, query_vector, keyword_scores, request)
        timings["fusion"] = timings.get("fusion", 0.0) + (time.perf_counter() - t0) * 1000
        return _Ranking(candidates, exhausted)

    def _exact_scores(
        self, ids: np.ndarray, query_vector: np.ndarray | None, keyword_scores: _KeywordScores | None
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Every signal's score for these passages, computed exactly (not only for those each retriever found)."""
        dense = None
        if query_vector is not None:
            dense = self.reader.vectors.vectors_for(ids) @ query_vector[0]
        bm25 = context = None
        if keyword_scores is not None and self.reader.keyword is not None:
            positions = self.reader.keyword.positions(ids)
            bm25 = keyword_scores.bm25[positions]
            if keyword_scores.context is not None:
                context = keyword_scores.context[positions]
        return dense, bm25, context

    def _fused(
        self,
        dense_ids: np.ndarray,
        bm25_ids: np.ndarray,
        query_vector: np.ndarray | None,
        keyword_scores: _KeywordScores | None,
        request: SearchRequest,
    ) -> list[ScoredCandidate]:
        union = np.unique(np.concatenate([dense_ids, bm25_ids]).astype(np.int64))
        dense, bm25, context = self._exact_scores(union, query_vector, keyword_scores)
        assert dense is not None and bm25 is not None and query_vector is not None
        parts = self.part_scores(union, query_vector) if self.fusion.uses_parts else None
        lead = None if parts is None else parts.lead
        mean = None if parts is None else parts.mean
        fused = fuse(dense, bm25, context, self.fusion, lead, mean)
        recency = self._recency(union, request)
        if recency is not None:
            # One more convex term, on the same z-score scale as the others (citesearch.fusion).
            fused = fused + self.fusion.recency_weight * z_score(recency)
        dense_ranks, bm25_ranks = ranks_of(dense), ranks_of(bm25)
        order = np.argsort(-fused, kind="stable")
        return [
            ScoredCandidate(
                int(union[i]),
                float(fused[i]),
                int(dense_ranks[i]),
                float(dense[i]),
                int(bm25_ranks[i]),
                float(bm25[i]),
                None if context is None else float(context[i]),
                None if lead is None else float(lead[i]),
                None if mean is None else float(mean[i]),
                None if recency is None else float(recency[i]),
            )
            for i in order
        ]

    def _recency(self, ids: np.ndarray, request: SearchRequest) -> np.ndarray | None:
        """The recency prior of each passage's document: 1 at ``as_of``, halving every ``recency_half_life_days``
        before it; 0 for a document without a date (nothing says it is recent) and for one published more than a day
        after ``as_of`` (it was not recent then; the day of slack absorbs time zones)."""
        documents, keyword = self.documents(), self.reader.keyword
        if not request.recency or documents is None or keyword is None:
            return None
        as_of = self.date_bounds(request).as_of
        if as_of is None:
            as_of = time.time()
        stamps = documents.timestamps[documents.doc_of[keyword.positions(ids)]]
        age_days = (as_of - stamps) / 86400.0
        prior = np.power(0.5, np.maximum(age_days, 0.0) / self.fusion.recency_half_life_days)
        return np.where(np.isnan(stamps) | (age_days < -1.0), 0.0, prior)

    def _explained(
        self,
        ids: np.ndarray,
        scores: np.ndarray,
        query_vector: np.ndarray | None,
        keyword_scores: _KeywordScores | None,
        request: SearchRequest,
    ) -> list[ScoredCandidate]:
        """A single retriever's ranking; with ``explain``, also the other signals' exact scores."""
        ids = ids.astype(np.int64)
        dense = bm25 = context = None
        if request.explain:
            dense, bm25, context = self._exact_scores(ids, query_vector, keyword_scores)
        candidates = []
        for i, (pid, score) in enumerate(zip(ids, scores, strict=True)):
            candidates.append(
                ScoredCandidate(
                    passage_id=int(pid),
                    score=float(score),
                    dense_rank=i + 1 if request.mode == "dense" else None,
                    dense_score=float(dense[i]) if dense is not None else None,
                    bm25_rank=i + 1 if request.mode == "bm25" else None,
                    bm25_score=float(bm25[i]) if bm25 is not None else None,
                    context_score=float(context[i]) if context is not None else None,
                )
            )
        return candidates

    def _hits(
        self,
        page: list[tuple[ScoredCandidate, StoredPassage]],
        request: SearchRequest,
        documents: DocumentTable | None,
    ) -> list[Hit]:
        ordinals: list[int | None] = [None] * len(page)
        keyword = self.reader.keyword
        if documents is not None and keyword is not None and page:
            ids = np.array([stored.passage_id for _, stored in page], dtype=np.int64)
            ordinals = documents.doc_of[keyword.positions(ids)].tolist()
        hits = []
        for rank, ((candidate, stored), ordinal) in enumerate(
            zip(page, ordinals, strict=True), start=request.offset + 1
        ):
            explain = None
            if request.explain:
                explain = Explanation(
                    dense_rank=candidate.dense_rank,
                    dense_score=candidate.dense_score,
                    bm25_rank=candidate.bm25_rank,
                    bm25_score=candidate.bm25_score,
                    context_score=candidate.context_score,
                    fused_score=candidate.score,
                    lead_score=candidate.lead_score,
                    part_mean_score=candidate.part_mean_score,
                    recency_score=candidate.recency_score,
                )
            hits.append(
                Hit(
                    rank=rank,
                    score=candidate.score,
                    passage_id=stored.passage_id,
                    text=stored.text,
                    citation=citation_for(stored, _published(documents, ordinal)),
                    explain=explain,
                    also_in=_also_in(documents, ordinal, stored.doc_id, request.collapse_duplicates),
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


def _published(documents: DocumentTable | None, ordinal: int | None) -> str | None:
    """The document's date as the keyword index normalised it, or None (undated, or an index from before dates)."""
    if documents is None or ordinal is None:
        return None
    return str(documents.published[ordinal]) or None


def _also_in(documents: DocumentTable | None, ordinal: int | None, doc_id: str, collapsed: bool) -> tuple[str, ...]:
    if not collapsed or documents is None or ordinal is None or documents.cluster_size(ordinal) < 2:
        return ()
    return tuple(other for other in documents.cluster_doc_ids(ordinal) if other != doc_id)


def citation_for(stored: StoredPassage, published: str | None = None) -> Citation:
    """The citation of a stored passage. ``published``: the document's date as the keyword index normalised it
    (indexer/dates.py); without it, the one in the document's metadata."""
    unit, metadata = stored.unit, stored.metadata or {}
    comment = unit if unit is not None and stored.section == "comment" else None

    def text(key: str) -> str | None:
        value = metadata.get(key)
        return value if isinstance(value, str) and value else None

    return Citation(
        doc_id=stored.doc_id,
        title=stored.title,
        source=stored.source,
        section=stored.section,
        comment_no=stored.comment_no,
        char_start=stored.char_start,
        char_end=stored.char_end,
        url=stored.url,
        comment_author=comment.comment_author if comment else None,
        comment_date=comment.comment_date if comment else None,
        comment_date_iso=comment.comment_date_iso if comment else None,
        parent=comment.parent if comment else None,
        depth=comment.depth if comment else None,
        author=text("author"),
        published=published or text("published"),
        site_name=text("site_name"),
    )


def _cap_per_document(reader: IndexReader, candidates: list[ScoredCandidate], cap: int | None) -> list[ScoredCandidate]:
    """Candidates in rank order, at most ``cap`` per document (all of them without a cap); ids the store does not
    know are left out, as a row fetch would."""
    if not candidates:
        return []
    keys = reader.document_keys(np.fromiter((c.passage_id for c in candidates), dtype=np.int64))
    if cap is None:
        return [c for c, key in zip(candidates, keys.tolist(), strict=True) if key >= 0]
    per_doc: dict[int, int] = {}
    kept = []
    for candidate, key in zip(candidates, keys.tolist(), strict=True):
        if key >= 0 and per_doc.get(key, 0) < cap:
            per_doc[key] = per_doc.get(key, 0) + 1
            kept.append(candidate)
    return kept
