"""What the app's lifespan creates and the routes use: settings, the model, the index holder, the sentence scorer.

One ``Services`` object per app, stored on ``app.state`` (never in a module global), so two apps in one process,
as in the tests, never share an index or a cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from citesearch.answer import SentenceScorer
from citesearch.settings import Settings
from indexer.embedder import Embedder
from indexer.live_updates import UpdateService
from service.index_holder import IndexHolder


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    embedder: Embedder
    holder: IndexHolder
    scorer: SentenceScorer
    updates: UpdateService | None = None  # live updates (indexer/live_updates.py): the journal and its writer
    # CITESEARCH_STORE=milvus: POST/DELETE /documents write straight to Milvus (indexer/milvus_writes.py), no journal
    direct_writes: bool = False
