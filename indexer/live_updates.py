"""Live updates: documents added and deleted over HTTP, journaled durably, applied by one background writer.

The path of one change::

    POST /documents  ->  validate  ->  journal.sqlite (fsynced)  ->  202 {"seq": [...], "status": "accepted"}
                                            |
                           UpdateWriter thread (one per app): pending entries in order, in batches
                                            |
          apply_changes(upserts, deletes)  ->  one new version published atomically  ->  holder.refresh()
                                            |
                           entries marked applied with that version  ->  GET /updates/{seq}: "published"

**Durability.** A 202 is sent only after the change is committed to ``<index_dir>/journal.sqlite`` (SQLite WAL,
``synchronous=FULL``: the commit fsyncs the WAL). Killing the process at any point after that loses nothing: on
start the writer applies every entry not yet applied.

**Exactly once.** Each version the writer publishes records ``{"journal": {"id": ..., "last_seq": N}}`` in its
manifest. A writer killed after publishing but before marking its entries finds that marker on restart and marks
them instead of applying them again (a CLI run published in between is therefore never overwritten by old changes).

**The write lock.** The writer publishes through the same ``index_store.write_lock`` as ``citesearch index``. While
the CLI holds it, accepted changes wait in the journal and the writer retries (logging once that it waits, and for
whom); while the writer holds it, the CLI waits ``--wait`` seconds and otherwise fails with the lock message. One
service process applies a folder's journal: a second one on the same folder stays on standby (``writer.lock``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from index_store import IndexLockedError, IndexStoreError, current_version, list_versions
from index_store.layout import VERSIONS_DIR
from index_store.manifest import Manifest
from index_store.versions import choose_base
from indexer.documents import Document
from indexer.embedder import Embedder
from indexer.pipeline import BuildOptions, apply_changes

log = logging.getLogger(__name__)

JOURNAL_NAME = "journal.sqlite"
WRITER_LOCK_NAME = "writer.lock"
API_SOURCE = "api"  # Document.source of documents posted over HTTP

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    doc_id TEXT NOT NULL,
    document TEXT,                -- the posted record as JSON (upserts only)
    accepted_at TEXT NOT NULL,
    applied_version TEXT,         -- NULL until a published version holds the change
    applied_at TEXT
);
CREATE INDEX IF NOT EXISTS changes_pending ON changes (seq) WHERE applied_version IS NULL;
CREATE INDEX IF NOT EXISTS changes_doc ON changes (doc_id, seq);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- documents ---------------------------------------------------------------------------------------------------
class InvalidDocument(ValueError):
    """A posted document that cannot be indexed; ``field`` names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def document_from_record(record: dict[str, Any]) -> Document:
    """The ``Document`` a posted record becomes: the jsonl loader's rules, its text parsed as a page (so a news
    page gets its article, author and comment units). Raises ``InvalidDocument`` naming the field."""
    # The loader's own record-to-Document step, so HTTP and `citesearch index` documents are cut identically.
    from indexer.loaders import record_document
    from indexer.records import RecordError, parse_record

    try:
        return record_document(parse_record(record), API_SOURCE)
    except RecordError as exc:
        raise InvalidDocument(exc.field, exc.message) from None


# -- the journal -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    op: str
    doc_id: str
    document: dict[str, Any] | None
    accepted_at: str
    applied_version: str | None
    applied_at: str | None

    @property
    def published(self) -> bool:
        return self.applied_version is not None


