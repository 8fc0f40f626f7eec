"""Vector backends behind one small interface, chosen by name from configuration or by the index's size.

Backends (one module each):

- ``faiss``          exact inner product (IndexIDMap2 over IndexFlatIP) — ``faiss_backend``
- ``faiss-ivf``      approximate, IVF lists of float vectors — ``ivf_backend``
- ``faiss-ivf-sq8``  approximate, IVF lists of 8-bit scalar-quantised codes, exact re-rank — ``ivf_backend``

``auto`` (the default) picks one by size when a version is published (``choose_backend``); the manifest records the
backend actually written. A writer always edits vectors in the exact form (``load_vector_index(..., writable=True)``)
and the approximate structure is rebuilt at publish, which every change does anyway (a publish writes a new version).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index_store.vectors.base import VectorHits, VectorIndex

AUTO = "auto"
BACKENDS = ("faiss", "faiss-ivf", "faiss-ivf-sq8")

# Up to this many vectors "auto" keeps exact search; above it, IVF. Measured with `citesearch bench scale` on the
# 2-core reference machine (384 dims, one query at a time, one faiss thread, a busy machine): the exact scan costs
# ~0.15-0.2 ms per 1k vectors — 14-21 ms p50 at 100k, about what embedding the query costs, and 164 ms at 1M — while
# IVF-SQ8 answers in ~5 ms at 100k (recall@10 0.99) and ~21-28 ms at 1M (recall@10 0.998), plus a build step at every
# publish (13 s at 100k, 108 s at 1M). Up to 100k exact search is fast enough and needs no build, is exact, and every
# test, the seeds and SciFact (13k passages) keep bit-for-bit the results they had.
EXACT_MAX_VECTORS = 100_000
# When the float vectors alone would take more than this much memory, "auto" stores 8-bit codes in the IVF lists (a
# quarter of the size) and keeps the floats on disk for the exact re-rank: 1M x 384 floats are 1.5 GB, which
# with the process and the other indexes would not fit the 2 GB budget of a loaded index; the codes are 384 MB.
FLOAT_VECTORS_MAX_BYTES = 1 << 30

_FLAT_FILE = "vectors.faiss"


def choose_backend(requested: str, count: int, dim: int) -> str:
    """The backend to write for ``count`` vectors: ``requested`` unless it is ``auto``."""
    if requested != AUTO:
        _check(requested)
        return requested
    if count <= EXACT_MAX_VECTORS:
        return "faiss"
    return "faiss-ivf-sq8" if count * dim * 4 > FLOAT_VECTORS_MAX_BYTES else "faiss-ivf"


def create_vector_index(backend: str, dim: int) -> VectorIndex:
    """An empty, writable index (exact until it is saved with ``save_vector_index``). The heavy import happens here."""
    _check(backend, allow_auto=True)
    from index_store.vectors.faiss_backend import FaissVectorIndex

    return FaissVectorIndex.create(dim)


def load_vector_index(backend: str, path: Path, *, writable: bool = False) -> VectorIndex:
    """Load the index that ``save_vector_index`` wrote with ``backend``. ``writable``: as an exact, editable index
    (what a writer starting the next version needs); otherwise as written, for searching."""
    _check(backend)
    from index_store.vectors.faiss_backend import FaissVectorIndex

    if backend == "faiss":
        return FaissVectorIndex.load(path)
    from index_store.vectors.ivf_backend import IvfVectorIndex

    if writable:
        ids, vectors = IvfVectorIndex.load_arrays(path)
        index = FaissVectorIndex.create(int(vectors.shape[1]))
        index.add(ids, vectors)
        return index
    return IvfVectorIndex.load(path)


def save_vector_index(index: VectorIndex, path: Path, requested: str = AUTO) -> tuple[str, list[Path]]:
    """Write ``index`` under ``path`` in the backend ``choose_backend`` picks; returns the backend and its files.
    Vector files of any other backend in ``path`` (copied from the previous version) are removed first."""
    from index_store.vectors.ivf_backend import FILES as IVF_FILES

    backend = choose_backend(requested, len(index), index.dim)
    for name in (_FLAT_FILE, *IVF_FILES):
        (path / name).unlink(missing_ok=True)
    if backend == "faiss":
        if type(index).__name__ != "FaissVectorIndex":
            index = _as_flat(index)
        return backend, index.save(path)
    from index_store.vectors.ivf_backend import IvfVectorIndex

    ids, vectors = _all_vectors(index)
    built = IvfVectorIndex.build(ids, vectors, quantizer="sq8" if backend.endswith("-sq8") else "flat")
    return backend, built.save(path)


def _all_vectors(index: VectorIndex) -> tuple[np.ndarray, np.ndarray]:
    from index_store.vectors.faiss_backend import FaissVectorIndex
    from index_store.vectors.ivf_backend import IvfVectorIndex

    if isinstance(index, IvfVectorIndex):
        return index.ids, np.asarray(index.vectors)
    if isinstance(index, FaissVectorIndex):
        return index.all_vectors()
    raise TypeError(f"cannot convert a {type(index).__name__} to another backend")


def _as_flat(index: VectorIndex) -> VectorIndex:
    from index_store.vectors.faiss_backend import FaissVectorIndex

    ids, vectors = _all_vectors(index)
    flat = FaissVectorIndex.create(index.dim)
    flat.add(ids, vectors)
    return flat


def _check(backend: str, *, allow_auto: bool = False) -> None:
    if backend not in BACKENDS and not (allow_auto and backend == AUTO):
        names = ", ".join((AUTO, *BACKENDS) if allow_auto else BACKENDS)
        raise ValueError(f"unknown vector backend {backend!r}; available: {names}")


__all__ = [
    "AUTO",
    "BACKENDS",
    "EXACT_MAX_VECTORS",
    "FLOAT_VECTORS_MAX_BYTES",
    "VectorHits",
    "VectorIndex",
    "choose_backend",
    "create_vector_index",
    "load_vector_index",
    "save_vector_index",
]
