"""index_store: versioned, atomically published indexes: immutable segments (passages in SQLite, vectors, BM25
postings) listed by per-version manifests with deletion bitmaps.

No web framework here; the indexer, the CLI, the service and the evaluation all go through this API.
"""

from index_store.embedding_cache import EmbeddingCache
from index_store.errors import (
    IndexCorruptError,
    IndexIncompatibleError,
    IndexLockedError,
    IndexNotFoundError,
    IndexStoreError,
)
from index_store.keyword import KeywordIndex, KeywordSettings
from index_store.manifest import FORMAT_VERSION, Manifest, ModelInfo
from index_store.segment_io import SegmentCache
from index_store.sqlite_store import StoredDocument, StoredPassage, StoredUnit
from index_store.vectors import VectorHits, VectorIndex, create_vector_index, load_vector_index
from index_store.versions import IndexReader, IndexWriter, current_version, list_versions, open_index, write_lock

__all__ = [
    "FORMAT_VERSION",
    "EmbeddingCache",
    "IndexCorruptError",
    "IndexIncompatibleError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexReader",
    "IndexStoreError",
    "IndexWriter",
    "KeywordIndex",
    "KeywordSettings",
    "Manifest",
    "ModelInfo",
    "SegmentCache",
    "StoredDocument",
    "StoredPassage",
    "StoredUnit",
    "VectorHits",
    "VectorIndex",
    "create_vector_index",
    "current_version",
    "list_versions",
    "load_vector_index",
    "open_index",
    "write_lock",
]
