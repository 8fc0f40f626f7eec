"""The index holder of a service on the Milvus store (CITESEARCH_STORE=milvus): it holds no index state of its own.

It serves the Milvus version the alias ``{prefix}_current`` names, polls the alias every reload interval and swaps
in the version a re-index switched it to, with the leases of ``service.index_holder`` (a request in flight at the
switch finishes on the version it began with). Any number of such services can serve one Milvus.
"""

from __future__ import annotations

import logging

from citesearch.search import Searcher, check_model_matches
from index_store import IndexStoreError
from index_store.milvus_store import MilvusConfig, MilvusStore, current_stamp
from indexer.embedder import Embedder
from service.index_holder import IndexHolder, _Loaded

log = logging.getLogger(__name__)


class MilvusHolder(IndexHolder):
    def __init__(self, config: MilvusConfig, embedder: Embedder) -> None:
        super().__init__(config.uri, embedder)  # type: ignore[arg-type]  # index_dir names the location only
        self.config = config

    def published_version(self) -> str | None:
        try:
            return current_stamp(self.config)
        except IndexStoreError:
            return None

    def describe_location(self) -> str:
        return f"Milvus at {self.config.uri} (alias {self.config.alias})"

    def refresh(self, *, initial: bool = False) -> bool:
        with self._refresh_lock:
            try:
                wanted = current_stamp(self.config)
            except IndexStoreError as exc:
                self.last_error = str(exc)
                return False
            if wanted is None or wanted == self.version or wanted == self._failed_version:
                return False
            try:
                store = MilvusStore(self.config, stamp=wanted)
            except IndexStoreError as exc:
                self._note_failure(wanted, str(exc))
                return False
            try:
                check_model_matches(store, self.embedder)
            except IndexStoreError as exc:
                store.close()
                self._note_failure(wanted, str(exc))
                return False
            self._failed_version = None
            self.last_error = None
            self._swap(_Loaded(None, Searcher(store, self.embedder)))
            log.info("serving Milvus index version %s from %s", wanted, self.config.uri)
            for listener in self._listeners:
                try:
                    listener(wanted)
                except Exception:  # a listener must never undo a successful swap
                    log.exception("index-loaded listener failed")
            return True
