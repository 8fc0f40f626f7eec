"""A segment's vectors: exact float rows (memory-mapped), plus an IVF index over them for big segments.

Row ``i`` is the segment's passage at position ``i`` (ids ascending), so positions, rows and the keyword postings
share one numbering. Loading maps the float file (nothing is read until a search touches it), which is what lets a
reader of a new version reuse the previous version's segments and load only the new small one.

* **flat** (small segments, and every segment without trained centroids): exact inner products over the mapped
  rows, deleted and filtered rows masked out — the same numbers as ``IndexFlatIP``.
* **IVF** (segments above ``IVF_MIN_VECTORS`` given trained ``Centroids``): the centroids (and for SQ8 the trained
  quantizer) come from outside and are reused as they are — a merge never re-trains; the segment adds its rows and
  tunes nprobe on them. Deleted rows are excluded inside the FAISS search by an ``IDSelectorBitmap`` over the live
  rows; scores are re-ranked exactly from the float rows (as ``index_store.vectors.ivf_backend`` does).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index_store.vectors.ivf_backend import (
    MIN_NLIST,
    RERANK_FACTOR,
    IvfVectorIndex,
    _exact_rows,
    nlist_for,
    trained_ivf,
)

VECTORS_FILE = "vectors.f32.npy"
IVF_FILE = "vectors.ivf.faiss"
IVF_PARAMS_FILE = "vectors.ivf.json"
# Below this many rows a segment is searched exactly even when centroids are given: a flat scan of 100k 384-d rows
# costs about what probing IVF lists does (index_store.vectors.EXACT_MAX_VECTORS, measured by `bench scale`).
IVF_MIN_VECTORS = 100_000


@dataclass(frozen=True, slots=True)
class Centroids:
    """A trained, empty FAISS IVF index (coarse centroids, and for "sq8" the scalar quantizer's ranges), serialised.
    Trained once (``train_centroids``) and handed to every big segment build and merge, which copy it and add rows."""

    data: bytes
    quantizer: str  # "flat" or "sq8"

    def empty_index(self) -> faiss.Index:
        return faiss.deserialize_index(np.frombuffer(self.data, dtype=np.uint8))

    def filled(self, rows: np.ndarray) -> faiss.Index:
        """A copy of the centroids' index with ``rows`` added, each labelled by its row number (in blocks, so that
        FAISS's assignment buffers stay bounded for big segments)."""
        ivf = self.empty_index()
        for start in range(0, len(rows), 100_000):
            block = np.ascontiguousarray(rows[start : start + 100_000], dtype=np.float32)
            ivf.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
        return ivf

    @property
    def nlist(self) -> int:
        return int(faiss.extract_index_ivf(self.empty_index()).nlist)

    def save(self, path: Path) -> None:
        path.write_bytes(self.data)
        path.with_suffix(".json").write_text(json.dumps({"quantizer": self.quantizer}), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Centroids:
        quantizer = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["quantizer"]
        return cls(path.read_bytes(), quantizer)


def train_centroids(vectors: np.ndarray, expected_total: int, quantizer: str = "sq8", seed: int = 0) -> Centroids:
    """Train IVF centroids for an index expected to hold ``expected_total`` vectors, on (a sample of) ``vectors``;
    the same settings as ``ivf_backend`` (about sqrt(n) spherical k-means lists, 10 iterations)."""
    n = len(vectors)
    nlist = min(nlist_for(expected_total), max(MIN_NLIST, n // 39), max(1, n // 39))
    ivf = trained_ivf(vectors, nlist, quantizer, np.random.default_rng(seed), seed)
    data = faiss.serialize_index(ivf)
    return Centroids(bytes(np.asarray(data, dtype=np.uint8)), quantizer)


class SegmentVectors:
    """The rows of one segment and, when it has one, its IVF index (labels are row numbers)."""

    def __init__(self, rows: np.ndarray, ivf: faiss.Index | None, params: dict[str, Any]) -> None:
        self.rows = rows  # (n, dim) float32, usually a read-only memory map
        self.ivf = ivf
        self.params = params
        self.dim = int(rows.shape[1])

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def kind(self) -> str:
        return "flat" if self.ivf is None else f"ivf-{self.params.get('quantizer', 'flat')}"

    # -- building ------------------------------------------------------------------------------------------------
    @classmethod
    def write(
        cls, folder: Path, rows: np.ndarray, centroids: Centroids | None, *, min_vectors: int = IVF_MIN_VECTORS
    ) -> tuple[list[Path], str]:
        """Write the rows (and an IVF index from ``centroids`` when the segment is big enough); returns the files
        and the kind written."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        np.save(folder / VECTORS_FILE, rows)
        files = [folder / VECTORS_FILE]
        if centroids is None or len(rows) < min_vectors:
            return files, "flat"
        ivf = centroids.filled(rows)
        params: dict[str, Any] = {"quantizer": centroids.quantizer, "nlist": int(faiss.extract_index_ivf(ivf).nlist)}
        # nprobe tuned on the segment's own rows, as ivf_backend tunes a whole index (the same code)
        tuner = IvfVectorIndex(np.arange(len(rows), dtype=np.int64), rows, ivf, dict(params))
        params.update(tuner._tune_nprobe(np.random.default_rng(0)))
        faiss.write_index(ivf, str(folder / IVF_FILE))
        (folder / IVF_PARAMS_FILE).write_text(json.dumps(params, sort_keys=True), encoding="utf-8")
        return [*files, folder / IVF_FILE, folder / IVF_PARAMS_FILE], f"ivf-{centroids.quantizer}"

    @classmethod
    def load(cls, folder: Path, dim: int) -> SegmentVectors:
        path = folder / VECTORS_FILE
        rows = np.asarray(np.load(path, mmap_mode="r")) if path.stat().st_size > 128 else np.zeros((0, dim), np.float32)
        if rows.ndim != 2 or (len(rows) and rows.shape[1] != dim):
            raise ValueError(f"{VECTORS_FILE}: expected (n, {dim}) vectors, got {rows.shape}")
        if len(rows) == 0:
            rows = np.zeros((0, dim), np.float32)
        ivf, params = None, {}
        if (folder / IVF_FILE).is_file():
            ivf = faiss.read_index(str(folder / IVF_FILE))
            params = json.loads((folder / IVF_PARAMS_FILE).read_text(encoding="utf-8"))
        return cls(rows, ivf, params)

    # -- searching -----------------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, live: np.ndarray | None, allowed: np.ndarray | None) -> Any:
        """Top-k rows per query among the live rows (``live``: bool per row, None = all) and, when given, the
        ``allowed`` rows (sorted, unique). Returns (scores, rows), each (queries, k), padded with -inf / -1."""
        n = len(self)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        if n == 0 or k <= 0:
            return out_scores, out_rows
        subset: np.ndarray | None = None
        if allowed is not None:
            subset = allowed if live is None else allowed[live[allowed]]
        if self.ivf is None or (subset is not None and len(subset) <= 20_000):
            return self._exact(queries, k, live, subset, out_scores, out_rows)
        found = self._ann_rows(queries, k, live, subset)
        return self._rerank(queries, found, k, out_scores, out_rows)

    def _exact(
        self,
        queries: np.ndarray,
        k: int,
        live: np.ndarray | None,
        subset: np.ndarray | None,
        out_scores: np.ndarray,
        out_rows: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by one matrix product (the common case: one query over a small segment, where the fixed
        cost per segment is what a view of many segments pays), in blocks for many queries over many rows."""
        if subset is not None and len(subset) == 0:
            return out_scores, out_rows
        count = len(self) if subset is None else len(subset)
        if len(queries) * count > 4_000_000:  # bounded memory for the score matrix
            if subset is None and live is not None and not live.all():
                subset = np.flatnonzero(live)
            if subset is None:
                found = _exact_rows(self.rows, queries, k)
            else:
                local = _exact_rows(self.rows[subset], queries, k)
                found = np.where(local >= 0, subset[np.maximum(local, 0)], -1)
            return self._rerank(queries, found, k, out_scores, out_rows)
        rows = self.rows if subset is None else self.rows[subset]
        if len(queries) == 1 and (live is None or subset is not None):  # the search path: as few numpy calls as can be
            single = rows @ queries[0]
            take = min(k, count)
            top = np.argpartition(single, count - take)[count - take :] if count > take else np.arange(count)
            top = top[np.argsort(-single[top], kind="stable")]
            out_scores[0, :take] = single[top]
            out_rows[0, :take] = top if subset is None else subset[top]
            return out_scores, out_rows
        scores = queries @ np.asarray(rows, dtype=np.float32).T
        if subset is None and live is not None:
            scores[:, ~live] = -np.inf
        take = min(k, count)
        best = (
            np.argpartition(-scores, take - 1, axis=1)[:, :take]
            if count > take
            else np.tile(np.arange(count), (len(queries), 1))
        )
        best_scores = np.take_along_axis(scores, best, axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        best = np.take_along_axis(best, order, axis=1)
        best_scores = np.take_along_axis(best_scores, order, axis=1)
        found = best if subset is None else subset[best]
        valid = np.isfinite(best_scores)
        out_scores[:, :take] = np.where(valid, best_scores, -np.inf)
        out_rows[:, :take] = np.where(valid, found, -1)
        return out_scores, out_rows

    def _ann_rows(self, queries: np.ndarray, k: int, live: np.ndarray | None, subset: np.ndarray | None) -> np.ndarray:
        assert self.ivf is not None
        n = len(self)
        wanted = live
        if subset is not None:
            wanted = np.zeros(n, dtype=bool)
            wanted[subset] = True
        selector = None
        keep_alive: list[Any] = []
        if wanted is not None:
            bitmap = np.packbits(wanted, bitorder="little")
            keep_alive.append(bitmap)  # the selector points into this buffer
            selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
        nprobe = int(self.params.get("nprobe", 1))
        count = n if wanted is None else int(np.count_nonzero(wanted))
        if count < n:  # fewer candidates per list: probe proportionally more lists (as ivf_backend does)
            nprobe = math.ceil(nprobe * n / max(1, count))
        fetch = k if self.params.get("quantizer") != "sq8" else max(k * RERANK_FACTOR, k + 10)
        nlist = int(faiss.extract_index_ivf(self.ivf).nlist)
        params = faiss.SearchParametersIVF(nprobe=min(nlist, max(1, nprobe)), sel=selector)
        _, labels = self.ivf.search(np.ascontiguousarray(queries, dtype=np.float32), fetch, params=params)
        del keep_alive
        return np.asarray(labels)

    def _rerank(
        self, queries: np.ndarray, found: np.ndarray, k: int, out_scores: np.ndarray, out_rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the candidate rows, best k first (the float rows decide, whatever found them)."""
        for q, (query, rows) in enumerate(zip(queries, found, strict=True)):
            candidates = np.unique(rows[rows >= 0])
            if len(candidates) == 0:
                continue
            scores = np.asarray(self.rows[candidates], dtype=np.float32) @ query
            best = np.argsort(-scores, kind="stable")[:k]
            out_scores[q, : len(best)] = scores[best]
            out_rows[q, : len(best)] = candidates[best]
        return out_scores, out_rows
