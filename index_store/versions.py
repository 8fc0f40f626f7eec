"""Versioned index folders: one writer at a time builds a new version aside, then publishes it atomically.

Layout of an index folder::

    CURRENT                  name of the published version (replaced atomically)
    versions/v000007/        one immutable version: manifest.json, passages.sqlite, vectors.faiss, derived indexes
    versions/.tmp-<uuid>/    a version being built; never read, removed if its writer dies
    cache/embeddings.sqlite  embedding cache shared by all versions
    write.lock               flock held by the one writer, with its pid

A writer starts from a copy of the current version, applies changes, writes and fsyncs every file, renames the
folder into place and only then switches ``CURRENT``. A reader opens whatever ``CURRENT`` names and checks every file
against the manifest; killing a writer at any point leaves the previous version intact and in use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from index_store.derived import (
    CACHE_PATH,
    VersionHealth,
    inspect_version,
    keyword_index_from_store,
    keyword_settings_of,
    vectors_from_cache,
)
from index_store.errors import (
    IndexCorruptError,
    IndexIncompatibleError,
    IndexLockedError,
    IndexNotFoundError,
    IndexStoreError,
)
from index_store.keyword import DIR_NAME as KEYWORD_DIR
from index_store.keyword import KeywordIndex, KeywordSettings
from index_store.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    Manifest,
    ModelInfo,
    checksum_files,
)
from index_store.sqlite_store import FILE_NAME as STORE_FILE
from index_store.sqlite_store import (
    PassageStore,
    StoredDocument,
    StoredPassage,
    connect,
)
from index_store.vectors import (
    VectorHits,
    VectorIndex,
    create_vector_index,
    load_vector_index,
    save_vector_index,
)

log = logging.getLogger(__name__)

CURRENT_NAME = "CURRENT"
VERSIONS_DIR = "versions"
LOCK_NAME = "write.lock"
TMP_PREFIX = ".tmp-"


# Read-only members (properties), so that the frozen dataclasses of indexer/ satisfy them: a plain attribute in a
# Protocol means "settable", which a frozen dataclass is not.
class UnitLike(Protocol):
    @property
    def section(self) -> str: ...
    @property
    def char_start(self) -> int: ...
    @property
    def char_end(self) -> int: ...
    @property
    def comment_no(self) -> int | None: ...


class DocumentLike(Protocol):
    @property
    def doc_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def url(self) -> str | None: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def units(self) -> Sequence[UnitLike]: ...
    @property
    def content_hash(self) -> str: ...


class PassageLike(Protocol):
    @property
    def ordinal(self) -> int: ...
    @property
    def section(self) -> str: ...
    @property
    def comment_no(self) -> int | None: ...
    @property
    def char_start(self) -> int: ...
    @property
    def char_end(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def content_hash(self) -> str: ...


def _unit_row(unit: UnitLike) -> tuple[Any, ...]:
    """A unit as stored: the span, then what the page shows about a reader comment (absent on plain units)."""
    return (
        unit.section,
        unit.char_start,
        unit.char_end,
        unit.comment_no,
        getattr(unit, "comment_author", None),
        getattr(unit, "comment_date", None),
        getattr(unit, "comment_date_iso", None),
        getattr(unit, "parent", None),
        getattr(unit, "depth", 0),
    )


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


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        _fsync_path(path)
    _fsync_path(root)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_path(path.parent)


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


# -- reading -----------------------------------------------------------------------------------------------------
class IndexReader:
    """One opened, verified, immutable index version. Safe to share between threads."""

    def __init__(
        self,
        index_dir: Path,
        version_dir: Path,
        manifest: Manifest,
        connection: sqlite3.Connection,
        vectors: VectorIndex,
        keyword: KeywordIndex | None,
        skipped_versions: list[str],
        rebuilt: str | None = None,
    ) -> None:
        self.index_dir = index_dir
        self.version_dir = version_dir
        self.manifest = manifest
        self.vectors = vectors
        self.keyword = keyword  # None for a version built without a keyword index
        # Versions newer than this one that failed to load, with why: the service logs them and stays up.
        self.skipped_versions = skipped_versions
        # Derived files of this version that failed their checksum and were rebuilt in memory from its intact
        # store (``citesearch check --repair`` writes them), with why; None when every file was intact.
        self.rebuilt = rebuilt
        self._store = PassageStore(connection)
        self._lock = threading.Lock()  # one sqlite connection, many request threads
        self._document_keys: tuple[np.ndarray, np.ndarray] | None = None  # loaded on first use, then read-only

    @property
    def version(self) -> str:
        return self.manifest.version

    @classmethod
    def open(
        cls,
        index_dir: Path | str,
        version: str | None = None,
        *,
        verify: bool = True,
        fallback: bool = True,
        expect_model: ModelInfo | None = None,
    ) -> IndexReader:
        """Open ``version`` (default: the published one). With ``fallback``, a version that fails its checks is
        skipped for the newest older version that passes them; the failures are kept in ``skipped_versions``."""
        index_dir = Path(index_dir)
        wanted = version or current_version(index_dir)
        if wanted is None:
            raise IndexNotFoundError(
                f"no index in {index_dir}; build one with: citesearch index PATH --index-dir {index_dir}"
            )
        candidates = [wanted]
        if fallback:
            candidates += [v for v in reversed(list_versions(index_dir)) if v < wanted]
        problems: list[str] = []
        incompatible: list[IndexIncompatibleError] = []
        for name in candidates:
            try:
                reader = cls._open_version(index_dir, name, verify=verify, skipped=problems)
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
        if incompatible and len(incompatible) == len(problems):  # nothing damaged, just built for another model
            raise incompatible[0]
        raise IndexCorruptError(f"no intact index version in {index_dir}: " + "; ".join(problems))

    @classmethod
    def _open_version(cls, index_dir: Path, name: str, *, verify: bool, skipped: list[str]) -> IndexReader:
        version_dir = index_dir / VERSIONS_DIR / name
        health = inspect_version(version_dir, format_version=FORMAT_VERSION)
        manifest = health.manifest
        if manifest is None:
            raise IndexCorruptError(health.describe())
        if health.problem is not None:
            raise IndexIncompatibleError(f"{health.problem}; re-index")
        damage = health.damage if verify and health.failed else None
        if damage is not None and not health.rebuildable:
            raise IndexCorruptError(health.describe())
        connection = None
        try:
            connection = connect(version_dir / STORE_FILE, read_only=True)
            connection.execute("SELECT COUNT(*) FROM passages").fetchone()
            store = PassageStore(connection)
            # A derived file that failed its checksum is rebuilt from the intact store (and the embedding cache)
            # rather than abandoning the version: falling back would hide every document only this version holds.
            if damage is not None and damage.vectors:
                vectors = vectors_from_cache(store, manifest, index_dir / CACHE_PATH)
            else:
                vectors = load_vector_index(manifest.vector_backend, version_dir)
            if damage is not None and damage.keyword:
                settings = keyword_settings_of(manifest)
                keyword = None if settings is None else keyword_index_from_store(store, settings)
            else:
                keyword = KeywordIndex.load(version_dir)
        except IndexCorruptError as exc:
            if connection is not None:
                connection.close()
            raise IndexCorruptError(f"{health.describe()}; {exc}") from None
        except (RuntimeError, ValueError, KeyError, sqlite3.Error, OSError) as exc:
            if connection is not None:
                connection.close()
            raise IndexCorruptError(f"cannot load: {exc}") from None
        rebuilt = None
        if damage is not None:
            rebuilt = (
                f"{damage.describe()} of {name} rebuilt in memory from its intact passages.sqlite "
                f"({health.describe()}); write them back with: citesearch check --repair --index-dir {index_dir}"
            )
            log.warning("index version %s: %s", name, rebuilt)
        return cls(index_dir, version_dir, manifest, connection, vectors, keyword, list(skipped), rebuilt)

    def check_model(self, expected: ModelInfo) -> None:
        model = self.manifest.model
        if (model.name, model.dim) != (expected.name, expected.dim):
            raise IndexIncompatibleError(
                f"index {self.version} was built with model {model.name!r} (dim {model.dim}), not {expected.name!r} "
                f"(dim {expected.dim}); configure that model or re-index"
            )

    def search_vectors(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> VectorHits:
        return self.vectors.search(queries, k, allowed_ids=allowed_ids)

    def passages(self, passage_ids: Sequence[int]) -> list[StoredPassage]:
        with self._lock:
            return self._store.passages(passage_ids)

    def warm(self) -> None:
        """Load now what the first search would otherwise load (the id-to-document table: about a second at 1M
        passages). A server calls this before it swaps a version in, so no request pays for it."""
        self._loaded_document_keys()

    def _loaded_document_keys(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._document_keys is None:
                self._document_keys = self._store.document_keys()
            return self._document_keys

    def document_keys(self, passage_ids: np.ndarray) -> np.ndarray:
        """For each passage id, an integer that is equal for passages of the same document (-1 for an unknown id).
        The id-to-document table is read once per version (``warm``, or the first call); a lookup is then a binary
        search."""
        ids, keys = self._loaded_document_keys()
        passage_ids = np.asarray(passage_ids, dtype=np.int64)
        if len(ids) == 0:
            return np.full(len(passage_ids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(ids, passage_ids), len(ids) - 1)
        return np.where(ids[at] == passage_ids, keys[at], -1)

    def passage_ids(self, *, section: str | None = None, doc_id: str | None = None) -> np.ndarray:
        with self._lock:
            return self._store.passage_ids(section=section, doc_id=doc_id)

    def iter_passages(self) -> Iterator[StoredPassage]:
        with self._lock:
            passages = list(self._store.iter_passages())
        return iter(passages)

    def document(self, doc_id: str) -> StoredDocument | None:
        with self._lock:
            return self._store.document(doc_id)

    def document_ids(self, *, limit: int | None = None, offset: int = 0) -> list[str]:
        with self._lock:
            return self._store.document_ids(limit=limit, offset=offset)

    def document_hashes(self) -> dict[str, str]:
        with self._lock:
            return self._store.document_hashes()

    def close(self) -> None:
        with self._lock:
            self._store.connection.close()

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
class IndexWriter:
    """Builds the next version from the current one. Use ``IndexWriter.begin(...)`` as a context manager; leaving
    it without ``publish()`` (an error, a kill) discards the work and the published version stays as it was."""

    def __init__(
        self,
        index_dir: Path,
        version_dir: Path,
        *,
        model: ModelInfo,
        chunker: dict[str, Any],
        vector_backend: str,
        keyword: KeywordSettings | None,
        base: Manifest | None,
        keep_versions: int,
        before_switch: Callable[[Path], None] | None,
        base_vectors: VectorIndex | None = None,
        passed_over: tuple[str, ...] = (),
    ) -> None:
        self.index_dir = index_dir
        self.version_dir = version_dir
        self.model = model
        self.chunker = chunker
        self.vector_backend = vector_backend
        self.keyword = keyword
        self.base = base
        self.keep_versions = keep_versions
        self.before_switch = before_switch
        self.published: Manifest | None = None
        # Damaged versions newer than the base (passed over to reach it), and those its ancestors passed over: the
        # manifest lists them so pruning keeps them (evidence, and what may still be recovered by hand).
        inherited = base.extra.get("passed_over", []) if base is not None else []
        self.passed_over = sorted({*(inherited if isinstance(inherited, list) else []), *passed_over})
        self._connection = connect(version_dir / STORE_FILE, read_only=False)
        self.store = PassageStore(self._connection)
        if base_vectors is not None:  # the base's vector files were damaged: rebuilt from the embedding cache
            self.vectors = base_vectors
        elif base is not None:
            self.vectors = load_vector_index(base.vector_backend, version_dir, writable=True)
        else:
            self.vectors = create_vector_index(vector_backend, model.dim)
        self._next_id = int(self.store.get_meta("next_passage_id", "0") or 0)

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
    ) -> Iterator[IndexWriter]:
        """Lock the index and start a new version from the current one (or empty, with ``rebuild``).

        A current version built with another model is an error unless ``allow_model_change`` (a full re-index,
        which re-embeds everything anyway), in which case the new version starts empty.

        A current version whose derived files (BM25, vectors) fail their checks is the base all the same: they are
        rebuilt from its intact store and the embedding cache. One whose documents cannot be trusted (its store or
        manifest damaged) is handled by ``on_damage`` (see ``choose_base``); a writer never starts from empty while
        a version exists, unless it replaces every document anyway (``"empty"``).
        """
        index_dir = Path(index_dir)
        with write_lock(index_dir, lock_timeout):
            versions_root = index_dir / VERSIONS_DIR
            versions_root.mkdir(parents=True, exist_ok=True)
            for stale in versions_root.glob(f"{TMP_PREFIX}*"):  # left by a writer that was killed
                shutil.rmtree(stale, ignore_errors=True)
            chosen = None if rebuild else choose_base(index_dir, on_damage=on_damage)
            base = None if chosen is None else chosen.manifest
            base_vectors = None if chosen is None else chosen.vectors
            if base is not None and (base.model.name, base.model.dim) != (model.name, model.dim):
                if not allow_model_change:
                    raise IndexIncompatibleError(
                        f"index {base.version} was built with model {base.model.name!r} (dim {base.model.dim}); "
                        f"adding documents embedded by {model.name!r} would mix models; re-index everything"
                    )
                base = base_vectors = None
            version_dir = versions_root / f"{TMP_PREFIX}{uuid.uuid4().hex}"
            version_dir.mkdir()
            if base is not None:
                _copy_version(versions_root / base.version, version_dir)
            writer = cls(
                index_dir,
                version_dir,
                model=model,
                chunker=chunker,
                vector_backend=vector_backend,
                keyword=keyword,
                base=base,
                keep_versions=keep_versions,
                before_switch=before_switch,
                base_vectors=base_vectors,
                passed_over=() if chosen is None else tuple(s.split(":", 1)[0] for s in chosen.skipped),
            )
            try:
                yield writer
            finally:
                writer._connection.close()
                if writer.published is None:
                    shutil.rmtree(version_dir, ignore_errors=True)

    # -- changes -------------------------------------------------------------------------------------------------
    def document_hashes(self) -> dict[str, str]:
        return self.store.document_hashes()

    def iter_passages(self) -> Iterator[StoredPassage]:
        return self.store.iter_passages()

    def delete_document(self, doc_id: str) -> bool:
        removed = self.store.delete_document(doc_id)
        if not removed and self.store.document(doc_id) is None:
            return False
        self.vectors.remove(np.asarray(removed, dtype=np.int64))
        return True

    def upsert_document(self, doc: DocumentLike, passages: Sequence[PassageLike], vectors: np.ndarray) -> None:
        if len(passages) != len(vectors):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors for {doc.doc_id!r}")
        old_ids = self.store.delete_document(doc.doc_id)
        self.vectors.remove(np.asarray(old_ids, dtype=np.int64))
        self.store.insert_document(
            doc_id=doc.doc_id,
            title=doc.title,
            text=doc.text,
            source=doc.source,
            url=doc.url,
            metadata=doc.metadata,
            units=[_unit_row(u) for u in doc.units],
            content_hash=doc.content_hash,
        )
        ids = np.arange(self._next_id, self._next_id + len(passages), dtype=np.int64)
        self._next_id += len(passages)
        self.store.insert_passages(
            (int(pid), doc.doc_id, p.ordinal, p.section, p.comment_no, p.char_start, p.char_end, p.text, p.content_hash)
            for pid, p in zip(ids, passages, strict=True)
        )
        self.vectors.add(ids, vectors)

    # -- publishing ----------------------------------------------------------------------------------------------
    def publish(self, *, build: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Manifest:
        """Write, checksum and fsync the new version, then make it the current one."""
        self.store.set_meta("next_passage_id", str(self._next_id))
        counts = self.store.counts()
        hashes = self.store.document_hashes()
        if counts["passages"] != len(self.vectors):
            raise IndexStoreError(
                f"inconsistent build: {counts['passages']} passages but {len(self.vectors)} vectors; nothing published"
            )
        self._connection.commit()
        keyword_extra = self._build_keyword_index()
        self._connection.execute("VACUUM")
        self._connection.close()
        vector_backend, _ = save_vector_index(self.vectors, self.version_dir, self.vector_backend)  # chosen by size
        name = _next_version_name(self.index_dir)
        fingerprint = hashlib.sha256(
            "\n".join(f"{doc_id}\t{h}" for doc_id, h in sorted(hashes.items())).encode("utf-8")
        ).hexdigest()
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            version=name,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            model=self.model,
            vector_backend=vector_backend,
            chunker=self.chunker,
            counts=counts,
            corpus_fingerprint=fingerprint,
            files=checksum_files(self.version_dir),
            build=build or {},
            extra={
                **(self.base.extra if self.base else {}),
                **keyword_extra,
                **(extra or {}),
                **({"passed_over": self.passed_over} if self.passed_over else {}),
            },
            base_version=self.base.version if self.base else None,
        )
        (self.version_dir / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        _fsync_tree(self.version_dir)
        final_dir = self.version_dir.parent / name
        os.rename(self.version_dir, final_dir)
        _fsync_path(final_dir.parent)
        self.version_dir = final_dir
        self.published = manifest
        if self.before_switch is not None:
            self.before_switch(final_dir)  # tests use this to die between the rename and the switch
        _write_atomically(self.index_dir / CURRENT_NAME, name + "\n")
        _prune(self.index_dir, keep=self.keep_versions, protect={name, *self.passed_over})
        return manifest

    def _build_keyword_index(self) -> dict[str, Any]:
        """Rebuild BM25 over every passage of the new version (the copy inherited from the base is stale)."""
        shutil.rmtree(self.version_dir / KEYWORD_DIR, ignore_errors=True)
        if self.keyword is None:
            return {"keyword": None}
        settings = self.keyword
        all_parts = list(self.store.iter_parts())
        parts = (
            [
                (KeywordIndex.text_for(doc.title, doc.text[unit.char_start : unit.char_end], settings), members)
                for doc, unit, members in all_parts
            ]
            if settings.context
            else None
        )
        # Per document: its article text (duplicate detection), published date (filters, recency) and passages.
        documents: dict[str, tuple[str, str, str | None, list[int]]] = {}
        for doc, unit, members in all_parts:
            _, article, published, ids = documents.setdefault(
                doc.doc_id, (doc.doc_id, "", doc.metadata.get("published"), [])
            )
            if unit.section == "article":
                article += "\n" + doc.text[unit.char_start : unit.char_end]
            documents[doc.doc_id] = (doc.doc_id, article, published, ids + members)
        index = KeywordIndex.build(
            ((p.passage_id, KeywordIndex.text_for(p.title, p.text, settings)) for p in self.store.iter_passages()),
            settings,
            parts,
            list(documents.values()),
        )
        index.save(self.version_dir)
        return {"keyword": {"backend": "bm25s", **settings.to_dict()}}


@dataclass(frozen=True, slots=True)
class Base:
    """The version a writer starts from."""

    manifest: Manifest
    vectors: VectorIndex | None  # rebuilt from the embedding cache when the version's vector files were damaged
    rebuilt: str | None  # what was damaged and is rebuilt, for the log
    skipped: tuple[str, ...]  # newer versions passed over (on_damage="fallback"), with why


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


def choose_base(index_dir: Path, *, on_damage: str = "stop", rebuild_vectors: bool = True) -> Base | None:
    """The version the next write starts from: the published one, newest first, with damaged derived files rebuilt.

    When a version's documents cannot be trusted: ``"stop"`` raises ``IndexCorruptError`` with the repair command
    (``citesearch index --add``), ``"fallback"`` goes on to the newest older version whose documents are intact
    (the service, which re-applies what its journal held; ``citesearch check --repair``), ``"empty"`` starts
    from nothing (a full re-index, which replaces every document anyway). None only for a folder never published
    to (or ``"empty"``)."""
    if on_damage not in ("stop", "fallback", "empty"):
        raise ValueError(f"on_damage must be stop, fallback or empty, not {on_damage!r}")
    current = current_version(index_dir)
    names = [v for v in reversed(list_versions(index_dir)) if current is None or v <= current]
    if current is not None and current not in names:
        names.insert(0, current)  # published, but its folder is gone: reported as missing below
    if not names:
        return None
    damaged: list[VersionHealth] = []
    for name in names:
        health = inspect_version(index_dir / VERSIONS_DIR / name, format_version=FORMAT_VERSION)
        usable = health.ok or health.rebuildable
        vectors = None
        if health.rebuildable and health.damage.vectors and rebuild_vectors:
            assert health.manifest is not None
            try:
                with contextlib.closing(connect(index_dir / VERSIONS_DIR / name / STORE_FILE, read_only=True)) as db:
                    vectors = vectors_from_cache(PassageStore(db), health.manifest, index_dir / CACHE_PATH)
            except (IndexCorruptError, sqlite3.Error) as exc:
                health = VersionHealth(health.name, health.manifest, {**health.failed, "": str(exc)})
                usable = False
        if usable:
            if damaged and on_damage == "stop":
                raise IndexCorruptError(damaged_message(index_dir, damaged[0], name))
            assert health.manifest is not None
            rebuilt = None if health.ok else f"{health.damage.describe()} rebuilt ({health.describe()})"
            if rebuilt:
                log.warning("index version %s: %s from its intact passages.sqlite", name, rebuilt)
            skipped = tuple(f"{h.name}: {h.describe()}" for h in damaged)
            if skipped:
                log.error("index version(s) passed over, their documents cannot be trusted: %s", "; ".join(skipped))
            return Base(health.manifest, vectors, rebuilt, skipped)
        damaged.append(health)
        if on_damage == "empty":
            log.warning("starting a fresh index (every document is replaced): %s", health.describe())
            return None
    raise IndexCorruptError(damaged_message(index_dir, damaged[0], None))


def _copy_version(source: Path, target: Path) -> None:
    """Copy a version's files to start the next one; SQLite through its backup API, the rest byte for byte."""
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if path.name == MANIFEST_NAME or path.name == STORE_FILE or path.is_dir():
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / relative)
    with (
        contextlib.closing(connect(source / STORE_FILE, read_only=True)) as src,
        contextlib.closing(sqlite3.connect(target / STORE_FILE)) as dst,
    ):
        src.backup(dst)


def _next_version_name(index_dir: Path) -> str:
    existing = [int(name[1:]) for name in list_versions(index_dir) if name[1:].isdigit()]
    current = current_version(index_dir)
    if current and current[1:].isdigit():
        existing.append(int(current[1:]))
    return f"v{max(existing, default=0) + 1:06d}"


def _prune(index_dir: Path, *, keep: int, protect: set[str]) -> None:
    """Remove old versions beyond the newest ``keep``. Readers that still hold one keep working: the SQLite file
    stays open and vectors are in memory.

    ``protect`` holds the version just published (intact, and holding everything its base held) and every version
    passed over as damaged on the way to its base (the manifest's ``passed_over``): the new version does not hold
    what only those held, so they stay as evidence and for recovery by hand (``citesearch check`` lists them)."""
    current = current_version(index_dir)
    for name in list_versions(index_dir)[:-keep] if keep > 0 else []:
        if name != current and name not in protect:
            shutil.rmtree(index_dir / VERSIONS_DIR / name, ignore_errors=True)


__all__ = [
    "Base",
    "IndexReader",
    "IndexWriter",
    "choose_base",
    "current_version",
    "list_versions",
    "open_index",
    "write_lock",
]
