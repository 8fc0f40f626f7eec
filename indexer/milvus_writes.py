"""Writes to the Milvus store (``POST`` / ``DELETE /documents`` with ``CITESEARCH_STORE=milvus``): straight to Milvus,
no journal. A posted batch is cut and embedded by the same pipeline as ``citesearch index`` (into a scratch local
index, so passages, parts, dates and duplicate clusters come out exactly as a build makes them), then its rows
replace the documents' old rows in the served collections and are flushed. Returning means Milvus acknowledged
the write: every replica searching the collection sees it (at consistency level Strong) on its next request.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index_store import open_index
from index_store.milvus_store import MilvusStore, posted_ordinal, rows_from_reader
from indexer.embedder import Embedder
from indexer.live_updates import document_from_record
from indexer.pipeline import apply_changes

if TYPE_CHECKING:
    from citesearch.settings import Settings


def upsert_records(
    store: MilvusStore, records: Sequence[dict[str, Any]], embedder: Embedder, settings: Settings
) -> None:
    """Add or replace these documents (validated ``DocumentRecord`` dicts) in the store's collections."""
    documents = [document_from_record(record) for record in records]
    with tempfile.TemporaryDirectory(prefix="citesearch-milvus-") as scratch:
        index_dir = Path(scratch)
        apply_changes(index_dir, embedder, upserts=documents, replace_all=True, options=settings.build_options())
        with open_index(index_dir) as reader:
            rows = rows_from_reader(reader, bm25=store.bm25, posted=True, ordinal_base=posted_ordinal())
    store.write_rows(rows, [document.doc_id for document in documents])


def delete_document(store: MilvusStore, doc_id: str) -> bool:
    """Remove a document; False when the store does not hold it."""
    return store.delete_document(doc_id)
