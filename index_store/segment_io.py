"""The store's side of segments: loading them once per process, building the segment of a write, the view of a
version. Everything ``index_store.versions`` needs from ``index_store.segments`` goes through here.

``SegmentCache`` is what makes a publish cheap for a reader: segments are immutable, so a reader opening the next
version takes every segment it shares with the previous one from the cache (already loaded, already verified) and
loads only the new one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index_store.keyword import KeywordSettings
from index_store.layout import segment_dir
from index_store.sqlite_store import FILE_NAME as STORE_FILE

if TYPE_CHECKING:  # imported where used: index_store.segments imports citesearch, which imports index_store
    from index_store.segments import Segment, SegmentedView

SEGMENT_JSON = "segment.json"  # index_store.segments.segment.META_FILE (a test keeps them equal)

MERGE_LOCK = "merge.lock"  # flock held by the one background merger of an index folder while it merges


class SegmentCache:
    """Loaded segments by name, shared by the readers (and the writer) of one process. Thread-safe.

    A segment is loaded — and its files verified — once; later versions that list it reuse the object. ``retain``
    drops the segments no open version uses any more, so memory follows what is served."""

    def __init__(self) -> None:
        self._segments: dict[tuple[str, str], Segment] = {}
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}

    def names(self) -> set[str]:
        with self._lock:
            return {name for _, name in self._segments}

    def get(self, index_dir: Path, name: str, *, verify: bool = True) -> Segment:
        """The loaded segment; loaded (with every file checksummed, unless the caller just did) on first use."""
        key = (str(Path(index_dir).resolve()), name)
        with self._lock:
            found = self._segments.get(key)
            if found is not None:
                return found
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one thread loads a segment; the others wait for it instead of loading it again
            with self._lock:
                found = self._segments.get(key)
            if found is None:
                from index_store.segments import Segment

                found = Segment.load(segment_dir(index_dir, name), verify=verify)
                with self._lock:
                    self._segments[key] = found
                    self._loading.pop(key, None)
        return found

    def put(self, index_dir: Path, segment: Segment) -> None:
        with self._lock:
            self._segments[(str(Path(index_dir).resolve()), segment.name)] = segment

    def retain(self, index_dir: Path, names: set[str]) -> None:
        """Forget the segments of ``index_dir`` not in ``names`` (the readers that use them keep their objects)."""
        root = str(Path(index_dir).resolve())
        with self._lock:
            for key in [k for k in self._segments if k[0] == root and k[1] not in names]:
                del self._segments[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._segments)


def open_view(segments: Sequence[Segment], masks: Sequence[np.ndarray]) -> SegmentedView:
    """The searchable view of a version: its segments in id order, each with this version's deleted mask."""
    from index_store.segments import SegmentedView

    return SegmentedView(list(zip(segments, masks, strict=True)))


def segment_store_path(index_dir: Path, name: str) -> Path:
    return segment_dir(index_dir, name) / STORE_FILE


def segment_positions(segment: Segment, passage_ids: np.ndarray) -> np.ndarray:
    positions: np.ndarray = segment.positions_of(np.asarray(passage_ids, dtype=np.int64))
    return positions


def segment_passage_ids(segment: Segment) -> np.ndarray:
    return np.asarray(segment.ids)


def build_segment(
    path: Path,
    documents: Sequence[tuple[Any, Sequence[int], Sequence[Any], np.ndarray, int | None]],
    *,
    dim: int,
    keyword: KeywordSettings | None,
) -> Segment:
    """Write the segment of ``documents`` — (document, passage ids, passages, vectors, duplicate-cluster key or
    None) — at ``path`` (written aside and renamed into place by ``Segment.build``)."""
    from index_store.segments import NewDocument, Segment

    items = [NewDocument(doc, ids, passages, vectors, key) for doc, ids, passages, vectors, key in documents]
    segment: Segment = Segment.build(path, items, dim=dim, settings=keyword)
    return segment


def assign_clusters(
    index_dir: Path,
    refs: Sequence[Any],
    masks: dict[str, np.ndarray],
    new: dict[str, Any],
    cache: SegmentCache,
    keyword: KeywordSettings | None,
) -> dict[str, int | None]:
    """Duplicate-cluster keys of the new documents against the live documents of the base (None: found among the
    new documents themselves)."""
    return {}


__all__ = [
    "MERGE_LOCK",
    "SEGMENT_JSON",
    "STORE_FILE",
    "SegmentCache",
    "assign_clusters",
    "build_segment",
    "open_view",
    "segment_passage_ids",
    "segment_positions",
    "segment_store_path",
]
