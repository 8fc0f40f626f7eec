"""Background merges: fold runs of adjacent segments into one, publish a version naming it, without blocking anyone.

A merge reads a published version (holding a lease on its segments, so pruning leaves them alone) and builds the
merged segments *without* the write lock: writes go on meanwhile, and searches never wait for a merge. Only the
commit takes the write lock, for the time of a manifest write: it reads the version published meanwhile, and

- carries over every deletion made since the merge began onto the merged segment (a passage deleted from a source
  segment after the merge read it is marked deleted in the merged segment's new deletes file) — never lost;
- gives up (and leaves the run to the next merge) when the run is no longer what it merged, e.g. ``check
  --repair`` replaced one of its segments; the merged folder is then pruned as unnamed.

One merger at a time per index folder (``merge.lock``; a second merge returns at once). ``citesearch index
--optimize`` merges everything into one segment the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from index_store.centroids import IvfSettings, centroids_for, lease_name, write_centroids
from index_store.errors import IndexStoreError
from index_store.layout import (
    SEGMENTS_DIR,
    VERSIONS_DIR,
    deletes_path,
    list_segments,
    read_deletes,
    segment_dir,
    write_deletes,
)
from index_store.leases import SegmentLease
from index_store.manifest import FileInfo, Manifest, SegmentRef, failed_files, file_info
from index_store.segment_io import MERGE_LOCK, SEGMENT_JSON, SegmentCache
from index_store.versions import IndexReader, _next_version_name, current_version, publish_manifest, write_lock

log = logging.getLogger(__name__)

MERGED_PREFIX = "m"  # merged segments are named m…, written segments s…: a merge never takes a writer's name


@dataclass(frozen=True, slots=True)
class MergeReport:
    """What one merge pass did."""

    version: str | None  # the version it published (None: nothing to merge, or given up)
    merged: tuple[tuple[str, ...], ...] = ()  # the runs of segments merged, by name
    into: tuple[str, ...] = ()  # the merged segments
    carried_deletes: int = 0  # passages deleted while the merge ran, marked in the merged segments
    segments_before: int = 0
    segments_after: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    detail: str = ""


@contextlib.contextmanager
def merge_lock(index_dir: Path) -> Iterator[bool]:
    """Hold the index's merge lock if no other merge holds it; yields whether it was taken."""
    index_dir.mkdir(parents=True, exist_ok=True)
    handle = (index_dir / MERGE_LOCK).open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        handle.close()


def _next_merged_name(index_dir: Path, taken: set[str]) -> str:
    numbers = [int(n[1:]) for n in (*list_segments(index_dir), *taken) if n[1:].isdigit()]
    return f"{MERGED_PREFIX}{max(numbers, default=0) + 1:010d}"


@contextlib.contextmanager
def _leased(index_dir: Path, names: list[str]) -> Iterator[None]:
    lease = SegmentLease.take(index_dir, names)
    try:
        yield
    finally:
        lease.release()


def _first_id(index_dir: Path, name: str) -> int | None:
    ids = json.loads((segment_dir(index_dir, name) / SEGMENT_JSON).read_text(encoding="utf-8")).get("ids")
    return None if not ids else int(ids[0])


