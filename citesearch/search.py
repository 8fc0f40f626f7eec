"""The one search path shared by the CLI, the HTTP service and the evaluation harness.

A ``Searcher`` wraps an opened index version and an embedder. It turns a ``SearchRequest`` into ranked ``Hit``s
with exact citations: each hit's text is the stored document text at the cited span.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, get_args

import numpy as np

from citesearch.fusion import FusionSettings, fuse, passages_per_document, ranks_of, z_score
from citesearch.late_interaction import (
    TokenEmbedder,
    maxsim,
    rerank_texts,
    reranked_order,
    rows_in_basis,
    top_document_passages,
)
from citesearch.part_evidence import PartScores
from citesearch.store import Candidates, KeywordQuery, LocalStore, SearchFilter, SearchStore, Where, as_store
from index_store import IndexIncompatibleError, IndexReader, StoredPassage
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
    late_interaction_score: float | None = None  # MaxSim over token vectors, for a passage the rerank scored


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
    late_interaction_score: float | None = None


@dataclass(frozen=True, slots=True)
class DateBounds:
    """A request's date fields in epoch seconds (None: not given)."""

    after: float | None
    before: float | None
    as_of: float | None


@dataclass(frozen=True, slots=True)
class _Ranking:
    candidates: list[ScoredCandidate]
    exhausted: bool  # every retriever returned fewer than asked: looking deeper finds nothing new


