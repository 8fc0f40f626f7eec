"""The storage seam of the search path: what ``citesearch.search.Searcher`` asks of an index, as one protocol.

The searcher (fusion, per-document cap, duplicate collapsing, recency, explain, citations) is the same for every
backend; only these questions are answered by storage:

* keyword scoring per query: top-k candidates, and the exact BM25 and part (context) BM25 of given passages;
* dense top-k, and the vectors of given passages (exact cosines for fusion);
* passage rows and documents (the text every citation indexes);
* filters (section, doc_id, published dates) as a ``SearchFilter`` the store resolves into its own form — an id
  array for the local files, a filter expression for Milvus;
* per-passage document facts: a document key (per-document cap), duplicate cluster, date (recency, citations);
* the part-level dense evidence (``citesearch.part_evidence``: lead and part mean).

``LocalStore`` wraps an opened ``IndexReader`` (FAISS + SQLite + bm25s) with exactly the behaviour the searcher had
before the seam; ``index_store.milvus_store.MilvusStore`` answers the same questions from Milvus.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from citesearch.fusion import FusionSettings, keyword_score
from citesearch.part_evidence import PartLayout, PartScores, PartVectors, part_scores
from index_store import IndexNotFoundError, IndexReader, ModelInfo, StoredPassage
from index_store.keyword import DocumentTable, KeywordIndex
from index_store.sqlite_store import StoredDocument
from index_store.token_vectors import StoredTokens

if TYPE_CHECKING:
    from citesearch.settings import Settings


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Which passages a request may return. Dates are epoch seconds, inclusive; a document without a date fails
    any date bound."""

    section: str | None = None
    doc_id: str | None = None
    published_after: float | None = None
    published_before: float | None = None

    @property
    def is_empty(self) -> bool:
        return (
            self.section is None
            and self.doc_id is None
            and self.published_after is None
            and self.published_before is None
        )


@dataclass(frozen=True, slots=True)
class Where:
    """A ``SearchFilter`` resolved by a store: ``allowed_ids`` (local), or ``expression`` (a Milvus boolean
    expression); both None means every passage. ``nothing``: the filter provably matches no passage."""

    allowed_ids: np.ndarray | None = None
    expression: str | None = None
    nothing: bool = False

    @property
    def everything(self) -> bool:
        return self.allowed_ids is None and self.expression is None and not self.nothing


EVERYTHING = Where()


@dataclass(frozen=True, slots=True)
class Candidates:
    """One retriever's ranked list: passage ids (int64) and their scores, best first."""

    ids: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


@dataclass(frozen=True, slots=True)
class StoreInfo:
    location: str  # the index folder, or the Milvus URI and collection alias
    version: str
    documents: int
    passages: int
    model: str
    chunker: dict[str, object]
    keyword: object


@dataclass(frozen=True, slots=True)
class PassageDocuments:
    """Facts about the documents of some passages, aligned with the ids asked for."""

    ordinal: np.ndarray  # int64: a key equal for passages of one document (the store's document ordinal)
    cluster: np.ndarray  # int64: equal for documents of one duplicate cluster
    timestamp: np.ndarray  # float64 epoch seconds of the document's published date; NaN when undated
    published: np.ndarray  # str: the document's published date as normalised at indexing (ISO 8601) or ""