def merge_index(
    index_dir: Path,
    *,
    optimize: bool = False,
    cache: SegmentCache | None = None,
    policy: object | None = None,
    lock_timeout: float = 30.0,
    keep_versions: int = 3,
    before_commit: Callable[[], None] | None = None,
) -> MergeReport:
    """One merge pass over the published version: the runs the tiered policy picks (everything with ``optimize``).
    ``before_commit`` (tests) is called after the merged segments are built, before the commit takes the lock.
    A merged segment of at least the recorded IVF threshold of vectors gets an IVF index from the index's stored
    centroids (trained here, once, when none are stored yet: ``index_store.centroids``)."""
    from index_store.segments.merge import merge_segments
    from index_store.segments.policy import MergePolicy, SegmentSize, plan_merges, plan_optimize

    index_dir = Path(index_dir)
    cache = cache if cache is not None else SegmentCache()
    started = time.perf_counter()
    with merge_lock(index_dir) as taken, contextlib.ExitStack() as stack:
        if not taken:
            return MergeReport(None, detail="another merge is running")
        with IndexReader.open(index_dir, fallback=False, cache=cache) as reader:  # its lease keeps the sources
            manifest = reader.manifest
            refs = list(manifest.segments)
            sizes = [SegmentSize(ref.passages, ref.deleted) for ref in refs]
            chosen = policy if isinstance(policy, MergePolicy) else None
            runs = plan_optimize(sizes) if optimize else plan_merges(sizes, chosen)
            if not runs:
                return MergeReport(None, segments_before=len(refs), segments_after=len(refs), detail="nothing to merge")
            masks = [read_deletes(index_dir, ref.deletes, ref.passages) for ref in refs]
            built: list[tuple[list[SegmentRef], list[np.ndarray], str]] = []
            taken_names = {ref.name for ref in refs}
            names = []
            for _ in runs:
                names.append(_next_merged_name(index_dir, taken_names))
                taken_names.add(names[-1])
            # Leased before they exist: a write's pruning between the build and the commit must not take them.
            stack.enter_context(_leased(index_dir, names))
            ivf = IvfSettings.of(manifest)
            trained: tuple[str, FileInfo, str] | None = None  # centroids this merge trained: file, checksum, codes
            for (start, end), name in zip(runs, names, strict=True):
                sources = [(cache.get(index_dir, refs[i].name, verify=False), masks[i]) for i in range(start, end)]
                planned = centroids_for(
                    index_dir,
                    manifest,
                    manifest.vector_backend,
                    ivf,
                    sum(refs[i].live for i in range(start, end)),
                    total=manifest.counts.get("passages", 0),
                    dim=manifest.model.dim,
                    sources=partial(_live_rows, sources),
                    by_merge=True,
                )
                centroids = planned.centroids
                if planned.trained is not None:  # the first segment this big: trained once, reused from now on
                    relative = str(planned.settings.centroids)
                    stack.enter_context(_leased(index_dir, [lease_name(relative)]))  # not pruned before the commit
                    assert planned.centroids is not None
                    write_centroids(index_dir, planned.centroids, by_merge=True)  # again if pruned before the lease
                    trained = (relative, planned.trained, str(planned.settings.quantizer))
                    ivf = planned.settings
                    files = {**manifest.files, relative: planned.trained}
                    manifest = replace(manifest, files=files, extra={**manifest.extra, "ivf": ivf.to_dict()})
                merged = merge_segments(
                    segment_dir(index_dir, name), sources, centroids=centroids, ivf_min_vectors=ivf.min_vectors
                )
                cache.put(index_dir, merged)
                built.append((refs[start:end], masks[start:end], name))
            build_seconds = time.perf_counter() - started
            if before_commit is not None:
                before_commit()
            t0 = time.perf_counter()
            with write_lock(index_dir, lock_timeout):
                report = _commit(index_dir, manifest, built, cache, keep_versions, trained)
            return replace(
                report,
                segments_before=len(refs),
                seconds={"build": build_seconds, "commit": time.perf_counter() - t0},
            )


