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

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index_store.vectors.base import VectorHits, VectorIndex


@dataclass(frozen=True, slots=True)
class Backend:
    """A registered backend: the class that implements it (imported on first use: faiss is heavy) and the keyword
    arguments of its ``build``. The class implements ``VectorIndex`` plus ``FILES`` (the file names it writes),
    ``build(ids, vectors, **options)``, ``load(path)``, ``load_arrays(path)`` and ``all_vectors()``."""

    cls: str  # "module:Class"
    options: dict[str, Any] = field(default_factory=dict)

    def load_class(self) -> Any:
        module, _, name = self.cls.partition(":")
        return getattr(importlib.import_module(module), name)


# The registry, name -> backend (txtai style): a new backend is one module plus one line here.
REGISTRY: dict[str, Backend] = {
    "faiss": Backend("index_store.vectors.faiss_backend:FaissVectorIndex"),
    "faiss-ivf": Backend("index_store.vectors.ivf_backend:IvfVectorIndex", {"quantizer": "flat"}),
    "faiss-ivf-sq8": Backend("index_store.vectors.ivf_backend:IvfVectorIndex", {"quantizer": "sq8"}),
}
AUTO = "auto"
BACKENDS = tuple(REGISTRY)
# Writers edit vectors in this form: exact, with deletes; the chosen backend is built from it at publish.
EDITABLE = "faiss"

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
    index: VectorIndex = REGISTRY[EDITABLE].load_class().create(dim)
    return index


def load_vector_index(backend: str, path: Path, *, writable: bool = False) -> VectorIndex:
    """Load the index that ``save_vector_index`` wrote with ``backend``. ``writable``: as an exact, editable index
    (what a writer starting the next version needs); otherwise as written, for searching."""
    _check(backend)
    cls = REGISTRY[backend].load_class()
    if writable and backend != EDITABLE:
        index: VectorIndex = REGISTRY[EDITABLE].load_class().build(*cls.load_arrays(path))
    else:
        index = cls.load(path)
    return index


def save_vector_index(index: VectorIndex, path: Path, requested: str = AUTO) -> tuple[str, list[Path]]:
    """Write ``index`` under ``path`` in the backend ``choose_backend`` picks; returns the backend and its files.
    Vector files of any other backend in ``path`` (copied from the previous version) are removed first."""
    backend = choose_backend(requested, len(index), index.dim)
    spec = REGISTRY[backend]
    for other in REGISTRY.values():
        for name in other.load_class().FILES:
            (path / name).unlink(missing_ok=True)
    cls = spec.load_class()
    if type(index) is cls and not spec.options:  # already in this form (the exact index a writer edits)
        return backend, index.save(path)
    built: VectorIndex = cls.build(*_all_vectors(index), **spec.options)
    return backend, built.save(path)


def _all_vectors(index: VectorIndex) -> tuple[np.ndarray, np.ndarray]:
    all_vectors = getattr(index, "all_vectors", None)
    if all_vectors is None:
        raise TypeError(f"cannot convert a {type(index).__name__} to another backend")
    ids, vectors = all_vectors()
    return ids, vectors


def _check(backend: str, *, allow_auto: bool = False) -> None:
    if backend not in REGISTRY and not (allow_auto and backend == AUTO):
        names = ", ".join((AUTO, *BACKENDS) if allow_auto else BACKENDS)
        raise ValueError(f"unknown vector backend {backend!r}; available: {names}")


__all__ = [
    "AUTO",
    "BACKENDS",
    "EXACT_MAX_VECTORS",
    "FLOAT_VECTORS_MAX_BYTES",
    "REGISTRY",
    "Backend",
    "VectorHits",
    "VectorIndex",
    "choose_backend",
    "create_vector_index",
    "load_vector_index",
    "save_vector_index",
]
