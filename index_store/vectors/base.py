"""The vector-index seam: the few operations the rest of citesearch needs from a nearest-neighbour index.

A backend on a distributed engine (OpenSearch k-NN, for instance) implements this same protocol; nothing outside
``index_store`` knows which backend is in use.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np


class VectorHits(NamedTuple):
    """Nearest neighbours of each query, best first: ``scores`` and ``ids`` are (queries, k) arrays.

    Rows shorter than k (fewer vectors, or a filter) are padded with id -1 and score -inf.
    """

    scores: np.ndarray
    ids: np.ndarray


def checked_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    """``vectors`` as a contiguous float32 (n, dim) array; ValueError naming the shape otherwise (every backend's
    ``add`` starts here)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"vectors must have shape (n, {dim}), got {vectors.shape}")
    return vectors


@runtime_checkable
class VectorIndex(Protocol):
    """Inner-product search over L2-normalised float32 vectors, addressed by int64 passage ids."""

    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int:
        """Remove these ids; returns how many were present."""
        ...

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> VectorHits: ...

    def vectors_for(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, (len(ids), dim); hybrid search scores candidates found by BM25 with it."""
        ...

    def save(self, path: Path) -> list[Path]:
        """Write the index under ``path`` (a file stem); returns the files written."""
        ...
