"""Versions of a segmented index: one writer at a time adds a segment and publishes a new manifest atomically.

A version is a manifest naming its segments (immutable folders shared by versions) and, per segment, the deletes
file that says which of its passages this version no longer holds (``index_store.layout`` shows the folder). A
write adds one segment for the documents it brings and new deletes files for the segments that lose passages; it
never copies or rewrites an existing segment, so its cost follows the change, not the index. It fsyncs everything it
wrote, then the manifest, renames the version folder into place and only then switches ``CURRENT``. A reader opens
whatever ``CURRENT`` names, verifies what it has not verified before, and reuses the segments it already has
loaded; killing a writer at any point leaves the previous version intact and in use.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from index_store.centroids import (
    CENTROIDS_DIR,
    IvfSettings,
    centroids_for,
    load_centroids,
    prune_centroids,
    quantizer_for,
    train,
    write_centroids,
)
from index_store.derived import (
    VersionHealth,
    check_rebuildable,
    inspect_version,
    rebuild_segment_in_memory,
    rebuild_segments,
)
from index_store.errors import (
    IndexCorruptError,
    IndexIncompatibleError,
    IndexLockedError,
    IndexNotFoundError,
    IndexStoreError,
)
from index_store.keyword import KeywordIndex, KeywordSettings
from index_store.layout import (
    CURRENT_NAME,
    DELETES_DIR,
    LOCK_NAME,
    SEGMENTS_DIR,
    TMP_PREFIX,
    VERSIONS_DIR,
    deletes_path,
    fsync_path,
    fsync_tree,
    list_segments,
    new_tmp_dir,
    next_segment_name,
    read_deletes,
    segment_dir,
    write_atomically,
    write_deletes,
)
from index_store.leases import SegmentLease, leased_segments
from index_store.manifest import (
    FORMAT_VERSION,
    LEGACY_FORMAT_VERSION,
    MANIFEST_NAME,
    FileInfo,
    Manifest,
    ModelInfo,
    SegmentRef,
    corpus_fingerprint,
    failed_files,
    file_info,
    fingerprint_add,
)
from index_store.segment_io import (
    MERGE_LOCK,
    SEGMENT_JSON,
    SegmentCache,
    assign_clusters,
    build_segment,
    open_view,
    segment_passage_ids,
    segment_positions,
    segment_store_path,
)
from index_store.shapes import DocumentLike, PassageLike, UnitLike  # noqa: F401 (re-exported)
from index_store.sqlite_store import PassageStore, StoredDocument, StoredPassage, connect
from index_store.token_vectors import TOKEN_DIMS, TOKENS_WAITING, StoredTokens, TokenProjection
from index_store.vectors import VectorHits, VectorIndex

if TYPE_CHECKING:
    from citesearch.part_evidence import PartLayout, PartVectors
    from index_store.segments import SegmentedView

log = logging.getLogger(__name__)


# -- folder helpers ----------------------------------------------------------------------------------------------
def current_version(index_dir: Path) -> str | None:
    """The published version's name, or None if nothing was ever published."""
    try:
        name = (Path(index_dir) / CURRENT_NAME).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def list_versions(index_dir: Path) -> list[str]:
    """Published version folders, oldest first."""
    root = Path(index_dir) / VERSIONS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(TMP_PREFIX))


@contextlib.contextmanager
def write_lock(index_dir: Path, timeout: float = 0.0) -> Iterator[None]:
    """Hold the index's writer lock. Waits up to ``timeout`` seconds, then names the process holding it."""
    index_dir.mkdir(parents=True, exist_ok=True)
    handle = (index_dir / LOCK_NAME).open("a+", encoding="utf-8")
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise IndexLockedError(
                        f"index {index_dir} is being updated by process {holder}; wait for it to finish "
                        f"(or retry with a longer wait, e.g. --wait 600)"
                    ) from None
                time.sleep(0.1)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the flock


def upgrade_message(index_dir: Path, name: str) -> str:
    """One line: the version was written by the previous format and how to bring it to this one."""
    return (
        f"index version {name} in {index_dir} was written by an older citesearch (format {LEGACY_FORMAT_VERSION}: "
        f"one folder per version); upgrade it with: citesearch index --upgrade --index-dir {index_dir} "
        "(or re-index: citesearch index PATH --index-dir ...)"
    )


