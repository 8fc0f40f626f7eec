"""The index's trained IVF centroids: which segments get an IVF vector index, and the one file they are built from.

A segment with more than ``ivf.min_vectors`` vectors (by default ``index_store.vectors.EXACT_MAX_VECTORS``, the
rule ``vector_backend="auto"`` always used) is written with an IVF index; smaller ones stay exact (a flat scan of
up to 100k rows costs about what probing lists does). The centroids are trained once — on the vectors of the first
segment that big, as ``ivf_backend`` trained a whole index (about sqrt(n) lists, ``TRAIN_PER_LIST`` sampled vectors
per list) — and stored as one immutable file ``ivf/centroids-<sha256 prefix>.faiss``; every later big segment, from
a write or a merge, copies them and adds its rows (no re-training, so a merge costs adding rows, not k-means).

The manifest records them in ``extra["ivf"]`` (``centroids``: the file relative to the index folder or None,
``quantizer``, ``min_vectors``) and checksums the file in ``files``, so ``check`` verifies it like a segment file.
The file is written aside, fsynced and renamed before any manifest names it; pruning removes it only when no kept
version names it and no merge holds it leased. Damaged, it costs nothing already built (each IVF segment holds its
own copy of the centroids): the next big segment trains new ones under a new name.

``vector_backend``: ``"faiss"`` never builds IVF; ``"faiss-ivf"`` / ``"faiss-ivf-sq8"`` choose the lists' codes;
``"auto"`` chooses 8-bit codes when the index's float vectors exceed ``FLOAT_VECTORS_MAX_BYTES`` at training time
(``index_store.vectors.choose_backend``), float lists otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index_store.layout import fsync_path
from index_store.manifest import FileInfo, Manifest, failed_files, file_info
from index_store.vectors import AUTO, EXACT_MAX_VECTORS, choose_backend

if TYPE_CHECKING:
    from index_store.segments import Centroids

log = logging.getLogger(__name__)

CENTROIDS_DIR = "ivf"
CENTROIDS_PREFIX = "centroids-"
QUANTIZERS = {"faiss-ivf": "flat", "faiss-ivf-sq8": "sq8"}


@dataclass(frozen=True, slots=True)
class IvfSettings:
    """What a version records about IVF: the threshold, and the centroids file once trained."""

    min_vectors: int = EXACT_MAX_VECTORS + 1  # "auto" was exact up to and including EXACT_MAX_VECTORS
    centroids: str | None = None  # relative to the index folder
    quantizer: str | None = None  # of the stored centroids

    def to_dict(self) -> dict[str, Any]:
        return {"min_vectors": self.min_vectors, "centroids": self.centroids, "quantizer": self.quantizer}

    @classmethod
    def of(cls, manifest: Manifest | None) -> IvfSettings:
        recorded = manifest.extra.get("ivf") if manifest is not None else None
        if not isinstance(recorded, dict):
            return cls()
        centroids = recorded.get("centroids")
        quantizer = recorded.get("quantizer")
        return cls(
            int(recorded.get("min_vectors", EXACT_MAX_VECTORS + 1)),
            str(centroids) if centroids else None,
            str(quantizer) if quantizer else None,
        )


def wants_ivf(vector_backend: str, count: int, settings: IvfSettings) -> bool:
    """Whether a segment of ``count`` vectors is written with an IVF index."""
    return vector_backend != "faiss" and count >= settings.min_vectors


def quantizer_for(vector_backend: str, total: int, dim: int) -> str:
    """The IVF lists' codes for centroids trained now, for an index of ``total`` vectors."""
    if vector_backend in QUANTIZERS:
        return QUANTIZERS[vector_backend]
    chosen = choose_backend(AUTO, max(total, EXACT_MAX_VECTORS + 1), dim)
    return QUANTIZERS[chosen]


def load_centroids(index_dir: Path, manifest: Manifest | None, settings: IvfSettings) -> Centroids | None:
    """The stored centroids if the manifest names them and the file matches its checksum (else None: damaged or
    missing centroids are trained again, under a new name, by the next big segment)."""
    from index_store.segments import Centroids

    if manifest is None or settings.centroids is None or settings.quantizer is None:
        return None
    info = manifest.files.get(settings.centroids)
    if info is None:
        log.warning("IVF centroids %s are not vouched for by the manifest; training new ones", settings.centroids)
        return None
    problems = failed_files(Path(index_dir), {settings.centroids: info})
    if problems:
        log.warning("IVF centroids damaged (%s); training new ones", "; ".join(problems.values()))
        return None
    return Centroids((Path(index_dir) / settings.centroids).read_bytes(), settings.quantizer)