def _commit(
    index_dir: Path,
    merged_from: Manifest,
    built: list[tuple[list[SegmentRef], list[np.ndarray], str]],
    cache: SegmentCache,
    keep_versions: int,
    trained: tuple[str, FileInfo, str] | None = None,
) -> MergeReport:
    """Under the write lock: the published version with each merged run replaced by its merged segment, the
    deletions made meanwhile carried over. Publishes it and returns what was done."""
    name_now = current_version(index_dir)
    if name_now is None:  # pragma: no cover - a merge starts from a published version
        raise IndexStoreError(f"no published version in {index_dir}")
    now = Manifest.read(index_dir / VERSIONS_DIR / name_now)
    refs = list(now.segments)
    position = {ref.name: i for i, ref in enumerate(refs)}
    new_since = {ref.name for ref in refs} - {ref.name for ref in merged_from.segments}
    version = _next_version_name(index_dir)
    files = dict(now.files)
    carried = 0
    merged_runs: list[tuple[str, ...]] = []
    into: list[str] = []
    for run, old_masks, merged_name in built:
        merged = cache.get(index_dir, merged_name, verify=False)
        present = [position[ref.name] for ref in run if ref.name in position]
        # A segment that appeared meanwhile inside the run's id range replaced one of the run (check --repair):
        # the merged copy may be stale, so the run is left to a later merge.
        low = int(merged.ids[0]) if len(merged) else 0
        high = int(merged.ids[-1]) if len(merged) else -1
        if any((first := _first_id(index_dir, n)) is not None and low <= first <= high for n in new_since):
            log.info("merge of %s given up: the run changed meanwhile", ",".join(r.name for r in run))
            continue
        if present and present != list(range(present[0], present[0] + len(present))):  # pragma: no cover
            log.warning("merge of %s given up: the run is no longer adjacent", ",".join(r.name for r in run))
            continue
        deleted = np.zeros(len(merged), dtype=bool)
        for ref, before in zip(run, old_masks, strict=True):
            current_ref = refs[position[ref.name]] if ref.name in position else None
            source = cache.get(index_dir, ref.name, verify=False)
            if current_ref is None:  # every passage of it was deleted meanwhile (and the segment dropped)
                gone = ~before
            else:
                gone = read_deletes(index_dir, current_ref.deletes, current_ref.passages) & ~before
            if gone.any():
                ids = np.asarray(source.ids)[gone]
                at = merged.positions_of(ids)
                deleted[at[at >= 0]] = True
                carried += int(gone.sum())
        relative = None
        if deleted.any():
            relative = deletes_path(merged_name, version)
            write_deletes(index_dir, relative, deleted)
            files[relative] = file_info(index_dir / relative)
        merged_ref = SegmentRef(merged_name, relative, len(merged), int(deleted.sum()))
        files[f"{SEGMENTS_DIR}/{merged_name}/{SEGMENT_JSON}"] = file_info(
            index_dir / SEGMENTS_DIR / merged_name / SEGMENT_JSON
        )
        if present:
            first = present[0]
            replacement = [merged_ref] if merged_ref.live > 0 else []
            refs[first : first + len(present)] = replacement
            position = {ref.name: i for i, ref in enumerate(refs)}
        merged_runs.append(tuple(ref.name for ref in run))
        into.append(merged_name)
    if not into:
        return MergeReport(None, detail="every merged run changed meanwhile; left to the next merge")
    named = {f"{SEGMENTS_DIR}/{r.name}/{SEGMENT_JSON}" for r in refs} | {r.deletes for r in refs if r.deletes}
    extra = dict(now.extra)
    ivf = IvfSettings.of(now)
    if trained is not None:
        # A write may have trained centroids meanwhile: the version keeps those when intact (the merged segment
        # holds its own copy of the ones it was built with, so either serves every later segment).
        current = now.files.get(ivf.centroids) if ivf.centroids is not None else None
        if current is None or failed_files(index_dir, {str(ivf.centroids): current}):
            relative, info, quantizer = trained
            ivf = replace(ivf, centroids=relative, quantizer=quantizer)
            files[relative] = info
            extra["ivf"] = ivf.to_dict()
    if ivf.centroids is not None:
        named.add(ivf.centroids)
    manifest = replace(
        now,
        extra=extra,
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        files={key: info for key, info in files.items() if key in named},
        segments=tuple(refs),
        base_version=now.version,
        build={"merge": {"merged": [list(r) for r in merged_runs], "into": into, "carried_deletes": carried}},
    )
    publish_manifest(index_dir, manifest, keep=keep_versions, protect=set(_passed_over(now)))
    log.info("merged %s into %s as %s (%d deletions carried over)", merged_runs, into, version, carried)
    return MergeReport(version, tuple(merged_runs), tuple(into), carried, segments_after=len(refs))


def _live_rows(sources: list[tuple[Any, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The vector rows and deleted masks of the segments a merge takes (what its centroids are trained on)."""
    return [(np.asarray(segment.vectors.rows), mask) for segment, mask in sources]


def _passed_over(manifest: Manifest) -> list[str]:
    passed = manifest.extra.get("passed_over", [])
    return [str(p) for p in passed] if isinstance(passed, list) else []


class BackgroundMerger:
    """Runs ``merge_index`` in one daemon thread after publishes (the live-update writer calls ``poke``), so a
    merge never delays a write or a search. A failing merge is logged and retried at the next poke."""

    def __init__(
        self, index_dir: Path, cache: SegmentCache | None = None, on_merged: Callable[[str], None] | None = None
    ) -> None:
        self.index_dir = Path(index_dir)
        self.cache = cache
        self.on_merged = on_merged  # called with the merged version (the service reloads it)
        self.last: MergeReport | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._again = False

    def poke(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._again = True  # the running pass looks again when it is done
                return
            self._thread = threading.Thread(target=self._run, name="citesearch-merger", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                self.last = merge_index(self.index_dir, cache=self.cache)
                if self.last.version is not None and self.on_merged is not None:
                    self.on_merged(self.last.version)
            except Exception:  # a merge is an optimisation: it must never take the writer down
                log.exception("background merge of %s failed; retried after the next publish", self.index_dir)
            with self._lock:
                if not self._again:
                    return
                self._again = False
