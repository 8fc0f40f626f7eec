"""Where the parts of a segmented index live in its folder, and the small files the store writes itself.

Layout of an index folder (format 2)::

    CURRENT                          name of the published version (replaced atomically)
    versions/v000007/manifest.json   one version: its segments in id order, per segment its deletes file
    versions/.tmp-<uuid>/            a version being written; never read, removed by the next writer
    segments/s0000000012/            one immutable segment (segment.json checksums its files), shared by versions
    segments/.tmp-<uuid>/            a segment being built (a write or a merge); removed by the next writer
    deletes/s0000000012.v000007.npy  which passages of a segment are deleted as of a version (packed bits)
    leases/<uuid>.lease              the segments a live reader holds (flock'd while it lives)
    ivf/centroids-<sha>.faiss        trained IVF centroids of the big segments (index_store.centroids)
    cache/embeddings.sqlite          embedding cache shared by all versions
    journal.sqlite                   live updates (indexer.live_updates)
    write.lock                       flock held by the one writer, with its pid

A write adds one segment and the deletes files of the segments it took passages from; nothing of an existing
segment is copied. A deletes file is written once and never changed; a later version whose write does not touch
that segment names the same file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

CURRENT_NAME = "CURRENT"
VERSIONS_DIR = "versions"
SEGMENTS_DIR = "segments"
DELETES_DIR = "deletes"
LOCK_NAME = "write.lock"
TMP_PREFIX = ".tmp-"
SEGMENT_PREFIX = "s"


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        fsync_path(path)
    fsync_path(root)


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write ``path`` through a fsynced temporary file and a rename: a reader sees the old or the new content."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


# -- segments ----------------------------------------------------------------------------------------------------
def segment_dir(index_dir: Path, name: str) -> Path:
    return Path(index_dir) / SEGMENTS_DIR / name


def list_segments(index_dir: Path) -> list[str]:
    """Segment folders on disk (published or orphaned), by name."""
    root = Path(index_dir) / SEGMENTS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(TMP_PREFIX))


def next_segment_name(index_dir: Path, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A name no segment folder has had: one past the highest on disk or in ``taken`` (names a manifest lists)."""
    numbers = [int(n[1:]) for n in (*list_segments(index_dir), *taken) if n[1:].isdigit()]
    return f"{SEGMENT_PREFIX}{max(numbers, default=0) + 1:010d}"


def new_tmp_dir(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
    path.mkdir()
    return path


# -- deletes files -----------------------------------------------------------------------------------------------
def deletes_path(segment: str, version: str) -> str:
    """The deletes file of ``segment`` as of ``version``, relative to the index folder."""
    return f"{DELETES_DIR}/{segment}.{version}.npy"


def write_deletes(index_dir: Path, relative: str, deleted: np.ndarray) -> Path:
    """Write a deletion mask (one bool per local position of the segment) as packed bits, fsynced."""
    path = Path(index_dir) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as handle:
        # The length first: packbits pads to a multiple of 8.
        np.save(
            handle, np.concatenate([np.array([len(deleted)], dtype=np.uint64).view(np.uint8), np.packbits(deleted)])
        )
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)
    return path


def read_deletes(index_dir: Path, relative: str | None, positions: int) -> np.ndarray:
    """The deletion mask of a segment with ``positions`` passages (all False without a deletes file)."""
    if relative is None:
        return np.zeros(positions, dtype=bool)
    raw = np.load(Path(index_dir) / relative)
    length = int(raw[:8].view(np.uint64)[0])
    if length != positions:
        raise ValueError(f"{relative} covers {length} passages, its segment has {positions}")
    return np.unpackbits(raw[8:], count=length).astype(bool)