def train(sources: Sequence[tuple[np.ndarray, np.ndarray | None]], total: int, quantizer: str) -> Centroids:
    """Centroids trained on the live rows of ``sources`` ((rows, deleted mask or None) — the segment to be written),
    sampled as ``ivf_backend`` samples: ``nlist * TRAIN_PER_LIST`` rows at most, drawn without replacement."""
    from index_store.segments import train_centroids
    from index_store.vectors.ivf_backend import TRAIN_PER_LIST, nlist_for

    live = [np.flatnonzero(~mask) if mask is not None else np.arange(len(rows)) for rows, mask in sources]
    count = sum(len(positions) for positions in live)
    want = min(count, nlist_for(max(total, count)) * TRAIN_PER_LIST)
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(count, size=want, replace=False))
    offsets = np.cumsum([0, *(len(positions) for positions in live)])
    parts = []
    for i, (rows, _) in enumerate(sources):
        inside = chosen[(chosen >= offsets[i]) & (chosen < offsets[i + 1])] - offsets[i]
        if len(inside):
            parts.append(np.asarray(rows[live[i][inside]], dtype=np.float32))
    sample = np.concatenate(parts)
    # nlist follows the whole segment's size (train_centroids caps it by the rows it is given, 39 per list)
    return train_centroids(sample, max(total, count), quantizer)


def write_centroids(index_dir: Path, centroids: Centroids, *, by_merge: bool = False) -> tuple[str, FileInfo]:
    """Store ``centroids`` as an immutable file (aside, fsynced, renamed); its name carries its checksum, so the
    same centroids are the same file. Returns its path relative to the index folder and its checksum."""
    digest = hashlib.sha256(centroids.data).hexdigest()
    folder = Path(index_dir) / CENTROIDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    relative = f"{CENTROIDS_DIR}/{CENTROIDS_PREFIX}{digest[:16]}.faiss"
    final = Path(index_dir) / relative
    if not final.is_file() or file_info(final).sha256 != digest:
        # ".tmp-m…" while a merge writes it: the next writer's clean-up leaves a running merge's files alone
        tmp = folder / f".tmp-{'m' if by_merge else 'w'}{digest[:16]}-{os.getpid()}"
        with tmp.open("wb") as handle:
            handle.write(centroids.data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        fsync_path(folder)
        fsync_path(folder.parent)
    return relative, file_info(final)


@dataclass(frozen=True, slots=True)
class Planned:
    """The centroids a segment about to be written is built with (None: it stays exact), the IVF settings to record
    after it, and the stored file's checksum when these centroids were trained just now."""

    centroids: Centroids | None
    settings: IvfSettings
    trained: FileInfo | None = None


def centroids_for(
    index_dir: Path,
    manifest: Manifest | None,
    vector_backend: str,
    settings: IvfSettings,
    count: int,
    *,
    total: int,
    dim: int,
    sources: Callable[[], Sequence[tuple[np.ndarray, np.ndarray | None]]],
    by_merge: bool = False,
) -> Planned:
    """What a segment of ``count`` vectors is built with: nothing below the threshold; else the stored centroids
    (intact, of the codes an explicit backend asks for), else centroids trained now on ``sources()`` (the live rows
    of that segment), stored, and recorded in the returned settings for every later big segment."""
    if not wants_ivf(vector_backend, count, settings):
        return Planned(None, settings)
    wanted = QUANTIZERS.get(vector_backend)
    stored = load_centroids(index_dir, manifest, settings)
    if stored is not None and (wanted is None or stored.quantizer == wanted):
        return Planned(stored, settings)
    quantizer = quantizer_for(vector_backend, total, dim)
    trained = train(sources(), total, quantizer)
    relative, info = write_centroids(index_dir, trained, by_merge=by_merge)
    log.info("IVF centroids trained for a segment of %d vectors (%s codes): %s", count, quantizer, relative)
    return Planned(trained, replace(settings, centroids=relative, quantizer=quantizer), info)


def lease_name(relative: str) -> str:
    """The name a lease holds a centroids file by (its file stem), so pruning leaves a merge's fresh file alone."""
    return Path(relative).stem


def prune_centroids(index_dir: Path, named: set[str], held: set[str]) -> None:
    """Remove centroids files no kept version names and no lease holds (call with the write lock held)."""
    folder = Path(index_dir) / CENTROIDS_DIR
    for path in folder.iterdir() if folder.is_dir() else ():
        relative = f"{CENTROIDS_DIR}/{path.name}"
        if path.name.startswith(".tmp-"):
            continue  # a writer's or merger's file being written (removed with the next writer's temp folders)
        if relative not in named and path.stem not in held:
            path.unlink(missing_ok=True)


__all__ = [
    "CENTROIDS_DIR",
    "IvfSettings",
    "Planned",
    "centroids_for",
    "lease_name",
    "load_centroids",
    "prune_centroids",
    "quantizer_for",
    "train",
    "wants_ivf",
    "write_centroids",
]