class KeywordQuery(Protocol):
    """One query's keyword scores."""

    def top(self, k: int, where: Where, fusion: FusionSettings | None) -> Candidates:
        """Top-k passages with a positive score. ``fusion`` given (hybrid): ranked by passage BM25 plus part BM25
        (``citesearch.fusion.keyword_score``); None: by passage BM25 alone."""
        ...

    def scores(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The exact passage BM25 of these passages, and their part BM25 (None without the context signal)."""
        ...


class SearchStore(Protocol):
    """What the searcher reads. Implementations are safe to share between request threads."""

    @property
    def version(self) -> str:
        """The name of what is served (``index_version`` in every response)."""
        ...

    @property
    def model(self) -> ModelInfo:
        """The model that embedded the passages."""
        ...

    @property
    def recorded_fusion(self) -> dict[str, object] | None:
        """The fusion settings recorded with the index at build time, if any."""
        ...

    @property
    def has_keyword(self) -> bool:
        """Whether BM25 (and so bm25 and hybrid modes) is available."""
        ...

    @property
    def why_no_keyword(self) -> str:
        """What to tell a request for bm25 or hybrid when ``has_keyword`` is False."""
        ...

    @property
    def counts(self) -> dict[str, int]:
        """Documents and passages served (``documents``, ``passages``), for metrics."""
        ...

    def describe(self) -> StoreInfo:
        """Where the index lives and how it was built (evaluation reports)."""
        ...

    @property
    def has_dates(self) -> bool:
        """Whether documents' dates and duplicate clusters are recorded (date filters, recency, collapsing)."""
        ...

    @property
    def duplicate_documents(self) -> int:
        """How many documents are a copy of an earlier one (0: collapsing can be skipped)."""
        ...

    def document(self, doc_id: str) -> StoredDocument | None: ...

    def passages(self, passage_ids: Sequence[int]) -> list[StoredPassage]:
        """Rows of these passages in the order asked (unknown ids are left out)."""
        ...

    def token_vectors(self, passage_ids: Sequence[int]) -> StoredTokens | None:
        """The token vectors kept for these passages (``index_store.token_vectors``); None when the store keeps
        none, which ``[]`` asks cheaply."""
        ...

    def resolve(self, where: SearchFilter) -> Where: ...

    def dense_top(self, query_vector: np.ndarray, k: int, where: Where) -> Candidates:
        """Top-k passages by cosine to the (1 x dim, normalised) query vector."""
        ...

    def keyword_query(self, query: str, *, with_context: bool) -> KeywordQuery: ...

    def vectors(self, passage_ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these passages (n x dim), in the order asked."""
        ...

    def part_scores(self, passage_ids: np.ndarray, query_vector: np.ndarray) -> PartScores | None:
        """Lead and part-mean cosines of these passages' parts (None without part-level data)."""
        ...

    def document_keys(self, passage_ids: np.ndarray) -> np.ndarray:
        """Per passage, an integer equal for passages of one document; -1 for an id the store does not know."""
        ...

    def passage_documents(self, passage_ids: np.ndarray) -> PassageDocuments:
        """Document facts of these passages (only when ``has_dates``)."""
        ...

    def cluster_doc_ids(self, ordinal: int) -> list[str]:
        """The doc ids of the duplicate cluster of document ``ordinal`` (``PassageDocuments.ordinal``), itself
        included, in document order."""
        ...


class _LocalKeywordQuery:
    """bm25s scores of every passage for one query, as the searcher computed them before the seam."""

    def __init__(self, keyword: KeywordIndex, query: str, with_context: bool) -> None:
        self._keyword = keyword
        self.bm25 = keyword.scores(query)
        self.context = keyword.context_scores(query) if with_context else None

    def top(self, k: int, where: Where, fusion: FusionSettings | None) -> Candidates:
        ranked_by = self.bm25
        if fusion is not None and self.context is not None:
            ranked_by = keyword_score(self.bm25, self.context, fusion)
        found = self._keyword.top(ranked_by, k, allowed_ids=where.allowed_ids)
        return Candidates(found.ids[0], found.scores[0])

    def scores(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        positions = self._keyword.positions(ids)
        return self.bm25[positions], None if self.context is None else self.context[positions]


class LocalStore:
    """The local index (``IndexReader``: FAISS or IVF vectors, SQLite rows, bm25s) behind the search seam."""

    def __init__(self, reader: IndexReader) -> None:
        self.reader = reader
        self._lock = threading.Lock()
        self._part_layout: PartLayout | None = None  # built on first use from the keyword index's part map
        self._part_vectors: PartVectors | None = None

    @property
    def version(self) -> str:
        return self.reader.version

    @property
    def model(self) -> ModelInfo:
        return self.reader.manifest.model

    @property
    def recorded_fusion(self) -> dict[str, object] | None:
        recorded = self.reader.manifest.extra.get("fusion")
        return recorded if isinstance(recorded, dict) else None

    @property
    def has_keyword(self) -> bool:
        return self.reader.keyword is not None

    @property
    def why_no_keyword(self) -> str:
        return f"index {self.version} has no keyword index; use mode 'dense' or re-index"

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.reader.manifest.counts)

    def describe(self) -> StoreInfo:
        manifest = self.reader.manifest
        return StoreInfo(
            str(self.reader.index_dir),
            manifest.version,
            int(manifest.counts.get("documents", 0)),
            int(manifest.counts.get("passages", 0)),
            manifest.model.name,
            dict(manifest.chunker),
            manifest.extra.get("keyword"),
        )

    def _documents(self) -> DocumentTable | None:
        keyword = self.reader.keyword
        return None if keyword is None else keyword.documents

    @property
    def has_dates(self) -> bool:
        return self._documents() is not None

    @property
    def duplicate_documents(self) -> int:
        documents = self._documents()
        return 0 if documents is None else documents.duplicate_documents

    def document(self, doc_id: str) -> StoredDocument | None:
        return self.reader.document(doc_id)

    def passages(self, passage_ids: Sequence[int]) -> list[StoredPassage]:
        return self.reader.passages(passage_ids)

    def token_vectors(self, passage_ids: Sequence[int]) -> StoredTokens | None:
        return self.reader.token_vectors(passage_ids)

    def resolve(self, where: SearchFilter) -> Where:
        allowed = None
        if where.section is not None or where.doc_id is not None:
            allowed = self.reader.passage_ids(section=where.section, doc_id=where.doc_id)
        keyword, documents = self.reader.keyword, self._documents()
        if (where.published_after is None and where.published_before is None) or keyword is None or documents is None:
            return EVERYTHING if allowed is None else Where(allowed_ids=allowed, nothing=len(allowed) == 0)
        stamps = documents.timestamps[documents.doc_of]  # per passage; NaN (no date) fails every comparison
        inside = ~np.isnan(stamps)
        if where.published_after is not None:
            inside &= stamps >= where.published_after
        if where.published_before is not None:
            inside &= stamps <= where.published_before
        dated = keyword.passage_ids[inside]
        allowed = dated if allowed is None else np.intersect1d(allowed, dated, assume_unique=True)
        return Where(allowed_ids=allowed, nothing=len(allowed) == 0)

    def dense_top(self, query_vector: np.ndarray, k: int, where: Where) -> Candidates:
        found = self.reader.search_vectors(query_vector, k, allowed_ids=where.allowed_ids)
        keep = found.ids[0] >= 0  # padding when fewer passages than asked for pass the filter
        return Candidates(found.ids[0][keep], found.scores[0][keep])

    def keyword_query(self, query: str, *, with_context: bool) -> KeywordQuery:
        keyword = self.reader.keyword
        if keyword is None:
            raise ValueError(f"index {self.version} has no keyword index")
        return _LocalKeywordQuery(keyword, query, with_context)

    def vectors(self, passage_ids: np.ndarray) -> np.ndarray:
        return self.reader.vectors.vectors_for(passage_ids)

    def part_layout(self) -> PartLayout | None:
        """Which passages form each part (None without a part-level index): the reader's own when it keeps one,
        else derived once per store (the version it reads never changes)."""
        own = getattr(self.reader, "part_layout", None)
        if callable(own):
            layout: PartLayout | None = own()
            return layout
        keyword = self.reader.keyword
        if keyword is None or keyword.context is None:
            return None
        with self._lock:
            if self._part_layout is None:
                documents = keyword.documents
                self._part_layout = PartLayout.of(
                    keyword.context.part_of, None if documents is None else documents.doc_of
                )
            return self._part_layout

    def _vectors_at(self, positions: np.ndarray) -> np.ndarray:
        keyword = self.reader.keyword
        assert keyword is not None
        return self.reader.vectors.vectors_for(keyword.passage_ids[positions])

    def part_vectors(self, layout: PartLayout) -> PartVectors:
        """Each part's mean passage vector: the reader's own when it keeps them, else built once per store."""
        own = getattr(self.reader, "part_vectors", None)
        if callable(own):
            vectors: PartVectors = own()
            return vectors
        with self._lock:
            if self._part_vectors is None:
                self._part_vectors = PartVectors.build(layout, self._vectors_at, self.reader.vectors.dim)
            return self._part_vectors

    def part_scores(self, passage_ids: np.ndarray, query_vector: np.ndarray) -> PartScores | None:
        layout = self.part_layout()
        keyword = self.reader.keyword
        if layout is None or keyword is None:
            return None
        part_vectors = self.part_vectors(layout)
        return part_scores(layout, part_vectors, keyword.positions(passage_ids), self._vectors_at, query_vector)

    def document_keys(self, passage_ids: np.ndarray) -> np.ndarray:
        return self.reader.document_keys(passage_ids)

    def passage_documents(self, passage_ids: np.ndarray) -> PassageDocuments:
        documents, keyword = self._documents(), self.reader.keyword
        if documents is None or keyword is None:
            raise ValueError(f"index {self.version} records no document dates")
        ordinal = documents.doc_of[keyword.positions(passage_ids)]
        return PassageDocuments(
            ordinal, documents.cluster[ordinal], documents.timestamps[ordinal], documents.published[ordinal]
        )

    def cluster_doc_ids(self, ordinal: int) -> list[str]:
        documents = self._documents()
        return [] if documents is None else documents.cluster_doc_ids(ordinal)

    def cluster_size(self, ordinal: int) -> int:
        documents = self._documents()
        return 0 if documents is None else documents.cluster_size(ordinal)


def as_store(source: IndexReader | SearchStore) -> SearchStore:
    """An opened local index wrapped as a store; a store as it is."""
    return LocalStore(source) if isinstance(source, IndexReader) else source


@contextlib.contextmanager
def open_store(
    settings: Settings, index_dir: Path | None = None, *, sync_from_local: bool = False
) -> Iterator[SearchStore]:
    """The configured store, closed on exit. ``local``: the published version of ``index_dir`` (default
    ``settings.index_dir``). ``milvus``: the version the Milvus alias names; with ``sync_from_local`` (the
    evaluation commands, which build their local index first) the local version is copied into Milvus first
    unless Milvus already serves exactly it."""
    from index_store import open_index

    index_dir = Path(index_dir or settings.index_dir)
    if settings.store == "local":
        with open_index(index_dir) as reader:
            yield LocalStore(reader)
        return
    from index_store.milvus_store import MilvusStore, publish_from_reader

    config = settings.milvus_config()
    if sync_from_local:
        with open_index(index_dir) as reader:
            try:
                served: MilvusStore | None = MilvusStore(config)
            except IndexNotFoundError:
                served = None
            try:
                fresh = served is not None and served.serves(reader)
            finally:
                if served is not None:
                    served.close()
            if not fresh:
                publish_from_reader(reader, config)
    store = MilvusStore(config)
    try:
        yield store
    finally:
        store.close()
