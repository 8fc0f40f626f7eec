"""Vector backends behind one small interface, chosen by name from configuration."""

from __future__ import annotations

from pathlib import Path

from index_store.vectors.base import VectorHits, VectorIndex

BACKENDS = ("faiss",)


def create_vector_index(backend: str, dim: int) -> VectorIndex:
    """An empty index of the named backend. The heavy import happens here, only for the backend asked for."""
    if backend == "faiss":
        from index_store.vectors.faiss_backend import FaissVectorIndex

        return FaissVectorIndex.create(dim)
    raise ValueError(f"unknown vector backend {backend!r}; available: {', '.join(BACKENDS)}")


def load_vector_index(backend: str, path: Path) -> VectorIndex:
    """Load the index that ``VectorIndex.save(path)`` wrote."""
    if backend == "faiss":
        from index_store.vectors.faiss_backend import FaissVectorIndex

        return FaissVectorIndex.load(path)
    raise ValueError(f"unknown vector backend {backend!r}; available: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "VectorHits", "VectorIndex", "create_vector_index", "load_vector_index"]