class Journal:
    """The durable queue of accepted changes, in ``<index_dir>/journal.sqlite``. Thread-safe.

    The file is created by the first accepted change, not before: a service that is never written to leaves its
    index folder untouched (and works on a read-only one)."""

    def __init__(self, index_dir: Path, *, create: bool = False) -> None:
        self.path = Path(index_dir) / JOURNAL_NAME
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._journal_id: str | None = None
        if create or self.path.exists():
            with self._lock:
                self._open(create=True)

    def _open(self, *, create: bool) -> sqlite3.Connection | None:
        """The connection, opening (and with ``create``, creating) the file first; None if there is none yet.
        Call with ``_lock`` held."""
        if self._db is not None:
            return self._db
        if not create and not self.path.exists():
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # every commit fsyncs the WAL: a 202 survives a power cut
            self._db = db
            with self._transaction():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                row = db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
                if row is None:
                    db.execute("INSERT INTO meta VALUES ('journal_id', ?)", (uuid.uuid4().hex,))
                    row = db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
        except BaseException:
            self._db = None
            db.close()
            raise
        self._journal_id = row[0]
        return db

    @property
    def journal_id(self) -> str:
        """This journal's identity (recorded in the versions it publishes, so a replaced journal is not confused
        with it)."""
        with self._lock:
            self._open(create=True)
            assert self._journal_id is not None
            return self._journal_id

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def append(self, changes: Sequence[tuple[str, str, dict[str, Any] | None]]) -> list[int]:
        """Journal ``(op, doc_id, record)`` changes in one transaction; returns their sequence numbers once the
        commit is on disk."""
        accepted_at = _now()
        with self._lock:
            db = self._open(create=True)
            assert db is not None
            with self._transaction():
                seqs = [self._insert(db, op, doc_id, record, accepted_at) for op, doc_id, record in changes]
        return seqs

    @staticmethod
    def _insert(db: sqlite3.Connection, op: str, doc_id: str, record: dict[str, Any] | None, accepted_at: str) -> int:
        document = None if record is None else json.dumps(record, ensure_ascii=False)
        cursor = db.execute(
            "INSERT INTO changes (op, doc_id, document, accepted_at) VALUES (?, ?, ?, ?)",
            (op, doc_id, document, accepted_at),
        )
        return int(cursor.lastrowid)  # type: ignore[arg-type]

    def pending(self, limit: int = 1000) -> list[Change]:
        with self._lock:
            db = self._open(create=False)
            rows = (
                []
                if db is None
                else db.execute(
                    "SELECT * FROM changes WHERE applied_version IS NULL ORDER BY seq LIMIT ?", (limit,)
                ).fetchall()
            )
        return [self._change(row) for row in rows]

    def mark_applied(self, seqs: Sequence[int], version: str) -> None:
        applied_at = _now()
        with self._lock:
            db = self._open(create=True)
            assert db is not None
            with self._transaction():
                db.executemany(
                    "UPDATE changes SET applied_version = ?, applied_at = ? WHERE seq = ? AND applied_version IS NULL",
                    [(version, applied_at, seq) for seq in seqs],
                )

    def reopen_lost(self, base_version: str, marker: JournalMarker | None) -> list[int]:
        """Put back in the queue every change marked applied in a version newer than ``base_version`` that
        ``base_version`` does not hold (its journal marker ``marker`` is below the change's seq): the version that
        held it was passed over as damaged, so the next version, built on ``base_version``, must apply it again.
        Later changes of the same documents were applied after these (or are still pending), so replaying the queue
        in seq order gives every document its latest state."""
        with self._lock:
            db = self._open(create=False)
            if db is None:
                return []
            with self._transaction():
                rows = db.execute(
                    "SELECT seq FROM changes WHERE applied_version IS NOT NULL AND applied_version > ? ORDER BY seq",
                    (base_version,),
                ).fetchall()
                lost = [int(r[0]) for r in rows if marker is None or not marker.holds(int(r[0]))]
                db.executemany(
                    "UPDATE changes SET applied_version = NULL, applied_at = NULL WHERE seq = ?", [(q,) for q in lost]
                )
        return lost

    def first_pending_outside(self, seqs: Sequence[int]) -> int | None:
        """The smallest seq not yet applied and not among ``seqs`` (None when there is none)."""
        with self._lock:
            db = self._open(create=False)
            if db is None:
                return None
            rows = db.execute(
                "SELECT seq FROM changes WHERE applied_version IS NULL ORDER BY seq LIMIT ?", (len(seqs) + 1,)
            ).fetchall()
        taken = set(seqs)
        return next((int(r[0]) for r in rows if int(r[0]) not in taken), None)

    def max_seq(self) -> int:
        with self._lock:
            db = self._open(create=False)
            row = None if db is None else db.execute("SELECT MAX(seq) FROM changes").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def get(self, seq: int) -> Change | None:
        with self._lock:
            db = self._open(create=False)
            row = None if db is None else db.execute("SELECT * FROM changes WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else self._change(row)

    def latest_for(self, doc_id: str) -> Change | None:
        with self._lock:
            db = self._open(create=False)
            row = (
                None
                if db is None
                else db.execute(
                    "SELECT * FROM changes WHERE doc_id = ? ORDER BY seq DESC LIMIT 1", (doc_id,)
                ).fetchone()
            )
        return None if row is None else self._change(row)

    def counts(self) -> dict[str, int | None]:
        with self._lock:
            db = self._open(create=False)
            if db is None:
                return {"accepted": 0, "pending": 0, "last_seq": None, "last_applied_seq": None}
            total, pending, last_seq = db.execute(
                "SELECT COUNT(*), COUNT(*) - COUNT(applied_version), MAX(seq) FROM changes"
            ).fetchone()
            last_applied = db.execute("SELECT MAX(seq) FROM changes WHERE applied_version IS NOT NULL").fetchone()[0]
        return {"accepted": total, "pending": pending, "last_seq": last_seq, "last_applied_seq": last_applied}

    @staticmethod
    def _change(row: tuple[Any, ...]) -> Change:
        seq, op, doc_id, document, accepted_at, applied_version, applied_at = row
        return Change(
            seq,
            op,
            doc_id,
            None if document is None else json.loads(document),
            accepted_at,
            applied_version,
            applied_at,
        )

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the writer --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class JournalMarker:
    """Which journal changes a version holds: every seq up to ``last_seq``, and the seqs in ``also`` (applied ahead
    of an older one still pending: a small document published before a large one posted earlier)."""

    last_seq: int
    also: frozenset[int] = frozenset()

    def holds(self, seq: int) -> bool:
        return seq <= self.last_seq or seq in self.also

    def to_dict(self, journal_id: str) -> dict[str, Any]:
        return {"id": journal_id, "last_seq": self.last_seq, "also": sorted(self.also)}


def journal_marker(manifest: Manifest, journal_id: str) -> JournalMarker | None:
    marker = manifest.extra.get("journal")
    if isinstance(marker, dict) and marker.get("id") == journal_id and isinstance(marker.get("last_seq"), int):
        also = marker.get("also") or []
        return JournalMarker(int(marker["last_seq"]), frozenset(int(s) for s in also if isinstance(s, int)))
    return None


def version_holds(manifest: Manifest | None, change: Change, journal_id: str) -> bool:
    """Whether the version of ``manifest`` holds ``change``: it was applied in that version or an earlier one, and
    the version's journal marker (the last change applied in its lineage) has reached it. A version with no marker
    of this journal (a full re-index since) holds what was applied before it."""
    if manifest is None or change.applied_version is None or change.applied_version > manifest.version:
        return False
    marker = journal_marker(manifest, journal_id)
    return marker is None or marker.holds(change.seq)


def reapply_lost(index_dir: Path, journal: Journal, base: Manifest) -> list[int]:
    """Re-queue the journaled changes that only versions newer than ``base`` held (see ``Journal.reopen_lost``)."""
    reopened = journal.reopen_lost(base.version, journal_marker(base, journal.journal_id))
    if reopened:
        log.error(
            "%d journaled change(s) (seq %d..%d) were published only in index versions newer than %s, which were "
            "passed over as damaged; they are applied again on %s",
            len(reopened),
            reopened[0],
            reopened[-1],
            base.version,
            base.version,
        )
    return reopened


@dataclass(slots=True)
class WriterStatus:
    state: str = "starting"  # starting, idle, applying, waiting_for_lock, standby, error, stopped
    last_error: str | None = None
    last_version: str | None = None
    batches: int = 0
    applied: int = 0
    since: float = field(default_factory=time.time)
    progress: dict[str, Any] | None = None  # the batch being applied: seqs, phase, done/total

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "last_error": self.last_error,
            "last_version": self.last_version,
            "batches": self.batches,
            "applied": self.applied,
            "progress": self.progress,
        }