class Searcher:
    """Search one index with one embedder. Thread-safe for concurrent searches.

    ``source`` is an opened local ``IndexReader`` (wrapped in ``citesearch.store.LocalStore``) or any
    ``SearchStore`` (the Milvus one). ``fusion`` defaults to what the index records (``extra.fusion``), else
    ``FusionSettings()``.
    """

    def __init__(
        self,
        source: IndexReader | SearchStore,
        embedder: Embedder,
        fusion: FusionSettings | None = None,
        *,
        query_cache_size: int = 1024,
    ) -> None:
        self.store = as_store(source)
        self.embedder = embedder
        self.query_cache_size = query_cache_size
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        recorded = self.store.recorded_fusion
        chosen = fusion or (
            FusionSettings.from_dict(recorded) if recorded is not None else FusionSettings(profile="auto")
        )
        # An "auto" profile resolves against this index's documents: one rule for the local and the Milvus store.
        # "custom" needs no counts (on Milvus they are two queries), so they are only asked for a profile.
        self.fusion = chosen.resolved(passages_per_document(self.store.counts) if chosen.profile != "custom" else None)
        if self.fusion.rerank_depth and chosen.rerank_depth is None:
            # The profile's rerank runs on stored token vectors only: encoding every candidate per query instead
            # costs 36x the latency (docs/retrieval.md), which only an operator who sets the depth asks for.
            why = None
            if not isinstance(embedder, TokenEmbedder):
                why = f"the embedder {type(embedder).__name__} gives no token vectors"
            elif self.store.token_vectors([]) is None:
                why = "the index keeps no token vectors (re-index it to store them)"
            if why is not None:
                reason = f"{self.fusion.reason}; " if self.fusion.reason else ""
                self.fusion = replace(self.fusion, rerank_depth=0, reason=f"{reason}late interaction off: {why}")
        if self.fusion.rerank_depth and not isinstance(embedder, TokenEmbedder):
            raise ValueError(
                f"fusion rerank_depth {self.fusion.rerank_depth} needs token vectors, which the embedder "
                f"{type(embedder).__name__} does not give; set CITESEARCH_FUSION_RERANK_DEPTH=0"
            )

    @property
    def reader(self) -> IndexReader:
        """The local index this searcher reads (for the local tools: eval tune, the question report); a searcher
        on another store has none."""
        if not isinstance(self.store, LocalStore):
            raise TypeError(f"the searcher reads {type(self.store).__name__}, not a local index")
        return self.store.reader

    def part_scores(self, ids: np.ndarray, query_vector: np.ndarray) -> PartScores | None:
        """The lead and part-mean cosines of these passages' parts (``citesearch.part_evidence``)."""
        return self.store.part_scores(ids, query_vector)

    @property
    def index_version(self) -> str:
        return self.store.version

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
        if request.doc_id is not None and self.store.document(request.doc_id) is None:
            raise InvalidSearchRequest("doc_id", f"no document {request.doc_id!r} in the index", not_found=True)
        bounds = self.date_bounds(request)
        if (bounds.after is not None or bounds.before is not None or request.recency) and not self.store.has_dates:
            field_name = "recency" if request.recency else "published_after"
            raise InvalidSearchRequest(
                field_name, f"index {self.store.version} records no published dates; re-index to use date filters"
            )
        if request.recency and request.mode != "hybrid":
            raise InvalidSearchRequest("recency", f"the recency prior applies to mode hybrid, not {request.mode!r}")
        if request.mode != "dense" and not self.store.has_keyword:
            raise InvalidSearchRequest("mode", self.store.why_no_keyword)

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
        dated = self.store.has_dates
        while True:
            ranking = self._rank(request, query_vector, depth, allowed, timings)
            t0 = time.perf_counter()
            ranked = _cap_per_document(self.store, ranking.candidates, request.per_doc_cap)
            if request.collapse_duplicates and dated and self.store.duplicate_documents:
                ranked = self._collapsed(ranked)
            timings["store_lookup"] = timings.get("store_lookup", 0.0) + (time.perf_counter() - t0) * 1000
            if len(ranked) >= wanted or ranking.exhausted:
                break
            depth *= 4  # the per-document cap threw too many away; look deeper
        t0 = time.perf_counter()
        page = ranked[request.offset : wanted]
        # Rows are fetched for the page only: the hundreds of fused candidates above it never leave the arrays.
        stored = self.store.passages([c.passage_id for c in page])
        timings["store_lookup"] += (time.perf_counter() - t0) * 1000
        hits = self._hits(list(zip(page, stored, strict=True)), request, dated)
        return SearchResult(
            query=request.query,
            index_version=self.store.version,
            mode=request.mode,
            hits=hits,
            timings_ms=timings,
            query_vector=query_vector,
        )

    def _allowed_ids(self, request: SearchRequest) -> Where:
        bounds = self.date_bounds(request)
        return self.store.resolve(SearchFilter(request.section, request.doc_id, bounds.after, bounds.before))

    def _collapsed(self, candidates: list[ScoredCandidate]) -> list[ScoredCandidate]:
        """Candidates in rank order with the passages of a duplicate cluster's later documents dropped: the first
        document of a cluster to rank stands for the cluster (its own passages all stay)."""
        ids = np.fromiter((c.passage_id for c in candidates), dtype=np.int64, count=len(candidates))
        facts = self.store.passage_documents(ids)
        standing: dict[int, int] = {}  # cluster -> the document ordinal that stands for it
        kept = []
        for candidate, ordinal, cluster in zip(candidates, facts.ordinal.tolist(), facts.cluster.tolist(), strict=True):
            if standing.setdefault(cluster, ordinal) == ordinal:
                kept.append(candidate)
        return kept

    def _rank(
        self,
        request: SearchRequest,
        query_vector: np.ndarray | None,
        depth: int,
        allowed: Where,
        timings: dict[str, float],
    ) -> _Ranking:
        if allowed.nothing:
            return _Ranking([], exhausted=True)
        dense = bm25_found = Candidates.empty()
        if request.mode != "bm25" and query_vector is not None:
            t0 = time.perf_counter()
            dense = self.store.dense_top(query_vector, depth, allowed)
            timings["vector_search"] = timings.get("vector_search", 0.0) + (time.perf_counter() - t0) * 1000
        keyword: KeywordQuery | None = None
        if request.mode != "dense" or (request.explain and self.store.has_keyword):
            t0 = time.perf_counter()
            with_context = request.explain or (request.mode == "hybrid" and self.fusion.context_weight > 0)
            keyword = self.store.keyword_query(request.query, with_context=with_context)
            # bm25 mode is plain passage BM25; hybrid takes its keyword candidates by BM25 plus context.
            bm25_found = keyword.top(depth, allowed, self.fusion if request.mode == "hybrid" else None)
            timings["bm25"] = timings.get("bm25", 0.0) + (time.perf_counter() - t0) * 1000
        exhausted = len(dense.ids) < depth and len(bm25_found.ids) < depth
        if request.mode == "dense":
            return _Ranking(self._explained(dense.ids, dense.scores, query_vector, keyword, request), exhausted)
        if request.mode == "bm25":
            return _Ranking(
                self._explained(bm25_found.ids, bm25_found.scores, query_vector, keyword, request), exhausted
            )
        t0 = time.perf_counter()
        candidates = self._fused(dense.ids, bm25_found.ids, query_vector, keyword, request)
        timings["fusion"] = timings.get("fusion", 0.0) + (time.perf_counter() - t0) * 1000
        return _Ranking(candidates, exhausted)

    def _exact_scores(
        self, ids: np.ndarray, query_vector: np.ndarray | None, keyword: KeywordQuery | None
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Every signal's score for these passages, computed exactly (not only for those each retriever found)."""
        dense = None
        if query_vector is not None:
            dense = self.store.vectors(ids) @ query_vector[0]
        bm25 = context = None
        if keyword is not None:
            bm25, context = keyword.scores(ids)
        return dense, bm25, context

    def _fused(
        self,
        dense_ids: np.ndarray,
        bm25_ids: np.ndarray,
        query_vector: np.ndarray | None,
        keyword: KeywordQuery | None,
        request: SearchRequest,
    ) -> list[ScoredCandidate]:
        union = np.unique(np.concatenate([dense_ids, bm25_ids]).astype(np.int64))
        dense, bm25, context = self._exact_scores(union, query_vector, keyword)
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
        late: dict[int, float] = {}
        if self.fusion.rerank_depth and len(union):
            fused, order, late = self._late_interaction(union, fused, request.query)
        else:
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
                late.get(int(i)),
            )
            for i in order
        ]

    def _late_interaction(
        self, union: np.ndarray, fused: np.ndarray, query: str
    ) -> tuple[np.ndarray, np.ndarray, dict[int, float]]:
        """The fused scores and order after the late-interaction rerank of the top documents' passages, and the
        MaxSim of each reranked candidate (by position in ``union``)."""
        assert isinstance(self.embedder, TokenEmbedder)  # checked when the searcher was built
        if self.store.has_dates:
            documents: np.ndarray = self.store.passage_documents(union).ordinal
        else:  # no document table (an index without a keyword side): the rows say which document each one is in
            documents = np.array([p.doc_id for p in self.store.passages(union.tolist())], dtype=object)
        selected = top_document_passages(fused, documents, int(self.fusion.rerank_depth or 0))
        late = self._maxsim(query, union[selected])
        scores, order = reranked_order(fused, selected, late, float(self.fusion.rerank_weight or 0.0))
        return scores, order, dict(zip(selected.tolist(), late.tolist(), strict=True))

    def _maxsim(self, query: str, passage_ids: np.ndarray) -> np.ndarray:
        """MaxSim of each passage against the query: on the token vectors the store keeps, in its basis (query
        tokens projected onto it), and for a passage it keeps none of, on token vectors encoded from its text now
        and projected the same way."""
        assert isinstance(self.embedder, TokenEmbedder)
        ids = passage_ids.tolist()
        stored = self.store.token_vectors(ids)
        missing = list(range(len(ids))) if stored is None else [i for i, row in enumerate(stored.rows) if row is None]
        texts = rerank_texts(self.store.passages([ids[i] for i in missing])) if missing else []
        query_tokens, *encoded = self.embedder.encode_tokens([query, *texts])
        if stored is None:
            return maxsim(query_tokens, encoded)
        return maxsim(stored.projection.project(query_tokens), rows_in_basis(stored, encoded))

    def _recency(self, ids: np.ndarray, request: SearchRequest) -> np.ndarray | None:
        """The recency prior of each passage's document: 1 at ``as_of``, halving every ``recency_half_life_days``
        before it; 0 for a document without a date (nothing says it is recent) and for one published more than a day
        after ``as_of`` (it was not recent then; the day of slack absorbs time zones)."""
        if not request.recency or not self.store.has_dates:
            return None
        as_of = self.date_bounds(request).as_of
        if as_of is None:
            as_of = time.time()
        stamps = self.store.passage_documents(ids).timestamp
        age_days = (as_of - stamps) / 86400.0
        prior = np.power(0.5, np.maximum(age_days, 0.0) / self.fusion.recency_half_life_days)
        return np.where(np.isnan(stamps) | (age_days < -1.0), 0.0, prior)

    def _explained(
        self,
        ids: np.ndarray,
        scores: np.ndarray,
        query_vector: np.ndarray | None,
        keyword: KeywordQuery | None,
        request: SearchRequest,
    ) -> list[ScoredCandidate]:
        """A single retriever's ranking; with ``explain``, also the other signals' exact scores."""
        ids = ids.astype(np.int64)
        dense = bm25 = context = None
        if request.explain:
            dense, bm25, context = self._exact_scores(ids, query_vector, keyword)
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
        dated: bool,
    ) -> list[Hit]:
        ordinals: list[int | None] = [None] * len(page)
        published: list[str | None] = [None] * len(page)
        if dated and page:
            ids = np.array([stored.passage_id for _, stored in page], dtype=np.int64)
            facts = self.store.passage_documents(ids)
            ordinals = facts.ordinal.tolist()
            published = [str(p) or None for p in facts.published.tolist()]
        hits = []
        for rank, ((candidate, stored), ordinal, date) in enumerate(
            zip(page, ordinals, published, strict=True), start=request.offset + 1
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
                    late_interaction_score=candidate.late_interaction_score,
                )
            hits.append(
                Hit(
                    rank=rank,
                    score=candidate.score,
                    passage_id=stored.passage_id,
                    text=stored.text,
                    citation=citation_for(stored, date),
                    explain=explain,
                    also_in=self._also_in(ordinal, stored.doc_id, request.collapse_duplicates),
                )
            )
        return hits

    def _also_in(self, ordinal: int | None, doc_id: str, collapsed: bool) -> tuple[str, ...]:
        """The other documents of this document's duplicate cluster (none unless collapsing, dated and a copy)."""
        if not collapsed or ordinal is None or not self.store.duplicate_documents:
            return ()
        members = self.store.cluster_doc_ids(ordinal)
        return tuple(other for other in members if other != doc_id) if len(members) > 1 else ()


