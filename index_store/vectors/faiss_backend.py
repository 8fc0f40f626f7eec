"""FAISS backend: exact inner-product search (IndexFlatIP) behind an id map so passages keep stable ids.

Exact search is the right default below a few hundred thousand passages: a 384-dimension flat scan of 100k vectors
takes a few milliseconds, needs no training, and supports deletes. Filtering (by section or document) uses an id
selector inside the search, so a filter never empties a page that a post-filter would have.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index_store.vectors.base import VectorHits, checked_vectors

try:
    import faiss
except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
    raise ImportError("the faiss vector backend needs faiss-cpu: pip install faiss-cpu") from exc

FILE_NAME = "vectors.faiss"


class FaissVectorIndex:
    """A FAISS IndexIDMap2 over an exact inner-product index."""

    FILES = (FILE_NAME,)

    def __init__(self, index: faiss.Index) -> None:
        self._index = index
        self.dim = int(index.d)

    @classmethod
    def create(cls, dim: int) -> FaissVectorIndex:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray) -> FaissVectorIndex:
        index = cls.create(int(vectors.shape[1]))
        index.add(ids, vectors)
        return index

    @classmethod
    def load(cls, path: Path) -> FaissVectorIndex:
        return cls(faiss.read_index(str(path / FILE_NAME)))

    @classmethod
    def load_arrays(cls, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return cls.load(path).all_vectors()

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = checked_vectors(vectors, self.dim)
        self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        return int(self._index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))))

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> VectorHits:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            return VectorHits(np.full((len(queries), 0), -np.inf, np.float32), np.full((len(queries), 0), -1))
        params = None
        if allowed_ids is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
            params = faiss.SearchParameters(sel=selector)
        scores, ids = self._index.search(queries, k, params=params)
        return VectorHits(scores, ids)

    def vectors_for(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # One call for all ids (the fusion re-scores a few hundred candidates per query): a Python loop of
        # reconstruct() calls cost three times as much, all of it holding the GIL.
        return np.asarray(self._index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64)))

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector) pair, ids ascending: what another backend is built from."""
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        inner = faiss.downcast_index(self._index.index)
        vectors = faiss.vector_to_array(inner.codes).view(np.float32).reshape(len(ids), self.dim)
        order = np.argsort(ids, kind="stable")
        return ids[order], vectors[order]

    def save(self, path: Path) -> list[Path]:
        target = path / FILE_NAME
        faiss.write_index(self._index, str(target))
        return [target]
