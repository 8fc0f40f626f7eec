"""Embed the sentences of a newly loaded index version ahead of requests, when they all fit the sentence cache.

Highlights and answers embed every sentence of the passages they look at, which is what makes a cold request slow
on a CPU. For an index small enough that all its sentences fit the cache (the seeds, a team's document set), doing
that once in a background thread after each load makes every request warm. Larger indexes are left to the cache's
LRU and the per-request budget.
"""

from __future__ import annotations

import logging
import threading
import time

from citesearch.answer import SentenceScorer
from service.index_holder import IndexHolder, IndexNotReady

log = logging.getLogger(__name__)


class SentenceWarmer:
    """A listener for ``IndexHolder.on_loaded`` that warms the cache in a background thread per loaded version.
    ``close`` stops it between batches and waits, so no thread is left inside the model when the process exits."""

    def __init__(self, holder: IndexHolder, scorer: SentenceScorer) -> None:
        self.holder = holder
        self.scorer = scorer
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def __call__(self, version: str) -> None:
        if self._stopping.is_set():
            return
        thread = threading.Thread(target=self._warm, args=(version,), daemon=True, name=f"citesearch-warm-{version}")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _warm(self, version: str) -> None:
        holder, scorer = self.holder, self.scorer
        try:
            with holder.acquire() as lease:
                if lease.index_version != version or not lease.local:
                    return  # replaced by a newer version (which gets its own warm-up), or nothing local to read
                passages = int(lease.reader.manifest.counts.get("passages", 0))
                if passages * 2 > scorer.cache_size:  # passages have several sentences: this cannot fit
                    log.info("index %s: %d passages, too many to embed their sentences ahead", version, passages)
                    return
                texts = [p.text for p in lease.reader.iter_passages()]
            started = time.perf_counter()
            count = scorer.warm(texts, should_stop=lambda: self._stopping.is_set() or holder.version != version)
            log.info(
                "index %s: embedded %d sentences ahead of requests in %.1fs",
                version,
                count,
                time.perf_counter() - started,
            )
        except IndexNotReady:
            return
        except Exception:  # warming is an optimisation: never let it take the service down
            log.exception("warming the sentence cache for index %s failed", version)

    def close(self, timeout: float = 60.0) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
