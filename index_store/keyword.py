"""The keyword index: BM25 over passages (bm25s with a Snowball stemmer), stored inside each index version.

Beside the passage-level BM25 it holds a part-level one (context): BM25 over each document part — the article body,
the author bio, each comment — with every passage mapped to its part, so a search can weigh a passage by how well
its whole part matches the query too (``citesearch.fusion``).

It is rebuilt from the version's passages when the version is published, so it always holds exactly the passages the
vectors hold; its files are checksummed by the manifest like any other. Scores are computed for every passage of a
query in one sparse pass, so the hybrid search can look up the exact BM25 score of any dense candidate too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

try:
    import bm25s
    import Stemmer
    from bm25s.tokenization import Tokenizer
except ImportError as exc:  # pragma: no cover - core dependencies
    raise ImportError("the keyword index needs bm25s and PyStemmer: pip install bm25s PyStemmer") from exc

from index_store.duplicates import DEFAULT_THRESHOLD, SHINGLE_WORDS, duplicate_clusters
from index_store.shapes import TitledLike, searchable_title
from index_store.vectors.base import VectorHits

DIR_NAME = "bm25"
CONTEXT_DIR_NAME = "context"  # inside DIR_NAME
DOCUMENTS_DIR_NAME = "documents"  # inside DIR_NAME: published dates and duplicate clusters


@dataclass(frozen=True, slots=True)
class KeywordSettings:
    """BM25 parameters and text analysis; recorded in the manifest. Defaults chosen on SciFact train (README)."""

    k1: float = 0.9
    b: float = 0.75
    method: str = "lucene"
    stemmer: str = "english"  # a Snowball language, or "" for none
    stopwords: str = "en"  # bm25s stopword list name, or "" for none
    include_title: bool = True  # index "title\ntext": a passage of a long document keeps its document's topic
    context: bool = True  # also index each document part whole, for the context signal
    # Chosen on both development sets (docs/retrieval.md): b 0.4 (the old value, tuned on SciFact abstracts, where b
    # hardly matters) under-normalises long news articles, which then win on length: 0.733 against 0.806 nDCG@10
    # alone on news with k1 1.5, b 0.75, which scores the same as before on SciFact.
    context_k1: float = 1.5
    context_b: float = 0.75
    # Duplicate stories (index_store.duplicates), found when the keyword index is built: recorded here so that a
    # change rebuilds it like any BM25 setting
    duplicate_threshold: float = DEFAULT_THRESHOLD
    duplicate_shingle_words: int = SHINGLE_WORDS

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def __post_init__(self) -> None:
        for k1, b in ((self.k1, self.b), (self.context_k1, self.context_b)):
            if k1 < 0 or not 0 <= b <= 1:
                raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")

    def for_context(self) -> KeywordSettings:
        """The settings of the part-level index: the same analysis with its own k1 and b."""
        return KeywordSettings(
            k1=self.context_k1,
            b=self.context_b,
            method=self.method,
            stemmer=self.stemmer,
            stopwords=self.stopwords,
            include_title=self.include_title,
            context=False,
        )


def _tokenizer(settings: KeywordSettings) -> Tokenizer:
    stemmer = Stemmer.Stemmer(settings.stemmer) if settings.stemmer else None
    return Tokenizer(stopwords=settings.stopwords or [], stemmer=stemmer)


class KeywordIndex:
    """BM25 scores over a fixed set of passages, addressed by passage id (and optionally over their parts)."""

    def __init__(
        self,
        retriever: bm25s.BM25,
        tokenizer: Tokenizer,
        passage_ids: np.ndarray,
        settings: KeywordSettings,
        context: PartContext | None = None,
        documents: DocumentTable | None = None,
    ) -> None:
        self._retriever = retriever
        self._tokenizer = tokenizer
        self.passage_ids = passage_ids  # sorted ascending; position i in the BM25 matrix is passage_ids[i]
        self.settings = settings
        self.context = context
        self.documents = documents  # None for a version built before dates and duplicates were recorded

    def __len__(self) -> int:
        return len(self.passage_ids)

    @staticmethod
    def text_for(title: str, text: str, settings: KeywordSettings) -> str:
        return f"{title}\n{text}" if settings.include_title and title else text

    @staticmethod
    def text_of(item: TitledLike, text: str, settings: KeywordSettings) -> str:
        """``text_for`` with the title a document (or its passage) is indexed under: none when the title is a
        guess (``index_store.shapes.searchable_title``)."""
        return KeywordIndex.text_for(searchable_title(item.title, item.metadata), text, settings)

    @classmethod
    def build(
        cls,
        items: Iterable[tuple[int, str]],
        settings: KeywordSettings,
        parts: Sequence[tuple[str, Sequence[int]]] | None = None,
        documents: Sequence[tuple[str, str, str | None, Sequence[int]]] | None = None,
    ) -> KeywordIndex:
        """Index (passage_id, text) pairs; texts should come from ``text_for``. ``parts`` — each document part's text
        and the ids of its passages — adds the context index when ``settings.context`` is on. ``documents`` — each
        document's id, article text, published date and passage ids — adds the ``DocumentTable``."""
        pairs = sorted(items)
        ids = np.fromiter((pid for pid, _ in pairs), dtype=np.int64, count=len(pairs))
        index = cls._build_plain(ids, [text for _, text in pairs], settings)
        if settings.context and parts is not None:
            index.context = PartContext.build(parts, ids, settings.for_context())
        if documents is not None:
            index.documents = DocumentTable.build(
                documents, ids, settings.duplicate_threshold, settings.duplicate_shingle_words
            )
        return index

    @classmethod
    def _build_plain(cls, ids: np.ndarray, texts: list[str], settings: KeywordSettings) -> KeywordIndex:
        tokenizer = _tokenizer(settings)
        retriever = bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method)
        if texts:
            tokens = tokenizer.tokenize(texts, update_vocab=True, return_as="tuple", show_progress=False)
            retriever.index(tokens, show_progress=False)
        return cls(retriever, tokenizer, ids, settings)

    def save(self, version_dir: Path) -> Path:
        target = version_dir / DIR_NAME
        self._save_to(target)
        if self.context is not None:
            self.context.save(target / CONTEXT_DIR_NAME)
        if self.documents is not None:
            self.documents.save(target / DOCUMENTS_DIR_NAME)
        return target

    def _save_to(self, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        if len(self):
            self._retriever.save(target, show_progress=False)
            self._tokenizer.save_vocab(target)
        np.save(target / "passage_ids.npy", self.passage_ids)
        (target / "settings.json").write_text(json.dumps(self.settings.to_dict(), sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, version_dir: Path) -> KeywordIndex | None:
        """The keyword index of a version, or None if the version has none."""
        source = version_dir / DIR_NAME
        if not source.is_dir():
            return None
        index = cls._load_from(source)
        if (source / CONTEXT_DIR_NAME).is_dir():
            index.context = PartContext.load(source / CONTEXT_DIR_NAME)
        if (source / DOCUMENTS_DIR_NAME).is_dir():
            index.documents = DocumentTable.load(source / DOCUMENTS_DIR_NAME)
        return index

    @classmethod
    def _load_from(cls, source: Path) -> KeywordIndex:
        recorded = json.loads((source / "settings.json").read_text(encoding="utf-8"))
        known = set(KeywordSettings.__dataclass_fields__)
        settings = KeywordSettings(**{key: value for key, value in recorded.items() if key in known})
        ids = np.load(source / "passage_ids.npy")
        tokenizer = _tokenizer(settings)
        if len(ids) == 0:
            return cls(bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method), tokenizer, ids, settings)
        retriever = bm25s.BM25.load(source, show_progress=False, verbosity=0)
        tokenizer.load_vocab(source)
        return cls(retriever, tokenizer, ids, settings)

    def context_scores(self, query: str) -> np.ndarray | None:
        """BM25 of each passage's part (aligned with ``passage_ids``), or None without a context index."""
        return None if self.context is None else self.context.scores(query)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage (aligned with ``passage_ids``); all zeros when no query term is known."""
        if not len(self):
            return np.zeros(0, dtype=np.float32)
        # The streaming form: ``tokenize`` wraps it in a (disabled) tqdm bar, whose set-up costs more than
        # tokenising one query.
        token_ids = next(iter(self._tokenizer.streaming_tokenize([query], update_vocab=False)))
        if not token_ids:
            return np.zeros(len(self), dtype=np.float32)
        return np.asarray(self._retriever.get_scores_from_ids(token_ids), dtype=np.float32)

    def positions(self, passage_ids: np.ndarray) -> np.ndarray:
        """Positions of passage ids in the score array (ids must be present)."""
        return np.searchsorted(self.passage_ids, passage_ids)

    def search(self, query: str, k: int, allowed_ids: np.ndarray | None = None) -> VectorHits:
        """Top-k passages by BM25 (only positive scores: a passage sharing no term with the query is no match)."""
        return self.top(self.scores(query), k, allowed_ids)

    def top(self, all_scores: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> VectorHits:
        """Top-k of a score array from ``scores``, optionally among ``allowed_ids`` only."""
        if allowed_ids is not None:
            mask = np.zeros(len(all_scores), dtype=bool)
            mask[self.positions(np.asarray(allowed_ids, dtype=np.int64))] = True
            all_scores = np.where(mask, all_scores, 0.0)
        k = min(k, int(np.count_nonzero(all_scores > 0)))
        if k <= 0:
            return VectorHits(np.zeros((1, 0), np.float32), np.zeros((1, 0), np.int64))
        top = np.argpartition(-all_scores, k - 1)[:k]
        top = top[np.argsort(-all_scores[top], kind="stable")]
        return VectorHits(all_scores[top][None, :], self.passage_ids[top][None, :])


class PartContext:
    """BM25 over whole document parts, and which part holds each passage of the passage-level index."""

    def __init__(self, parts: KeywordIndex, part_of: np.ndarray) -> None:
        self.parts = parts  # "passage ids" of this index are part ordinals 0..n-1
        self.part_of = part_of  # part_of[i]: ordinal of the part holding the passage at position i

    @classmethod
    def build(
        cls, parts: Sequence[tuple[str, Sequence[int]]], passage_ids: np.ndarray, settings: KeywordSettings
    ) -> PartContext:
        ordinals = np.arange(len(parts), dtype=np.int64)
        index = KeywordIndex._build_plain(ordinals, [text for text, _ in parts], settings)
        part_of = np.full(len(passage_ids), -1, dtype=np.int64)
        for ordinal, (_, members) in enumerate(parts):
            part_of[np.searchsorted(passage_ids, np.asarray(members, dtype=np.int64))] = ordinal
        if (part_of < 0).any():
            raise ValueError(f"{int((part_of < 0).sum())} passages belong to no part; every passage needs its part")
        return cls(index, part_of)

    def save(self, target: Path) -> None:
        self.parts._save_to(target)
        np.save(target / "part_of.npy", self.part_of)

    @classmethod
    def load(cls, source: Path) -> PartContext:
        return cls(KeywordIndex._load_from(source), np.load(source / "part_of.npy"))

    def scores(self, query: str) -> np.ndarray:
        part_scores = self.parts.scores(query)
        if not len(part_scores):
            return np.zeros(len(self.part_of), dtype=np.float32)
        per_passage: np.ndarray = part_scores[self.part_of]
        return per_passage


class DocumentTable:
    """Per document, what ranking needs beside the text: its published date (ISO 8601 or ""), its duplicate
    cluster (``index_store.duplicates``), and which document each passage of the keyword index belongs to.

    Built at publish with the keyword index, from the documents' ``metadata["published"]`` (set by the loaders from
    jsonl fields and by the page parser from page metadata) and their article text.
    """

    def __init__(self, doc_ids: np.ndarray, published: np.ndarray, cluster: np.ndarray, doc_of: np.ndarray) -> None:
        self.doc_ids = doc_ids  # document ordinal -> doc id
        self.published = published  # document ordinal -> ISO 8601 date or "" when unknown
        self.cluster = cluster  # document ordinal -> ordinal of the first document of its duplicate cluster
        self.doc_of = doc_of  # keyword-index position -> document ordinal
        from indexer.dates import timestamp  # here, not at the top: the indexer package imports index_store

        self.timestamps = np.array([timestamp(p) if p else np.nan for p in published.tolist()], dtype=np.float64)
        order = np.argsort(cluster, kind="stable")
        self._members = order
        self._starts = np.searchsorted(cluster[order], np.arange(len(cluster) + 1))

    @classmethod
    def build(
        cls,
        documents: Sequence[tuple[str, str, str | None, Sequence[int]]],
        passage_ids: np.ndarray,
        threshold: float = DEFAULT_THRESHOLD,
        shingle_words: int = SHINGLE_WORDS,
    ) -> DocumentTable:
        """``documents``: (doc_id, article text, published or None, passage ids) for every document."""
        from indexer.dates import parse_date  # here, not at the top: the indexer package imports index_store

        doc_ids = np.array([doc_id for doc_id, _, _, _ in documents], dtype=str)
        published = np.array([parse_date(p) or "" for _, _, p, _ in documents], dtype="<U20")
        cluster = duplicate_clusters([text for _, text, _, _ in documents], threshold, shingle_words)
        doc_of = np.full(len(passage_ids), -1, dtype=np.int64)
        for ordinal, (_, _, _, members) in enumerate(documents):
            doc_of[np.searchsorted(passage_ids, np.asarray(members, dtype=np.int64))] = ordinal
        return cls(doc_ids, published, cluster, doc_of)

    def save(self, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for name in ("doc_ids", "published", "cluster", "doc_of"):
            np.save(target / f"{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, source: Path) -> DocumentTable:
        arrays = [np.load(source / f"{name}.npy") for name in ("doc_ids", "published", "cluster", "doc_of")]
        return cls(*arrays)

    def cluster_size(self, ordinal: int) -> int:
        root = int(self.cluster[ordinal])
        return int(self._starts[root + 1] - self._starts[root])

    def cluster_doc_ids(self, ordinal: int) -> list[str]:
        """The doc ids of the ordinal's duplicate cluster, itself included, in document order."""
        root = int(self.cluster[ordinal])
        return [str(self.doc_ids[i]) for i in sorted(self._members[self._starts[root] : self._starts[root + 1]])]

    @property
    def duplicate_documents(self) -> int:
        """Documents that are a copy of an earlier one (the build report counts them)."""
        return int(np.count_nonzero(self.cluster != np.arange(len(self.cluster))))
