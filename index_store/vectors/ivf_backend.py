"""FAISS IVF backend: approximate inner-product search for indexes too large for an exact scan.

Layout in a version folder (row ``i`` of every array is passage ``ids[i]``; ids ascending)::

    vectors.ids.npy     int64 passage ids
    vectors.f32.npy     float32 (n, dim) exact vectors; readers do not load them but read the rows they need
                        (re-ranking, ``vectors_for``, small filters) with positioned reads, so they never count
                        towards the process's resident memory (a memory map would: the kernel maps whole large
                        page-cache folios, and a few thousand scattered rows made the whole file resident)
    vectors.ivf.faiss   the inverted-file index over the rows (labels are row numbers): IndexIVFFlat, or
                        IndexIVFScalarQuantizer (8 bits per dimension, a quarter of the memory) for "faiss-ivf-sq8"
    vectors.ivf.json    nlist, nprobe and the recall it was tuned to

Why IVF rather than HNSW: on this project's small shared machines an HNSW graph (M=32, efConstruction=100) over 100k
384-d vectors took 204 s to build, so a 1M index would take well over half an hour at every publish (HNSW cannot
remove vectors, so every new version rebuilds it); IVF trains its centroids on a sample and built 1M vectors in 108 s
(same machine), supports removal and filtered search natively, and with SQ8 codes plus an exact re-rank from the on-disk
float vectors it keeps exact scores in a quarter of the memory. ``nprobe`` is tuned at build time on the indexed
vectors themselves (their own exact nearest neighbours) to the smallest power of two reaching ``TUNE_RECALL``.

Scores returned are exact inner products (re-ranked from the float vectors), so fusion sees the same numbers as with
the exact backend; only which neighbours are found is approximate. A filter (``allowed_ids``) of at most
``FILTER_EXACT_MAX`` passages is answered exactly from the float vectors (faster and exact); a larger one searches the
IVF lists with an id selector and proportionally more probes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from index_store.vectors.base import VectorHits, checked_vectors

try:
    import faiss
except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
    raise ImportError("the faiss vector backend needs faiss-cpu: pip install faiss-cpu") from exc

IDS_FILE = "vectors.ids.npy"
VECTORS_FILE = "vectors.f32.npy"
INDEX_FILE = "vectors.ivf.faiss"
PARAMS_FILE = "vectors.ivf.json"
FILES = (IDS_FILE, VECTORS_FILE, INDEX_FILE, PARAMS_FILE)

# nprobe is tuned to reach this recall@10 against exact search on a sample of the indexed vectors (each one's own
# neighbours), a margin above the 0.95 the scale benchmark requires. On the benchmark's synthetic data this proxy is
# conservative: at 100k the tuned nprobe (64 of 256 lists) gives queries recall@10 0.99; 32 would give 0.96.
TUNE_RECALL = 0.97
TUNE_QUERIES = 200
# Filters this small are answered exactly: gathering and scoring 20k float rows costs about what probing the IVF lists
# does, and it is exact.
FILTER_EXACT_MAX = 20_000
# Candidates fetched per wanted result before the exact re-rank (SQ8 codes order near-ties approximately).
RERANK_FACTOR = 4
# Centroids: about sqrt(n), a power of two, trained on at most TRAIN_PER_LIST vectors per list (faiss wants >= 39).
MIN_NLIST, MAX_NLIST, TRAIN_PER_LIST = 64, 16_384, 64


def nlist_for(n: int) -> int:
    return int(min(MAX_NLIST, max(MIN_NLIST, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


def trained_ivf(
    vectors: np.ndarray | RowFile, nlist: int, quantizer: str, rng: np.random.Generator, seed: int
) -> faiss.Index:
    """An empty inner-product IVF index ("sq8": 8-bit scalar-quantised codes, else flat) whose ``nlist`` centroids are
    trained by spherical k-means (10 iterations) on at most ``TRAIN_PER_LIST`` vectors per list, sampled with ``rng``.
    One recipe for a whole index (``IvfVectorIndex``) and for the centroids segments share (``train_centroids``)."""
    n, dim = vectors.shape
    coarse = faiss.IndexFlatIP(dim)
    if quantizer == "sq8":
        ivf = faiss.IndexIVFScalarQuantizer(
            coarse, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    else:
        ivf = faiss.IndexIVFFlat(coarse, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = seed
    ivf.cp.niter = 10
    ivf.cp.spherical = True
    sample = vectors[np.sort(rng.choice(n, size=min(n, nlist * TRAIN_PER_LIST), replace=False))]
    ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
    return ivf


class IvfVectorIndex:
    """Exact float vectors addressed by id plus an IVF index over them; ``quantizer`` is "flat" or "sq8"."""

    FILES = FILES

    def __init__(
        self, ids: np.ndarray, vectors: np.ndarray | RowFile, ivf: faiss.Index | None, params: dict[str, Any]
    ) -> None:
        self.ids = ids
        self.vectors = vectors  # an array, or a RowFile reading rows from disk on demand
        self.dim = int(vectors.shape[1])
        self.params = params
        self._ivf = ivf  # None after add/remove until the next build: searches are then exact

    def _built(self) -> faiss.Index:
        """The IVF structure; only the paths that checked (or just made) it call this."""
        if self._ivf is None:
            raise RuntimeError("the IVF index is not built (it is rebuilt at save)")
        return self._ivf

    # -- building ------------------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls, ids: np.ndarray, vectors: np.ndarray, *, quantizer: str = "flat", seed: int = 0, progress: bool = False
    ) -> IvfVectorIndex:
        """Train and fill the IVF index over ``vectors`` (rows of ``ids``) and tune nprobe."""
        order = np.argsort(ids, kind="stable")
        ids = np.ascontiguousarray(ids[order], dtype=np.int64)
        vectors = np.ascontiguousarray(vectors[order], dtype=np.float32)
        index = cls(ids, vectors, None, {"quantizer": quantizer})
        index._build(seed=seed)
        return index

    def _build(self, seed: int = 0) -> None:
        n = len(self.ids)
        nlist = min(nlist_for(n), max(1, n // 39))
        rng = np.random.default_rng(seed)
        ivf = trained_ivf(self.vectors, nlist, self.params.get("quantizer", "flat"), rng, seed)
        for start in range(0, n, 100_000):
            block = np.ascontiguousarray(self.vectors[start : start + 100_000], dtype=np.float32)
            ivf.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
        self._ivf = ivf
        self.params.update({"nlist": nlist, **self._tune_nprobe(rng)})

    def _tune_nprobe(self, rng: np.random.Generator, k: int = 10) -> dict[str, Any]:
        """The smallest power-of-two nprobe whose recall@k of indexed vectors' own neighbours reaches TUNE_RECALL."""
        n = len(self.ids)
        rows = np.sort(rng.choice(n, size=min(n, TUNE_QUERIES), replace=False))
        queries = np.ascontiguousarray(self.vectors[rows], dtype=np.float32)
        exact = _exact_rows(self.vectors, queries, k + 1)
        truth = [set(r.tolist()) - {int(q)} for r, q in zip(exact, rows, strict=True)]
        nlist = int(self._built().nlist)
        nprobe, recall = 1, 0.0
        while True:
            found = self._ann_rows(queries, k + 1, nprobe)
            recall = float(
                np.mean(
                    [
                        len(set(f.tolist()) - {int(q)} & t) / max(1, len(t))
                        for f, q, t in zip(found, rows, truth, strict=True)
                    ]
                )
            )
            if recall >= TUNE_RECALL or nprobe >= nlist:
                break
            nprobe = min(nlist, nprobe * 2)
        return {"nprobe": nprobe, "tuned_recall": round(recall, 4), "tune_queries": len(rows)}

    # -- persistence ---------------------------------------------------------------------------------------------
    def save(self, path: Path) -> list[Path]:
        if self._ivf is None:
            self._build()
        np.save(path / IDS_FILE, self.ids)
        vectors = np.asarray(self.vectors, dtype=np.float32)
        np.save(path / VECTORS_FILE, vectors)
        faiss.write_index(self._built(), str(path / INDEX_FILE))
        (path / PARAMS_FILE).write_text(json.dumps(self.params, sort_keys=True), encoding="utf-8")
        return [path / name for name in FILES]

    @classmethod
    def load(cls, path: Path, *, in_memory: bool = False) -> IvfVectorIndex:
        ids = np.load(path / IDS_FILE)
        vectors = np.load(path / VECTORS_FILE) if in_memory else RowFile(path / VECTORS_FILE)
        params = json.loads((path / PARAMS_FILE).read_text(encoding="utf-8"))
        return cls(ids, vectors, faiss.read_index(str(path / INDEX_FILE)), params)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ids, np.asarray(self.vectors)

    @classmethod
    def load_arrays(cls, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Just the ids and float vectors (what a writer needs to start the next version), fully in memory."""
        return np.load(path / IDS_FILE), np.load(path / VECTORS_FILE)

    # -- the VectorIndex protocol --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = checked_vectors(vectors, self.dim)
        all_ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)])
        all_vectors = np.concatenate([np.asarray(self.vectors), vectors])
        order = np.argsort(all_ids, kind="stable")
        self.ids, self.vectors, self._ivf = all_ids[order], all_vectors[order], None

    def remove(self, ids: np.ndarray) -> int:
        keep = ~np.isin(self.ids, np.asarray(ids, dtype=np.int64))
        removed = int(len(self.ids) - keep.sum())
        if removed:
            self.ids, self.vectors, self._ivf = self.ids[keep], np.asarray(self.vectors)[keep], None
        return removed

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> VectorHits:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n = len(self)
        k = max(1, min(k, n))
        if n == 0:
            return VectorHits(np.full((len(queries), 0), -np.inf, np.float32), np.full((len(queries), 0), -1))
        rows: np.ndarray | None = None
        if allowed_ids is not None:
            rows = np.unique(self._rows_of(np.asarray(allowed_ids, dtype=np.int64)))
        if self._ivf is None or (rows is not None and len(rows) <= FILTER_EXACT_MAX):
            subset = np.arange(n) if rows is None else rows
            if len(subset) == 0:
                return VectorHits(np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1))
            local = _exact_rows(self.vectors[subset], queries, k)
            found = np.where(local >= 0, subset[np.maximum(local, 0)], -1)
        else:
            fetch = k if self.params.get("quantizer") != "sq8" else max(k * RERANK_FACTOR, k + 10)
            nprobe = int(self.params.get("nprobe", 1))
            if rows is not None:  # a filter leaves fewer candidates per list: probe proportionally more lists
                nprobe = math.ceil(nprobe * n / max(1, len(rows)))
            found = self._ann_rows(queries, fetch, nprobe, rows)
        return self._rerank(queries, found, k)

    def vectors_for(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self.vectors[self._rows_of(np.asarray(ids, dtype=np.int64), strict=True)], np.float32)

    # -- helpers -------------------------------------------------------------------------------------------------
    def _rows_of(self, ids: np.ndarray, *, strict: bool = False) -> np.ndarray:
        """Row numbers of these ids, in the same order; ids not present are left out (``strict``: KeyError)."""
        rows = np.searchsorted(self.ids, ids)
        present = rows < len(self.ids)
        present[present] = self.ids[rows[present]] == ids[present]
        if strict and not present.all():
            raise KeyError(f"ids not in the index: {ids[~present][:5].tolist()}")
        return rows[present]

    def _ann_rows(self, queries: np.ndarray, k: int, nprobe: int, rows: np.ndarray | None = None) -> np.ndarray:
        selector = None if rows is None else faiss.IDSelectorBatch(np.ascontiguousarray(rows, dtype=np.int64))
        ivf = self._built()
        params = faiss.SearchParametersIVF(nprobe=min(int(ivf.nlist), max(1, nprobe)), sel=selector)
        _, labels = ivf.search(queries, k, params=params)
        return np.asarray(labels)

    def _rerank(self, queries: np.ndarray, rows: np.ndarray, k: int) -> VectorHits:
        """Exact scores of candidate rows (-1 = none), best k first, as ids."""
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        for q, (query, row) in enumerate(zip(queries, rows, strict=True)):
            candidates = np.unique(row[row >= 0])  # sorted: neighbouring rows are read together
            if len(candidates) == 0:
                continue
            scores = np.asarray(self.vectors[candidates], dtype=np.float32) @ query
            best = np.argsort(-scores, kind="stable")[:k]
            out_scores[q, : len(best)] = scores[best]
            out_ids[q, : len(best)] = self.ids[candidates[best]]
        return VectorHits(out_scores, out_ids)


def _exact_rows(vectors: np.ndarray | RowFile, queries: np.ndarray, k: int, block: int = 65_536) -> np.ndarray:
    """Row numbers of the exact top-k of each query among ``vectors`` (padded with -1), scanning in blocks so a
    memory-mapped or very large array is never copied whole."""
    k = min(k, len(vectors))
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), block):
        scores = queries @ np.asarray(vectors[start : start + block], dtype=np.float32).T
        rows = np.broadcast_to(np.arange(start, start + scores.shape[1], dtype=np.int64), scores.shape)
        scores = np.concatenate([best_scores, scores], axis=1)
        rows = np.concatenate([best_rows, rows], axis=1)
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else np.argsort(-scores, axis=1)
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_rows = np.take_along_axis(rows, keep, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_rows, order, axis=1)


class RowFile:
    """Rows of a C-ordered 2-d float32 ``.npy`` file, read on demand with ``os.pread`` (runs of consecutive rows in one
    read). Supports what the index needs of an array: ``shape``, ``len``, indexing by an integer array or a slice,
    and ``np.asarray`` (reads everything)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else (np.lib.format.read_array_header_2_0)
            )
            shape, fortran, dtype = read_header(handle)
            self._offset = handle.tell()
        if len(shape) != 2 or fortran or np.dtype(dtype) != np.float32:
            raise ValueError(f"{path.name}: expected a C-ordered 2-d float32 array, got {dtype} {shape}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(np.float32)
        self._row_bytes = self.shape[1] * 4
        self._fd = os.open(path, os.O_RDONLY)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            os.close(self._fd)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        rows = self[0 : self.shape[0]]
        return rows if dtype is None else rows.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                return self[np.arange(start, stop, step)]
            return self._read_run(start, max(0, stop - start)).copy()
        rows = np.asarray(key, dtype=np.int64)
        if rows.ndim != 1:
            raise IndexError("RowFile takes a slice or a 1-d array of row numbers")
        if len(rows) and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"row out of range 0..{self.shape[0] - 1}")
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        breaks = np.flatnonzero(np.diff(ordered) != 0) + 1  # distinct rows
        distinct = np.split(ordered, breaks)
        firsts = np.array([group[0] for group in distinct])
        runs = np.split(np.arange(len(firsts)), np.flatnonzero(np.diff(firsts) != 1) + 1)
        position = 0
        for run in runs:
            block = self._read_run(int(firsts[run[0]]), len(run))
            for offset, group_index in enumerate(run):
                count = len(distinct[group_index])
                out[order[position : position + count]] = block[offset]
                position += count
        return out

    def _read_run(self, first: int, count: int) -> np.ndarray:
        size = count * self._row_bytes
        data = os.pread(self._fd, size, self._offset + first * self._row_bytes)
        if len(data) != size:
            raise OSError(f"{self.path.name}: short read ({len(data)} of {size} bytes)")
        return np.frombuffer(data, dtype=np.float32).reshape(count, self.shape[1])