# -- reading -----------------------------------------------------------------------------------------------------
class IndexReader:
    """One opened, verified, immutable index version: a point-in-time view over its segments. Safe to share
    between threads. Segments are shared with other readers of the same process through a ``SegmentCache``."""

    def __init__(
        self,
        index_dir: Path,
        version_dir: Path,
        manifest: Manifest,
        view: SegmentedView,
        skipped_versions: list[str],
        rebuilt: str | None = None,
        lease: SegmentLease | None = None,
    ) -> None:
        self.index_dir = index_dir
        self.version_dir = version_dir
        self.manifest = manifest
        self.view = view
        # Versions newer than this one that failed to load, with why: the service logs them and stays up.
        self.skipped_versions = skipped_versions
        # Segments whose derived files failed their checksum and were rebuilt in memory from their intact store
        # (``citesearch check --repair`` writes them back), with why; None when every file was intact.
        self.rebuilt = rebuilt
        self._lease = lease
        self._closed = False

    @property
    def version(self) -> str:
        return self.manifest.version

    # The view answers the surface of ``KeywordIndex`` / ``VectorIndex`` that citesearch.search reads (duck-typed;
    # typed as those so the search path, which another change moves behind a storage protocol, is left as it is).
    @property
    def keyword(self) -> KeywordIndex | None:
        """BM25 over the version's live passages (the view itself; None for a version without a keyword index)."""
        return cast("KeywordIndex | None", self.view.keyword)

    @property
    def vectors(self) -> VectorIndex:
        return cast("VectorIndex", self.view.vectors)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(ref.name for ref in self.manifest.segments)

    @classmethod
    def open(
        cls,
        index_dir: Path | str,
        version: str | None = None,
        *,
        verify: bool = True,
        fallback: bool = True,
        expect_model: ModelInfo | None = None,
        cache: SegmentCache | None = None,
    ) -> IndexReader:
        """Open ``version`` (default: the published one). With ``fallback``, a version that fails its checks is
        skipped for the newest older version that passes them; the failures are kept in ``skipped_versions``.
        Segments already in ``cache`` (loaded and verified by an earlier reader) are reused, not loaded again."""
        index_dir = Path(index_dir)
        wanted = version or current_version(index_dir)
        if wanted is None:
            raise IndexNotFoundError(
                f"no index in {index_dir}; build one with: citesearch index PATH --index-dir {index_dir}"
            )
        cache = cache if cache is not None else SegmentCache()
        candidates = [wanted]
        if fallback:
            candidates += [v for v in reversed(list_versions(index_dir)) if v < wanted]
        problems: list[str] = []
        incompatible: list[IndexIncompatibleError] = []
        for name in candidates:
            try:
                reader = cls._open_version(index_dir, name, verify=verify, skipped=problems, cache=cache)
                if expect_model is not None:
                    try:
                        reader.check_model(expect_model)
                    except IndexIncompatibleError:
                        reader.close()
                        raise
            except IndexStoreError as exc:
                if isinstance(exc, IndexIncompatibleError):
                    incompatible.append(exc)
                problems.append(f"{name}: {exc}")
                log.warning("index version %s not usable: %s", name, exc)
                continue
            return reader
        if incompatible and len(incompatible) == len(problems):  # nothing damaged, just another model or format
            raise incompatible[0]
        raise IndexCorruptError(f"no intact index version in {index_dir}: " + "; ".join(problems))

    @classmethod
    def _open_version(
        cls, index_dir: Path, name: str, *, verify: bool, skipped: list[str], cache: SegmentCache
    ) -> IndexReader:
        version_dir = index_dir / VERSIONS_DIR / name
        health = inspect_version(index_dir, name, trusted=cache.names() if verify else None)
        manifest = health.manifest
        if manifest is None:
            raise IndexCorruptError(health.describe())
        if health.legacy:
            raise IndexIncompatibleError(upgrade_message(index_dir, name))
        if health.problem is not None:
            raise IndexIncompatibleError(f"{health.problem}; re-index")
        if verify and health.failed and not health.rebuildable:
            raise IndexCorruptError(health.describe())
        # The lease before loading: from here on no pruner deletes these segments under this reader.
        lease = SegmentLease.take(index_dir, [ref.name for ref in manifest.segments])
        try:
            segments = []
            rebuilt: list[str] = []
            for ref in manifest.segments:
                damaged = health.damaged_segments.get(ref.name) if verify else None
                if damaged:
                    segment = rebuild_segment_in_memory(index_dir, ref.name, manifest)
                    rebuilt.append(f"{ref.name} ({', '.join(damaged)})")
                else:  # checksummed by inspect_version just now, or loaded (and checked) by an earlier reader
                    segment = cache.get(index_dir, ref.name, verify=verify and ref.name not in health.checked)
                segments.append(segment)
            masks = [read_deletes(index_dir, ref.deletes, ref.passages) for ref in manifest.segments]
            view = open_view(
                segments, masks, previous=cache.last_view(index_dir), centroids=_pool_centroids(index_dir, manifest)
            )
            cache.keep_view(index_dir, view)
        except IndexCorruptError as exc:
            lease.release()
            raise IndexCorruptError(f"{health.describe()}; {exc}") from None
        except (RuntimeError, ValueError, KeyError, sqlite3.Error, OSError) as exc:
            lease.release()
            raise IndexCorruptError(f"cannot load: {type(exc).__name__}: {exc}") from None
        note = None
        if rebuilt:
            note = (
                f"derived files of segment(s) {'; '.join(rebuilt)} of {name} rebuilt in memory from their intact "
                f"passages.sqlite and the embedding cache; write them back with: citesearch check --repair "
                f"--index-dir {index_dir}"
            )
            log.warning("index version %s: %s", name, note)
        return cls(index_dir, version_dir, manifest, view, list(skipped), note, lease)

    def check_model(self, expected: ModelInfo) -> None:
        model = self.manifest.model
        if (model.name, model.dim) != (expected.name, expected.dim):
            raise IndexIncompatibleError(
                f"index {self.version} was built with model {model.name!r} (dim {model.dim}), not {expected.name!r} "
                f"(dim {expected.dim}); configure that model or re-index"
            )

    # The reader surface (citesearch.search, eval, service): the view answers it.
    def search_vectors(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> VectorHits:
        self._check_open()
        hits: VectorHits = self.view.search_vectors(queries, k, allowed_ids)
        return hits

    def passages(self, passage_ids: Sequence[int]) -> list[StoredPassage]:
        self._check_open()
        found: list[StoredPassage] = self.view.passages(passage_ids)
        return found

    def token_vectors(self, passage_ids: Sequence[int]) -> StoredTokens | None:
        """The stored token vectors of these passages (``index_store.token_vectors``); None when the version
        keeps none."""
        self._check_open()
        found: StoredTokens | None = self.view.token_vectors(passage_ids)
        return found

    def warm(self) -> None:
        """Load now what the first search would otherwise load. A server calls this before it swaps a version in,
        so no request pays for it."""
        self.view.warm()

    def part_layout(self) -> PartLayout | None:
        """The parts of the version's positions, composed from the segments' stored layouts (no pass over the
        index per version); None without a part-level index."""
        layout: PartLayout | None = self.view.part_layout()
        return layout

    def part_vectors(self) -> PartVectors | None:
        """Each part's mean vector as the segments store them (duck-types ``PartVectors``)."""
        return cast("PartVectors | None", self.view.part_vectors())

    def document_keys(self, passage_ids: np.ndarray) -> np.ndarray:
        """For each passage id, an integer that is equal for passages of the same document (-1 for an unknown or
        deleted id)."""
        keys: np.ndarray = self.view.document_keys(np.asarray(passage_ids, dtype=np.int64))
        return keys

    def passage_ids(self, *, section: str | None = None, doc_id: str | None = None) -> np.ndarray:
        self._check_open()
        ids: np.ndarray = self.view.passage_ids_where(section=section, doc_id=doc_id)
        return ids

    def iter_passages(self) -> Iterator[StoredPassage]:
        passages: Iterator[StoredPassage] = self.view.iter_passages()
        return passages

    def document(self, doc_id: str) -> StoredDocument | None:
        self._check_open()
        document: StoredDocument | None = self.view.document(doc_id)
        return document

    def document_ids(self, *, limit: int | None = None, offset: int = 0) -> list[str]:
        ids: list[str] = self.view.document_ids(limit=limit, offset=offset)
        return ids

    def document_hashes(self) -> dict[str, str]:
        hashes: dict[str, str] = self.view.document_hashes()
        return hashes

    def _check_open(self) -> None:
        if self._closed:
            raise IndexStoreError(f"index version {self.version} is closed")

    def close(self) -> None:
        """Release this reader's lease (later lookups on it fail). Its segments stay loaded while another reader
        (or the cache) holds them."""
        if not self._closed:
            self._closed = True
            if self._lease is not None:
                self._lease.release()

    def __enter__(self) -> IndexReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_index(index_dir: Path | str, **options: Any) -> IndexReader:
    """Open the published version of an index folder (see ``IndexReader.open``)."""
    return IndexReader.open(index_dir, **options)


# -- writing -----------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Located:
    """Where a live document is: its segment, the local positions and sections of its passages, its hash."""

    segment: str
    positions: np.ndarray
    sections: list[str]
    content_hash: str


class IndexWriter:
    """Writes the next version on top of the current one: one new segment for the documents it writes, new deletes
    files for the segments that lose passages, a new manifest. Use ``IndexWriter.begin(...)`` as a context manager;
    leaving it without ``publish()`` (an error, a kill) discards the work and the published version stays as it was.
    Nothing of an existing segment is read beyond the rows of the documents the write replaces or deletes."""

    def __init__(
        self,
        index_dir: Path,
        *,
        model: ModelInfo,
        chunker: dict[str, Any],
        vector_backend: str,
        keyword: KeywordSettings | None,
        base: Manifest | None,
        keep_versions: int,
        before_switch: Callable[[Path], None] | None,
        passed_over: tuple[str, ...] = (),
        cache: SegmentCache | None = None,
        substitutes: dict[str, str] | None = None,
        ivf_min_vectors: int | None = None,
    ) -> None:
        self.index_dir = index_dir
        self.model = model
        self.chunker = chunker
        self.vector_backend = vector_backend
        self.keyword = keyword
        self.base = base
        self.keep_versions = keep_versions
        self.before_switch = before_switch
        self.published: Manifest | None = None
        self.cache = cache if cache is not None else SegmentCache()
        self.version_dir: Path = index_dir / VERSIONS_DIR  # the published version's folder once published
        # Damaged versions newer than the base (passed over to reach it), and those its ancestors passed over: the
        # manifest lists them so pruning keeps them (evidence, and what may still be recovered by hand).
        inherited = base.extra.get("passed_over", []) if base is not None else []
        self.passed_over = sorted({*(inherited if isinstance(inherited, list) else []), *passed_over})
        substitutes = substitutes or {}
        self.verified: set[str] = set()  # base segments whose files were checksummed by choose_base
        self._refs: list[SegmentRef] = []
        for old in base.segments if base is not None else ():
            # A segment whose derived files were damaged is rebuilt under a new name; its deletes file still applies.
            name = substitutes.get(old.name, old.name)
            self._refs.append(SegmentRef(name, old.deletes, old.passages, old.deleted))
        self._masks: dict[str, np.ndarray] = {}  # segments that lose passages in this write: the new mask
        self._connections: dict[str, sqlite3.Connection] = {}
        self._new: dict[str, _NewDocument] = {}  # what this write brings, for its new segment
        self.counts: dict[str, int] = dict(base.counts) if base is not None else {"documents": 0, "passages": 0}
        self.fingerprint = base.corpus_fingerprint if base is not None else corpus_fingerprint({})
        self._next_id = int(base.next_passage_id) if base is not None else 0
        self.written_files: list[str] = []  # what this write put on disk (relative to the index folder)
        self._removed: set[str] = set()  # live documents of the base this write deletes or replaces
        self._clusters: Any = None  # the cluster index after this write's documents, kept once published
        # IVF for big segments (index_store.centroids): the base's threshold and centroids unless told otherwise
        recorded = IvfSettings.of(base)
        self.ivf = recorded if ivf_min_vectors is None else replace(recorded, min_vectors=ivf_min_vectors)
        self._centroids_info: FileInfo | None = None  # the centroids file this write trained, if it did
        # The basis this write's token codes are in (index_store.token_vectors): set by whoever encodes them, from
        # ``base_token_projection()`` or fitted on the first of them
        self.token_projection: TokenProjection | None = None

    @property
    def base_chunker(self) -> dict[str, Any] | None:
        """Chunker settings of the version this one starts from (None for a first build)."""
        return None if self.base is None else self.base.chunker

    @classmethod
    @contextlib.contextmanager
    def begin(
        cls,
        index_dir: Path,
        *,
        model: ModelInfo,
        chunker: dict[str, Any],
        vector_backend: str = "auto",
        keyword: KeywordSettings | None = KeywordSettings(),
        lock_timeout: float = 0.0,
        rebuild: bool = False,
        allow_model_change: bool = False,
        keep_versions: int = 3,
        before_switch: Callable[[Path], None] | None = None,
        on_damage: str = "stop",
        cache: SegmentCache | None = None,
        ivf_min_vectors: int | None = None,
    ) -> Iterator[IndexWriter]:
        """Lock the index and start a new version from the current one (or empty, with ``rebuild``).

        A current version built with another model is an error unless ``allow_model_change`` (a full re-index,
        which re-embeds everything anyway), in which case the new version starts empty.

        A current version some of whose segments have damaged derived files (postings, vectors) is the base all
        the same: those segments are rebuilt from their intact store and the embedding cache, under new names.
        One whose documents cannot be trusted (a segment's store, a deletes file or the manifest damaged) is
        handled by ``on_damage`` (see ``choose_base``); a writer never starts from empty while a version exists,
        unless it replaces every document anyway (``"empty"``).

        ``ivf_min_vectors``: segments with at least this many vectors get an IVF index (None: what the base
        recorded, by default ``index_store.vectors.EXACT_MAX_VECTORS + 1``); recorded for later writes and merges.
        """
        index_dir = Path(index_dir)
        cache = cache if cache is not None else SegmentCache()
        with write_lock(index_dir, lock_timeout):
            (index_dir / VERSIONS_DIR).mkdir(parents=True, exist_ok=True)
            for parent in (index_dir / VERSIONS_DIR, index_dir / SEGMENTS_DIR):  # left by a writer that was killed
                for stale in parent.glob(f"{TMP_PREFIX}*") if parent.is_dir() else ():
                    if not _merge_in_progress(index_dir, stale):
                        shutil.rmtree(stale, ignore_errors=True)
            for stale in (
                (index_dir / CENTROIDS_DIR).glob(f"{TMP_PREFIX}*") if (index_dir / CENTROIDS_DIR).is_dir() else ()
            ):
                if not _merge_in_progress(index_dir, stale):
                    stale.unlink(missing_ok=True)
            chosen = None if rebuild else choose_base(index_dir, on_damage=on_damage, cache=cache)
            base = None if chosen is None else chosen.manifest
            if base is not None and (base.model.name, base.model.dim) != (model.name, model.dim):
                if not allow_model_change:
                    raise IndexIncompatibleError(
                        f"index {base.version} was built with model {base.model.name!r} (dim {base.model.dim}); "
                        f"adding documents embedded by {model.name!r} would mix models; re-index everything"
                    )
                base = None
            substitutes: dict[str, str] = {}
            if base is not None and chosen is not None and chosen.damaged_segments:
                substitutes = rebuild_segments(index_dir, base, chosen.damaged_segments, cache)
            writer = cls(
                index_dir,
                model=model,
                chunker=chunker,
                vector_backend=vector_backend,
                keyword=keyword,
                base=base,
                keep_versions=keep_versions,
                before_switch=before_switch,
                passed_over=() if chosen is None else tuple(s.split(":", 1)[0] for s in chosen.skipped),
                cache=cache,
                substitutes=substitutes,
                ivf_min_vectors=ivf_min_vectors,
            )
            writer.written_files.extend(f"{SEGMENTS_DIR}/{name}" for name in substitutes.values())
            if chosen is not None:
                writer.verified.update(chosen.checked)
            try:
                yield writer
            finally:
                writer._close()

    def _close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    # -- lookups in the base -------------------------------------------------------------------------------------
    def _segment(self, name: str) -> Any:
        """A base segment, loaded once per process (checksummed unless ``choose_base`` just did)."""
        return self.cache.get(self.index_dir, name, verify=name not in self.verified)

    def _store(self, name: str) -> sqlite3.Connection:
        if name not in self._connections:
            self._connections[name] = connect(segment_store_path(self.index_dir, name), read_only=True)
        return self._connections[name]

    def _mask(self, ref: SegmentRef) -> np.ndarray:
        if ref.name not in self._masks:
            self._masks[ref.name] = read_deletes(self.index_dir, ref.deletes, ref.passages).copy()
        return self._masks[ref.name]

    def _locate(self, doc_id: str) -> _Located | None:
        """The live copy of ``doc_id`` in the base: newest segment first (an updated document lives late)."""
        for ref in reversed(self._refs):
            db = self._store(ref.name)
            rows = db.execute(
                "SELECT passage_id, section FROM passages WHERE doc_id = ? ORDER BY passage_id", (doc_id,)
            ).fetchall()
            if not rows:
                continue
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            positions = segment_positions(self._segment(ref.name), ids)
            if self._mask(ref)[positions].all():
                continue  # deleted in this segment (a later one may hold it again)
            (content_hash,) = db.execute("SELECT content_hash FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
            return _Located(ref.name, positions, [r[1] for r in rows], str(content_hash))
        return None

    # -- changes -------------------------------------------------------------------------------------------------
    def document_hashes(self, doc_ids: Sequence[str] | None = None) -> dict[str, str]:
        """Content hash of each live document among ``doc_ids`` (of every live document without: a pass over every
        segment's document table, which only a full re-index needs)."""
        if doc_ids is None:
            hashes = {}
            for ref in self._refs:
                mask = self._mask(ref) if ref.name in self._masks or ref.deleted else None
                hashes.update(_live_document_hashes(self._store(ref.name), mask))
            hashes.update({doc_id: new.doc.content_hash for doc_id, new in self._new.items()})
            return hashes
        found = {}
        for doc_id in doc_ids:
            if doc_id in self._new:
                found[doc_id] = self._new[doc_id].doc.content_hash
            elif (located := self._locate(doc_id)) is not None:
                found[doc_id] = located.content_hash
        return found

    def iter_passages(self) -> Iterator[StoredPassage]:
        """Every passage the new version will hold (a pass over the whole index: derived-index builders only)."""
        for ref in self._refs:
            mask = self._mask(ref)
            segment = self._segment(ref.name)
            live = set(segment_passage_ids(segment)[~mask].tolist())
            for stored in PassageStore(self._store(ref.name)).iter_passages():
                if stored.passage_id in live:
                    yield stored
        for new in self._new.values():
            doc = new.doc
            for pid, p in zip(new.ids, new.passages, strict=True):
                yield StoredPassage(
                    pid,
                    doc.doc_id,
                    p.ordinal,
                    p.section,
                    p.comment_no,
                    p.char_start,
                    p.char_end,
                    p.text,
                    doc.title,
                    doc.source,
                    doc.url,
                )

    def delete_document(self, doc_id: str) -> bool:
        if doc_id in self._new:
            new = self._new.pop(doc_id)
            self._count(doc_id, new.doc.content_hash, [p.section for p in new.passages], -1)
            return True
        located = self._locate(doc_id)
        if located is None:
            return False
        ref = next(r for r in self._refs if r.name == located.segment)
        self._mask(ref)[located.positions] = True
        self._removed.add(doc_id)
        self._count(doc_id, located.content_hash, located.sections, -1)
        return True

    def _count(self, doc_id: str, content_hash: str, sections: Sequence[str], sign: int) -> None:
        self.counts["documents"] = self.counts.get("documents", 0) + sign
        self.counts["passages"] = self.counts.get("passages", 0) + sign * len(sections)
        for section in sections:
            key = f"passages_{section}"
            self.counts[key] = self.counts.get(key, 0) + sign
        self.fingerprint = fingerprint_add(self.fingerprint, doc_id, content_hash, sign)

    def upsert_document(
        self,
        doc: DocumentLike,
        passages: Sequence[PassageLike],
        vectors: np.ndarray,
        tokens: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        """Write ``doc`` with its passages and their vectors, replacing the version of it the base holds;
        ``tokens``: each passage's token codes and scales in ``token_projection`` (kept for the rerank)."""
        if len(passages) != len(vectors):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors for {doc.doc_id!r}")
        if tokens is not None and len(tokens) != len(passages):
            raise ValueError(f"{len(passages)} passages but token codes for {len(tokens)} of {doc.doc_id!r}")
        self.delete_document(doc.doc_id)
        ids = list(range(self._next_id, self._next_id + len(passages)))
        self._next_id += len(passages)
        new = _NewDocument(doc, ids, list(passages), np.asarray(vectors, dtype=np.float32), tokens)
        self._new[doc.doc_id] = new
        self._count(doc.doc_id, doc.content_hash, [p.section for p in passages], 1)

    # -- token vectors -------------------------------------------------------------------------------------------
    def set_token_codes(self, doc_id: str, tokens: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        """Keep these token codes (in ``token_projection``) with the passages of ``doc_id``, upserted before."""
        new = self._new[doc_id]
        if len(tokens) != len(new.passages):
            raise ValueError(f"{len(new.passages)} passages but token codes for {len(tokens)} of {doc_id!r}")
        self._new[doc_id] = replace(new, tokens=list(tokens))

    def wants_token_vectors(self, fusion: object) -> bool:
        """Whether this write keeps its passages' token vectors: when the ``fusion`` settings it records (a
        ``FusionSettings.to_dict()``), resolved for the documents the index holds after it, rerank by late
        interaction (``citesearch.late_interaction``), or when the base keeps them already (one kind of segment)."""
        from citesearch.fusion import FusionSettings, passages_per_document  # here: citesearch imports index_store

        settings = FusionSettings.from_dict(fusion) if isinstance(fusion, dict) else FusionSettings(profile="auto")
        resolved = settings.resolved(passages_per_document(self.counts))
        return bool(resolved.rerank_depth) or "token_vectors" in (self.base.extra if self.base else {})

    def base_token_projection(self) -> TokenProjection | None:
        """The basis the base's token codes are in (None when it keeps none): later writes reuse it, so the codes
        of every segment live in one space. The newest segments are looked at first."""
        if self.base is None or "token_vectors" not in self.base.extra:
            return None
        for ref in reversed(self._refs):
            projection = self._segment(ref.name).token_projection
            if projection is not None:
                return cast("TokenProjection", projection)
        return None

    # -- publishing ----------------------------------------------------------------------------------------------
    def publish(self, *, build: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Manifest:
        """Write and fsync the new segment and deletes files, then the manifest, then make it the current one."""
        name = _next_version_name(self.index_dir)
        files = dict(self.base.files) if self.base is not None else {}
        refs: list[SegmentRef] = []
        for old in self._refs:
            ref = old
            if old.name in self._masks and self._masks[old.name].sum() != old.deleted:
                mask = self._masks[old.name]
                relative = deletes_path(old.name, name)
                write_deletes(self.index_dir, relative, mask)
                self.written_files.append(relative)
                files[relative] = file_info(self.index_dir / relative)
                ref = SegmentRef(old.name, relative, old.passages, int(mask.sum()))
            if ref.live > 0:  # a segment left without a live passage drops out of the version
                refs.append(ref)
        keyword_extra: dict[str, Any] = (
            {"keyword": None}
            if self.keyword is None
            else {"keyword": {"backend": "segments", **self.keyword.to_dict()}}
        )
        new_segment = None
        if self._new:
            new_segment = self._write_segment()
            refs.append(SegmentRef(new_segment, None, sum(len(new.ids) for new in self._new.values()), 0))
        self._train_index_centroids(refs, new_segment)
        for ref in refs:
            key = f"{SEGMENTS_DIR}/{ref.name}/{SEGMENT_JSON}"
            if key not in files:
                files[key] = file_info(self.index_dir / key)
            if ref.deletes is not None and ref.deletes not in files:
                files[ref.deletes] = file_info(self.index_dir / ref.deletes)
        named = {f"{SEGMENTS_DIR}/{r.name}/{SEGMENT_JSON}" for r in refs} | {r.deletes for r in refs if r.deletes}
        ivf = self._ivf_to_record(files)
        if ivf.centroids is not None:
            named.add(ivf.centroids)
        files = {key: info for key, info in files.items() if key in named}
        live = sum(ref.live for ref in refs)
        if live != self.counts.get("passages", 0):
            raise IndexStoreError(
                f"inconsistent build: {self.counts.get('passages', 0)} passages counted but the segments hold {live}; "
                "nothing published"
            )
        counts = {k: v for k, v in self.counts.items() if v or k in ("documents", "passages")}
        extra_now = {
            **(self.base.extra if self.base else {}),
            **keyword_extra,
            **(extra or {}),
            **({"passed_over": self.passed_over} if self.passed_over else {}),
            "ivf": ivf.to_dict(),
        }
        extra_now.update(_fusion_choice(extra_now.get("fusion"), counts))
        if self.token_projection is not None and any(new.tokens is not None for new in self._new.values()):
            extra_now["token_vectors"] = {"basis": self.token_projection.fingerprint, "dims": TOKEN_DIMS}
            extra_now.pop(TOKENS_WAITING, None)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            version=name,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            model=self.model,
            vector_backend=self.vector_backend,
            chunker=self.chunker,
            counts=counts,
            corpus_fingerprint=self.fingerprint,
            files=files,
            build=build or {},
            extra=extra_now,
            base_version=self.base.version if self.base else None,
            segments=tuple(refs),
            next_passage_id=self._next_id,
        )
        self.published = publish_manifest(
            self.index_dir,
            manifest,
            keep=self.keep_versions,
            before_switch=self.before_switch,
            protect={name, *self.passed_over},
        )
        self.version_dir = self.index_dir / VERSIONS_DIR / name
        if self._clusters is not None:
            self.cache.keep_clusters(self.index_dir, name, self._clusters)
        return manifest

    def _write_segment(self) -> str:
        """Build the segment of the documents this write brings (aside, renamed into place, fsynced)."""
        name = next_segment_name(self.index_dir, {ref.name for ref in self._refs})
        keys, self._clusters = assign_clusters(
            self.index_dir,
            self.base,
            self._base_view,
            sorted(self._removed),
            [(new.doc, new.ids, new.passages, new.vectors) for new in self._new.values()],
            self.cache,
            self.keyword,
        )
        with_tokens = {new.tokens is not None for new in self._new.values()}
        if with_tokens == {True, False}:
            raise ValueError("some documents of this write bring token codes and others do not; nothing published")
        if with_tokens == {True} and self.token_projection is None:
            raise ValueError("token codes given without the token_projection they are in; nothing published")
        segment = build_segment(
            segment_dir(self.index_dir, name),
            [(new.doc, new.ids, new.passages, new.vectors, keys.get(doc_id)) for doc_id, new in self._new.items()],
            dim=self.model.dim,
            keyword=self.keyword,
            centroids=self._centroids(sum(len(new.ids) for new in self._new.values())),
            ivf_min_vectors=self.ivf.min_vectors,
            token_projection=self.token_projection if with_tokens == {True} else None,
            tokens={doc_id: new.tokens for doc_id, new in self._new.items() if new.tokens is not None},
        )
        self.cache.put(self.index_dir, segment)  # built and checked here: the next reader of this process reuses it
        self.written_files.append(f"{SEGMENTS_DIR}/{name}")
        return name

    def _centroids(self, count: int) -> Any:
        """The index's trained centroids when a segment of ``count`` vectors is to be IVF (None: it stays exact):
        the stored ones, or trained now on this write's vectors — once, then reused by every later big segment."""
        planned = centroids_for(
            self.index_dir,
            self.base,
            self.vector_backend,
            self.ivf,
            count,
            total=self.counts.get("passages", 0),
            dim=self.model.dim,
            sources=lambda: [(np.concatenate([new.vectors for new in self._new.values()]), None)],
        )
        if planned.trained is not None:
            self.ivf, self._centroids_info = planned.settings, planned.trained
            self.written_files.append(str(planned.settings.centroids))
        return planned.centroids

    def _train_index_centroids(self, refs: list[SegmentRef], new_segment: str | None) -> None:
        """Centroids for an index that has grown past the IVF threshold through writes each too small to train them
        (every segment stays exact): trained once, now, on a sample of all live rows, so that from this version on
        the readers' pools of small segments probe IVF lists, and later big segments and merges reuse them."""
        live = sum(ref.live for ref in refs)
        if self.ivf.centroids is not None or self.vector_backend == "faiss" or live < self.ivf.min_vectors:
            return
        sources: list[tuple[np.ndarray, np.ndarray | None]] = []
        for ref in refs:
            if ref.name == new_segment:
                sources.append((np.concatenate([new.vectors for new in self._new.values()]), None))
            else:
                sources.append((self._segment(ref.name).vectors.rows, self._mask(ref)))
        quantizer = quantizer_for(self.vector_backend, live, self.model.dim)
        centroids = train(sources, live, quantizer)
        relative, info = write_centroids(self.index_dir, centroids)
        log.info("IVF centroids trained for an index of %d passages (%s codes): %s", live, quantizer, relative)
        self.ivf = replace(self.ivf, centroids=relative, quantizer=quantizer)
        self._centroids_info = info
        self.written_files.append(relative)

    def _ivf_to_record(self, files: dict[str, FileInfo]) -> IvfSettings:
        """The IVF settings the new version records, its centroids file checksummed in ``files``; centroids the
        base named that no longer match their checksum are dropped (the next big segment trains new ones)."""
        ivf = self.ivf
        if ivf.centroids is None:
            return ivf
        if self._centroids_info is not None:
            files[ivf.centroids] = self._centroids_info
            return ivf
        info = files.get(ivf.centroids)
        if info is None or failed_files(self.index_dir, {ivf.centroids: info}):
            log.warning(
                "IVF centroids %s damaged or missing: no longer named (trained again when needed)", ivf.centroids
            )
            return replace(ivf, centroids=None, quantizer=None)
        return ivf

    def _base_view(self) -> SegmentedView:
        """The base version's live documents as this write leaves them (its deletions applied)."""
        segments = [self._segment(ref.name) for ref in self._refs]
        masks = [
            self._masks[ref.name]
            if ref.name in self._masks
            else read_deletes(self.index_dir, ref.deletes, ref.passages)
            for ref in self._refs
        ]
        return open_view(segments, masks)


@dataclass(frozen=True, slots=True)
class _NewDocument:
    doc: DocumentLike
    ids: list[int]
    passages: list[PassageLike]
    vectors: np.ndarray
    tokens: Sequence[tuple[np.ndarray, np.ndarray]] | None = None


def _pool_centroids(index_dir: Path, manifest: Manifest) -> Any:
    """The centroids a version's pools of small segments probe with: its IVF centroids once its live passages reach
    the IVF threshold (below it every segment, pooled or not, is searched exactly, as a merged index would be)."""
    settings = IvfSettings.of(manifest)
    if manifest.vector_backend == "faiss" or sum(ref.live for ref in manifest.segments) < settings.min_vectors:
        return None
    return load_centroids(index_dir, manifest, settings)


def _fusion_choice(recorded: object, counts: dict[str, int]) -> dict[str, Any]:
    """What an "auto" (or named) fusion profile takes for this version's documents, and why: recorded for
    operators beside the fusion settings; searchers resolve the same way from the same counts."""
    # Imported here: importing the citesearch package at module level would import index_store back, half-loaded.
    from citesearch.fusion import WEIGHT_NAMES, FusionSettings, passages_per_document

    if not isinstance(recorded, dict):
        return {}
    fusion = FusionSettings.from_dict(recorded)
    if fusion.profile == "custom":
        return {"fusion_choice": None}
    chosen = fusion.resolved(passages_per_document(counts))
    weights = {name: getattr(chosen, name) for name in WEIGHT_NAMES}
    return {"fusion_choice": {"profile": fusion.profile, "chosen": chosen.chosen, "reason": chosen.reason, **weights}}


def publish_manifest(
    index_dir: Path,
    manifest: Manifest,
    *,
    keep: int,
    before_switch: Callable[[Path], None] | None = None,
    protect: set[str] | frozenset[str] = frozenset(),
) -> Manifest:
    """Write the manifest into a new version folder aside, fsync it, rename it into place, switch ``CURRENT``,
    prune. Call with the write lock held. Everything the manifest names is on disk and fsynced already."""
    tmp = new_tmp_dir(index_dir / VERSIONS_DIR)
    (tmp / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    fsync_tree(tmp)
    final_dir = index_dir / VERSIONS_DIR / manifest.version
    os.rename(tmp, final_dir)
    fsync_path(final_dir.parent)
    if before_switch is not None:
        before_switch(final_dir)  # tests use this to die between the rename and the switch
    write_atomically(index_dir / CURRENT_NAME, manifest.version + "\n")
    prune(index_dir, keep=keep, protect={manifest.version, *protect})
    return manifest


def _live_document_hashes(db: sqlite3.Connection, mask: np.ndarray | None) -> dict[str, str]:
    """doc id -> content hash of the documents of one segment store that are not deleted under ``mask``."""
    hashes = dict(db.execute("SELECT doc_id, content_hash FROM documents").fetchall())
    if mask is None or not mask.any():
        return hashes
    ids = np.fromiter((r[0] for r in db.execute("SELECT passage_id FROM passages ORDER BY passage_id")), np.int64)
    deleted = set(ids[mask].tolist())
    for doc_id, first in db.execute("SELECT doc_id, MIN(passage_id) FROM passages GROUP BY doc_id"):
        if first in deleted:
            hashes.pop(doc_id, None)
    return hashes


def _merge_in_progress(index_dir: Path, tmp: Path) -> bool:
    """Whether a temporary segment folder belongs to a merge that is still running (merged segments are named
    ``m…``; the merger holds ``merge.lock`` while it builds)."""
    if not tmp.name.startswith(f"{TMP_PREFIX}m"):
        return False
    try:
        with (index_dir / MERGE_LOCK).open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


@dataclass(frozen=True, slots=True)
class Base:
    """The version a writer starts from."""

    manifest: Manifest
    rebuilt: str | None  # what was damaged and is rebuilt, for the log
    skipped: tuple[str, ...]  # newer versions passed over (on_damage="fallback"), with why
    damaged_segments: dict[str, list[str]] = field(default_factory=dict)  # segment -> its damaged derived files
    checked: tuple[str, ...] = ()  # segments whose files were just checksummed (not checked again on load)


def damaged_message(index_dir: Path, health: VersionHealth, older: str | None) -> str:
    """One line naming the damage and the command that deals with it."""
    if older is not None:
        remedy = (
            f"run: citesearch check --repair --index-dir {index_dir} (it publishes {older}, the newest intact "
            "version, again; documents only the damaged version held must then be indexed again)"
        )
    else:
        remedy = "no intact version remains: re-index everything (citesearch index PATH ...)"
    return f"index version {health.name} in {index_dir} is damaged ({health.describe()}); nothing was written; {remedy}"


def choose_base(
    index_dir: Path, *, on_damage: str = "stop", rebuild_vectors: bool = True, cache: SegmentCache | None = None
) -> Base | None:
    """The version the next write starts from: the published one, newest first, with damaged derived files to be
    rebuilt.

    When a version's documents cannot be trusted: ``"stop"`` raises ``IndexCorruptError`` with the repair command
    (``citesearch index --add``), ``"fallback"`` goes on to the newest older version whose documents are intact
    (the service, which re-applies what its journal held; ``citesearch check --repair``), ``"empty"`` starts
    from nothing (a full re-index, which replaces every document anyway). None only for a folder never published
    to (or ``"empty"``). A version of the previous format stops every mode but ``"empty"`` with the upgrade line.
    Segments in ``cache`` were verified when loaded and are not checksummed again."""
    if on_damage not in ("stop", "fallback", "empty"):
        raise ValueError(f"on_damage must be stop, fallback or empty, not {on_damage!r}")
    current = current_version(index_dir)
    names = [v for v in reversed(list_versions(index_dir)) if current is None or v <= current]
    if current is not None and current not in names:
        names.insert(0, current)  # published, but its folder is gone: reported as missing below
    if not names:
        return None
    damaged: list[VersionHealth] = []
    trusted = cache.names() if cache is not None else set()
    for name in names:
        health = inspect_version(index_dir, name, trusted=trusted)
        if health.legacy:
            if on_damage == "empty":
                log.warning("starting a fresh index in the current format (every document is replaced)")
                return None
            raise IndexIncompatibleError(upgrade_message(index_dir, name))
        usable = health.ok or health.rebuildable
        if usable and health.damaged_segments and rebuild_vectors:
            assert health.manifest is not None
            problem = check_rebuildable(index_dir, health.manifest, health.damaged_segments)
            if problem is not None:
                health = VersionHealth(health.name, health.manifest, {**health.failed, "": problem})
                usable = False
        if usable:
            if damaged and on_damage == "stop":
                raise IndexCorruptError(damaged_message(index_dir, damaged[0], name))
            assert health.manifest is not None
            rebuilt = None if health.ok else f"{health.damage.describe()} rebuilt ({health.describe()})"
            if rebuilt:
                log.warning("index version %s: %s from its intact segment stores", name, rebuilt)
            skipped = tuple(f"{h.name}: {h.describe()}" for h in damaged)
            if skipped:
                log.error("index version(s) passed over, their documents cannot be trusted: %s", "; ".join(skipped))
            return Base(health.manifest, rebuilt, skipped, dict(health.damaged_segments), health.checked)
        damaged.append(health)
        if on_damage == "empty":
            log.warning("starting a fresh index (every document is replaced): %s", health.describe())
            return None
    raise IndexCorruptError(damaged_message(index_dir, damaged[0], None))


def _next_version_name(index_dir: Path) -> str:
    existing = [int(name[1:]) for name in list_versions(index_dir) if name[1:].isdigit()]
    current = current_version(index_dir)
    if current and current[1:].isdigit():
        existing.append(int(current[1:]))
    return f"v{max(existing, default=0) + 1:06d}"


def prune(index_dir: Path, *, keep: int, protect: set[str]) -> None:
    """Remove old versions beyond the newest ``keep``, then every segment and deletes file that no remaining
    version names and no live reader holds (``index_store.leases``). Call with the write lock held.

    ``protect`` holds the version just published and every version passed over as damaged on the way to its base
    (the manifest's ``passed_over``): the new version does not hold what only those held, so they stay as evidence
    and for recovery by hand (``citesearch check`` lists them)."""
    current = current_version(index_dir)
    for name in list_versions(index_dir)[:-keep] if keep > 0 else []:
        if name != current and name not in protect:
            shutil.rmtree(index_dir / VERSIONS_DIR / name, ignore_errors=True)
    named_segments: set[str] = set()
    named_deletes: set[str] = set()
    named_centroids: set[str] = set()
    for name in list_versions(index_dir):
        try:
            manifest = Manifest.read(index_dir / VERSIONS_DIR / name)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            # Unreadable: what it names is unknown, so nothing is pruned this time (it stays as evidence).
            return
        named_segments.update(ref.name for ref in manifest.segments)
        named_deletes.update(ref.deletes for ref in manifest.segments if ref.deletes)
        if (centroids := IvfSettings.of(manifest).centroids) is not None:
            named_centroids.add(centroids)
    held = leased_segments(index_dir)
    for segment in list_segments(index_dir):
        if segment not in named_segments and segment not in held:
            shutil.rmtree(segment_dir(index_dir, segment), ignore_errors=True)
    deletes_root = index_dir / DELETES_DIR
    for path in deletes_root.glob("*.npy") if deletes_root.is_dir() else ():
        relative = f"{DELETES_DIR}/{path.name}"
        if relative not in named_deletes and path.name.split(".", 1)[0] not in held:
            path.unlink(missing_ok=True)
    prune_centroids(index_dir, named_centroids, held)


__all__ = [
    "Base",
    "IndexReader",
    "IndexWriter",
    "SegmentCache",
    "choose_base",
    "current_version",
    "list_versions",
    "open_index",
    "prune",
    "publish_manifest",
    "write_lock",
]