class UpdateWriter:
    """The one background thread that applies journaled changes and publishes them (see the module docstring)."""

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder,
        journal: Journal,
        options: BuildOptions,
        *,
        on_published: Any = None,
        batch_limit: int = 500,
        retry_seconds: float = 1.0,
        error_backoff_seconds: float = 5.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.embedder = embedder
        self.journal = journal
        self.options = options
        self.on_published = on_published  # called with the new version after each publish (holder.refresh)
        self.batch_limit = batch_limit
        self.retry_seconds = retry_seconds
        self.error_backoff_seconds = error_backoff_seconds
        self.poll_seconds = poll_seconds
        self.status = WriterStatus()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file: Any = None
        # Merges run in their own thread after publishes, never in the way of the next write or of searches.
        from index_store.merging import BackgroundMerger

        self.merger = BackgroundMerger(self.index_dir, cache=options.segment_cache, on_merged=self._merged)
        # (version, file signature) of the base last found intact: a base is verified again only once it changes
        self._checked_base: tuple[str, tuple[tuple[str, int, int], ...], Manifest] | None = None

    def _merged(self, version: str) -> None:
        log.info("background merge published %s", version)
        if self.on_published is not None:
            self.on_published(version)

    # -- control -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="citesearch-writer", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New entries were journaled: apply them now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 120.0) -> None:
        """Stop after the batch in progress (it is published or, if cut short, discarded and re-applied later)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the update writer is still publishing after %.0fs; its entries stay journaled", timeout)
        self.merger.join(min(timeout, 5.0))  # a merge cut short publishes nothing; the next one starts over
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self.status.state = "stopped"

    # -- the loop ------------------------------------------------------------------------------------------------
    def _take_writer_role(self) -> bool:
        """One applier per index folder (a second service on the same folder waits as a standby)."""
        if self._lock_file is None:
            self._lock_file = (self.index_dir / WRITER_LOCK_NAME).open("a+", encoding="utf-8")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _base_manifest(self) -> Manifest | None:
        """The version the next write builds on (``choose_base`` with fallback), verified once per change of it."""
        current = current_version(self.index_dir)
        if current is None:
            return None
        checked = self._checked_base
        if (
            checked is not None
            and checked[0] == current
            and _signature(self.index_dir / VERSIONS_DIR / current) == checked[1]
        ):
            return checked[2]
        base = choose_base(
            self.index_dir, on_damage="fallback", rebuild_vectors=False, cache=self.options.segment_cache
        )
        if base is None:
            return None
        if base.manifest.version == current:
            self._checked_base = (current, _signature(self.index_dir / VERSIONS_DIR / current), base.manifest)
        return base.manifest

    def _reconcile(self) -> bool:
        """Re-queue changes only a passed-over (damaged) version held; True when some were."""
        base = self._base_manifest()
        return base is not None and bool(reapply_lost(self.index_dir, self.journal, base))

    def _run(self) -> None:
        has_role = standby_logged = False
        waiting_since: float | None = None
        # A restart after damage may find changes that only a damaged version held, with nothing pending.
        reconcile_due = self.journal.path.exists() and bool(self.journal.counts()["last_applied_seq"])
        while not self._stop.is_set():
            batch = self.journal.pending(self.batch_limit)
            if reconcile_due and not has_role and self._take_writer_role():
                has_role = True
            if has_role and (batch or reconcile_due):
                reconcile_due = False
                try:
                    if self._reconcile():
                        continue  # the queue changed: take the batch again, in seq order
                except (IndexStoreError, OSError, sqlite3.Error) as exc:
                    log.warning("checking %s for changes only a damaged version held failed: %s", self.index_dir, exc)
            if not batch:
                self.status.state = "idle"
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                continue
            if not has_role:  # taken when there is work, so an index folder never written to stays untouched
                if not self._take_writer_role():
                    if not standby_logged:
                        log.warning(
                            "another service process applies the update journal of %s; this one stands by",
                            self.index_dir,
                        )
                        standby_logged = True
                    self.status.state = "standby"
                    self._stop.wait(self.poll_seconds)
                    continue
                has_role = True
                try:
                    self._recover()
                except Exception:
                    log.exception("checking %s for changes published before a crash failed", self.journal.path)
                continue  # recovery may have marked the batch
            try:
                self.status.state = "applying"
                group = next_group(batch)
                if any(is_large(c) for c in group) and not self._warm(group):
                    continue  # small changes arrived while embedding it: they go first, the warm-up resumes later
                self._apply(group)
                if waiting_since is not None:
                    log.info(
                        "index lock released after %.1fs; journaled updates applied", time.monotonic() - waiting_since
                    )
                    waiting_since = None
            except IndexLockedError as exc:
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    log.warning(
                        "%d accepted update(s) wait: %s; retrying every %.0fs", len(batch), exc, self.retry_seconds
                    )
                self.status.state = "waiting_for_lock"
                self.status.last_error = str(exc)
                self._stop.wait(self.retry_seconds)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if error != self.status.last_error:  # the same failure again is not logged again
                    log.exception(
                        "applying journaled updates %d..%d failed; they stay journaled, retrying every %.0fs",
                        batch[0].seq,
                        batch[-1].seq,
                        self.error_backoff_seconds,
                    )
                self.status.state = "error"
                self.status.last_error = error
                self._stop.wait(self.error_backoff_seconds)

    def _recover(self) -> None:
        """Mark entries that a version published before a crash already holds (its manifest's journal marker)."""
        pending = self.journal.pending(1)
        current = current_version(self.index_dir)
        if not pending or current is None:
            return
        markers: list[tuple[str, JournalMarker]] = []
        for name in list_versions(self.index_dir):
            if name > current:
                continue
            with contextlib.suppress(Exception):
                manifest = Manifest.read(self.index_dir / VERSIONS_DIR / name)
                if (marker := journal_marker(manifest, self.journal.journal_id)) is not None:
                    markers.append((name, marker))
        covered = []
        for change in self.journal.pending(10**9):
            version = next((name for name, marker in markers if marker.holds(change.seq)), None)
            if version is not None:
                self.journal.mark_applied([change.seq], version)
                covered.append(change)
        if covered:
            log.info(
                "%d journaled update(s) were already published before a restart; marked, not re-applied", len(covered)
            )

    def _next_marker(self, batch: Sequence[Change]) -> JournalMarker:
        """The marker of the version this batch publishes: what its base holds plus the batch. Every change below
        the first one still pending outside the batch is held (applied ones were re-queued if their version was
        lost); the batch's seqs above it go to ``also``."""
        seqs = [c.seq for c in batch]
        base = self._base_manifest()
        base_marker = None if base is None else journal_marker(base, self.journal.journal_id)
        first_pending = self.journal.first_pending_outside(seqs)
        last = (first_pending - 1) if first_pending is not None else max(self.journal.max_seq(), *seqs)
        also = {q for q in (*seqs, *(base_marker.also if base_marker else ())) if q > last}
        return JournalMarker(last, frozenset(also))

    def _warm(self, group: Sequence[Change], slice_size: int = 256) -> bool:
        """Embed the passages of the large documents in ``group`` into the embedding cache, slice by slice, without
        the write lock. False as soon as a small change is pending (it is applied first; what was embedded stays
        cached, so the next warm-up resumes there); True when every passage is cached."""
        from index_store import EmbeddingCache
        from indexer.chunker import Chunker
        from indexer.pipeline import embedding_cache_key

        seqs = {c.seq for c in group}
        key = embedding_cache_key(self.embedder)
        chunker = Chunker(self.embedder, self.options.chunker)
        self.status.progress = {"seq_first": group[0].seq, "seq_last": group[-1].seq, "changes": len(group)}
        try:
            with EmbeddingCache(self.index_dir / "cache" / "embeddings.sqlite") as cache:
                for change in group:
                    if not is_large(change):
                        continue
                    self._progress("chunking", 0, 1)
                    passages = chunker.chunk(document_from_record(change.document or {}))
                    text_by_hash = {p.content_hash: p.embed_text for p in passages}
                    missing = sorted(set(text_by_hash) - set(cache.get_many(key, sorted(text_by_hash))))
                    for start in range(0, len(missing), slice_size):
                        # One slice at least per warm-up, so a steady stream of small changes cannot starve it.
                        if start > 0 and self._small_change_waiting(seqs):
                            return False
                        self._progress("embedding", start, len(missing))
                        hashes = missing[start : start + slice_size]
                        vectors = self.embedder.encode(
                            [text_by_hash[h] for h in hashes], batch_size=self.options.batch_size
                        )
                        cache.put_many(key, dict(zip(hashes, vectors, strict=True)))
            return not self._stop.is_set()
        finally:
            self.status.progress = None

    def _small_change_waiting(self, seqs: set[int]) -> bool:
        if self._stop.is_set():
            return True
        return any(c.seq not in seqs and not is_large(c) for c in self.journal.pending(self.batch_limit))

    def _progress(self, phase: str, done: int, total: int) -> None:
        if self.status.progress is not None:
            self.status.progress = {**self.status.progress, "phase": phase, "done": done, "total": total}

    def _apply(self, batch: Sequence[Change]) -> None:
        latest: dict[str, Change] = {}
        for change in batch:  # in order: the last change of a document wins
            latest.pop(change.doc_id, None)
            latest[change.doc_id] = change
        upserts = [document_from_record(c.document or {}) for c in latest.values() if c.op == "upsert"]
        deletes = [c.doc_id for c in latest.values() if c.op == "delete"]
        last_seq = batch[-1].seq
        marker = self._next_marker(batch)
        self.status.progress = {"seq_first": batch[0].seq, "seq_last": last_seq, "changes": len(batch)}
        options = BuildOptions(
            chunker=self.options.chunker,
            batch_size=self.options.batch_size,
            show_progress=False,
            lock_timeout=self.options.lock_timeout,
            vector_backend=self.options.vector_backend,
            keyword=self.options.keyword,
            derived_indexes=self.options.derived_indexes,
            record={**self.options.record, "journal": marker.to_dict(self.journal.journal_id)},
            on_damage="fallback",  # what the passed-over version held was re-queued by _reconcile
            progress=self._progress,
            segment_cache=self.options.segment_cache,
        )
        started = time.perf_counter()
        # replace_all=False: documents not mentioned are kept (as `citesearch index --add` does).
        try:
            report = apply_changes(
                self.index_dir, self.embedder, upserts=upserts, deletes=deletes, replace_all=False, options=options
            )
        finally:
            self.status.progress = None
        log.info(
            "applied journaled updates %d..%d (%d upserts, %d deletes) as %s: embedded %d passages, %d from "
            "cache, %.1fs",
            batch[0].seq,
            last_seq,
            len(upserts),
            len(deletes),
            report.version,
            report.passages_embedded,
            report.passages_from_cache,
            time.perf_counter() - started,
        )
        if self.on_published is not None:
            try:  # searches see the version before its entries say "published"
                self.on_published(report.version)
            except Exception:
                log.exception("loading the new version %s failed; the poller will retry", report.version)
        self.journal.mark_applied([c.seq for c in batch], report.version)
        self.merger.poke()
        self.status.last_version = report.version
        self.status.last_error = None
        self.status.batches += 1
        self.status.applied += len(batch)


LARGE_DOCUMENT_CHARS = 100_000  # an upsert at least this long is applied in a batch of its own, after small ones


def next_group(batch: Sequence[Change]) -> list[Change]:
    """The changes to publish next, out of the pending ``batch`` (in seq order).

    A large document takes long to chunk and embed (minutes for millions of characters): small changes posted after
    it must not wait for it. So changes of documents that have no large upsert pending go first, in one batch; then
    each large document, with the other pending changes of that same document, in a batch of its own (the last
    change of a document still wins). The versions' journal markers record exactly which seqs each holds. A large
    document's embeddings are computed before its batch, outside the write lock and interruptibly
    (``UpdateWriter._warm``), so small changes arriving meanwhile go first and the large batch itself is short."""
    large = {c.doc_id for c in batch if is_large(c)}
    if not large:
        return list(batch)
    small = [c for c in batch if c.doc_id not in large]
    if small:
        return small
    first = batch[0].doc_id
    return [c for c in batch if c.doc_id == first]


def is_large(change: Change) -> bool:
    return change.op == "upsert" and len((change.document or {}).get("text") or "") >= LARGE_DOCUMENT_CHARS


def _signature(version_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of a version's files: what a bit flip on disk usually changes."""
    entries = []
    for path in sorted(version_dir.rglob("*")):
        with contextlib.suppress(OSError):
            stat = path.stat()
            entries.append((path.relative_to(version_dir).as_posix(), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


class UpdateService:
    """What the routes use: the journal, the writer, and the request limits."""

    def __init__(self, journal: Journal, writer: UpdateWriter, *, max_batch_documents: int) -> None:
        self.journal = journal
        self.writer = writer
        self.max_batch_documents = max_batch_documents

    def accept(self, changes: Sequence[tuple[str, str, dict[str, Any] | None]]) -> list[int]:
        seqs = self.journal.append(changes)
        self.writer.notify()
        return seqs

    def close(self) -> None:
        self.writer.stop()
        self.journal.close()


def start_updates(
    index_dir: Path, embedder: Embedder, settings: Any, *, on_published: Any = None, segment_cache: Any = None
) -> UpdateService:
    """Open the journal and start the writer with the same build options as ``citesearch index``; with the
    service's ``segment_cache`` (its readers' loaded segments), a write loads nothing it does not change."""
    options = dataclasses.replace(settings.build_options(lock_timeout=1.0), segment_cache=segment_cache)
    journal = Journal(index_dir)
    writer = UpdateWriter(index_dir, embedder, journal, options, on_published=on_published)
    writer.start()
    return UpdateService(journal, writer, max_batch_documents=int(getattr(settings, "max_batch_documents", 100)))