def check_model_matches(source: IndexReader | SearchStore, embedder: Embedder) -> None:
    """Queries must be embedded by the model that embedded the passages, or scores are meaningless."""
    store = as_store(source)
    model = store.model
    if (model.name, model.dim) != (embedder.name, embedder.dim):
        raise IndexIncompatibleError(
            f"index {store.version} was built with model {model.name!r} (dim {model.dim}) but the configured "
            f"model is {embedder.name!r} (dim {embedder.dim}); set CITESEARCH_MODEL={model.name} or re-index"
        )


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


def _cap_per_document(store: SearchStore, candidates: list[ScoredCandidate], cap: int | None) -> list[ScoredCandidate]:
    """Candidates in rank order, at most ``cap`` per document (all of them without a cap); ids the store does not
    know are left out, as a row fetch would."""
    if not candidates:
        return []
    keys = store.document_keys(np.fromiter((c.passage_id for c in candidates), dtype=np.int64))
    if cap is None:
        return [c for c, key in zip(candidates, keys.tolist(), strict=True) if key >= 0]
    per_doc: dict[int, int] = {}
    kept = []
    for candidate, key in zip(candidates, keys.tolist(), strict=True):
        if key >= 0 and per_doc.get(key, 0) < cap:
            per_doc[key] = per_doc.get(key, 0) + 1
            kept.append(candidate)
    return kept
