"""The index the service searches, swapped without a restart when a new version is published.

``IndexHolder`` keeps one opened ``IndexReader`` (and its ``Searcher``), and the cache of loaded segments that the
next version's reader reuses. A background task polls the index folder's
``CURRENT`` pointer; when it names a new version, the new version is opened and verified *aside* (checksums, model)
and only then swapped in under a lock. Requests take a lease on the version they start with, so a request in flight
at the switch finishes on the version it began with; the old reader is closed only when its last lease is released.
A version that fails to open is logged and skipped: the service keeps serving the previous one.

The service starts even when no index exists yet (``/ready`` answers 503) and picks up the first one published.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from citesearch.search import Searcher, check_model_matches
from citesearch.store import SearchStore
from index_store import IndexReader, IndexStoreError, ModelInfo, SegmentCache, current_version
from indexer.embedder import Embedder

log = logging.getLogger(__name__)


class IndexNotReady(Exception):
    """No index version is loaded (none published yet, or none could be opened)."""


@dataclass(eq=False, slots=True)
class _Loaded:
    reader: IndexReader | None  # the local version; None for a store without local files (Milvus)
    searcher: Searcher
    refs: int = 0
    retired: bool = False  # no longer current: close it when the last lease is released
    closed: bool = False


class Lease:
    """One request's hold on an index version. Release it exactly once (it is also a context manager)."""

    def __init__(self, holder: IndexHolder, loaded: _Loaded) -> None:
        self._holder = holder
        self._loaded = loaded
        self._released = False

    @property
    def searcher(self) -> Searcher:
        return self._loaded.searcher

    @property
    def reader(self) -> IndexReader:
        """The local index version (only when the service serves the local store)."""
        reader = self._loaded.reader
        if reader is None:
            raise IndexNotReady("the service serves a Milvus store, which has no local index version")
        return reader

    @property
    def local(self) -> bool:
        return self._loaded.reader is not None

    @property
    def store(self) -> SearchStore:
        return self._loaded.searcher.store

    @property
    def index_version(self) -> str:
        return self._loaded.searcher.index_version

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._holder._release(self._loaded)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class IndexHolder:
    """Holds the current index version for many request threads and swaps in newly published ones."""

    def __init__(self, index_dir: Path, embedder: Embedder) -> None:
        self.index_dir = Path(index_dir)
        self.embedder = embedder
        self.last_error: str | None = None  # why the newest published version is not the one served, if it is not
        self._current: _Loaded | None = None
        self._lock = threading.Lock()  # guards _current and every lease count
        self._refresh_lock = threading.Lock()  # one refresh at a time (poller and tests)
        self._failed_version: str | None = None  # a published version that failed to open; not retried
        self._listeners: list[Callable[[str], None]] = []
        # Segments are immutable: the next version reuses every loaded segment it shares with the served one and
        # loads only what is new (a publish is one small segment), so a reload costs the change, not the index. The
        # update writer of this process shares the cache too.
        self.segments = SegmentCache()

    def on_loaded(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(version)`` after each version is swapped in (on the loading thread: keep it quick)."""
        self._listeners.append(listener)

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def version(self) -> str | None:
        with self._lock:
            return None if self._current is None else self._current.searcher.index_version

    @property
    def degraded(self) -> str | None:
        """Why the served version is not simply the published one (a fallback, or files rebuilt in memory)."""
        with self._lock:
            loaded = self._current
        if loaded is None:
            return None
        rebuilt = None if loaded.reader is None else loaded.reader.rebuilt
        notes = [note for note in (self.last_error, rebuilt) if note]
        return "; ".join(notes) or None

    @property
    def ready(self) -> bool:
        return self.version is not None

    def acquire(self) -> Lease:
        """A lease on the current version; raises ``IndexNotReady`` when there is none."""
        with self._lock:
            loaded = self._current
            if loaded is None:
                raise IndexNotReady(self.last_error or f"no index published in {self.index_dir} yet")
            loaded.refs += 1
        return Lease(self, loaded)

    def _release(self, loaded: _Loaded) -> None:
        with self._lock:
            loaded.refs -= 1
            close_now = loaded.retired and loaded.refs == 0 and not loaded.closed
            if close_now:
                loaded.closed = True
        if close_now:
            self._close(loaded)

    # -- loading -------------------------------------------------------------------------------------------------
    def refresh(self, *, initial: bool = False) -> bool:
        """Load the published version if it is not the one served. True when a new version was swapped in.

        The first load may fall back to an older intact version (better to serve slightly old data than nothing);
        later loads open exactly the published version, and keep the current one if that fails.
        """
        with self._refresh_lock:
            wanted = current_version(self.index_dir)
            if wanted is None or wanted == self.version or wanted == self._failed_version:
                return False
            try:
                # The model is checked per version, so a version built by another model is passed over for an
                # older one that matches, as a damaged one is (on the first load).
                reader = IndexReader.open(
                    self.index_dir,
                    wanted,
                    fallback=initial or self._current is None,
                    expect_model=ModelInfo(self.embedder.name, self.embedder.dim, self.embedder.max_tokens),
                    cache=self.segments,
                )
            except (IndexStoreError, OSError) as exc:
                self._note_failure(wanted, str(exc))
                return False
            try:
                check_model_matches(reader, self.embedder)
            except IndexStoreError as exc:
                reader.close()
                self._note_failure(wanted, str(exc))
                return False
            if reader.version != wanted:  # fell back to an older version
                self._note_failure(wanted, "; ".join(reader.skipped_versions) or "could not be opened")
                if reader.version == self.version:
                    reader.close()
                    return False
            else:
                self._failed_version = None
                self.last_error = None
            reader.warm()  # before the swap: the first request on this version must not load lookup tables
            self._swap(_Loaded(reader, Searcher(reader, self.embedder)))
            # Readers still leased keep their own segment objects; the cache keeps what the served version uses.
            self.segments.retain(self.index_dir, set(reader.segments))
            log.info("serving index version %s from %s", reader.version, self.index_dir)
            for listener in self._listeners:
                try:
                    listener(reader.version)
                except Exception:  # a listener (cache warm-up) must never undo a successful swap
                    log.exception("index-loaded listener failed")
            return True

    def _note_failure(self, version: str, why: str) -> None:
        serving = self.version
        self._failed_version = version
        self.last_error = f"index version {version} could not be loaded: {why}"
        log.warning("%s; %s", self.last_error, f"still serving {serving}" if serving else "no index loaded")

    def _swap(self, new: _Loaded | None) -> None:
        """Make ``new`` current (None: serve nothing); the old version closes once its last lease is released."""
        with self._lock:
            old, self._current = self._current, new
            close_old = False
            if old is not None:
                old.retired = True
                close_old = old.refs == 0 and not old.closed
                if close_old:
                    old.closed = True
        if old is not None and close_old:
            self._close(old)

    @staticmethod
    def _close(loaded: _Loaded) -> None:
        try:
            close = getattr(loaded.searcher.store, "close", None)
            if loaded.reader is not None:
                loaded.reader.close()
            elif callable(close):
                close()
        except Exception:  # closing a read-only SQLite handle should not fail; never let it break a request
            log.exception("closing index version %s failed", loaded.searcher.index_version)

    def published_version(self) -> str | None:
        """The version published now (it may not be loaded yet)."""
        return current_version(self.index_dir)

    def describe_location(self) -> str:
        return str(self.index_dir)

    async def watch(self, interval: float) -> None:
        """Poll for new versions every ``interval`` seconds until cancelled. Opening runs in a worker thread so a
        large index verifying its checksums never blocks requests."""
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # a bug in one poll must not stop hot reload for the life of the process
                log.exception("checking %s for a new index version failed", self.index_dir)

    def close(self) -> None:
        """Stop serving: the current version is closed once the requests using it are done."""
        self._swap(None)
