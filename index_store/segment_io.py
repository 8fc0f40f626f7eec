"""The store's side of segments: loading them once per process, building the segment of a write, the view of a
version. Everything ``index_store.versions`` needs from ``index_store.segments`` goes through here.

``SegmentCache`` is what makes a publish cheap for a reader: segments are immutable, so a reader opening the next
version takes every segment it shares with the previous one from the cache (already loaded, already verified) and
loads only the new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index_store.keyword import KeywordSettings
from index_store.layout import segment_dir
from index_store.sqlite_store import FILE_NAME as STORE_FILE

if TYPE_CHECKING:  # imported where used: index_store.segments imports citesearch, which imports index_store
    from index_store.segments import Centroids, Segment, SegmentedView

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
        # Per index folder: the duplicate-cluster index of its live documents and the version it describes.
        self._clusters: dict[str, tuple[str, Any]] = {}
        # Per index folder: the view opened last, whose pools of small segments the next version's view reuses
        # (index_store.segments.pool); one per folder, so memory holds at most the pools of the newest view.
        self._views: dict[str, SegmentedView] = {}

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

    def clusters_for(self, index_dir: Path, base: Any) -> Any:
        """The kept cluster index if it describes ``base`` (a manifest): it was brought to that version, or to the
        one a merge ``base`` is made from (a merge changes no document). Taken out: a failed write cannot leave a
        half-updated one behind."""
        with self._lock:
            kept = self._clusters.pop(str(Path(index_dir).resolve()), None)
        if kept is None or base is None:
            return None
        version, clusters = kept
        merged = isinstance(base.build, dict) and "merge" in base.build
        return clusters if version == base.version or (merged and version == base.base_version) else None

    def last_view(self, index_dir: Path) -> SegmentedView | None:
        """The view a reader of ``index_dir`` opened last through this cache: the next one reuses its pools."""
        with self._lock:
            return self._views.get(str(Path(index_dir).resolve()))

    def keep_view(self, index_dir: Path, view: SegmentedView) -> None:
        with self._lock:
            self._views[str(Path(index_dir).resolve())] = view

    def keep_clusters(self, index_dir: Path, version: str, clusters: Any) -> None:
        with self._lock:
            self._clusters[str(Path(index_dir).resolve())] = (version, clusters)


def open_view(
    segments: Sequence[Segment],
    masks: Sequence[np.ndarray],
    previous: SegmentedView | None = None,
    centroids: Centroids | None = None,
) -> SegmentedView:
    """The searchable view of a version: its segments in id order, each with this version's deleted mask.
    ``previous``: the view of an earlier version of the same index, whose pools of small segments this one reuses
    (only the segments new since then are pooled on first use). ``centroids``: the index's IVF centroids once it is
    big enough for IVF, so that its pools of small segments probe lists rather than scan every row."""
    from index_store.segments import SegmentedView

    return SegmentedView(list(zip(segments, masks, strict=True)), previous=previous, centroids=centroids)


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
    centroids: Any = None,
    ivf_min_vectors: int | None = None,
    token_projection: Any = None,
    tokens: dict[str, Sequence[tuple[np.ndarray, np.ndarray]]] | None = None,
) -> Segment:
    """Write the segment of ``documents`` — (document, passage ids, passages, vectors, duplicate-cluster key or
    None) — at ``path`` (written aside and renamed into place by ``Segment.build``); with ``centroids``, an IVF
    index from them when it has at least ``ivf_min_vectors`` vectors (``index_store.centroids``); with a
    ``token_projection``, the token codes ``tokens`` gives per doc id (``index_store.token_vectors``)."""
    from index_store.segments import NewDocument, Segment

    codes = tokens or {}
    items = [
        NewDocument(doc, ids, passages, vectors, key, codes.get(doc.doc_id) if token_projection is not None else None)
        for doc, ids, passages, vectors, key in documents
    ]
    ivf: dict[str, Any] = {} if centroids is None else {"centroids": centroids}
    if centroids is not None and ivf_min_vectors is not None:
        ivf["ivf_min_vectors"] = ivf_min_vectors
    segment: Segment = Segment.build(path, items, dim=dim, settings=keyword, token_projection=token_projection, **ivf)
    return segment


def assign_clusters(
    index_dir: Path,
    base: Any,
    view: Callable[[], SegmentedView],
    removed: Sequence[str],
    new: Sequence[tuple[Any, Sequence[int], Sequence[Any], np.ndarray]],
    cache: SegmentCache,
    keyword: KeywordSettings | None,
) -> tuple[dict[str, int | None], Any]:
    """Duplicate-cluster keys of the new documents against the live documents of the base version, and the
    cluster index after them (to keep in ``cache`` once published). The index (an LSH over every live document's
    stored signature) is built once per process and kept up to date write by write; it is rebuilt only when the
    base is not the version it was last brought to (another process wrote meanwhile)."""
    from index_store.segments import ClusterIndex, NewDocument

    clusters = cache.clusters_for(index_dir, base)
    if clusters is None:
        clusters = (
            ClusterIndex.of(view(), keyword.duplicate_threshold, keyword.duplicate_shingle_words)
            if keyword is not None
            else ClusterIndex.of(view())
        )
    clusters.remove(list(removed))
    assigned = clusters.assign([NewDocument(doc, ids, passages, vectors) for doc, ids, passages, vectors in new])
    return {item.doc.doc_id: item.cluster_key for item in assigned}, clusters


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
