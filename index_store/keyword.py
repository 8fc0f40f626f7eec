"""The keyword index: BM25 over passages (bm25s with a Snowball stemmer), stored inside each index version.

It is rebuilt from the version's passages when the version is published, so it always holds exactly the passages the
vectors hold; its files are checksummed by the manifest like any other. Scores are computed for every passage of a
query in one sparse pass, so the hybrid search can look up the exact BM25 score of any dense candidate too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

try:
    import bm25s
    import Stemmer
    from bm25s.tokenization import Tokenizer
except ImportError as exc:  # pragma: no cover - core dependencies
    raise ImportError("the keyword index needs bm25s and PyStemmer: pip install bm25s PyStemmer") from exc

from index_store.vectors.base import VectorHits

DIR_NAME = "bm25"


@dataclass(frozen=True, slots=True)
class KeywordSettings:
    """BM25 parameters and text analysis; recorded in the manifest. Defaults chosen on SciFact train (README)."""

    k1: float = 1.2
    b: float = 0.75
    method: str = "lucene"
    stemmer: str = "english"  # a Snowball language, or "" for none
    stopwords: str = "en"  # bm25s stopword list name, or "" for none
    include_title: bool = True  # index "title\ntext": a passage of a long document keeps its document's topic

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def __post_init__(self) -> None:
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")


def _tokenizer(settings: KeywordSettings) -> Tokenizer:
    stemmer = Stemmer.Stemmer(settings.stemmer) if settings.stemmer else None
    return Tokenizer(stopwords=settings.stopwords or [], stemmer=stemmer)


class KeywordIndex:
    """BM25 scores over a fixed set of passages, addressed by passage id."""

    def __init__(self, retriever: bm25s.BM25, tokenizer: Tokenizer, passage_ids: np.ndarray,
                 settings: KeywordSettings) -> None:
        self._retriever = retriever
        self._tokenizer = tokenizer
        self.passage_ids = passage_ids  # sorted ascending; position i in the BM25 matrix is passage_ids[i]
        self.settings = settings

    def __len__(self) -> int:
        return len(self.passage_ids)

    @staticmethod
    def text_for(title: str, text: str, settings: KeywordSettings) -> str:
        return f"{title}\n{text}" if settings.include_title and title else text

    @classmethod
    def build(cls, items: Iterable[tuple[int, str]], settings: KeywordSettings) -> KeywordIndex:
        """Index (passage_id, text) pairs; texts should come from ``text_for``."""
        pairs = sorted(items)
        ids = np.fromiter((pid for pid, _ in pairs), dtype=np.int64, count=len(pairs))
        tokenizer = _tokenizer(settings)
        retriever = bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method)
        if pairs:
            tokens = tokenizer.tokenize([text for _, text in pairs], update_vocab=True, return_as="tuple",
                                        show_progress=False)
            retriever.index(tokens, show_progress=False)
        return cls(retriever, tokenizer, ids, settings)

    def save(self, version_dir: Path) -> Path:
        target = version_dir / DIR_NAME
        target.mkdir(parents=True, exist_ok=True)
        if len(self):
            self._retriever.save(target, show_progress=False)
            self._tokenizer.save_vocab(target)
        np.save(target / "passage_ids.npy", self.passage_ids)
        (target / "settings.json").write_text(json.dumps(self.settings.to_dict(), sort_keys=True), encoding="utf-8")
        return target

    @classmethod
    def load(cls, version_dir: Path) -> KeywordIndex | None:
        """The keyword index of a version, or None if the version has none."""
        source = version_dir / DIR_NAME
        if not source.is_dir():
            return None
        settings = KeywordSettings(**json.loads((source / "settings.json").read_text(encoding="utf-8")))
        ids = np.load(source / "passage_ids.npy")
        tokenizer = _tokenizer(settings)
        if len(ids) == 0:
            return cls(bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method), tokenizer, ids, settings)
        retriever = bm25s.BM25.load(source, show_progress=False, verbosity=0)
        tokenizer.load_vocab(source)
        return cls(retriever, tokenizer, ids, settings)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage (aligned with ``passage_ids``); all zeros when no query term is known."""
        if not len(self):
            return np.zeros(0, dtype=np.float32)
        token_ids = self._tokenizer.tokenize([query], update_vocab=False, return_as="ids", show_progress=False)[0]
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
